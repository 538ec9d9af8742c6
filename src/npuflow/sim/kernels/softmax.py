"""Softmax in integers (opset-13 semantics: one axis, default -1; older opsets with ``coerce_2d``).

Spec 8: ``d = max(q) - q`` along the axis (0 .. 2**bits - 1); ``e = EXP[d]`` with
``EXP[d] = RNE(exp(-d / f_in) * 2**30)`` built in prepare (``EXP[0] = 2**30`` exactly);
``S = sum(e)`` (int64); ``out = RNE(e * F / (S * 2**k))`` by exact integer division, where
``F * 2**-k`` is ``f_out`` (``F, k`` from :func:`multiplier_shift`). No float in eval.
Bound: 0.5 + f_out * (N + 1) * 2**-31 LSB for a softmax over ``N`` elements (the exp table's
rounding); for N = 1000 that is 0.50006 LSB (int8 output) or 0.516 LSB (int16).

Opsets 1-12 coerce the input to 2-D at ``axis`` (default 1) and normalise over every axis from
``axis`` on; the analysis passes that as the node attribute ``coerce_2d = 1`` (spec 8): the same
arithmetic with the max and the sum taken over axes ``axis .. rank-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, multiplier_shift, qrange, rounding_divide
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Weights,
    attr,
    check_int,
    finish,
    need_format,
    norm_axis,
    per_tensor,
    single_out,
)
from npuflow.sim.kernels.lut import LUT_MAX_BITS

EXP_FRAC_BITS = 30
"""Fraction bits of the exp table (entries in (0, 2**30])."""


@dataclass(frozen=True, eq=False)
class SoftmaxParams:
    in_format: QFormat
    axis: int
    exp_table: np.ndarray  # int64, index d = max - q
    out_mult: int  # F
    out_shift: int  # k: f_out = F * 2**-k
    out_format: QFormat
    coerce_2d: bool = False  # opset < 13: normalise over every axis from ``axis`` on


class SoftmaxKernel(Kernel):
    op_type = "Softmax"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> SoftmaxParams:
        op = self.op_type
        f = per_tensor(need_format(in_formats, 0, op), op, "input")
        out = single_out(out_format, op)
        if f.bits > LUT_MAX_BITS:
            raise ValueError(f"Softmax: input of at most {LUT_MAX_BITS} bits")
        lo, hi = qrange(f.bits)
        d = np.arange(0, hi - lo + 1, dtype=np.int64)
        table = np.rint(np.ldexp(np.exp(-f.dequantize(d)), EXP_FRAC_BITS)).astype(np.int64)
        m, s = multiplier_shift(float(out.factor()[0]))
        k = 31 + s
        if k > 62:
            raise ValueError(f"Softmax: output format factor {float(out.factor()[0])} is too small")
        coerce = bool(int(attr(node_attrs, "coerce_2d", 0) or 0))
        axis = int(attr(node_attrs, "axis", 1 if coerce else -1))
        return SoftmaxParams(f, axis, table, m, k, out, coerce)

    def eval(self, params: SoftmaxParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "input", params.in_format).astype(np.int64)
        a = norm_axis(params.axis, q.ndim, self.op_type)
        ax: int | tuple[int, ...] = tuple(range(a, q.ndim)) if params.coerce_2d else a
        d = q.max(axis=ax, keepdims=True) - q
        e = params.exp_table[d]
        s = e.sum(axis=ax, keepdims=True)
        out = rounding_divide(e * params.out_mult, s, params.out_shift)
        return finish(out, params.out_format, stats)


SOFTMAX = SoftmaxKernel()
