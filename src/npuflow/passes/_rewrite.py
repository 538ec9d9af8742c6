"""Helpers of the NPU-friendly rewrite passes (private: the passes are the public surface).

* :class:`Index`: producers, readers, constants and protected tensors of one graph, for pattern
  matching (built once per pass run; the passes edit nodes in place and rebuild it when needed).
* :func:`npu_runs` / :class:`CandidateNode`: ask a platform whether a node that does not exist yet
  would run on its NPU. The optimizer sits below ``npuflow.platforms`` in the layers
  (docs/architecture.md), so it never imports it: ``optimize(platform=...)`` takes the platform
  object from the caller (``npuflow.platforms.get_platform(720)``) and the passes use only its
  ``name``, ``npu_supports(op_type)`` and ``npu_reason(node_info)``. :class:`CandidateNode` is
  ``npuflow.ir.nodes.NodeInfo`` itself (the checker's input type, shared through ``ir``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.ir.nodes import NodeInfo
from npuflow.passes._graph import (
    all_tensor_names,
    constant_initializers,
    consumers,
    drop_value_info,
    ensure_ir_version,
    is_default_domain,
    known_static_shapes,
    names_used_in_subgraphs,
    producers,
    unique_name,
)

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)

#: relative tolerance when a pattern constant is compared with its expected value (3, 6, 1/6, ...):
#: float32 1/6 is 0.16666667163, paddle2onnx writes 0.1666666716337204 for HardSigmoid's alpha
CONST_RTOL = 1e-6


class PlatformLike(Protocol):
    """What the passes use of ``npuflow.platforms.Platform``."""

    name: str

    def npu_supports(self, op_type: str) -> bool: ...

    def npu_reason(self, node: Any) -> str | None: ...


#: a node that does not exist yet, as the platform condition checker sees it
CandidateNode = NodeInfo


def is_platform(platform: object) -> bool:
    """True when ``platform`` is None or has callable ``npu_supports`` and ``npu_reason``."""
    return platform is None or (callable(getattr(platform, "npu_supports", None))
                                and callable(getattr(platform, "npu_reason", None)))


def npu_has(platform: PlatformLike | None, op_type: str) -> bool:
    return platform is not None and bool(platform.npu_supports(op_type))


def npu_runs(platform: PlatformLike, node: CandidateNode) -> bool:
    """True when ``platform`` would run ``node`` on its NPU (op in its table, every condition met)."""
    return platform.npu_supports(node.op_type) and platform.npu_reason(node) is None


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def out_channels(node: onnx.NodeProto, w: np.ndarray) -> int:
    """Output channel count of a ``Conv`` (weight ``[M, C / group, k...]``) or ``ConvTranspose``
    (weight ``[C_in, M / group, k...]``)."""
    return int(w.shape[0]) if node.op_type == "Conv" else int(w.shape[1]) * int(attr(node, "group", 1))


def scale_out_channels(node: onnx.NodeProto, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The weight ``w`` of a ``Conv`` / ``ConvTranspose`` with output channel ``m`` scaled by
    ``s[m]`` (a ``ConvTranspose``'s channel ``g * (M / group) + j`` sits at ``[g-th block, j]``)."""
    if node.op_type == "Conv":
        return w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    g = int(attr(node, "group", 1))
    cin, mg = w.shape[0], w.shape[1]
    grouped = w.reshape((g, cin // g, mg) + w.shape[2:])
    return (grouped * s.reshape((g, 1, mg) + (1,) * (w.ndim - 2))).reshape(w.shape)


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return onnx.defs.onnx_opset_version()


class Index:
    """Producers, readers, constants and protected names of ``graph`` (a snapshot)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.model = model
        self.graph = g
        self.opset = default_opset(model)
        self.prod = producers(g)
        self.readers = consumers(g)
        self.consts = constant_initializers(g)
        self.outputs = {o.name for o in g.output}
        self.protected = names_used_in_subgraphs(g) | self.outputs
        self.taken = all_tensor_names(g) | {n.name for n in g.node if n.name}
        self.shapes = known_static_shapes(g)
        self.elem = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]
                     if v.type.HasField("tensor_type")}
        for t in g.initializer:
            self.elem[t.name] = t.data_type
        self._new_consts: dict[tuple[int, bytes, tuple[int, ...]], str] = {}
        self.new_initializers: list[onnx.TensorProto] = []

    # -- queries ------------------------------------------------------------------------------
    def producer(self, tensor: str, op_type: str | Iterable[str]) -> onnx.NodeProto | None:
        """The default-domain node of type ``op_type`` that produces ``tensor``, else None."""
        n = self.prod.get(tensor)
        ops = (op_type,) if isinstance(op_type, str) else tuple(op_type)
        if n is None or n.op_type not in ops or not is_default_domain(n.domain):
            return None
        return n

    def sole_reader(self, tensor: str) -> onnx.NodeProto | None:
        """The one node reading ``tensor`` when it is internal (not a graph output, not read in a
        subgraph) and read by exactly one node, else None."""
        r = self.readers.get(tensor, [])
        if len(r) != 1 or tensor in self.protected:
            return None
        return r[0]

    def private(self, tensor: str, reader: onnx.NodeProto) -> bool:
        """``tensor`` is read by ``reader`` only (so the pattern may remove or redefine it)."""
        return self.sole_reader(tensor) is reader

    def const_array(self, name: str) -> np.ndarray | None:
        t = self.consts.get(name)
        if t is None or t.data_type not in FLOAT_TYPES:
            return None
        return numpy_helper.to_array(t)

    def scalar(self, name: str) -> float | None:
        """The value of a float constant with exactly one element, else None."""
        a = self.const_array(name) if name else None
        if a is None or a.size != 1:
            return None
        return float(a.reshape(()))

    def other_input(self, node: onnx.NodeProto, tensor: str) -> str | None:
        """For a two-input node reading ``tensor``, its other input (None if it does not read it)."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        if a == tensor:
            return b
        if b == tensor:
            return a
        return None

    def split_const(self, node: onnx.NodeProto) -> tuple[str, float] | None:
        """For a two-input Add/Mul with one scalar float constant operand: (runtime input, value)."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        vb, va = self.scalar(b), self.scalar(a)
        if vb is not None and va is None:
            return a, vb
        if va is not None and vb is None:
            return b, va
        return None

    def scale_of(self, node: onnx.NodeProto) -> tuple[str, float] | None:
        """``Mul(t, c)``/``Mul(c, t)`` -> (t, c); ``Div(t, c)`` -> (t, 1/c), c a scalar constant."""
        if not is_default_domain(node.domain):
            return None
        if node.op_type == "Mul":
            return self.split_const(node)
        if node.op_type == "Div" and len(node.input) == 2:
            c = self.scalar(node.input[1])
            if c is not None and c != 0.0 and self.scalar(node.input[0]) is None:
                return node.input[0], 1.0 / c
        return None

    def clip_bounds(self, node: onnx.NodeProto) -> tuple[float | None, float | None] | None:
        """(min, max) of a Clip whose bounds are constants or attributes (None = unbounded side);
        None when a bound is a runtime tensor."""
        if node.op_type != "Clip" or not is_default_domain(node.domain):
            return None
        lo: float | None
        hi: float | None
        if self.opset < 11:
            lo, hi = attr(node, "min"), attr(node, "max")
            return (None if lo is None else float(lo), None if hi is None else float(hi))
        bounds: list[float | None] = []
        for k in (1, 2):
            name = node.input[k] if len(node.input) > k else ""
            if not name:
                bounds.append(None)
                continue
            v = self.scalar(name)
            if v is None:
                return None
            bounds.append(v)
        return bounds[0], bounds[1]

    def dtype_of(self, tensor: str) -> int:
        return self.elem.get(tensor, onnx.TensorProto.FLOAT)

    # -- construction ---------------------------------------------------------------------------
    def name(self, base: str) -> str:
        return unique_name(base, self.taken)

    def op_name(self, old: onnx.NodeProto | None, op: str, base: str) -> str:
        """The name of a node of type ``op`` that replaces ``old``: ``old``'s name when ``old`` is
        an ``op`` node with a name, else a new unique ``<op>_<old's name or base>`` (generated names
        always start with their op type)."""
        if old is not None and old.name and old.op_type == op:
            return old.name
        return self.name(f"{op}_{old.name if old is not None and old.name else base}")

    def const(self, value: float | np.ndarray, elem_type: int, base: str, shape: tuple[int, ...] = ()) -> str:
        """A new constant initializer (one per distinct value and dtype within this pass run)."""
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        arr = np.asarray(value, dtype=np.float64).astype(dtype).reshape(shape)
        key = (elem_type, arr.tobytes(), arr.shape)
        if key not in self._new_consts:
            name = self.name(base)
            self.new_initializers.append(numpy_helper.from_array(arr, name))
            self._new_consts[key] = name
        return self._new_consts[key]

    def clip_node(self, x: str, lo: float, hi: float, out: str, name: str, elem_type: int) -> onnx.NodeProto:
        """A Clip in the model's opset form (attributes before opset 11, constant inputs after)."""
        if self.opset < 11:
            return helper.make_node("Clip", [x], [out], name=name, min=float(lo), max=float(hi))
        return helper.make_node("Clip", [x, self.const(lo, elem_type, f"{name}_min"),
                                         self.const(hi, elem_type, f"{name}_max")], [out], name=name)

    def finish(self) -> None:
        """Add the new initializers to the graph."""
        self.graph.initializer.extend(self.new_initializers)
        self.new_initializers = []


def apply_plan(model: onnx.ModelProto, plan: Sequence[tuple[Sequence[onnx.NodeProto], Sequence[onnx.NodeProto]]],
               idx: Any = None, stale: Iterable[str] = ()) -> tuple[onnx.ModelProto, bool]:
    """The end of every rewrite pass: apply ``plan`` (:func:`replace_in_place`), add the new
    constants of ``idx`` (its ``finish()``), drop the value_info of the ``stale`` tensors, and keep
    the IR version valid; returns the pass result ``(model, modified)``."""
    if not plan:
        return model, False
    replace_in_place(model.graph, plan)
    if idx is not None:
        idx.finish()
    stale = set(stale)
    if stale:
        drop_value_info(model.graph, stale)
    ensure_ir_version(model)
    return model, True


def close(value: float | None, expected: float, rtol: float = CONST_RTOL) -> bool:
    return value is not None and abs(value - expected) <= rtol * abs(expected)


def replace_in_place(graph: onnx.GraphProto, plan: Sequence[tuple[Sequence[onnx.NodeProto], Sequence[onnx.NodeProto]]]) -> None:
    """Apply (old nodes, new nodes) replacements: the new nodes of each entry take the position of
    the last of its old nodes (valid when every input of the new nodes is available there and the
    old nodes' outputs that survive are re-produced by new nodes), the other old nodes go away."""
    anchor: dict[int, Sequence[onnx.NodeProto]] = {}
    dead: set[int] = set()
    for old, new in plan:
        positions = [i for i, n in enumerate(graph.node) if any(n is o for o in old)]
        anchor[max(positions)] = new
        dead.update(positions)
    out: list[onnx.NodeProto] = []
    for i, n in enumerate(graph.node):
        if i in anchor:
            out.extend(anchor[i])
        elif i not in dead:
            out.append(n)
    copies = []
    for n in out:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)
