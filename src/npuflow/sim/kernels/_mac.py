"""Shared output stage of the multiply-accumulate kernels (Conv, ConvTranspose, Gemm, MatMul).

Spec section 5: the accumulator holds ``sum(x_q * w_q) + bias_q`` exactly, in the format
``radix = r_in + r_w[c]``, ``scale = s_in * s_w[c]``; it is saturated once (never wrapped) to
``acc_bits`` (32 when input and weights are both <= 8 bits, else 48) and requantized per output
channel with ``M[c], shift[c]`` for ``alpha * factor_out / (factor_in * factor_w[c])``, then the
fused activation clamps it in the output domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import (
    QFormat,
    accumulator_bits,
    count_saturated,
    format_factor,
    multiplier_shift_array,
    qrange,
    requantize,
    saturate,
)
from npuflow.sim.kernels.base import Activation, KernelStats, finish


@dataclass(frozen=True, eq=False)
class MacOutput:
    """Integer output stage of a MAC node (all arrays have one entry per output channel)."""

    out_format: QFormat
    acc_bits: int
    bias: np.ndarray | None  # int64, accumulator format
    mult: np.ndarray  # int64, |M| in [2**30, 2**31) or 0
    shift: np.ndarray  # int64
    mult_neg: np.ndarray | None  # LeakyRelu: multiplier for negative accumulators
    shift_neg: np.ndarray | None
    act: Activation
    bias_saturated: int  # bias values that did not fit the accumulator (saturated)
    acc_bound: int  # worst-case |accumulator| over all inputs in range (from the weights)

    @property
    def acc_may_overflow(self) -> bool:
        """True when some input could saturate the accumulator (the analysis should warn)."""
        return self.acc_bound > qrange(self.acc_bits)[1]


def build_mac_output(
    op: str,
    node_attrs: Mapping[str, Any] | None,
    x_fmt: QFormat,
    w_radix: np.ndarray,
    w_scale: np.ndarray,
    w_bits: int,
    out_fmt: QFormat,
    bias: np.ndarray | None,
    abs_w_sum: np.ndarray | None,
    *,
    alpha: float = 1.0,
    x_abs_max: int | None = None,
) -> MacOutput:
    """Prepare the bias, multipliers and activation of a MAC node.

    ``w_radix``/``w_scale``: weight format per output channel (expanded to ``C_out`` entries).
    ``bias``: float bias per output channel (already multiplied by beta/alpha for Gemm) or None.
    ``abs_w_sum``: ``sum |w_q|`` per output channel, for the worst-case accumulator bound
    (None when the second operand is a runtime tensor; then ``x_abs_max`` times that bound).
    """
    acc_bits = accumulator_bits(x_fmt.bits, w_bits)
    r_in = x_fmt.tensor_radix
    s_in = x_fmt.tensor_scale
    b_radix = r_in + w_radix.astype(np.int64)
    b_scale = s_in * w_scale.astype(np.float64)
    bias_q = None
    bias_sat = 0
    if bias is not None:
        raw = np.rint(np.asarray(bias, dtype=np.float64) * format_factor(b_radix, b_scale))
        raw = np.clip(np.nan_to_num(raw, posinf=2.0**62, neginf=-(2.0**62)), -(2.0**62), 2.0**62).astype(np.int64)
        bias_sat = count_saturated(raw, acc_bits)
        bias_q = saturate(raw, acc_bits)
    ratio = alpha * out_fmt.tensor_scale / b_scale
    e = out_fmt.tensor_radix - b_radix
    mult, shift = multiplier_shift_array(ratio, exp2=e)
    act = Activation.from_attrs(node_attrs, out_fmt, op, allow_leaky=True)
    mult_neg = shift_neg = None
    if act.kind == "leakyrelu":
        mult_neg, shift_neg = multiplier_shift_array(ratio * act.alpha, exp2=e)
    xa = (1 << (x_fmt.bits - 1)) if x_abs_max is None else x_abs_max
    if abs_w_sum is not None:
        bound = int(
            np.max(
                np.asarray(abs_w_sum, dtype=object) * xa + (np.abs(bias_q).astype(object) if bias_q is not None else 0)
            )
        )
    else:
        bound = 0
    return MacOutput(out_fmt, acc_bits, bias_q, mult, shift, mult_neg, shift_neg, act, bias_sat, bound)


def mac_finish(acc: np.ndarray, ch_axis: int, p: MacOutput, stats: KernelStats | None) -> np.ndarray:
    """Add bias, saturate the accumulator, requantize per channel, activation, saturate output."""
    nd = acc.ndim
    shp = [1] * nd
    shp[ch_axis] = -1
    if p.bias is not None:
        acc = acc + p.bias.reshape(shp)
    if stats is not None:
        stats.acc_saturated += count_saturated(acc, p.acc_bits)
    acc = saturate(acc, p.acc_bits)
    out = requantize(acc, p.mult.reshape(shp), p.shift.reshape(shp), 62)
    if p.mult_neg is not None and p.shift_neg is not None:
        neg = requantize(acc, p.mult_neg.reshape(shp), p.shift_neg.reshape(shp), 62)
        out = np.where(acc < 0, neg, out)
    out = p.act.clamp(out)
    return finish(out, p.out_format, stats)


def weight_channel_format(w_fmt: QFormat, n: int, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight radix/scale per output channel: per-tensor formats are broadcast to ``n``."""
    if not w_fmt.per_channel:
        return np.full(n, w_fmt.tensor_radix, np.int64), np.full(n, w_fmt.tensor_scale)
    if w_fmt.channels != n:
        raise ValueError(f"{op}: weight format has {w_fmt.channels} channels, expected {n}")
    return w_fmt.radix_array(), w_fmt.scale_array()


def quantize_weight(w: np.ndarray, w_fmt: QFormat, op: str) -> np.ndarray:
    """Quantize float weights with their (per-channel) format; integer weights pass unchanged."""
    w = np.asarray(w)
    if w.dtype.kind in "iu":
        lo, hi = qrange(w_fmt.bits)
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(f"{op}: integer weights outside int{w_fmt.bits} range")
        return w.astype(w_fmt.dtype)
    return w_fmt.quantize(w)


__all__ = [
    "MacOutput",
    "accumulator_bits",
    "build_mac_output",
    "mac_finish",
    "quantize_weight",
    "weight_channel_format",
]
