"""Where a tensor's readers cannot tell its values apart (docs/fixed-point.md section 3.1,
"Consumer bounds").

A tensor read only by nodes that are flat outside an interval carries no information outside it:
``HardSwish(x)`` is 0 for every ``x <= -3``, ``HardSigmoid`` is constant below ``-beta/alpha``
and above ``(1 - beta)/alpha``, ``Relu`` below 0, ``Clip`` outside its bounds. Replacing ``x`` by
``clip(x, lo, hi)`` then changes no model output, so the tensor's range never needs to exceed
the largest ``|clip(x, lo, hi)|`` of the calibration (``AbsHistogram.read_max``; the range rule
``min(rule, read_max)`` is npuflow.analysis.ranges.choose_abs_max's). A
MobileNetV3-style network's expand convolution before its HardSwish reaches -20 on the negative
side while everything below -3 reads as 0; PP-LCNet's last 1x1 convolution (before HardSwish) has
an abs max of 13.9 of which only [-3, 0.5] is read: a 3.2x finer step.

:func:`consumer_bounds` finds such intervals on the optimized float graph, per tensor, from its
readers (an interval claimed narrower than the true flat region is always safe: the bounds here
are conservative):

* ``Relu``, ``Clip`` (constant bounds), ``HardSigmoid`` (``alpha > 0``), ``HardSwish``: flat
  outside their knees; where the node's own output is read only inside an interval, the part of
  its input that maps outside it is flat too (the functions are non-decreasing there);
* ``Add`` / ``Sub`` / ``Mul`` / ``Div`` by a constant (positive for ``Mul`` / ``Div``; a scalar or
  per-channel constant that does not widen the tensor): the reader's output interval mapped back;
* ``Mul(x, g)`` where ``g`` is computed from ``x`` alone and is 0 whenever ``x <= z`` (a gate:
  HardSwish as ``x * relu6(x + 3) / 6`` or ``x * HardSigmoid(x)``, also with the per-channel
  ``1 / s`` of an equalized pair, npuflow.analysis.equalize): flat below ``z``;
* ``Identity``, ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Transpose``, ``MaxPool``
  (they commute with a scalar clip): their output's interval, when it is a scalar one.

Any other reader, a model output, or a tensor read inside a subgraph has no bound. Bounds are
numpy arrays broadcastable against the tensor (per channel after an equalized pair), ``-inf`` /
``inf`` where there is none.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from npuflow.passes._rewrite import Index, attr

Bound = tuple[np.ndarray, np.ndarray]

#: no bound on either side
UNBOUNDED: Bound = (np.array(-np.inf), np.array(np.inf))
#: readers that commute with a clip by scalars (elementwise order-preserving or pure data movement)
PASS = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool"})
#: elementwise readers with a constant operand, mapped back through their inverse
AFFINE = frozenset({"Add", "Sub", "Mul", "Div"})
#: reader chains followed at most this deep (a gate's chain, affine steps before a knee)
MAX_DEPTH = 16


def _is_unbounded(b: Bound) -> bool:
    return bool(np.all(np.isneginf(b[0])) and np.all(np.isposinf(b[1])))


class _Graph:
    """The pattern index of the passes (producers, readers, float constants, Clip bounds, the
    protected names: model outputs and subgraph reads) plus the bounds found so far."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.ix = Index(model)
        self.prod, self.readers = self.ix.prod, self.ix.readers
        self.outputs, self.protected = self.ix.outputs, self.ix.protected
        self.memo: dict[str, Bound] = {}

    def const(self, name: str) -> np.ndarray | None:
        c = self.ix.const_array(name) if name else None
        return None if c is None else c.astype(np.float64)

    def other_const(self, n: onnx.NodeProto, t: str) -> tuple[np.ndarray, bool] | None:
        """(the constant operand of the binary ``n``, whether ``t`` is its first input), or None."""
        other = self.ix.other_input(n, t)
        if other is None or other == t:
            return None
        c = self.const(other)
        return None if c is None else (c, n.input[0] == t)


def _fits(c: np.ndarray) -> bool:
    """A constant that broadcasts along a tensor without widening it (scalar or per channel of an
    NCHW-like tensor: at most 4-D with every axis but one of size 1)."""
    return c.ndim <= 4 and int(np.count_nonzero(np.asarray(c.shape) > 1)) <= 1 and bool(np.all(np.isfinite(c)))


def _knee(n: onnx.NodeProto, g: _Graph) -> tuple[float, float, Any] | None:
    """(a, b, inverse) of a non-decreasing reader flat below ``a`` and above ``b`` (strictly
    increasing between, with ``inverse`` of its values there), or None."""
    op = n.op_type
    if op == "Relu":
        return 0.0, np.inf, lambda y: y
    if op == "Clip":
        got = g.ix.clip_bounds(n)
        if got is None:
            return None
        lo = -np.inf if got[0] is None else got[0]
        hi = np.inf if got[1] is None else got[1]
        return (lo, hi, lambda y: y) if lo < hi else None
    if op == "HardSigmoid":
        alpha, beta = float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5))
        if not alpha > 0:
            return None
        return -beta / alpha, (1.0 - beta) / alpha, lambda y: (y - beta) / alpha
    return None


def _affine_inverse(n: onnx.NodeProto, t: str, g: _Graph) -> Any:
    """For ``n`` = ``t (op) c`` with a constant ``c`` (non-decreasing in ``t``): the inverse map of
    its values, or None."""
    got = g.other_const(n, t)
    if got is None:
        return None
    c, first = got
    if not _fits(c):
        return None
    if n.op_type == "Add":
        return lambda y: y - c
    if n.op_type == "Sub":
        return (lambda y: y + c) if first else None
    if n.op_type == "Mul":
        return (lambda y: y / c) if np.all(c > 0) else None
    if n.op_type == "Div":
        return (lambda y: y * c) if first and np.all(c > 0) else None
    return None


def _at_most(x: str, v: np.ndarray, t: str, g: _Graph, depth: int) -> np.ndarray | None:
    """``z`` such that ``x <= v`` whenever ``t <= z``, where ``x`` is computed from ``t`` by
    non-decreasing affine nodes with constant operands (``x`` may be ``t``), or None."""
    if x == t:
        return v
    p = g.prod.get(x)
    if p is None or depth > MAX_DEPTH or p.op_type not in AFFINE:
        return None
    src = next((i for i in p.input if i and g.const(i) is None), None)
    inv = _affine_inverse(p, src, g) if src is not None else None
    return None if inv is None else _at_most(src, inv(v), t, g, depth + 1)


def _zero_below(x: str, t: str, g: _Graph, depth: int = 0) -> np.ndarray | None:
    """``z`` such that ``x == 0`` whenever ``t <= z`` (``x`` a gate computed from ``t``), or None."""
    p = g.prod.get(x)
    if p is None or depth > MAX_DEPTH or x == t:
        return None
    if p.op_type in ("Mul", "Div"):  # a positive constant factor keeps a zero
        src = next((i for i in p.input if i and g.const(i) is None), None)
        if src is None or _affine_inverse(p, src, g) is None:
            return None
        return _zero_below(src, t, g, depth + 1)
    knee = _knee(p, g)
    if knee is None or not p.input:
        return None
    a = knee[0]
    # the value below the knee is 0 for Relu, HardSigmoid and a Clip whose min is 0
    if not np.isfinite(a) or (p.op_type == "Clip" and a != 0.0):
        return None
    return _at_most(p.input[0], np.asarray(a, dtype=np.float64), t, g, depth + 1)


def _reader_bound(t: str, n: onnx.NodeProto, g: _Graph, depth: int) -> Bound:
    """The interval outside which reader ``n`` cannot tell values of ``t`` apart."""
    op = n.op_type
    if not n.output or any(o in g.protected and o not in g.outputs for o in n.output):
        return UNBOUNDED
    if list(n.input).count(t) != 1 or len(n.output) != 1 or not n.output[0]:
        return UNBOUNDED
    out = n.output[0]
    if op in PASS:
        if op != "Identity" and n.input[0] != t:
            return UNBOUNDED
        lo, hi = _bound(out, g, depth + 1)
        return (lo, hi) if lo.ndim == 0 and hi.ndim == 0 else UNBOUNDED
    if op == "HardSwish":
        _, hi = _bound(out, g, depth + 1)
        # above 3 HardSwish is the identity: a read-only-below-hi output is flat above hi there
        top = hi if (hi.ndim == 0 and hi >= 3.0) else np.array(np.inf)
        return np.array(-3.0), top
    knee = _knee(n, g) if n.input[0] == t else None
    if knee is not None:
        a, b, inv = knee
        lo_o, hi_o = _bound(out, g, depth + 1)
        lo = np.maximum(a, inv(lo_o)) if np.any(np.isfinite(lo_o)) else np.asarray(a, dtype=np.float64)
        hi = np.minimum(b, inv(hi_o)) if np.any(np.isfinite(hi_o)) else np.asarray(b, dtype=np.float64)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if op in AFFINE:
        inv = _affine_inverse(n, t, g)
        if inv is not None:
            lo_o, hi_o = _bound(out, g, depth + 1)
            if _is_unbounded((lo_o, hi_o)):
                return UNBOUNDED
            return np.asarray(inv(lo_o), dtype=np.float64), np.asarray(inv(hi_o), dtype=np.float64)
        if op == "Mul" and len(n.input) == 2:  # x * g(x): flat where the gate is 0
            other = n.input[1] if n.input[0] == t else n.input[0]
            z = _zero_below(other, t, g)
            if z is not None:
                return np.asarray(z, dtype=np.float64), np.array(np.inf)
    return UNBOUNDED


def _bound(t: str, g: _Graph, depth: int = 0) -> Bound:
    if t in g.memo:
        return g.memo[t]
    if t in g.protected or depth > MAX_DEPTH or not g.readers.get(t):
        return UNBOUNDED
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    result = UNBOUNDED
    for n in g.readers[t]:
        b = _reader_bound(t, n, g, depth)
        if _is_unbounded(b):
            break
        # a clip is safe for every reader only inside each one's flat region: the widest interval
        lo = b[0] if lo is None else np.minimum(lo, b[0])
        hi = b[1] if hi is None else np.maximum(hi, b[1])
    else:
        if lo is not None and hi is not None and np.all(lo < hi):
            result = (np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    if depth == 0 or not _is_unbounded(result):
        g.memo[t] = result
    return result


def consumer_bounds(model: onnx.ModelProto, tensors: list[str] | None = None) -> dict[str, Bound]:
    """Tensor -> (lo, hi) for the tensors (of ``tensors``, or every node output) whose readers
    cannot tell apart the values below ``lo`` or above ``hi`` (at least one finite); see the
    module docstring."""
    g = _Graph(model)
    names = tensors if tensors is not None else [o for n in model.graph.node for o in n.output]
    out: dict[str, Bound] = {}
    for t in names:
        b = _bound(t, g)
        if not _is_unbounded(b):
            out[t] = b
    return out


def describe(bound: Bound) -> dict[str, Any]:
    """A JSON-friendly summary of a bound (the report): scalar ends, or per-channel min / max."""
    def one(v: np.ndarray) -> Any:
        if v.ndim == 0 or v.size == 1:
            f = float(v.reshape(-1)[0])
            return None if not np.isfinite(f) else round(f, 6)
        finite = v[np.isfinite(v)]
        return None if finite.size == 0 else {"min": round(float(finite.min()), 6), "max": round(float(finite.max()), 6)}
    return {"lo": one(bound[0]), "hi": one(bound[1])}
