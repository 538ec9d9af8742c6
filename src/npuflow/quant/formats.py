"""Ranges -> fixed-point formats (pure functions; spec ``docs/fixed-point.md`` section 3).

Activations: one format per tensor from an absolute maximum. Model inputs: pure power of two
(``scale = 1``). Weights: one format per output channel. Bias: the accumulator format
(``radix = r_in + r_w[c]``, ``scale = s_in * s_w[c]``, int32 or int48).
Which widths a platform allows lives in the platform files (``npuflow.platforms``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from npuflow.sim.fixed_point import (
    QFormat,
    accumulator_bits,
    choose_radix_scale,
    count_saturated,
    format_factor,
    qrange,
    saturate,
)


def activation_format(abs_max: float, bits: int = 8) -> QFormat:
    """Per-tensor format whose ``qmax`` represents ``abs_max`` exactly (``choose_radix_scale``)."""
    return QFormat.from_abs_max(abs_max, bits)


def input_format(abs_max: float, bits: int = 8) -> QFormat:
    """Model-input format: pure power of two (``scale = 1``) so a preprocessor can use a shift."""
    return QFormat.from_abs_max(abs_max, bits, power_of_two=True)


def channel_abs_max(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """``max |w|`` over every axis but ``axis`` (float64, one value per channel)."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    ax = axis % a.ndim
    return a.max(axis=tuple(i for i in range(a.ndim) if i != ax)) if a.ndim > 1 else a


def weight_format(
    w: np.ndarray,
    bits: int = 8,
    axis: int | None = 0,
    *,
    bias: np.ndarray | None = None,
    in_format: QFormat | None = None,
) -> QFormat:
    """Per-output-channel weight format (``axis`` = output-channel axis; None = per tensor).

    Each channel gets ``choose_radix_scale(max|w_c|, bits)``; an all-zero channel gets the
    format of ``abs_max = 1`` with scale 1. ``bits = 4`` gives int4 weights in [-8, 7].

    With ``bias`` and ``in_format`` (the MAC's input format) the channel range is widened to
    ``max(max|w_c|, |b_c| * f_in * qmax_w / 2**(acc_bits - 2))`` so that the quantized bias
    ``b_c * f_in * f_w[c]`` uses at most a quarter of the accumulator (spec section 3): channels
    whose weights are almost zero but whose bias is not (BatchNorm folding) would otherwise
    saturate the bias.
    """
    w = np.asarray(w, dtype=np.float64)
    if axis is None:
        amax = np.array([float(np.abs(w).max()) if w.size else 0.0])
    else:
        amax = channel_abs_max(w, axis)
    if bias is not None:
        if in_format is None:
            raise ValueError("weight_format: bias given without the input format")
        b = np.abs(np.asarray(bias, dtype=np.float64).ravel())
        if axis is None or b.size == 1:
            b = b.max(keepdims=True) if b.size else np.zeros(1)
        elif b.size != amax.size:
            if b.size % amax.size:
                raise ValueError(f"weight_format: {b.size} bias values for {amax.size} weight channels")
            b = b.reshape(-1, amax.size).max(axis=0)  # grouped ConvTranspose: channel j of every group
        acc = accumulator_bits(in_format.bits, bits)
        need = b * float(in_format.factor()[0]) * qrange(bits)[1] / 2.0 ** (acc - 2)
        amax = np.maximum(amax, need)
    rs = [choose_radix_scale(float(v), bits) for v in amax]
    if axis is None:
        return QFormat(bits, rs[0][0], rs[0][1], None)
    return QFormat(bits, tuple(r for r, _ in rs), tuple(s for _, s in rs), axis)


def quantize_weights(w: np.ndarray, bits: int = 8, axis: int | None = 0) -> tuple[np.ndarray, QFormat]:
    """``(q, format)`` with :func:`weight_format` (int4 values are stored in int8)."""
    fmt = weight_format(w, bits, axis)
    return fmt.quantize(w), fmt


def bias_format(in_fmt: QFormat, w_fmt: QFormat, channels: int | None = None) -> QFormat:
    """Accumulator format of a MAC node: ``radix = r_in + r_w[c]``, ``scale = s_in * s_w[c]``.

    ``channels`` broadcasts a per-tensor weight format to that many output channels.
    """
    if in_fmt.per_channel:
        raise ValueError("activation formats are per tensor")
    r_in = in_fmt.tensor_radix
    s_in = in_fmt.tensor_scale
    wr, ws = w_fmt.radix_array(), w_fmt.scale_array()
    if channels is not None and len(wr) == 1:
        wr, ws = np.repeat(wr, channels), np.repeat(ws, channels)
    bits = accumulator_bits(in_fmt.bits, w_fmt.bits)
    return QFormat(bits, tuple(int(r_in + r) for r in wr), tuple(float(s_in * s) for s in ws), 0)


def quantize_bias(b: np.ndarray, in_fmt: QFormat, w_fmt: QFormat) -> tuple[np.ndarray, QFormat, int]:
    """``(q_bias int64, format, n_saturated)``: RNE into the accumulator format, saturated."""
    b = np.asarray(b, dtype=np.float64).ravel()
    fmt = bias_format(in_fmt, w_fmt, channels=b.size)
    raw = np.rint(b * format_factor(fmt.radix_array(), fmt.scale_array()))
    raw = np.clip(np.nan_to_num(raw, posinf=2.0**62, neginf=-(2.0**62)), -(2.0**62), 2.0**62).astype(np.int64)
    return saturate(raw, fmt.bits), fmt, count_saturated(raw, fmt.bits)


def shared_format(formats: Sequence[QFormat]) -> QFormat:
    """One format for tensors that must share it (Concat inputs): the widest range wins."""
    if not formats:
        raise ValueError("no formats")
    bits = max(f.bits for f in formats)
    amax = max(f.qmax / float(f.factor()[0]) for f in formats)
    return QFormat.from_abs_max(amax, bits)


__all__ = [
    "accumulator_bits",
    "activation_format",
    "bias_format",
    "channel_abs_max",
    "input_format",
    "quantize_bias",
    "quantize_weights",
    "shared_format",
    "weight_format",
]
