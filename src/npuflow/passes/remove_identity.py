"""Pass ``remove_identity``: remove ``Identity``, inference-mode ``Dropout`` and no-op ``Cast`` nodes.

For a removed node with input ``X`` and output ``Y``:

Rules:
1. Candidates: every ``Identity``; every ``Dropout`` whose ``mask`` output is absent or unused
   and whose ``training_mode`` input is absent, empty or a constant false (in inference a
   Dropout passes its input through unchanged, whatever ``ratio`` says); every ``Cast`` whose
   ``to`` is the element type its input already has (known from the graph's inputs,
   initializers and value_info; tf2onnx writes hundreds of float-to-float Casts: open_nsfw has
   297), which copies its input exactly.
2. ``Y`` not a graph output: every reader of ``Y`` reads ``X`` instead; the node is removed.
3. ``Y`` a graph output: the graph output keeps its name. ``X`` is renamed to ``Y`` instead
   (its producer's output, or the initializer, and all of X's readers) and the node is removed.
   This is impossible when ``X`` is itself a graph input or a graph output (two interface names
   for one tensor): then the node is kept.
4. A tensor read inside a subgraph (If/Loop/Scan body) is never renamed: such nodes are kept.
5. Stale value_info of the renamed/removed tensors is dropped.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.passes._graph import (
    constant_initializers,
    consumers,
    drop_value_info,
    is_default_domain,
    names_used_in_subgraphs,
    remove_nodes,
    rename_tensor,
)


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    out = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]
           if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    out.update({t.name: t.data_type for t in graph.initializer})
    return out


def _is_passthrough(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto],
                    used: dict[str, list[onnx.NodeProto]], outputs: set[str], elem: dict[str, int]) -> bool:
    if not is_default_domain(node.domain) or not node.input or not node.input[0]:
        return False
    if node.op_type == "Identity":
        return len(node.output) == 1
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        return len(node.output) == 1 and to is not None and elem.get(node.input[0]) == to
    if node.op_type != "Dropout":
        return False
    if len(node.output) > 1 and node.output[1] and (node.output[1] in used or node.output[1] in outputs):
        return False
    if len(node.input) > 2 and node.input[2]:
        t = consts.get(node.input[2])
        if t is None or bool(np.asarray(numpy_helper.to_array(t)).any()):
            return False
    return True


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    consts = constant_initializers(graph)
    outputs = {o.name for o in graph.output}
    inputs = {i.name for i in graph.input}
    in_subgraphs = names_used_in_subgraphs(graph)
    removed: list[onnx.NodeProto] = []
    touched: set[str] = set()

    elem = _elem_types(graph)
    for node in list(graph.node):
        if node.op_type not in ("Identity", "Dropout", "Cast"):
            continue
        used = consumers(graph)  # recomputed: earlier removals rewired readers
        if not _is_passthrough(node, consts, used, outputs, elem):
            continue
        x, y = node.input[0], node.output[0]
        if x in in_subgraphs or y in in_subgraphs:
            continue
        if y not in outputs:
            for reader in used.get(y, []):
                for k, name in enumerate(reader.input):
                    if name == y:
                        reader.input[k] = x
        else:
            if x in inputs or x in outputs:
                continue
            # Detach the node first so that renaming X does not rename the node's own input.
            node.input[0] = ""
            node.output[0] = ""
            rename_tensor(graph, x, y)
            if x in consts:
                consts[y] = consts.pop(x)
        removed.append(node)
        touched.update((x, y))
        if len(node.output) > 1 and node.output[1]:
            touched.add(node.output[1])

    if not removed:
        return model, False
    remove_nodes(graph, removed)
    drop_value_info(graph, touched - outputs)
    return model, True
