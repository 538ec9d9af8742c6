"""Pass ``name_nodes``: give every node of the main graph a unique, stable name.

Rules:
1. A node that has a name keeps it, unless an earlier node already uses the same name.
2. An unnamed node is named ``<OpType>_<index>``, where ``index`` is its position in
   ``graph.node`` when this pass runs (the original model's order when run first).
3. A name that is already taken (rule 1 duplicate, or rule 2 clash) gets the first free suffix
   ``_1``, ``_2`` ... . Names that are already unique are never changed.
4. Tensor names are not touched.

Reports (per-pass statistics, node placement) refer to nodes by these names.
"""
from __future__ import annotations

import onnx

from npuflow.passes._graph import unique_name


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    # Reserve every existing name first so that a generated name never steals a later node's.
    taken = {n.name for n in graph.node if n.name}
    seen: set[str] = set()
    modified = False
    for index, node in enumerate(graph.node):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        base = node.name if node.name else f"{node.op_type}_{index}"
        node.name = unique_name(base, taken)
        seen.add(node.name)
        modified = True
    return model, modified
