"""BatchNormalization that was not folded into a preceding Conv: a per-channel affine map.

Spec 6.5: ``y = a_c * x + b_c`` with ``a_c = scale / sqrt(var + eps)``, ``b_c = B - mean * a_c``
(float64, in prepare). Like Add, with ``P`` extra fraction bits:
``t = RNE(q * a_c * f_out/f_in * 2**P) + RNE(b_c * f_out * 2**P)``, ``out = RNE(t / 2**P)``.
The factors are not quantized to 8 bits: they live in the 31-bit multipliers.
Bound: 0.5 + 2**-P LSB. Channel axis 1 (NC...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, mul_div_round, multiplier_shift_array, rounding_right_shift
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Weights,
    attr,
    check_int,
    const,
    finish,
    need_format,
    per_tensor,
    single_out,
)
from npuflow.sim.kernels.elementwise import ADD_FRAC_BITS


@dataclass(frozen=True, eq=False)
class AffineParams:
    in_format: QFormat
    mult: np.ndarray  # int64 per channel, signed
    rshift: np.ndarray  # int64 per channel: 31 + shift - P
    bias: np.ndarray  # int64 per channel, P fraction bits in the output format
    frac_bits: int
    out_format: QFormat


class BatchNormalizationKernel(Kernel):
    op_type = "BatchNormalization"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> AffineParams:
        op = self.op_type
        f = per_tensor(need_format(in_formats, 0, op), op, "input X")
        out = single_out(out_format, op)
        # schema names: "mean"/"var" up to opset 14, "input_mean"/"input_var" from opset 15
        vals = {k: const(weights, k) for k in ("scale", "B")}
        vals["input_mean"] = (
            const(weights, "input_mean") if const(weights, "input_mean") is not None else const(weights, "mean")
        )
        vals["input_var"] = (
            const(weights, "input_var") if const(weights, "input_var") is not None else const(weights, "var")
        )
        missing = [k for k, v in vals.items() if v is None]
        if missing:
            raise ValueError(f"BatchNormalization: constant inputs {missing} required")
        eps = float(attr(node_attrs, "epsilon", 1e-5))
        sc, b, mean, var = (
            np.asarray(vals[k], dtype=np.float64).ravel() for k in ("scale", "B", "input_mean", "input_var")
        )
        a = sc / np.sqrt(var + eps)
        bb = b - mean * a
        ratio = a * (out.tensor_scale / f.tensor_scale)
        m, s = multiplier_shift_array(ratio, exp2=out.tensor_radix - f.tensor_radix)
        p = int(min(ADD_FRAC_BITS, int((31 + s).min())))
        bias = np.rint(bb * np.ldexp(float(out.factor()[0]), p))
        bias = np.clip(bias, -(2.0**60), 2.0**60).astype(np.int64)
        return AffineParams(f, m, (31 + s - p).astype(np.int64), bias, p, out)

    def eval(self, params: AffineParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        shp = [1] * q.ndim
        shp[1] = -1
        t = mul_div_round(q, params.mult.reshape(shp), 1, params.rshift.reshape(shp)) + params.bias.reshape(shp)
        return finish(rounding_right_shift(t, params.frac_bits), params.out_format, stats)


BATCH_NORMALIZATION = BatchNormalizationKernel()
