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
5. a cycle (a node that depends on its own output, directly or through others);
6. a Conv or pooling window that does not fit its input once: ``(k - 1) * dilation + 1`` above
   the input's padded size along a spatial axis, where ONNX shape inference gives that size (a
   static shape; inferred without reading the weights' values). onnxruntime accepts such a model
   and its MaxPool then kills the process (SIGFPE, found by tests/bie/test_fuzz.py). A model
   whose spatial sizes are dynamic is checked at run time instead, once per input shape
   (:func:`check_windows` with the shapes, by ``npuflow.reference.FloatRunner``).

Nodes need not be listed in topological order (onnxruntime accepts that too); only the top-level
graph is checked (names that subgraphs of If/Loop/Scan take from the outer scope are not seen).
"""
from __future__ import annotations

from collections import deque

import onnx

from npuflow.errors import ModelLoadError

__all__ = ["check_windows", "needs_window_check", "validate_graph"]


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
    check_windows(model, label)


#: ops whose window (kernel_shape, or a Conv's weight shape) slides over spatial axes 2, 3, ...
_WINDOW_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")


def _light_shapes(model: onnx.ModelProto, inputs: dict[str, tuple[int, ...]] | None = None) -> dict[str, list[int | None]]:
    """Tensor -> its shape (None for an unknown dim) by ONNX shape inference on a copy of the
    graph whose multi-dimensional initializers keep their dims but not their values (cheap:
    efficientnet_lite0 in ~13 ms), with the graph inputs' shapes set to ``inputs`` where given;
    {} when inference fails."""
    g = model.graph
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    lg = light.graph
    for n in g.node:
        big = [a for a in n.attribute if a.type == onnx.AttributeProto.TENSOR and len(a.t.dims) > 1]
        if n.op_type == "Constant" and big:  # a weight stored as a Constant node (Paddle's exports)
            c = lg.node.add()
            c.CopyFrom(onnx.NodeProto(input=n.input, output=n.output, name=n.name, op_type=n.op_type, domain=n.domain))
            c.attribute.add().CopyFrom(onnx.helper.make_attribute(
                big[0].name, onnx.TensorProto(name=big[0].t.name, data_type=big[0].t.data_type, dims=big[0].t.dims)))
        else:
            lg.node.append(n)
    lg.input.extend(g.input)
    for vi in lg.input:
        if inputs and vi.name in inputs and vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
            for d in inputs[vi.name]:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    lg.output.extend(g.output)
    for t in g.initializer:
        if len(t.dims) > 1:  # a weight: its dims are enough; shape-like 0/1-D tensors keep their values
            lg.initializer.append(onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims))
        else:
            lg.initializer.append(t)
    try:
        inferred = onnx.shape_inference.infer_shapes(light)
    except Exception:  # noqa: BLE001 - a guard only: what onnxruntime refuses it still refuses
        return {}

    def dims(vi: onnx.ValueInfoProto) -> list[int | None] | None:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]

    out: dict[str, list[int | None]] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        d = dims(vi)
        if d is not None:
            out[vi.name] = d
    for t in g.initializer:
        out[t.name] = list(t.dims)
    return out


def _window_nodes(model: onnx.ModelProto) -> list[tuple[int, onnx.NodeProto]]:
    return [(i, n) for i, n in enumerate(model.graph.node) if n.op_type in _WINDOW_OPS and n.domain in ("", "ai.onnx")]


def _static(vi: onnx.ValueInfoProto) -> bool:
    """Every dim after the batch known."""
    tt = vi.type.tensor_type
    return bool(tt.HasField("shape")) and all(d.HasField("dim_value") and d.dim_value > 0 for d in list(tt.shape.dim)[1:])


def needs_window_check(model: onnx.ModelProto) -> bool:
    """True when the model has a Conv or pooling window and an input whose size is not static:
    :func:`check_windows` must then run with each new input shape (the load could not)."""
    inits = {t.name for t in model.graph.initializer}
    return bool(_window_nodes(model)) and any(not _static(vi) for vi in model.graph.input if vi.name not in inits)


def check_windows(model: onnx.ModelProto, label: str, inputs: dict[str, tuple[int, ...]] | None = None) -> None:
    """Rule 6 of the module docstring: refuse (ModelLoadError naming the node) a Conv or pooling
    window larger than its padded input, with the graph inputs' shapes set to ``inputs`` where
    given (the shapes of a run), else as the model declares them."""
    g = model.graph
    nodes = _window_nodes(model)
    inits = {t.name for t in g.initializer}
    if not nodes or (not inputs and not any(_static(vi) for vi in g.input if vi.name not in inits)):
        return  # no window, or no static input size to infer sizes from (models with a dynamic H, W)
    shapes: dict[str, list[int | None]] | None = None
    for i, n in nodes:
        attrs = {a.name: a for a in n.attribute}
        auto_pad = attrs["auto_pad"].s.decode("utf-8", "replace") if "auto_pad" in attrs else "NOTSET"
        if auto_pad not in ("NOTSET", "VALID") or not n.input or not n.input[0]:
            continue  # SAME_*: padded to fit
        if shapes is None:
            shapes = _light_shapes(model, inputs)
        x = shapes.get(n.input[0])
        if not x or len(x) < 3:
            continue
        spatial = x[2:]
        if "kernel_shape" in attrs:
            kernel = list(attrs["kernel_shape"].ints)
        elif n.op_type == "Conv" and len(n.input) > 1 and shapes.get(n.input[1]):
            kernel = list(shapes[n.input[1]][2:])
        else:
            continue
        r = len(spatial)
        pads = list(attrs["pads"].ints) if "pads" in attrs and auto_pad == "NOTSET" else [0] * (2 * r)
        dil = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * r
        if len(kernel) != r or len(pads) != 2 * r or len(dil) != r:
            continue  # a malformed attribute: onnxruntime refuses it with its own message
        for ax in range(r):
            size, k, d = spatial[ax], kernel[ax], dil[ax]
            if size is None or k is None or k < 1 or d < 1:
                continue
            padded = size + pads[ax] + pads[ax + r]
            if (k - 1) * d + 1 > padded:
                raise ModelLoadError(
                    f"{label}: the {k}-wide window (dilation {d}) of {_node_label(n, i)} does not fit its input "
                    f"'{n.input[0]}' along spatial axis {ax} (size {size}, padded {padded}): the node has no output; "
                    "check its kernel_shape, pads and dilations, or the input's size")


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
