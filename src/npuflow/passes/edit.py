"""Model-editing helpers: cut, delete, insert, rename, reshape and opset conversion of an ONNX graph.

These are the editing tools of the original toolchain's ``ktc.onnx_optimizer`` (Kneron's
ONNX_Convertor ``editor.py``), written over the ``onnx`` library, plus :func:`cut_model`, the
general cut that ``npuflow cut`` builds on. ``ktc.onnx_optimizer`` maps the original names onto
this module; docs/compatibility.md ("Model-editing helpers") lists the differences.

Common rules:

1. Every function returns a **new** ModelProto and leaves its argument unchanged, except
   :func:`pixel_modify` with ``in_place=True`` (the original edits the model it is given).
2. Every bad argument (wrong type, unknown node/tensor/input/output name, an input that is not a
   graph input, a shape of the wrong rank ...) raises :class:`~npuflow.errors.InvalidConfigError`
   with a one-line message naming the function, the name and what to do. A conversion the
   ``onnx`` version converter cannot do raises :class:`~npuflow.errors.NotAvailableError`.
3. A list-of-names parameter also takes a single name (a ``str``); duplicates are ignored; an
   empty list is allowed and edits nothing.
4. Initializers that are also listed in ``graph.input`` (old exporters, IR version 3) are
   weights, not inputs: they are kept listed in the results where they are still read.
5. Results whose graph changed get their intermediate shapes recomputed
   (:mod:`npuflow.passes.shape_inference`); nodes and initializers that no longer reach any
   graph output are removed; real graph inputs are kept unless a function says otherwise.
   A result that adds initializers gets IR version 4 at least (IR 3 wants every initializer
   listed as a graph input).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.errors import InvalidConfigError, NotAvailableError
from npuflow.passes import remove_unused, shape_inference
from npuflow.passes._graph import (
    all_tensor_names,
    ensure_ir_version,
    names_used_in_subgraphs,
    subgraph_reads,
    subgraphs,
    unique_name,
)

__all__ = [
    "add_bn_after",
    "add_conv_after",
    "change_input_output_shapes",
    "convert_opset",
    "convert_opset_8_to_9",
    "convert_opset_9_to_11",
    "convert_opset_10_to_11",
    "cut_graph_from_nodes",
    "cut_model",
    "delete_inputs",
    "delete_nodes",
    "delete_outputs",
    "pixel_modify",
    "remove_nodes_with_types",
    "rename_output",
]

# BatchNormalization epsilon of the inserted nodes (ONNX default) and the variance that makes
# 1 / sqrt(var + eps) exactly 1 in float32, so that a "do-nothing" BN really does nothing.
_BN_EPS = 1e-5
_BN_VAR = float(np.float32(1.0) - np.float32(_BN_EPS))

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
}


# --------------------------------------------------------------------------------------------
# argument checking


def _check_model(model: object, fn: str) -> onnx.ModelProto:
    if not isinstance(model, onnx.ModelProto):
        raise InvalidConfigError(f"{fn} expects an onnx.ModelProto (load it with onnx.load), got {type(model).__name__}")
    return model


def _name_list(value: object, param: str, fn: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidConfigError(f"{fn}: {param} must be a list of names, e.g. ['name_0'], got {type(value).__name__}")
    for v in value:
        if not isinstance(v, str) or not v:
            raise InvalidConfigError(f"{fn}: {param} must hold non-empty strings, got {v!r}")
    return list(dict.fromkeys(value))


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    pool = list(candidates)
    close = [c for c in pool if c.lower() == name.lower() and c != name]
    close += [c for c in difflib.get_close_matches(name, pool, n=3, cutoff=0.6) if c not in close]
    close = close[:3]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _fmt_names(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


# --------------------------------------------------------------------------------------------
# graph helpers


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _initializer_names(graph: onnx.GraphProto) -> set[str]:
    return {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    inits = _initializer_names(graph)
    return [i for i in graph.input if i.name not in inits]


def _reads(node: onnx.NodeProto) -> list[str]:
    return [i for i in node.input if i] + sorted(subgraph_reads(node))


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output if o}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in dict.fromkeys(_reads(n)):
            out.setdefault(name, []).append(n)
    return out


def _is_constant(inits: set[str], name: str, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """An initializer (listed as an input or not) or the output of a Constant node."""
    if name in inits:
        return True
    p = producers.get(name)
    return p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx")


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    return all_tensor_names(graph) | names_used_in_subgraphs(graph)


def _taken_names(graph: onnx.GraphProto) -> set[str]:
    return _tensor_names(graph) | {n.name for n in graph.node if n.name}


def _as_run(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for analysis in which initializers listed as graph inputs are plain initializers.

    Such weights (old exporters) are overridable, so shape inference would not use their values;
    to analyse the model as it runs by default, treat them as the constants they are.
    """
    probe = _copy(model)
    inits = _initializer_names(probe.graph)
    if any(i.name in inits for i in probe.graph.input):
        _set_list(probe.graph.input, [i for i in probe.graph.input if i.name not in inits])
        ensure_ir_version(probe)
    return probe


def _types_of(model: onnx.ModelProto, inferred: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    types: dict[str, onnx.TypeProto] = {}
    g = inferred.graph
    for t in g.initializer:
        tp = onnx.TypeProto()
        tp.tensor_type.elem_type = t.data_type
        tp.tensor_type.shape.SetInParent()
        for d in t.dims:
            tp.tensor_type.shape.dim.add().dim_value = int(d)
        types[t.name] = tp
    for v in [*model.graph.value_info, *g.value_info, *g.input, *g.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            known = types.get(v.name)
            if known is None or v.type.tensor_type.HasField("shape") or not known.tensor_type.HasField("shape"):
                types[v.name] = v.type
        elif v.name not in types and v.HasField("type"):
            types[v.name] = v.type
    return types


def _infer_types(model: onnx.ModelProto, need: Iterable[str] = ()) -> dict[str, onnx.TypeProto]:
    """Tensor name -> TypeProto, from shape inference (non-strict) and the declared value infos.

    When a tensor of ``need`` gets no shape (e.g. a Reshape whose target is computed by
    Shape/Gather/Concat), the shape computations of a scratch copy are folded
    (:mod:`npuflow.passes.constant_folding`) and inference runs again; the model is not changed.
    """
    probe = _as_run(model)

    def infer(m: onnx.ModelProto) -> onnx.ModelProto:
        try:
            return onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, RuntimeError, ValueError):
            return m

    types = _types_of(model, infer(probe))

    def missing() -> bool:
        return any(n not in types or not types[n].tensor_type.HasField("shape") for n in need)

    if missing():
        from npuflow.passes import (  # runs onnxruntime: only when needed
            constant_folding,
            constant_to_initializer,
        )

        folded = infer(constant_to_initializer.run(probe)[0])
        for _ in range(4):
            folded, changed = constant_folding.run(folded)
            folded = infer(folded)
            if not changed:
                break
        for name, tp in _types_of(model, folded).items():
            if name not in types or (tp.tensor_type.HasField("shape") and not types[name].tensor_type.HasField("shape")):
                types[name] = tp
    return types


def _value_info(name: str, types: Mapping[str, onnx.TypeProto], fn: str) -> onnx.ValueInfoProto:
    tp = types.get(name)
    if tp is None or (tp.HasField("tensor_type") and not tp.tensor_type.elem_type):
        raise InvalidConfigError(
            f"{fn}: the type of tensor {name!r} is unknown (shape inference cannot type it); "
            "run npuflow.passes.optimize on the model first"
        )
    if tp.HasField("tensor_type") and not tp.tensor_type.HasField("shape"):
        raise InvalidConfigError(
            f"{fn}: the shape of tensor {name!r} (even its rank) is unknown, and a graph input or output needs one; "
            "fix the input shapes and run npuflow.passes.optimize on the model first"
        )
    vi = onnx.ValueInfoProto()
    vi.name = name
    vi.type.CopyFrom(tp)
    return vi


def _static_dims(tp: onnx.TypeProto | None) -> list[int | None] | None:
    """Dims of a tensor type (None for an unknown dim), or None when the rank is unknown."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tp.tensor_type.shape.dim]


def _replace_reads(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every read of tensor ``old`` by a node of ``graph`` (and inside its subgraphs) reads ``new``."""

    def walk(g: onnx.GraphProto, top: bool) -> None:
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new
            for sg in subgraphs(n):
                walk(sg, False)
        if not top:
            for o in g.output:
                if o.name == old:
                    o.name = new

    walk(graph, True)


def _set_list(field: Any, items: Sequence[Any]) -> None:
    """Replace the contents of a repeated protobuf field by copies of ``items``."""
    copies = [type(x)() for x in items]
    for dst, src in zip(copies, items):
        dst.CopyFrom(src)
    del field[:]
    field.extend(copies)


def _refresh_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Recompute intermediate shapes after a structural edit (stale value_info dropped)."""
    try:
        return shape_inference.run(model)[0]
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError):
        del model.graph.value_info[:]
        return model


def _cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop dead nodes and unread initializers (also those listed as graph inputs: they are
    weights; real inputs are kept) and recompute intermediate shapes."""
    model = remove_unused.run(model)[0]
    g = model.graph
    read = {i for n in g.node for i in _reads(n)} | {o.name for o in g.output}
    dead = {t.name for t in g.initializer if t.name not in read}
    if dead:
        _set_list(g.initializer, [t for t in g.initializer if t.name not in dead])
        _set_list(g.input, [i for i in g.input if i.name not in dead])
    return _refresh_shapes(model)


def _backward(graph: onnx.GraphProto, targets: Iterable[str], stop: set[str],
              producers: Mapping[str, onnx.NodeProto]) -> tuple[set[int], list[str], set[str]]:
    """Nodes needed to compute ``targets`` when the tensors of ``stop`` are given.

    Returns (ids of the needed nodes, real graph inputs reached (in discovery order), tensor
    names read that are initializers).
    """
    inits = _initializer_names(graph)
    real_inputs = {i.name for i in graph.input} - inits
    needed: set[int] = set()
    reached: list[str] = []
    used_inits: set[str] = set()
    seen: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in stop:
            continue
        if name in inits:
            used_inits.add(name)
            continue
        if name in real_inputs:
            reached.append(name)
            continue
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(_reads(node))
    return needed, reached, used_inits


def _extract(model: onnx.ModelProto, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto],
             *, keep_inputs: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """The sub-model computing ``outputs`` from ``inputs`` (value infos, in this order).

    Returns (model, real graph inputs of ``model`` not in ``inputs`` that the sub-model would
    still need). Nodes keep their order; initializers listed as graph inputs stay listed when
    read; with ``keep_inputs`` every given input is kept even when unread.
    """
    g = model.graph
    producers = _producers(g)
    in_names = [v.name for v in inputs]
    needed, leaked, used_inits = _backward(g, [v.name for v in outputs], set(in_names), producers)
    new = _copy(model)
    ng = new.graph
    nodes = [n for n in g.node if id(n) in needed]
    read: set[str] = set()
    for n in nodes:
        read.update(_reads(n))
    read.update(v.name for v in outputs)
    listed_inits = [i for i in g.input if i.name in _initializer_names(g) and i.name in used_inits]
    kept_inputs = [v for v in inputs if keep_inputs or v.name in read]
    _set_list(ng.node, nodes)
    _set_list(ng.input, [*kept_inputs, *listed_inits])
    _set_list(ng.output, list(outputs))
    _set_list(ng.initializer, [t for t in g.initializer if t.name in used_inits])
    _set_list(ng.sparse_initializer, [t for t in g.sparse_initializer if t.values.name in used_inits])
    existing = {o for n in nodes for o in n.output if o}
    io = {v.name for v in ng.input} | {v.name for v in ng.output}
    _set_list(ng.value_info, [v for v in g.value_info if v.name in existing and v.name not in io])
    return new, leaked


def _nodes_by_name(graph: onnx.GraphProto, names: Sequence[str], fn: str) -> list[onnx.NodeProto]:
    by_name: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        if n.name:
            by_name.setdefault(n.name, []).append(n)
    found: list[onnx.NodeProto] = []
    for name in names:
        hits = by_name.get(name)
        if not hits:
            unnamed = sum(1 for n in graph.node if not n.name)
            hint = (f"; {unnamed} node{'s' if unnamed > 1 else ''} of this model {'have' if unnamed > 1 else 'has'} no name: "
                    "name them first (npuflow.passes.optimize names every node)"
                    if unnamed else "; node names are listed by [n.name for n in model.graph.node]")
            raise InvalidConfigError(f"{fn}: no node named {name!r}{_did_you_mean(name, by_name)}{hint}")
        if len(hits) > 1:
            raise InvalidConfigError(
                f"{fn}: {len(hits)} nodes are named {name!r}; give the nodes unique names first (npuflow.passes.optimize does)"
            )
        found.append(hits[0])
    order = {id(n): k for k, n in enumerate(graph.node)}
    return sorted(found, key=lambda n: order[id(n)])


# --------------------------------------------------------------------------------------------
# cutting


def cut_model(model: onnx.ModelProto, tensors: Sequence[str] | str) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Cut ``model`` at the given tensors into ``(head, tail)``; ``model`` is not modified.

    ``head`` takes the model's inputs (those it reads) and ends at ``tensors``: they are its
    outputs, in the given order. ``tail`` takes ``tensors`` as its inputs (same order) and
    produces the model's outputs. Running ``tail`` on what ``head`` returns gives the model's
    outputs. A tensor that is itself a model output is passed through by ``tail``.

    The cut must separate the model: every path from a model input to a model output must go
    through one of ``tensors`` (else ``InvalidConfigError`` naming the input that the tail would
    still need). Each tensor must be computed by a node (not a graph input, an initializer or a
    Constant) and must lead to a model output.
    """
    fn = "cut_model"
    _check_model(model, fn)
    names = _name_list(tensors, "tensors", fn)
    if not names:
        raise InvalidConfigError(f"{fn}: tensors is empty; name at least one tensor to cut at")
    g = model.graph
    producers = _producers(g)
    inits = _initializer_names(g)
    real = [i.name for i in _real_inputs(g)]
    for name in names:
        if name in real:
            raise InvalidConfigError(f"{fn}: {name!r} is a graph input; cut at a tensor computed by a node")
        if name in inits:
            raise InvalidConfigError(f"{fn}: {name!r} is an initializer (a weight); cut at a tensor computed by a node")
        if name not in producers:
            raise InvalidConfigError(
                f"{fn}: no node computes a tensor named {name!r}{_did_you_mean(name, producers)}; "
                "tensor names are the node outputs (node.output)"
            )
        if _is_constant(inits, name, producers):
            raise InvalidConfigError(f"{fn}: {name!r} is the output of Constant node {producers[name].name!r}, "
                                     "not an activation; cut at a tensor computed from the inputs")
    # every cut tensor must lead to an output
    out_names = [o.name for o in g.output]
    live, _, _ = _backward(g, out_names, set(), producers)
    live_tensors = {o for n in g.node if id(n) in live for o in n.output}
    for name in names:
        if name not in live_tensors:
            raise InvalidConfigError(f"{fn}: tensor {name!r} does not lead to any graph output ({_fmt_names(out_names)}); "
                                     "cut at tensors on the way to the outputs")

    types = _infer_types(model, names)
    cut_vis = [_value_info(n, types, fn) for n in names]
    head, _ = _extract(model, list(_real_inputs(g)), cut_vis)
    tail, leaked = _extract(model, cut_vis, list(g.output), keep_inputs=True)
    if leaked:
        # name an output that still depends on the leaked input, for the message
        culprit = next(o for o in out_names if _backward(g, [o], set(names), producers)[1])
        raise InvalidConfigError(
            f"{fn}: the cut at {_fmt_names(names)} does not separate the model: output {culprit!r} still depends on "
            f"input {leaked[0]!r} by a path that avoids these tensors; add a tensor of that path to the cut"
        )
    return _refresh_shapes(head), _refresh_shapes(tail)


def _cut_from(model: onnx.ModelProto, start: list[onnx.NodeProto], fn: str) -> onnx.ModelProto:
    """Remove ``start`` and every node downstream of them; see :func:`cut_graph_from_nodes`."""
    g = model.graph
    producers = _producers(g)
    consumers = _consumers(g)
    removed: set[int] = set()
    stack = list(start)
    while stack:
        n = stack.pop()
        if id(n) in removed:
            continue
        removed.add(id(n))
        for o in n.output:
            stack.extend(consumers.get(o, []))
    inits = _initializer_names(g)
    graph_inputs = {i.name for i in g.input}
    order = {o: k for k, n in enumerate(g.node) for o in n.output}

    def boundary_of(output: str) -> list[str]:
        """Surviving activations that feed the removed nodes computing ``output`` (in node order)."""
        found: list[str] = []
        seen: set[str] = set()
        stack = [output]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            p = producers.get(name)
            if p is None or id(p) not in removed:
                if (p is not None and name not in inits and name not in graph_inputs
                        and not _is_constant(inits, name, producers)):
                    found.append(name)
                continue
            stack.extend(reversed(_reads(p)))
        return sorted(found, key=lambda t: order[t])

    plan: list[onnx.ValueInfoProto | str] = []  # kept outputs as they are, new ones by name
    seen_out: set[str] = set()
    for out in g.output:
        p = producers.get(out.name)
        if p is None or id(p) not in removed:
            if out.name not in seen_out:
                plan.append(out)
                seen_out.add(out.name)
            continue
        for t in boundary_of(out.name):
            if t not in seen_out:
                plan.append(t)
                seen_out.add(t)
    need = [x for x in plan if isinstance(x, str)]
    types = _infer_types(model, need) if need else {}
    new_outputs = [_value_info(x, types, fn) if isinstance(x, str) else x for x in plan]
    if not new_outputs:
        raise InvalidConfigError(
            f"{fn}: cutting from {_fmt_names([n.name or n.op_type for n in start])} removes every node that computes an output; "
            "cut further down the graph"
        )
    new, _ = _extract(model, _real_inputs(g), new_outputs, keep_inputs=True)
    return _refresh_shapes(new)


def cut_graph_from_nodes(model: onnx.ModelProto, node_names: Sequence[str] | str) -> onnx.ModelProto:
    """Remove the named nodes and every node after them; return a new model (``model`` is not modified).

    The tensors that fed the removed nodes become graph outputs: each original output that is
    removed is replaced, at its position, by the activations (not weights, not graph inputs)
    from which the removed nodes computed it, in node order. Outputs that do not depend on the
    named nodes stay as they are. Graph inputs are kept.
    """
    fn = "cut_graph_from_nodes"
    _check_model(model, fn)
    names = _name_list(node_names, "node_names", fn)
    if not names:
        return _copy(model)
    return _cut_from(model, _nodes_by_name(model.graph, names, fn), fn)


def remove_nodes_with_types(model: onnx.ModelProto, type_names: Sequence[str] | str) -> onnx.ModelProto:
    """Cut the graph from every node whose op type is one of ``type_names`` (see
    :func:`cut_graph_from_nodes`); return a new model (``model`` is not modified).

    Each type must match at least one node of the main graph.
    """
    fn = "remove_nodes_with_types"
    _check_model(model, fn)
    types = _name_list(type_names, "type_names", fn)
    if not types:
        return _copy(model)
    present = {n.op_type for n in model.graph.node}
    for t in types:
        if t not in present:
            raise InvalidConfigError(f"{fn}: no node of op type {t!r} in the model{_did_you_mean(t, present)}; "
                                     f"the model has {', '.join(sorted(present))}")
    start = [n for n in model.graph.node if n.op_type in types]
    return _cut_from(model, start, fn)


# --------------------------------------------------------------------------------------------
# deleting


def delete_nodes(model: onnx.ModelProto, node_names: Sequence[str] | str) -> onnx.ModelProto:
    """Delete the named nodes, connecting their readers to their input; return a new model
    (``model`` is not modified).

    A deleted node is bypassed: whatever read its output reads its (single) activation input
    instead; a graph output it computed is replaced, at its position, by that input. Weights
    (initializers, Constant outputs) of the node are dropped when nothing else reads them.
    When the activation input is a graph input and the node changes its type or shape, the graph
    input takes the deleted node's output type instead (e.g. deleting a Transpose right after the
    input changes the input's layout); the input keeps its name. Refused: a node with several
    activation inputs (Add, Concat ...), a node with several used outputs, a node with no
    activation input whose output is still read, and a type-changing node right after a graph
    input that other nodes also read.
    """
    fn = "delete_nodes"
    _check_model(model, fn)
    names = _name_list(node_names, "node_names", fn)
    if not names:
        return _copy(model)
    new = _copy(model)
    g = new.graph
    targets = _nodes_by_name(g, names, fn)
    target_ids = {id(n) for n in targets}
    producers = _producers(g)
    consumers = _consumers(g)
    graph_outputs = [o.name for o in g.output]
    real_inputs = {i.name for i in _real_inputs(g)}
    inits = _initializer_names(g)

    def used_outside(t: str) -> bool:
        return t in graph_outputs or any(id(c) not in target_ids for c in consumers.get(t, []))

    repl: dict[str, str] = {}        # deleted node's output -> tensor that replaces it
    input_types: dict[str, str] = {}  # graph input -> deleted node output whose type it takes
    types = _infer_types(model, [t for n in targets for t in [*n.input, *n.output[:1]] if t])

    def resolve(t: str) -> str:
        while t in repl:
            t = repl[t]
        return t

    for node in targets:
        label = f"node {node.name!r} ({node.op_type})"
        extra = [o for o in node.output[1:] if o and used_outside(o)]
        if extra:
            raise InvalidConfigError(f"{fn}: {label} has other outputs still in use ({_fmt_names(extra)}); "
                                     "only a node with one used output can be bypassed; use cut_graph_from_nodes")
        data = [i for i in node.input if i and not _is_constant(inits, i, producers)]
        if not node.output or not node.output[0]:
            continue
        out = node.output[0]
        if len(data) > 1:
            raise InvalidConfigError(f"{fn}: {label} merges {len(data)} activations ({_fmt_names(data)}); "
                                     "only a node with one activation input can be bypassed; use cut_graph_from_nodes")
        if not data:
            if used_outside(out):
                raise InvalidConfigError(f"{fn}: {label} has no activation input to connect its readers to; "
                                         "delete its readers too, or use cut_graph_from_nodes")
            continue
        src = resolve(data[0])
        current = input_types.get(src, src)
        if src in real_inputs and types.get(current) != types.get(out):
            # the input takes the node's output type (layout, shape, dtype); nothing else may read it
            aliases = [src, *(k for k in repl if resolve(k) == src)]
            others = [c.name or c.op_type for t in aliases for c in consumers.get(t, []) if id(c) not in target_ids]
            others += [f"graph output {t!r}" for t in aliases if t in graph_outputs]
            if others:
                raise InvalidConfigError(
                    f"{fn}: {label} follows graph input {src!r} and changes its type or shape, but {_fmt_names(others)} "
                    "also read that input; delete those readers too, or keep the node"
                )
            input_types[src] = out
        repl[out] = src

    # rewire readers and outputs
    survivors = [n for n in g.node if id(n) not in target_ids]
    new_outputs: list[onnx.ValueInfoProto] = []
    for o in g.output:
        if o.name in repl:
            src = resolve(o.name)
            new_outputs.append(_value_info(input_types.get(src, src), types, fn))
            new_outputs[-1].name = src
        else:
            new_outputs.append(o)
    out_names = [o.name for o in new_outputs]
    dup = sorted({n for n in out_names if out_names.count(n) > 1})
    if dup:
        raise InvalidConfigError(f"{fn}: deleting {_fmt_names(names)} would make several graph outputs the same tensor "
                                 f"{_fmt_names(dup)}; delete one of those outputs first (delete_outputs)")
    _set_list(g.node, survivors)
    for old in repl:
        _replace_reads(g, old, resolve(old))
    _set_list(g.output, new_outputs)
    for inp in g.input:
        if inp.name in input_types:
            inp.type.CopyFrom(_value_info(input_types[inp.name], types, fn).type)
    return _cleanup(new)


def delete_inputs(model: onnx.ModelProto, value_names: Sequence[str] | str) -> onnx.ModelProto:
    """Remove the named graph inputs; return a new model (``model`` is not modified).

    An input that is also an initializer (old exporters list weights as inputs) stops being an
    input and becomes a constant weight. A real input must no longer be read by any node
    (delete or cut its readers first).
    """
    fn = "delete_inputs"
    _check_model(model, fn)
    names = _name_list(value_names, "value_names", fn)
    new = _copy(model)
    g = new.graph
    inputs = [i.name for i in g.input]
    inits = _initializer_names(g)
    consumers = _consumers(g)
    for name in names:
        if name not in inputs:
            what = ("an initializer that is not listed as a graph input" if name in inits
                    else "a graph output" if name in {o.name for o in g.output}
                    else "a tensor computed by a node" if name in _producers(g) else "unknown")
            raise InvalidConfigError(f"{fn}: {name!r} is not a graph input ({what}){_did_you_mean(name, inputs)}; "
                                     f"the graph inputs are {_fmt_names(inputs)}")
        if name not in inits and name in {o.name for o in g.output}:
            raise InvalidConfigError(f"{fn}: input {name!r} is also a graph output; delete that output first (delete_outputs)")
        if name not in inits and consumers.get(name):
            readers = [c.name or c.op_type for c in consumers[name]]
            raise InvalidConfigError(f"{fn}: input {name!r} is still read by {_fmt_names(readers)}; "
                                     "delete or cut those nodes first (delete_nodes / cut_graph_from_nodes)")
    if not names:
        return new
    if any(n in inits for n in names):
        ensure_ir_version(new)
    _set_list(g.input, [i for i in g.input if i.name not in names])
    return new


def delete_outputs(model: onnx.ModelProto, value_names: Sequence[str] | str) -> onnx.ModelProto:
    """Remove the named graph outputs, and the nodes that computed only them; return a new
    model (``model`` is not modified). At least one output must remain."""
    fn = "delete_outputs"
    _check_model(model, fn)
    names = _name_list(value_names, "value_names", fn)
    new = _copy(model)
    g = new.graph
    outputs = [o.name for o in g.output]
    for name in names:
        if name not in outputs:
            raise InvalidConfigError(f"{fn}: {name!r} is not a graph output{_did_you_mean(name, outputs)}; "
                                     f"the graph outputs are {_fmt_names(outputs)}")
    if not names:
        return new
    if len(set(names)) == len(set(outputs)):
        raise InvalidConfigError(f"{fn}: deleting {_fmt_names(names)} would leave the model without outputs; keep at least one")
    _set_list(g.output, [o for o in g.output if o.name not in names])
    return _cleanup(new)


# --------------------------------------------------------------------------------------------
# shapes, names


def _shape_arg(shape: object, name: str, param: str, fn: str) -> list[int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise InvalidConfigError(f"{fn}: {param}[{name!r}] must be a list of positive ints, e.g. [1, 3, 224, 224], "
                                 f"got {type(shape).__name__}")
    dims = list(shape)
    if not dims or not all(isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in dims):
        raise InvalidConfigError(f"{fn}: {param}[{name!r}] must be a list of positive ints, e.g. [1, 3, 224, 224], got {dims!r}")
    return [int(d) for d in dims]


def _set_dims(vi: onnx.ValueInfoProto, dims: Sequence[int]) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = int(d)


def _fmt_shape(dims: Sequence[int | str | None] | None) -> str:
    if dims is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _declared(tp: onnx.TypeProto) -> list[int | str | None] | None:
    """Dims of a tensor type as declared (int, symbolic name or None), None when the rank is unknown."""
    if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tp.tensor_type.shape.dim]


def change_input_output_shapes(model: onnx.ModelProto, input_shape_mapping: Mapping[str, Sequence[int]] | None = None,
                               output_shape_mapping: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """Set the shapes of graph inputs and outputs; return a new model (``model`` is not modified).

    Each mapping goes from a graph input (or output) name to its new shape, a list of positive
    ints of the same rank as the current shape (any rank when the current rank is unknown).
    Intermediate shapes are recomputed from the new input shapes. An output shape that
    contradicts the shape computed from the inputs, or an input shape the model's nodes
    cannot accept, is refused.
    """
    fn = "change_input_output_shapes"
    _check_model(model, fn)
    mappings = {"input_shape_mapping": input_shape_mapping, "output_shape_mapping": output_shape_mapping}
    for param, mapping in mappings.items():
        if mapping is not None and not isinstance(mapping, Mapping):
            raise InvalidConfigError(f"{fn}: {param} must be a dict name -> shape, e.g. {{'input': [1, 3, 224, 224]}}, "
                                     f"got {type(mapping).__name__}")
    ins = dict(input_shape_mapping or {})
    outs = dict(output_shape_mapping or {})
    new = _copy(model)
    g = new.graph
    real = {i.name: i for i in _real_inputs(g)}
    outputs = {o.name: o for o in g.output}
    plan: list[tuple[onnx.ValueInfoProto, list[int]]] = []
    for param, mapping, pool, kind in (("input_shape_mapping", ins, real, "input"),
                                       ("output_shape_mapping", outs, outputs, "output")):
        for name, shape in mapping.items():
            if not isinstance(name, str) or name not in pool:
                extra = " (it is an initializer, not a real input)" if kind == "input" and name in _initializer_names(g) else ""
                raise InvalidConfigError(f"{fn}: {param} names {name!r}, which is not a graph {kind}{extra}"
                                         f"{_did_you_mean(str(name), pool)}; the graph {kind}s are {_fmt_names(list(pool))}")
            dims = _shape_arg(shape, name, param, fn)
            vi = pool[name]
            if not vi.type.HasField("tensor_type"):
                raise InvalidConfigError(f"{fn}: {kind} {name!r} is not a tensor; only tensor shapes can be changed")
            current = _declared(vi.type)
            if current is not None and len(current) != len(dims):
                raise InvalidConfigError(f"{fn}: {kind} {name!r} has rank {len(current)} ({_fmt_shape(current)}); "
                                         f"the new shape {dims} has rank {len(dims)}; give {len(current)} dims")
            plan.append((vi, dims))
    if not plan:
        return new
    for vi, dims in plan:
        _set_dims(vi, dims)
    del g.value_info[:]
    if ins:  # outputs the caller does not set are recomputed from the new input shapes
        for o in g.output:
            if o.name not in outs and o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
                for d in o.type.tensor_type.shape.dim:
                    d.Clear()
        _check_strict(model, new, ins, fn)
    new = _refresh_shapes(new)
    wanted = {vi.name: dims for vi, dims in plan if vi.name in outs}
    for o in new.graph.output:
        if o.name not in wanted:
            continue
        got = _static_dims(o.type)
        if got is not None and (len(got) != len(wanted[o.name])
                                or any(a is not None and a != b for a, b in zip(got, wanted[o.name]))):
            raise InvalidConfigError(f"{fn}: output {o.name!r} is computed as {_fmt_shape(_declared(o.type))} from the "
                                     f"inputs; it cannot be declared {wanted[o.name]}")
        _set_dims(o, wanted[o.name])
    return new


def _check_strict(model: onnx.ModelProto, new: onnx.ModelProto, ins: Mapping[str, object], fn: str) -> None:
    """Refuse new input shapes that strict shape inference rejects, unless the model itself
    does not pass strict inference (custom ops ...), where there is nothing to compare with."""
    probe = _as_run(new)
    for o in probe.graph.output:
        if o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
            for d in o.type.tensor_type.shape.dim:
                d.Clear()
    try:
        onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        try:
            onnx.shape_inference.infer_shapes(_as_run(model), strict_mode=True)
        except (onnx.shape_inference.InferenceError, RuntimeError):
            return
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidConfigError(f"{fn}: the new input shapes {dict(ins)} do not fit the model: {first}") from exc


def rename_output(model: onnx.ModelProto, old_name: str, new_name: str) -> onnx.ModelProto:
    """Rename graph output ``old_name`` to ``new_name`` everywhere in the graph; return a new
    model (``model`` is not modified). ``new_name`` must not name any other tensor."""
    fn = "rename_output"
    _check_model(model, fn)
    for param, v in (("old_name", old_name), ("new_name", new_name)):
        if not isinstance(v, str) or not v:
            raise InvalidConfigError(f"{fn}: {param} must be a non-empty string, got {v!r}")
    new = _copy(model)
    g = new.graph
    outputs = [o.name for o in g.output]
    if old_name not in outputs:
        raise InvalidConfigError(f"{fn}: {old_name!r} is not a graph output{_did_you_mean(old_name, outputs)}; "
                                 f"the graph outputs are {_fmt_names(outputs)}")
    if new_name == old_name:
        return new
    if new_name in _tensor_names(g):
        raise InvalidConfigError(f"{fn}: the name {new_name!r} is already used by a tensor of the model; choose another")
    if old_name in {i.name for i in g.input} or old_name in _initializer_names(g):
        raise InvalidConfigError(f"{fn}: output {old_name!r} is also a graph input or an initializer; "
                                 "rename the input instead (its name is part of the model's interface)")
    for n in g.node:
        for k, o in enumerate(n.output):
            if o == old_name:
                n.output[k] = new_name
    _replace_reads(g, old_name, new_name)
    for v in [*g.output, *g.value_info]:
        if v.name == old_name:
            v.name = new_name
    return new


# --------------------------------------------------------------------------------------------
# inserting nodes


def _activation_info(g: onnx.GraphProto, name: str, types: Mapping[str, onnx.TypeProto], fn: str,
                     min_rank: int, what: str) -> tuple[int, int, int]:
    """(channels, rank, elem_type) of activation ``name``, checked for ``what``."""
    producers = _producers(g)
    real = {i.name for i in _real_inputs(g)}
    if name not in producers and name not in real:
        if name in _initializer_names(g):
            raise InvalidConfigError(f"{fn}: {name!r} is an initializer (a weight); {what} goes after an activation")
        raise InvalidConfigError(f"{fn}: no tensor named {name!r} in the model{_did_you_mean(name, set(producers) | real)}; "
                                 "give a node output or a graph input")
    if _is_constant(_initializer_names(g), name, producers):
        raise InvalidConfigError(f"{fn}: {name!r} is the output of a Constant node; {what} goes after an activation")
    tp = types.get(name)
    dims = _static_dims(tp)
    if dims is None or len(dims) < min_rank or dims[1] is None:
        raise InvalidConfigError(
            f"{fn}: {what} after {name!r} needs a tensor of rank >= {min_rank} with a known channel dim 1, "
            f"but its shape is {_fmt_shape(dims)}; fix the input shapes first (change_input_output_shapes)"
        )
    elem = tp.tensor_type.elem_type  # type: ignore[union-attr]
    if elem not in _FLOAT_TYPES:
        raise InvalidConfigError(f"{fn}: {name!r} is a {onnx.TensorProto.DataType.Name(elem)} tensor; {what} needs float data")
    return int(dims[1]), len(dims), elem


def _insert_after(g: onnx.GraphProto, name: str, nodes: Sequence[onnx.NodeProto], new_out: str) -> None:
    """Insert ``nodes`` (computing ``new_out`` from ``name``) right after the producer of
    ``name``; every reader of ``name`` and every graph output ``name`` then use ``new_out``."""
    _replace_reads(g, name, new_out)  # before the insertion: the new nodes keep reading ``name``
    for o in g.output:
        if o.name == name:
            o.name = new_out
    pos = 0
    for k, n in enumerate(g.node):
        if name in n.output:
            pos = k + 1
            break
    current = list(g.node)
    _set_list(g.node, current[:pos] + list(nodes) + current[pos:])


def _add_after(model: onnx.ModelProto, value_names: object, fn: str, kind: str) -> onnx.ModelProto:
    names = _name_list(value_names, "value_names", fn)
    new = _copy(model)
    if not names:
        return new
    g = new.graph
    types = _infer_types(model, names)
    what = "a Conv" if kind == "conv" else "a BatchNormalization"
    infos = [_activation_info(g, n, types, fn, 3 if kind == "conv" else 2, what) for n in names]
    taken = _taken_names(g)
    for name, (channels, rank, elem) in zip(names, infos):
        np_type = _FLOAT_TYPES[elem]
        node_name = unique_name(f"{name}_nop_{kind}", taken)
        out = node_name  # unique among node and tensor names
        if kind == "conv":
            w = unique_name(f"{node_name}_weight", taken)
            g.initializer.append(numpy_helper.from_array(np.ones([channels, 1] + [1] * (rank - 2), np_type), w))
            node = helper.make_node("Conv", [name, w], [out], name=node_name, group=channels,
                                    kernel_shape=[1] * (rank - 2))
        else:
            node = _bn_node(g, taken, node_name, name, out, np.ones(channels), np.zeros(channels), np_type)
        _insert_after(g, name, [node], out)
    ensure_ir_version(new)
    return _refresh_shapes(new)


def _bn_node(g: onnx.GraphProto, taken: set[str], node_name: str, x: str, out: str,
             scale: np.ndarray, bias: np.ndarray, np_type: type) -> onnx.NodeProto:
    params = {"scale": scale, "bias": bias, "mean": np.zeros_like(scale), "var": np.full_like(scale, _BN_VAR)}
    names = []
    for suffix, arr in params.items():
        t = unique_name(f"{node_name}_{suffix}", taken)
        g.initializer.append(numpy_helper.from_array(np.asarray(arr, np_type), t))
        names.append(t)
    return helper.make_node("BatchNormalization", [x, *names], [out], name=node_name, epsilon=_BN_EPS)


def add_conv_after(model: onnx.ModelProto, value_names: Sequence[str] | str) -> onnx.ModelProto:
    """Insert a do-nothing Conv after each named tensor; return a new model (``model`` is not modified).

    The Conv is depthwise (``group`` = channels) with 1x1 kernels of weight 1 and no bias, named
    ``<tensor>_nop_conv``, and computes the tensor ``<tensor>_nop_conv``; every node that read the
    tensor reads the Conv's output instead, and a graph output of that name is replaced by the
    Conv's output. The tensor must be a float activation of rank >= 3 with a known channel dim.
    """
    fn = "add_conv_after"
    _check_model(model, fn)
    return _add_after(model, value_names, fn, "conv")


def add_bn_after(model: onnx.ModelProto, value_names: Sequence[str] | str) -> onnx.ModelProto:
    """Insert a do-nothing BatchNormalization after each named tensor; return a new model
    (``model`` is not modified).

    The BatchNormalization (``<tensor>_nop_bn``: scale 1, bias 0, mean 0, and a variance such
    that ``1 / sqrt(var + epsilon)`` is exactly 1 in float32) computes ``<tensor>_nop_bn``; every
    node that read the tensor reads it instead, and a graph output of that name is replaced by
    it. The tensor must be a float activation of rank >= 2 with a known channel dim (dim 1).
    """
    fn = "add_bn_after"
    _check_model(model, fn)
    return _add_after(model, value_names, fn, "bn")


def _per_channel(values: object, param: str, channels: int, name: str, fn: str) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InvalidConfigError(f"{fn}: {param} must be a list of {channels} numbers (one per channel of input {name!r}), "
                                 f"got {type(values).__name__}")
    vals = list(np.asarray(values).reshape(-1)) if isinstance(values, np.ndarray) else list(values)
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in vals):
        raise InvalidConfigError(f"{fn}: {param} must hold numbers, got {list(values)!r}")  # type: ignore[call-overload]
    if len(vals) != channels:
        raise InvalidConfigError(f"{fn}: {param} has {len(vals)} values but input {name!r} has {channels} channels (dim 1); "
                                 f"give one value per channel")
    arr = np.asarray(vals, np.float64)
    if not np.all(np.isfinite(arr)):
        raise InvalidConfigError(f"{fn}: {param} holds a non-finite value: {vals!r}")
    return arr


def pixel_modify(model: onnx.ModelProto, scale: Sequence[float], bias: Sequence[float], *,
                 input_name: str | None = None, in_place: bool = False) -> onnx.ModelProto:
    """Fold a per-channel ``x * scale + bias`` at a model input into the model.

    Inserts a BatchNormalization ``<input>_scale_shift_bn`` (scale ``scale``, bias ``bias``,
    mean 0, a variance that makes it exact in float32) right after the input, read by every
    node that read the input, so that ``new_model(raw) == model(raw * scale + bias)`` (per
    channel, dim 1). ``scale`` and ``bias`` hold one number per channel. The model must have one
    real input, or ``input_name`` must name the one to change.

    Returns a new model and leaves ``model`` unchanged, unless ``in_place=True``: then ``model``
    itself is edited and returned (the behaviour of the original ``ktc.onnx_optimizer``).
    """
    fn = "pixel_modify"
    _check_model(model, fn)
    if not isinstance(in_place, bool):
        raise InvalidConfigError(f"{fn}: in_place must be True or False, got {in_place!r}")
    g = model.graph
    real = [i.name for i in _real_inputs(g)]
    if input_name is None:
        if len(real) != 1:
            raise InvalidConfigError(f"{fn}: the model has {len(real)} inputs ({_fmt_names(real)}); "
                                     "pass input_name= to say which one to modify")
        input_name = real[0]
    elif not isinstance(input_name, str) or input_name not in real:
        raise InvalidConfigError(f"{fn}: {input_name!r} is not a graph input{_did_you_mean(str(input_name), real)}; "
                                 f"the graph inputs are {_fmt_names(real)}")
    types = _infer_types(model)
    channels, _, elem = _activation_info(g, input_name, types, fn, 2, "the scale/bias BatchNormalization")
    s = _per_channel(scale, "scale", channels, input_name, fn)
    b = _per_channel(bias, "bias", channels, input_name, fn)
    new = _copy(model)
    ng = new.graph
    taken = _taken_names(ng)
    node_name = unique_name(f"{input_name}_scale_shift_bn", taken)
    node = _bn_node(ng, taken, node_name, input_name, node_name, s, b, _FLOAT_TYPES[elem])
    _insert_after(ng, input_name, [node], node_name)
    ensure_ir_version(new)
    new = _refresh_shapes(new)
    if in_place:
        model.CopyFrom(new)
        return model
    return new


# --------------------------------------------------------------------------------------------
# opset conversion


def _default_opset(model: onnx.ModelProto) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def convert_opset(model: onnx.ModelProto, target: int, *, source: int | None = None) -> onnx.ModelProto:
    """Convert the model's ONNX (``ai.onnx``) opset to ``target`` with ``onnx.version_converter``;
    return a new model (``model`` is not modified).

    With ``source``, a model that is not at opset ``source`` is refused. The IR version is
    raised to the lowest one that allows the target opset when it is below (e.g. 6 for opset 11).
    A node the converter cannot convert raises ``NotAvailableError``.
    """
    fn = "convert_opset" if source is None else f"convert_opset_{source}_to_{target}"
    _check_model(model, fn)
    if not isinstance(target, Integral) or isinstance(target, bool) or target < 1:
        raise InvalidConfigError(f"{fn}: target must be a positive opset number, got {target!r}")
    current = _default_opset(model)
    if current is None:
        raise InvalidConfigError(f"{fn}: the model declares no ai.onnx opset (model.opset_import); "
                                 f"add the opset it was exported with first")
    if source is not None and current != source:
        if current == target:
            hint = f"it is already at opset {target}: nothing to convert"
        elif current < target:
            hint = f"use convert_opset(model, {target}) to convert from opset {current}"
        else:
            hint = f"it is newer than opset {target}; use it as it is"
        raise InvalidConfigError(f"{fn}: the model is at opset {current}, not {source}; {hint}")
    if current > target:
        raise InvalidConfigError(f"{fn}: the model is at opset {current}, newer than the target {target}; "
                                 "downgrading is not supported")
    work = _copy(model)
    if current == target:
        return work
    try:
        new = onnx.version_converter.convert_version(work, int(target))
    except Exception as exc:  # the converter raises RuntimeError or its own ConvertError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotAvailableError(f"{fn}: the onnx version converter cannot convert this model from opset {current} "
                                f"to {target}: {first}") from exc
    minimum = helper.find_min_ir_version_for([helper.make_opsetid("", int(target))])
    ensure_ir_version(new, minimum)
    return new


def convert_opset_8_to_9(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert an opset-8 model to opset 9; return a new model (``model`` is not modified).
    A model at another opset is refused."""
    return convert_opset(model, 9, source=8)


def convert_opset_9_to_11(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert an opset-9 model to opset 11 (IR version 6 at least); return a new model
    (``model`` is not modified). A model at another opset is refused."""
    return convert_opset(model, 11, source=9)


def convert_opset_10_to_11(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert an opset-10 model to opset 11 (IR version 6 at least); return a new model
    (``model`` is not modified). A model at another opset is refused."""
    return convert_opset(model, 11, source=10)
