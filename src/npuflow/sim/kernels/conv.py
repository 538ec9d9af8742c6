"""Conv and ConvTranspose: exact int64 accumulation, per-output-channel requantization.

Conv uses im2col (sliding-window view, zero padding -- zero is exact in a symmetric format)
and an int64 matrix product per group; ConvTranspose scatters the int64 products of every
input pixel into the output canvas. Both then go through the shared MAC output stage
(:mod:`npuflow.sim.kernels._mac`): bias in the accumulator format, one saturation of the
accumulator, one rounding (RNE) to the output format, fused activation, output saturation.
LSB bound vs the float op on the dequantized input/weights/bias: 0.5 LSB (+ 2**-31 relative
from the 31-bit multiplier), unless the accumulator saturated.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels._geometry import pad_spatial, window_attrs, window_geometry, windows
from npuflow.sim.kernels._mac import (
    MacOutput,
    build_mac_output,
    mac_finish,
    quantize_weight,
    weight_channel_format,
)
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Weights,
    attr,
    check_int,
    const,
    need_format,
    per_tensor,
    single_out,
)

_CHUNK = 1 << 22  # im2col elements per chunk (bounds memory, not results)


@dataclass(frozen=True, eq=False)
class ConvParams:
    in_format: QFormat
    w_q: np.ndarray  # (C_out, C_in/group, *kernel), int8 / int16 (int4 in int8)
    group: int
    kernel_shape: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    auto_pad: str
    out: MacOutput


def _abs_sum_per_out(w_q: np.ndarray, axis: int) -> np.ndarray:
    a = np.abs(w_q.astype(np.int64))
    axes = tuple(i for i in range(a.ndim) if i != axis)
    return a.sum(axis=axes)


def out_channel_abs_sums(w_q: np.ndarray, group: int, transpose: bool) -> np.ndarray:
    """``sum |w_q|`` over the products of each output channel (int64): Conv weights
    ``(C_out, C_in/g, *k)``; ConvTranspose ``(C_in, C_out/g, *k)``, output ``g * cog + j`` reading
    the input channels of group ``g`` (each of its outputs sums a subset of these products)."""
    if not transpose:
        return _abs_sum_per_out(w_q, 0)
    c_in, cog = w_q.shape[:2]
    return _abs_sum_per_out(
        w_q.reshape((group, c_in // group) + w_q.shape[1:]).swapaxes(0, 1).reshape((c_in // group, group * cog)
                                                                                   + w_q.shape[2:]), 1)


class ConvKernel(Kernel):
    op_type = "Conv"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ConvParams:
        op = self.op_type
        x_fmt = per_tensor(need_format(in_formats, 0, op), op, "input X")
        w_fmt = need_format(in_formats, 1, op, "weight W")
        out = single_out(out_format, op)
        W = const(weights, "W")
        if W is None:
            raise ValueError("Conv: weight W must be a constant (runtime weights are not supported)")
        if w_fmt.axis is not None and (w_fmt.axis % W.ndim) != 0:
            raise ValueError("Conv: per-channel weight format must use axis 0 (output channels)")
        w_q = quantize_weight(W, w_fmt, op)
        c_out = W.shape[0]
        wr, ws = weight_channel_format(w_fmt, c_out, op)
        nd = W.ndim - 2
        win = window_attrs(node_attrs, nd, W.shape[2:])
        B = const(weights, "B")
        mac = build_mac_output(op, node_attrs, x_fmt, wr, ws, w_fmt.bits, out, B, out_channel_abs_sums(w_q, 1, False))
        return ConvParams(
            x_fmt,
            w_q,
            int(attr(node_attrs, "group", 1)),
            win["kernel_shape"],
            win["strides"],
            win["dilations"],
            win["pads"],
            win["auto_pad"],
            mac,
        )

    def eval(self, params: ConvParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        x = check_int(x, self.op_type, "X", params.in_format)
        w = params.w_q.astype(np.int64)
        n, c = x.shape[:2]
        g = params.group
        c_out = w.shape[0]
        if c != w.shape[1] * g or c_out % g:
            raise ValueError(f"Conv: input has {c} channels, weights expect {w.shape[1]} x group {g}")
        cg, cog = c // g, c_out // g
        win = {
            "kernel_shape": params.kernel_shape,
            "strides": params.strides,
            "dilations": params.dilations,
            "pads": params.pads,
            "auto_pad": params.auto_pad,
            "ceil_mode": 0,
        }
        pb, pe, _, out_sp = window_geometry(x.shape[2:], win)
        xp = pad_spatial(x.astype(np.int64), pb, pe, 0)
        view = windows(xp, params.kernel_shape, params.strides, params.dilations, out_sp)  # (N, C, *out, *k)
        nd = len(out_sp)
        if cg == 1:
            acc = self._depthwise(xp, w, cog, params, out_sp)
            return mac_finish(acc, 1, params.out, stats)
        k_el = int(np.prod(params.kernel_shape))
        wm = w.reshape(g, cog, cg * k_el).transpose(0, 2, 1)  # (G, Cg*K, Cog)
        rows_per = max(1, _CHUNK // max(1, n * c * k_el * int(np.prod(out_sp[1:]))))
        acc = np.empty((n, c_out) + tuple(out_sp), dtype=np.int64)
        for r0 in range(0, out_sp[0], rows_per):
            r1 = min(out_sp[0], r0 + rows_per)
            sub = view[:, :, r0:r1]  # (N, C, rows, *out[1:], *k)
            sub_sp = (r1 - r0,) + tuple(out_sp[1:])
            p = int(np.prod(sub_sp))
            sub = sub.reshape((n, g, cg) + sub_sp + tuple(params.kernel_shape))
            perm = (0, 1) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
            cols = np.ascontiguousarray(sub.transpose(perm)).reshape(n, g, p, cg * k_el)
            res = np.matmul(cols, wm)  # (N, G, P, Cog), exact int64
            acc[:, :, r0:r1] = res.transpose(0, 1, 3, 2).reshape((n, c_out) + sub_sp)
        return mac_finish(acc, 1, params.out, stats)

    @staticmethod
    def _depthwise(xp: np.ndarray, w: np.ndarray, cog: int, params: ConvParams, out_sp: Sequence[int]) -> np.ndarray:
        """One input channel per group: multiply-add per kernel offset (same exact int64 sums)."""
        n = xp.shape[0]
        c_out = w.shape[0]
        acc = np.zeros((n, c_out) + tuple(out_sp), dtype=np.int64)
        src = xp if cog == 1 else np.repeat(xp, cog, axis=1)  # output channel o reads input o // cog
        wshape = (1, c_out) + (1,) * len(out_sp)
        for kk in itertools.product(*(range(v) for v in params.kernel_shape)):
            sl = tuple(
                slice(
                    kk[i] * params.dilations[i],
                    kk[i] * params.dilations[i] + params.strides[i] * (out_sp[i] - 1) + 1,
                    params.strides[i],
                )
                for i in range(len(out_sp))
            )
            acc += src[(slice(None), slice(None)) + sl] * w[(slice(None), 0) + tuple(kk)].reshape(wshape)
        return acc


@dataclass(frozen=True, eq=False)
class ConvTransposeParams:
    in_format: QFormat
    w_q: np.ndarray  # (C_in, C_out/group, *kernel)
    group: int
    kernel_shape: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    output_padding: tuple[int, ...]
    output_shape: tuple[int, ...]
    auto_pad: str
    out: MacOutput


class ConvTransposeKernel(Kernel):
    """ConvTranspose. Per-channel weight formats use axis 1 of ``W`` (``C_out/group`` entries);
    with ``group > 1`` entry ``j`` serves output channel ``j`` of every group."""

    op_type = "ConvTranspose"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ConvTransposeParams:
        op = self.op_type
        x_fmt = per_tensor(need_format(in_formats, 0, op), op, "input X")
        w_fmt = need_format(in_formats, 1, op, "weight W")
        out = single_out(out_format, op)
        W = const(weights, "W")
        if W is None:
            raise ValueError("ConvTranspose: weight W must be a constant")
        if w_fmt.axis is not None and (w_fmt.axis % W.ndim) != 1:
            raise ValueError("ConvTranspose: per-channel weight format must use axis 1 of W")
        g = int(attr(node_attrs, "group", 1))
        w_q = quantize_weight(W, w_fmt, op)
        cog = W.shape[1]
        wr, ws = weight_channel_format(w_fmt, cog, op)
        wr, ws = np.tile(wr, g), np.tile(ws, g)
        nd = W.ndim - 2
        win = window_attrs(node_attrs, nd, W.shape[2:])
        abs_sum = out_channel_abs_sums(w_q, g, True)
        B = const(weights, "B")
        mac = build_mac_output(op, node_attrs, x_fmt, wr, ws, w_fmt.bits, out, B, abs_sum)
        op_pad = tuple(int(v) for v in (attr(node_attrs, "output_padding") or (0,) * nd))
        o_shape = tuple(int(v) for v in (attr(node_attrs, "output_shape") or ()))
        return ConvTransposeParams(
            x_fmt,
            w_q,
            g,
            win["kernel_shape"],
            win["strides"],
            win["dilations"],
            win["pads"],
            op_pad,
            o_shape,
            win["auto_pad"],
            mac,
        )

    @staticmethod
    def geometry(p: ConvTransposeParams, in_sp: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(pads_begin, out_sp)`` following the ONNX ConvTranspose rules."""
        nd = len(in_sp)
        pb, out = [], []
        o_shape = p.output_shape[-nd:] if p.output_shape else ()
        for i in range(nd):
            keff = (p.kernel_shape[i] - 1) * p.dilations[i] + 1
            full = p.strides[i] * (in_sp[i] - 1) + p.output_padding[i] + keff
            if o_shape or p.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                target = o_shape[i] if o_shape else in_sp[i] * p.strides[i]
                total = full - target
                if p.auto_pad == "SAME_UPPER":
                    b = total // 2
                else:
                    b = total - total // 2
                pb.append(b)
                out.append(target)
            else:
                b, e = (0, 0) if p.auto_pad == "VALID" else (p.pads[i], p.pads[i + nd])
                pb.append(b)
                out.append(full - b - e)
        return pb, out

    def eval(self, params: ConvTransposeParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        x = check_int(x, self.op_type, "X", params.in_format)
        w = params.w_q.astype(np.int64)
        n, c = x.shape[:2]
        g = params.group
        if c != w.shape[0] or c % g:
            raise ValueError(f"ConvTranspose: input has {c} channels, weights expect {w.shape[0]}")
        cg, cog = c // g, w.shape[1]
        in_sp = x.shape[2:]
        nd = len(in_sp)
        k = params.kernel_shape
        pb, out_sp = self.geometry(params, in_sp)
        full = [params.strides[i] * (in_sp[i] - 1) + (k[i] - 1) * params.dilations[i] + 1 for i in range(nd)]
        lo = [min(0, pb[i]) for i in range(nd)]
        hi = [max(full[i], pb[i] + out_sp[i]) for i in range(nd)]
        canvas = np.zeros((n, g * cog) + tuple(hi[i] - lo[i] for i in range(nd)), dtype=np.int64)
        p_in = int(np.prod(in_sp))
        k_el = int(np.prod(k))
        xi = x.astype(np.int64).reshape(n, g, cg, p_in).transpose(0, 1, 3, 2)  # (N, G, P, Cg)
        wg = w.reshape(g, cg, cog * k_el)  # (G, Cg, Cog*K)
        contrib = np.matmul(xi, wg).reshape((n, g) + tuple(in_sp) + (cog,) + tuple(k))
        for kk in itertools.product(*(range(v) for v in k)):
            sl = tuple(
                slice(
                    kk[i] * params.dilations[i] - lo[i],
                    kk[i] * params.dilations[i] - lo[i] + params.strides[i] * (in_sp[i] - 1) + 1,
                    params.strides[i],
                )
                for i in range(nd)
            )
            part = contrib[(Ellipsis,) + tuple(kk)]  # (N, G, *in, Cog)
            part = np.moveaxis(part, -1, 2).reshape((n, g * cog) + tuple(in_sp))
            canvas[(slice(None), slice(None)) + sl] += part
        crop = tuple(slice(pb[i] - lo[i], pb[i] - lo[i] + out_sp[i]) for i in range(nd))
        acc = canvas[(slice(None), slice(None)) + crop]
        return mac_finish(acc, 1, params.out, stats)


CONV = ConvKernel()
CONV_TRANSPOSE = ConvTransposeKernel()
