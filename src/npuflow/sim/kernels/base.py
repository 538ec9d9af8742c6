"""Kernel interface and helpers shared by every reference integer kernel.

Every kernel is an object with

* ``prepare(node_attrs, in_formats, out_format, weights=None) -> Params`` -- floats allowed:
  formats become integer multipliers/shifts, tables, quantized weights; the result is a frozen
  dataclass holding only integers (and the formats, for checks), computed once and storable in
  the BIE (:func:`params_to_dict`).
* ``eval(params, *inputs_q, stats=None) -> ndarray | tuple[ndarray, ...]`` -- integers only:
  raises ``TypeError`` if a float array enters; returns arrays in the output format's container
  dtype (int8 / int16 / int32).

Argument conventions (``docs/fixed-point.md`` section "Kernel interface"):

* ``node_attrs``: the ONNX attributes as Python values (bytes or str for strings), plus the fused
  activation keys ``activation`` (``"Relu"``, ``"Clip"``, ``"LeakyRelu"`` or absent),
  ``activation_min``, ``activation_max``, ``activation_alpha``.
* ``in_formats``: one entry per ONNX input position (trailing optional inputs may be left out);
  ``None`` for inputs that are not quantized tensors (shapes, indices, scales, or constants that
  the kernel folds into its multipliers). Weights have their own (per-channel) format here.
* ``weights``: constant inputs keyed by the ONNX schema input name (``"W"``, ``"B"``, ``"shape"``,
  ``"scales"``, ...). Float weights are quantized with their ``in_formats`` entry; integer
  weights are taken as already quantized in that format.
* ``eval`` receives the runtime (non-constant) inputs, in ONNX input order.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import (
    QFormat,
    count_saturated,
    format_ratio,
    qrange,
    requantize,
    to_container,
)

Weights = Mapping[str, np.ndarray]


@dataclass
class KernelStats:
    """Counters an ``eval`` adds to when given ``stats=``; the analysis reports them per node.

    ``acc_saturated``: accumulator (or bias) elements that exceeded the accumulator width and
    were saturated. ``out_saturated``: output elements clipped to ``[qmin, qmax]``.
    ``out_elements``: output elements produced.
    """

    acc_saturated: int = 0
    out_saturated: int = 0
    out_elements: int = 0


class Kernel(ABC):
    """A reference integer kernel for one ONNX op type (see module docstring)."""

    op_type: str = ""

    @abstractmethod
    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> Any: ...

    @abstractmethod
    def eval(self, params: Any, *inputs: np.ndarray, stats: KernelStats | None = None) -> Any: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kernel for {self.op_type}>"


# ----------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------
def attr(node_attrs: Mapping[str, Any] | None, name: str, default: Any = None) -> Any:
    """Attribute value with bytes decoded to str and lists turned into tuples."""
    if not node_attrs or name not in node_attrs or node_attrs[name] is None:
        return default
    v = node_attrs[name]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return tuple(v.tolist()) if v.ndim else v.item()
    if isinstance(v, list):
        return tuple(e.decode() if isinstance(e, bytes) else e for e in v)
    return v


def const(weights: Weights | None, name: str) -> np.ndarray | None:
    """Constant input ``name`` (ONNX schema input name) or None."""
    if not weights or name not in weights or weights[name] is None:
        return None
    return np.asarray(weights[name])


def fmt_at(in_formats: Sequence[QFormat | None], i: int) -> QFormat | None:
    return in_formats[i] if i < len(in_formats) else None


def need_format(in_formats: Sequence[QFormat | None], i: int, op: str, what: str = "input") -> QFormat:
    f = fmt_at(in_formats, i)
    if f is None:
        raise ValueError(f"{op}: {what} {i} needs a QFormat")
    return f


def per_tensor(fmt: QFormat, op: str, what: str) -> QFormat:
    """Activations are quantized per tensor (spec section 1); refuse per-channel formats."""
    if fmt.per_channel:
        raise ValueError(
            f"{op}: {what} must have a per-tensor format (activations are per tensor), got axis={fmt.axis}"
        )
    return fmt


def single_out(out_format: QFormat | Sequence[QFormat], op: str) -> QFormat:
    if isinstance(out_format, QFormat):
        return per_tensor(out_format, op, "output")
    fmts = list(out_format)
    if len(fmts) != 1:
        raise ValueError(f"{op}: one output format expected, got {len(fmts)}")
    return per_tensor(fmts[0], op, "output")


def check_int(x: Any, op: str, name: str = "input", fmt: QFormat | None = None) -> np.ndarray:
    """Refuse anything but a signed-integer array (no float enters ``eval``); check the range."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind != "i":
        raise TypeError(f"{op}: {name} must be a signed integer array in eval (integers only), got dtype {x.dtype}")
    if fmt is not None and x.size:
        lo, hi = x.min(), x.max()
        if lo < fmt.qmin or hi > fmt.qmax:
            raise ValueError(f"{op}: {name} values [{lo}, {hi}] outside int{fmt.bits} range [{fmt.qmin}, {fmt.qmax}]")
    return x


def finish(v: np.ndarray, fmt: QFormat, stats: KernelStats | None) -> np.ndarray:
    """Saturate an int64 result to ``fmt.bits``, count, cast to the container dtype."""
    if stats is not None:
        stats.out_saturated += count_saturated(v, fmt.bits)
        stats.out_elements += int(np.asarray(v).size)
    return to_container(v, fmt.bits)


def quantize_const(w: np.ndarray, fmt: QFormat, op: str, name: str) -> np.ndarray:
    """Quantize a float constant with ``fmt``; integer constants are taken as already quantized."""
    w = np.asarray(w)
    if w.dtype.kind in "iu":
        if w.size and (w.min() < fmt.qmin or w.max() > fmt.qmax):
            raise ValueError(f"{op}: integer {name} outside int{fmt.bits} range")
        return w.astype(fmt.dtype)
    return fmt.quantize(w)


# ----------------------------------------------------------------------------------------------
# requantization between two per-tensor formats
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Requant:
    """Rescale from one per-tensor format to another: ``RNE(q * M / 2**(31+shift))``.

    ``identity`` is set when the formats have the same factor: then ``apply`` is a plain copy
    (bit exact, no rounding) and only the width changes.
    """

    mult: int
    shift: int
    bits: int
    identity: bool

    @staticmethod
    def between(src: QFormat, dst: QFormat) -> Requant:
        same = src.radix == dst.radix and src.scale == dst.scale
        if same:
            return Requant(1 << 30, -1, dst.bits, True)
        m, s = format_ratio(dst, src)
        return Requant(int(m[0]), int(s[0]), dst.bits, False)

    def apply(self, q: np.ndarray) -> np.ndarray:
        """int64 result, not yet saturated (callers use :func:`finish`)."""
        if self.identity:
            return q.astype(np.int64)
        return requantize(q, self.mult, self.shift, 62)


@dataclass(frozen=True)
class Activation:
    """Fused output activation in the output domain: clamp ``[lo, hi]`` and, for LeakyRelu, a
    separate multiplier for negative accumulators (kept by the MAC kernels)."""

    kind: str  # "none", "relu", "clip", "leakyrelu"
    lo: int
    hi: int
    alpha: float = 0.0

    @staticmethod
    def from_attrs(
        node_attrs: Mapping[str, Any] | None, out: QFormat, op: str, *, allow_leaky: bool = False
    ) -> Activation:
        kind = attr(node_attrs, "activation")
        lo, hi = out.qmin, out.qmax
        if kind is None or kind == "" or kind == "None":
            return Activation("none", lo, hi)
        k = str(kind).lower()
        f = float(out.factor()[0])
        if k == "relu":
            return Activation("relu", 0, hi)
        if k == "clip":
            mn = attr(node_attrs, "activation_min", -math.inf)
            mx = attr(node_attrs, "activation_max", math.inf)
            return Activation("clip", clamp_q(float(mn) * f, out), clamp_q(float(mx) * f, out))
        if k == "leakyrelu" and allow_leaky:
            return Activation("leakyrelu", lo, hi, float(attr(node_attrs, "activation_alpha", 0.01)))
        raise ValueError(f"{op}: unsupported fused activation {kind!r}")

    def clamp(self, v: np.ndarray) -> np.ndarray:
        if self.kind in ("relu", "clip"):
            return np.clip(v, self.lo, self.hi)
        return v


def clamp_q(v: float, fmt: QFormat) -> int:
    """``RNE(v)`` saturated to ``fmt`` (for clip bounds already multiplied by the factor)."""
    if math.isnan(v):
        raise ValueError("NaN clip bound")
    if math.isinf(v):
        return fmt.qmax if v > 0 else fmt.qmin
    return int(min(max(round(v), fmt.qmin), fmt.qmax))


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------
def norm_axis(axis: int, ndim: int, op: str) -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise ValueError(f"{op}: axis {axis} out of range for rank {ndim}")
    return a


def bshape(n: int, axis: int, ndim: int) -> tuple[int, ...]:
    """Shape ``(1, .., n, .., 1)`` with ``n`` on ``axis``, for broadcasting per-channel arrays."""
    s = [1] * ndim
    s[axis] = n
    return tuple(s)


# ----------------------------------------------------------------------------------------------
# params serialization (BIE)
# ----------------------------------------------------------------------------------------------
def _enc(v: Any, raw: bool = False) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.dtype.str, "shape": list(v.shape), "data": v.ravel() if raw else v.ravel().tolist()}
    if isinstance(v, QFormat):
        return {"__qformat__": v.to_dict()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return params_to_dict(v, raw=raw)
    if isinstance(v, (tuple, list)):
        return [_enc(e, raw) for e in v]
    if isinstance(v, dict):
        return {str(k): _enc(e, raw) for k, e in v.items()}
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if "__ndarray__" in v:
            return np.asarray(v["data"], dtype=np.dtype(v["__ndarray__"])).reshape(v["shape"])
        if "__qformat__" in v:
            return QFormat.from_dict(v["__qformat__"])
        if "__type__" in v:
            return params_from_dict(v)
        return {k: _dec(e) for k, e in v.items()}
    if isinstance(v, list):
        return tuple(_dec(e) for e in v)
    return v


def params_to_dict(params: Any, *, raw: bool = False) -> dict[str, Any]:
    """JSON-ready dict of a params dataclass (integer arrays as lists with dtype and shape; with
    ``raw``, as flat numpy arrays instead, for a writer that stores large ones as tensors)."""
    out: dict[str, Any] = {"__type__": f"{type(params).__module__}:{type(params).__qualname__}"}
    for f in dataclasses.fields(params):
        out[f.name] = _enc(getattr(params, f.name), raw)
    return out


def params_from_dict(d: Mapping[str, Any]) -> Any:
    """Inverse of :func:`params_to_dict` (only classes inside ``npuflow.sim.kernels``)."""
    mod, _, qual = str(d["__type__"]).partition(":")
    if not mod.startswith("npuflow.sim.kernels"):
        raise ValueError(f"refusing to build params of type {d['__type__']!r}")
    cls: Any = importlib.import_module(mod)
    for part in qual.split("."):
        cls = getattr(cls, part)
    kwargs = {f.name: _dec(d[f.name]) for f in dataclasses.fields(cls) if f.name in d}
    return cls(**kwargs)


__all__ = [
    "Activation",
    "Kernel",
    "KernelStats",
    "Requant",
    "attr",
    "bshape",
    "check_int",
    "clamp_q",
    "const",
    "finish",
    "fmt_at",
    "need_format",
    "norm_axis",
    "params_from_dict",
    "params_to_dict",
    "per_tensor",
    "qrange",
    "quantize_const",
    "single_out",
]
