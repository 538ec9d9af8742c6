"""Resize: nearest (exact gather) and linear (fixed-point weights, one rounding).

Spec 9. Source coordinates are computed from the shapes with exact rational arithmetic
(``fractions.Fraction``; an ONNX float scale is a dyadic rational, so this is exact) for every
``coordinate_transformation_mode`` except ``tf_crop_and_resize``. Nearest picks an index by
``nearest_mode`` and is a pure gather (``nearest_mode = "simple"``: onnxruntime's rule for Resize-10 and
Upsample, floor on axes with scale >= 1 and ceil on axes with scale < 1) (bound 0 when the output format equals the input's).
Linear: each interpolated axis has weights ``w1 = RNE(frac * 2**20)``, ``w0 = 2**20 - w1``;
the separable weighted sum is exact in int64 and is rounded once,
``out = RNE(sum * M / 2**(31 + shift + 20 * d))`` (``d`` <= 2 interpolated axes).
Bound: 0.5 LSB + d * 2**-21 * max|q1 - q0| * f_out/f_in (weight rounding), under 0.6 LSB for
int16 data and negligible for int8.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, format_ratio, mul_div_round
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Requant,
    Weights,
    attr,
    check_int,
    const,
    finish,
    need_format,
    norm_axis,
    per_tensor,
    single_out,
)

RESIZE_WEIGHT_BITS = 20
"""Fraction bits of the linear interpolation weights."""
MAX_LINEAR_AXES = 2

_CTMS = (
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "half_pixel_symmetric",
)
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


@dataclass(frozen=True, eq=False)
class ResizeParams:
    in_format: QFormat
    mode: str  # "nearest" or "linear"
    ctm: str
    nearest_mode: str
    scales: tuple[float, ...] | None  # as given (float32 values widened to float64 exactly)
    sizes: tuple[int, ...] | None
    axes: tuple[int, ...] | None
    rq: Requant
    mult: int  # linear: f_out / f_in
    shift: int
    out_format: QFormat


def source_coordinate(x_out: int, scale: Fraction, l_in: int, l_out: int, ctm: str) -> Fraction:
    """ONNX Resize coordinate transform, exact."""
    x = Fraction(x_out)
    if ctm == "half_pixel":
        return (x + Fraction(1, 2)) / scale - Fraction(1, 2)
    if ctm == "pytorch_half_pixel":
        return (x + Fraction(1, 2)) / scale - Fraction(1, 2) if l_out > 1 else Fraction(0)
    if ctm == "align_corners":
        return Fraction(0) if l_out == 1 else x * (l_in - 1) / (l_out - 1)
    if ctm == "asymmetric":
        return x / scale
    if ctm == "tf_half_pixel_for_nn":
        return (x + Fraction(1, 2)) / scale
    if ctm == "half_pixel_symmetric":
        out_w = scale * l_in
        adjustment = Fraction(l_out) / out_w
        center = Fraction(l_in, 2)
        offset = center * (1 - adjustment)
        return offset + (x + Fraction(1, 2)) / scale - Fraction(1, 2)
    raise ValueError(f"Resize: coordinate_transformation_mode {ctm!r} is not supported")


def nearest_index(x: Fraction, mode: str) -> int:
    fl = math.floor(x)
    frac = x - fl
    if mode == "floor":
        return fl
    if mode == "ceil":
        return math.ceil(x)
    if frac == Fraction(1, 2):
        return fl if mode == "round_prefer_floor" else fl + 1
    return fl + 1 if frac > Fraction(1, 2) else fl


class ResizeKernel(Kernel):
    op_type = "Resize"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ResizeParams:
        op = self.op_type
        f = per_tensor(need_format(in_formats, 0, op), op, "input X")
        out = single_out(out_format, op)
        mode = str(attr(node_attrs, "mode", "nearest"))
        if mode not in ("nearest", "linear"):
            raise ValueError(f"Resize: mode {mode!r} is not supported (nearest, linear)")
        ctm = str(attr(node_attrs, "coordinate_transformation_mode", "half_pixel"))
        if ctm not in _CTMS:
            raise ValueError(f"Resize: coordinate_transformation_mode {ctm!r} is not supported")
        nm = str(attr(node_attrs, "nearest_mode", "round_prefer_floor"))
        if nm not in _NEAREST:
            raise ValueError(f"Resize: nearest_mode {nm!r} is not supported")
        if int(attr(node_attrs, "antialias", 0) or 0):
            raise ValueError("Resize: antialias is not supported")
        if str(attr(node_attrs, "keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise ValueError("Resize: only keep_aspect_ratio_policy='stretch' is supported")
        sc = const(weights, "scales")
        sz = const(weights, "sizes")
        scales = tuple(float(v) for v in sc.ravel().tolist()) if sc is not None and sc.size else None
        sizes = tuple(int(v) for v in sz.ravel().tolist()) if sz is not None and sz.size else None
        if scales is None and sizes is None:
            raise ValueError("Resize: needs constant scales or sizes")
        axes = attr(node_attrs, "axes")
        m, s = format_ratio(out, f)
        return ResizeParams(
            f,
            mode,
            ctm,
            nm,
            scales,
            sizes,
            tuple(int(a) for a in axes) if axes else None,
            Requant.between(f, out),
            int(m[0]),
            int(s[0]),
            out,
        )

    @staticmethod
    def plan(p: ResizeParams, shape: Sequence[int]) -> list[tuple[int, Any]]:
        """Per axis that changes: ``(axis, idx)`` (nearest) or ``(axis, (i0, i1, w0, w1))``."""
        nd = len(shape)
        axes = list(range(nd)) if p.axes is None else [norm_axis(a, nd, "Resize") for a in p.axes]
        steps: list[tuple[int, Any]] = []
        for j, a in enumerate(axes):
            l_in = int(shape[a])
            if p.sizes is not None:
                l_out = int(p.sizes[j])
                scale = Fraction(l_out, l_in)
            else:
                assert p.scales is not None
                scale = Fraction(p.scales[j])
                if scale <= 0:
                    raise ValueError("Resize: scales must be > 0")
                l_out = math.floor(l_in * scale)
            xs = [source_coordinate(o, scale, l_in, l_out, p.ctm) for o in range(l_out)]
            if l_out == l_in and all(x == i for i, x in enumerate(xs)):
                continue  # identity axis
            if p.mode == "nearest":
                nm = p.nearest_mode
                if nm == "simple":  # Resize-10 / Upsample (onnxruntime): per axis
                    nm = "ceil" if scale < 1 else "floor"
                idx = np.clip([nearest_index(x, nm) for x in xs], 0, l_in - 1).astype(np.int64)
                steps.append((a, idx))
            else:
                fl = [math.floor(x) for x in xs]
                i0 = np.clip(fl, 0, l_in - 1).astype(np.int64)
                i1 = np.clip([v + 1 for v in fl], 0, l_in - 1).astype(np.int64)
                w1 = np.array([round((x - v) * (1 << RESIZE_WEIGHT_BITS)) for x, v in zip(xs, fl)], dtype=np.int64)
                steps.append((a, (i0, i1, (1 << RESIZE_WEIGHT_BITS) - w1, w1)))
        return steps

    def eval(self, params: ResizeParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        v = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        steps = self.plan(params, v.shape)
        if params.mode == "nearest":
            for a, idx in steps:
                v = np.take(v, idx, axis=a)
            return finish(params.rq.apply(v), params.out_format, stats)
        if len(steps) > MAX_LINEAR_AXES:
            raise ValueError(f"Resize: linear interpolation over more than {MAX_LINEAR_AXES} axes is not supported")
        for a, (i0, i1, w0, w1) in steps:
            shp = [1] * v.ndim
            shp[a] = -1
            v = np.take(v, i0, axis=a) * w0.reshape(shp) + np.take(v, i1, axis=a) * w1.reshape(shp)
        out = mul_div_round(v, params.mult, 1, 31 + params.shift + RESIZE_WEIGHT_BITS * len(steps))
        return finish(out, params.out_format, stats)


RESIZE = ResizeKernel()
