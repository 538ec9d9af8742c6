"""Piecewise-linear activations: Relu, Clip, LeakyRelu, PRelu.

All are one multiplication per branch and one rounding (RNE) into the output format; when the
output format equals the input format Relu and Clip are exact (no rounding at all).
Clip bounds are rounded into the output domain, which gives exactly the correctly rounded
``clip`` because rounding is monotone. Negative slopes (LeakyRelu alpha, PRelu slope) go into
signed multipliers. Bound: 0.5 LSB (+ 2**-31 relative); 0 when formats are equal (Relu/Clip).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, format_ratio, multiplier_shift_array, requantize
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Requant,
    Weights,
    attr,
    check_int,
    clamp_q,
    const,
    finish,
    need_format,
    per_tensor,
    single_out,
)


@dataclass(frozen=True, eq=False)
class ClampParams:
    in_format: QFormat
    rq: Requant
    lo: int  # output domain
    hi: int
    out_format: QFormat


class ReluKernel(Kernel):
    op_type = "Relu"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ClampParams:
        f = per_tensor(need_format(in_formats, 0, self.op_type), self.op_type, "input")
        out = single_out(out_format, self.op_type)
        lo, hi = self._bounds(node_attrs, weights, out)
        return ClampParams(f, Requant.between(f, out), lo, hi, out)

    def _bounds(self, node_attrs: Mapping[str, Any], weights: Weights | None, out: QFormat) -> tuple[int, int]:
        return 0, out.qmax

    def eval(self, params: ClampParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format)
        v = params.rq.apply(q)
        return finish(np.clip(v, params.lo, params.hi), params.out_format, stats)


class ClipKernel(ReluKernel):
    """Clip; ``min``/``max`` from the constant inputs (opset >= 11) or attributes (older)."""

    op_type = "Clip"

    def _bounds(self, node_attrs: Mapping[str, Any], weights: Weights | None, out: QFormat) -> tuple[int, int]:
        mn = const(weights, "min")
        mx = const(weights, "max")
        # constant min/max may arrive as shape-(1,) tensors
        lo_f = float(mn.reshape(-1)[0]) if mn is not None and mn.size else float(attr(node_attrs, "min", -math.inf))
        hi_f = float(mx.reshape(-1)[0]) if mx is not None and mx.size else float(attr(node_attrs, "max", math.inf))
        f = float(out.factor()[0])
        return clamp_q(lo_f * f, out), clamp_q(hi_f * f, out)


@dataclass(frozen=True, eq=False)
class LeakyParams:
    in_format: QFormat
    mult_pos: int
    shift_pos: int
    mult_neg: np.ndarray  # int64, scalar (LeakyRelu) or slope-shaped (PRelu), signed
    shift_neg: np.ndarray
    out_format: QFormat


class LeakyReluKernel(Kernel):
    op_type = "LeakyRelu"

    def _slope(self, node_attrs: Mapping[str, Any], weights: Weights | None) -> np.ndarray:
        return np.asarray(float(attr(node_attrs, "alpha", 0.01)))

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> LeakyParams:
        f = per_tensor(need_format(in_formats, 0, self.op_type), self.op_type, "input")
        out = single_out(out_format, self.op_type)
        mp, sp = format_ratio(out, f)
        ratio = out.tensor_scale / f.tensor_scale
        e = out.tensor_radix - f.tensor_radix
        mn, sn = multiplier_shift_array(self._slope(node_attrs, weights) * ratio, exp2=e)
        return LeakyParams(f, int(mp[0]), int(sp[0]), mn, sn, out)

    def eval(self, params: LeakyParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        pos = requantize(q, params.mult_pos, params.shift_pos, 62)
        neg = requantize(q, params.mult_neg, params.shift_neg, 62)
        return finish(np.where(q < 0, neg, pos), params.out_format, stats)


class PReluKernel(LeakyReluKernel):
    """PRelu with a constant slope (broadcast to X, e.g. per channel ``(C, 1, 1)``)."""

    op_type = "PRelu"

    def _slope(self, node_attrs: Mapping[str, Any], weights: Weights | None) -> np.ndarray:
        s = const(weights, "slope")
        if s is None:
            raise ValueError("PRelu: slope must be a constant")
        return np.asarray(s, dtype=np.float64)


RELU = ReluKernel()
CLIP = ClipKernel()
LEAKY_RELU = LeakyReluKernel()
PRELU = PReluKernel()
