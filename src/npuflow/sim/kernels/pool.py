"""Pooling and mean reduction: MaxPool, GlobalMaxPool, AveragePool, GlobalAveragePool, ReduceMean.

Max (spec 9): exact; the result is requantized (monotone, so max and rescaling commute) only
when the output format differs from the input's: bound 0 (same format) or 0.5 LSB.
Average (9): the int64 window sum is divided by the element count and rescaled in a single
exact rounding, ``out = RNE(sum * M / (count * 2**(31+shift)))`` with ``M, shift`` for
``f_out / f_in`` (no reciprocal table, no double rounding). Bound: 0.5 LSB (+ 2**-31 relative).
``count_include_pad`` and ``ceil_mode`` follow ONNX: explicit pads count when asked, the extra
ceil_mode overhang never counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, format_ratio, mul_div_round
from npuflow.sim.kernels._geometry import pad_spatial, window_attrs, window_geometry, windows
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


@dataclass(frozen=True, eq=False)
class PoolParams:
    in_format: QFormat
    kernel_shape: tuple[int, ...]  # empty for global pools
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    auto_pad: str
    ceil_mode: int
    count_include_pad: int
    rq: Requant  # max pools
    mult: int  # average pools: f_out / f_in
    shift: int
    out_format: QFormat


def pool_window(p: PoolParams) -> dict[str, Any]:
    """The window attributes of a pool's params, as ``window_geometry`` reads them."""
    return {
        "kernel_shape": p.kernel_shape,
        "strides": p.strides,
        "dilations": p.dilations,
        "pads": p.pads,
        "auto_pad": p.auto_pad,
        "ceil_mode": p.ceil_mode,
    }


class _PoolBase(Kernel):
    is_global = False

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> PoolParams:
        op = self.op_type
        f = per_tensor(need_format(in_formats, 0, op), op, "input")
        out = single_out(out_format, op)
        if self.is_global:
            k: tuple[int, ...] = ()
            win: dict[str, Any] = {"strides": (), "dilations": (), "pads": (), "auto_pad": "NOTSET", "ceil_mode": 0}
        else:
            k = tuple(int(v) for v in attr(node_attrs, "kernel_shape"))
            win = window_attrs(node_attrs, len(k))
        m, s = format_ratio(out, f)
        if int(m[0]) < 0:
            raise ValueError(f"{op}: negative multiplier")
        return PoolParams(
            f,
            k,
            win["strides"],
            win["dilations"],
            win["pads"],
            win["auto_pad"],
            win["ceil_mode"],
            int(attr(node_attrs, "count_include_pad", 0) or 0),
            Requant.between(f, out),
            int(m[0]),
            int(s[0]),
            out,
        )


class MaxPoolKernel(_PoolBase):
    op_type = "MaxPool"

    def eval(self, params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        nd = len(params.kernel_shape)
        pb, pe, ex, out_sp = window_geometry(q.shape[-nd:], pool_window(params))
        sentinel = params.in_format.qmin - 1  # padding never wins a max
        xp = pad_spatial(q, pb, [e + x_ for e, x_ in zip(pe, ex)], sentinel)
        view = windows(xp, params.kernel_shape, params.strides, params.dilations, out_sp)
        m = view.max(axis=tuple(range(view.ndim - nd, view.ndim)))
        return finish(params.rq.apply(m), params.out_format, stats)


class GlobalMaxPoolKernel(_PoolBase):
    op_type = "GlobalMaxPool"
    is_global = True

    def eval(self, params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        m = q.max(axis=tuple(range(2, q.ndim)), keepdims=True)
        return finish(params.rq.apply(m), params.out_format, stats)


def mean_requant(total: np.ndarray, count: np.ndarray | int, mult: int, shift: int) -> np.ndarray:
    """``RNE(total * mult / (count * 2**(31 + shift)))`` exactly (counts < 2**31)."""
    c = np.asarray(count, dtype=np.int64)
    if c.size and (c.min() < 1 or c.max() >= (1 << 31)):
        raise ValueError("mean over 0 or >= 2**31 elements")
    return mul_div_round(total, mult, c, 31 + shift)


class AveragePoolKernel(_PoolBase):
    op_type = "AveragePool"

    def eval(self, params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        nd = len(params.kernel_shape)
        sp = q.shape[-nd:]
        pb, pe, ex, out_sp = window_geometry(sp, pool_window(params))
        pe_all = [e + x_ for e, x_ in zip(pe, ex)]
        xp = pad_spatial(q, pb, pe_all, 0)
        k, s, d = params.kernel_shape, params.strides, params.dilations
        axes = tuple(range(q.ndim, q.ndim + nd))
        total = windows(xp, k, s, d, out_sp).sum(axis=axes)
        if params.count_include_pad:
            ones = np.ones([sp[i] + pb[i] + pe[i] for i in range(nd)], dtype=np.int64)
            mask = pad_spatial(ones, [0] * nd, ex, 0)
        else:
            mask = pad_spatial(np.ones(sp, dtype=np.int64), pb, pe_all, 0)
        count = windows(mask, k, s, d, out_sp).sum(axis=tuple(range(nd, 2 * nd)))
        return finish(mean_requant(total, count, params.mult, params.shift), params.out_format, stats)


class GlobalAveragePoolKernel(_PoolBase):
    op_type = "GlobalAveragePool"
    is_global = True

    def eval(self, params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format).astype(np.int64)
        axes = tuple(range(2, q.ndim))
        total = q.sum(axis=axes, keepdims=True)
        count = int(np.prod([q.shape[a] for a in axes]))
        return finish(mean_requant(total, count, params.mult, params.shift), params.out_format, stats)


@dataclass(frozen=True, eq=False)
class ReduceMeanParams:
    in_format: QFormat
    axes: tuple[int, ...] | None  # None: all axes
    keepdims: bool
    noop: bool  # empty axes and noop_with_empty_axes: identity (requantized)
    mult: int
    shift: int
    rq: Requant
    out_format: QFormat


class ReduceMeanKernel(Kernel):
    op_type = "ReduceMean"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ReduceMeanParams:
        op = self.op_type
        f = per_tensor(need_format(in_formats, 0, op), op, "input")
        out = single_out(out_format, op)
        ax = const(weights, "axes")
        axes = tuple(int(v) for v in (ax.ravel().tolist() if ax is not None else (attr(node_attrs, "axes") or ())))
        noop = bool(attr(node_attrs, "noop_with_empty_axes", 0)) and not axes
        m, s = format_ratio(out, f)
        return ReduceMeanParams(
            f,
            axes or None,
            bool(attr(node_attrs, "keepdims", 1)),
            noop,
            int(m[0]),
            int(s[0]),
            Requant.between(f, out),
            out,
        )

    def eval(self, params: ReduceMeanParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "data", params.in_format).astype(np.int64)
        if params.noop:
            return finish(params.rq.apply(q), params.out_format, stats)
        axes = (
            tuple(range(q.ndim))
            if params.axes is None
            else tuple(sorted({norm_axis(a, q.ndim, self.op_type) for a in params.axes}))
        )
        total = q.sum(axis=axes, keepdims=params.keepdims)
        count = int(np.prod([q.shape[a] for a in axes]))
        return finish(mean_requant(total, count, params.mult, params.shift), params.out_format, stats)


MAX_POOL = MaxPoolKernel()
GLOBAL_MAX_POOL = GlobalMaxPoolKernel()
AVERAGE_POOL = AveragePoolKernel()
GLOBAL_AVERAGE_POOL = GlobalAveragePoolKernel()
REDUCE_MEAN = ReduceMeanKernel()
