"""The one structural check of a float ONNX graph, run on every model npuflow loads.

:func:`validate_graph` is called by :func:`npuflow.ir.load.load_model`, which every entry point
goes through (``npuflow.load`` / ``kneron_inference``, ``ModelConfig``, ``npuflow.passes.optimize``
and with it ``evaluate()``, ``analysis()`` and ``npuflow optimize``), so an invalid graph is refused
alike everywhere, before any pass, cost model or engine sees it. It refuses, with a
:class:`~npuflow.errors.ModelLoadError` naming the model and the node or tensor:

1. a model without an ``opset_import`` for the ONNX domain;
2. a name (node, tensor, graph input/output, initializer) that is not valid UTF-8 text;
3. a tensor defined twice: two nodes writing it, a node writing a graph input or an initializer,
   two initializers or two graph inputs of that name;
4. a node input (or graph output) that no node, graph input or initializer defines (e.g. a Conv
   whose weight is missing);
5. a cycle (a node that depends on its own output, directly or through others).

Nodes need not be listed in topological order (onnxruntime accepts that too); only the top-level
graph is checked (names that subgraphs of If/Loop/Scan take from the outer scope are not seen).
"""
from __future__ import annotations

from collections import deque

import onnx

from npuflow.errors import ModelLoadError

__all__ = ["validate_graph"]


def _node_label(node: onnx.NodeProto, index: int) -> str:
    name = node.name if isinstance(node.name, str) else None
    return f"node '{name}' ({node.op_type})" if name else f"node #{index} ({node.op_type}, unnamed)"


def _check_text(model: onnx.ModelProto, label: str) -> None:
    """Protobuf gives back ``bytes`` for a string field that is not valid UTF-8."""
    g = model.graph

    def bad(value: object, what: str) -> None:
        if not isinstance(value, str):
            raise ModelLoadError(f"{label}: {what} {value!r} is not valid UTF-8 text; rename it (ONNX names are "
                                 "UTF-8 strings) and re-export the model")

    bad(g.name, "the graph name")
    for i, n in enumerate(g.node):
        bad(n.name, f"the name of node #{i} ({n.op_type})")
        bad(n.op_type, f"the op_type of node #{i}")
        for t in (*n.input, *n.output):
            bad(t, f"a tensor name of {_node_label(n, i)}")
    for where, items in (("graph input", g.input), ("graph output", g.output), ("value_info", g.value_info),
                         ("initializer", g.initializer)):
        for v in items:
            bad(v.name, f"the name of a {where}")


def validate_graph(model: onnx.ModelProto, *, label: str = "model") -> None:
    """Raise ModelLoadError (naming ``label`` and the node or tensor) when ``model``'s graph is
    not a valid float ONNX graph; see the module docstring for the rules."""
    g = model.graph
    if not any(imp.domain in ("", "ai.onnx") for imp in model.opset_import):
        raise ModelLoadError(
            f"{label} has no opset_import for the ONNX domain, so the meaning of its ops is unknown; re-export it "
            "(every exporter writes one) or add it: model.opset_import.append(onnx.helper.make_opsetid('', 13))"
        )
    _check_text(model, label)

    defined: dict[str, str] = {}  # tensor -> what defines it

    def define(name: str, what: str) -> None:
        if not name:
            return
        if name in defined:
            raise ModelLoadError(f"{label}: tensor '{name}' is defined twice, by {defined[name]} and by {what}; "
                                 "every tensor must have one producer: rename one of them")
        defined[name] = what

    inits = {t.name for t in g.initializer}
    for t in g.initializer:
        define(t.name, f"initializer '{t.name}'")
    for t in g.sparse_initializer:
        define(t.values.name, f"sparse initializer '{t.values.name}'")
    for vi in g.input:
        if vi.name not in inits:  # an initializer also listed as a graph input is a weight (old exporters)
            define(vi.name, f"graph input '{vi.name}'")
    producer: dict[str, int] = {}
    for i, n in enumerate(g.node):
        for y in n.output:
            define(y, _node_label(n, i))
            if y:
                producer[y] = i
    for i, n in enumerate(g.node):
        for x in n.input:
            if x and x not in defined:
                raise ModelLoadError(f"{label}: input '{x}' of {_node_label(n, i)} is defined nowhere (no node writes "
                                     "it and it is neither a graph input nor an initializer); the model is incomplete: "
                                     "re-export it (weights stored outside the file must be next to it)")
    for o in g.output:
        if o.name not in defined:
            raise ModelLoadError(f"{label}: graph output '{o.name}' is produced by no node and is neither a graph "
                                 "input nor an initializer; re-export the model")

    # cycles: Kahn's algorithm over node -> node edges; what is left over lies on or after a cycle
    users: list[list[int]] = [[] for _ in g.node]
    pending = [0] * len(g.node)
    for i, n in enumerate(g.node):
        for src in {producer[x] for x in n.input if x in producer}:
            users[src].append(i)
            pending[i] += 1
    ready = deque(i for i, k in enumerate(pending) if k == 0)
    done = 0
    while ready:
        i = ready.popleft()
        done += 1
        for j in users[i]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    if done < len(g.node):
        cycle = _one_cycle(g, producer, pending)
        raise ModelLoadError(f"{label}: the graph has a cycle ({' -> '.join(cycle)}); an ONNX graph must be acyclic: "
                             "re-export the model")


def _one_cycle(g: onnx.GraphProto, producer: dict[str, int], pending: list[int]) -> list[str]:
    """Node labels along one cycle among the nodes Kahn's algorithm could not order."""
    left = {i for i, k in enumerate(pending) if k > 0}
    # walk backwards from a leftover node through leftover producers until a node repeats
    i = min(left)
    seen: dict[int, int] = {}
    path: list[int] = []
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        preds = [producer[x] for x in g.node[i].input if x in producer and producer[x] in left]
        if not preds:  # cannot happen for a leftover node; stay safe
            break
        i = preds[0]
    loop = path[seen.get(i, 0):][::-1]
    names = [_node_label(g.node[k], k) for k in loop]
    return names + names[:1]
