"""Depthwise Conv (one input channel per group) as one compiled kernel: exact integer
accumulation straight from the input container and the MAC output stage in the same pass.

onnxruntime's float32 depthwise convolution is exact too (:mod:`npuflow.sim.fast._ort`), but it
needs the input converted to float32, writes a float32 accumulator and then a second pass reads
it back; a depthwise kernel does only ``kh * kw`` multiply-adds per output, so those passes cost
more than the arithmetic. Here each (sample, output channel) row is accumulated into a
per-thread scratch row of integers (int32 when ``max_c sum |w[c]| * 2**(bits-1) < 2**31``, else
float64 below 2**53, else int64: every partial sum is then exact), and
:func:`npuflow.sim.fast._requant._row` -- the same
output stage as every other fast MAC -- turns it into output integers (or table outputs, for a
fused table step). Padding positions are skipped (a zero in a symmetric format adds nothing).
Needs numba; the callers use it only when :func:`npuflow.sim.fast._nb.use_numba` holds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._nb import HAVE_NUMBA, njit
from npuflow.sim.fast._requant import add_counts, prepared
from npuflow.sim.kernels.base import KernelStats

if HAVE_NUMBA:
    from npuflow.sim.fast._nb import numba
    from npuflow.sim.fast._requant import _int_abs_max, _row, _table_row

    @njit(inline="always")
    def _acc_row(xc, wc, acc, sh, sw, dh, dw, pt, pl, oh, ow):  # pragma: no cover - jitted
        """``acc[oy * ow + ox] = sum_{ky,kx} wc[ky, kx] * xc[oy*sh - pt + ky*dh, ox*sw - pl + kx*dw]``
        over the positions inside ``xc`` (exact: ``wc`` has the accumulator's dtype, wide enough).
        Unsigned indices: numba then skips its negative-index wraparound and LLVM vectorizes."""
        h, w = xc.shape
        kh, kw = wc.shape
        for i in range(oh * ow):
            acc[i] = 0
        ssw = np.uint64(sw)
        for oy in range(oh):
            base = oy * ow
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                if iy < 0 or iy >= h:
                    continue
                xr = xc[iy]
                for kx in range(kw):
                    wv = wc[ky, kx]
                    off = kx * dw - pl
                    lo = 0 if off >= 0 else (sw - 1 - off) // sw  # first ox with ox*sw + off >= 0
                    hi = (w - 1 - off) // sw + 1 if w - 1 - off >= 0 else 0  # past the last inside
                    if hi > ow:
                        hi = ow
                    if wv == 0 or hi <= lo:
                        continue
                    a0 = np.uint64(base + lo)
                    x0 = np.uint64(lo * sw + off)
                    if sw == 1:
                        for j in range(np.uint64(hi - lo)):
                            acc[a0 + j] += wv * xr[x0 + j]
                    else:
                        for j in range(np.uint64(hi - lo)):
                            acc[a0 + j] += wv * xr[x0 + j * ssw]

    @njit(parallel=True)
    def _acc_nhwc(xt, wt, sh, sw, dh, dw, pt, pl, oh, ow, acc):  # pragma: no cover - jitted
        """Channels-last accumulation for small planes (one input channel per output channel):
        ``acc[b, oy * ow + ox, c] = sum_{ky,kx} wt[ky, kx, c] * xt[b, iy, ix, c]`` over the
        positions inside; the inner loop runs over the channels (long, contiguous: vectorized)."""
        n, h, w, cin = xt.shape
        kh, kw, c_out = wt.shape
        for r in numba.prange(n * oh):
            b = r // oh
            oy = r - b * oh
            for ox in range(ow):
                a = acc[b, oy * ow + ox]
                for c in range(c_out):
                    a[c] = 0
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if ix < 0 or ix >= w:
                            continue
                        xv = xt[b, iy, ix]
                        wv = wt[ky, kx]
                        for c in range(c_out):
                            a[c] += wv[c] * xv[c]

    @njit
    def _finish(acc, o, tmp, c, bias, mult, shift, mult_neg, shift_neg, has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi,
                table, tsat, lut_mode, count_lut):  # pragma: no cover - jitted
        """Output stage of one channel's accumulator row into ``o`` (through the int64 row ``tmp``,
        and the table when ``lut_mode``); returns the three counts. A called (not inlined)
        function: compiled once per dtype signature for both kernels, which keeps the compile
        time of their many specialisations down."""
        amax = np.float64(_int_abs_max(acc)) if not has_neg else np.inf
        na, no = _row(acc, tmp, bias[c], mult[c], 31 + shift[c], mult_neg[c], 31 + shift_neg[c], has_neg,
                      acc_lo, acc_hi, alo, ahi, qlo, qhi, amax)
        if lut_mode:
            return na, no, _table_row(tmp, o, table, tsat, qlo, count_lut)
        for k in range(tmp.shape[0]):
            o[k] = tmp[k]
        return na, no, 0

    @njit(parallel=True)
    def _out_nhwc(acc, scratch, bias, mult, shift, mult_neg, shift_neg, has_neg, acc_lo, acc_hi, alo, ahi, qlo,
                  qhi, out, counts, table, tsat, tmp_rows, lut_mode, count_lut):  # pragma: no cover - jitted
        """The output stage of channels-last accumulators ``acc`` ``(N, P, C)``: each channel's
        column is gathered into a scratch row, then as in :func:`_dw_kernel`."""
        n, p, c_out = acc.shape
        for row in numba.prange(n * c_out):
            b = row // c_out
            c = row - b * c_out
            t = numba.get_thread_id()
            col = scratch[t]
            for k in range(p):
                col[k] = acc[b, k, c]
            na, no, nl = _finish(col, out[b, c], tmp_rows[t], c, bias, mult, shift, mult_neg, shift_neg, has_neg,
                                 acc_lo, acc_hi, alo, ahi, qlo, qhi, table, tsat, lut_mode, count_lut)
            counts[row, 0] = na
            counts[row, 1] = no
            counts[row, 2] = nl

    @njit(parallel=True)
    def _dw_kernel(x, w, cog, sh, sw, dh, dw, pt, pl, oh, ow, scratch, bias, mult, shift, mult_neg, shift_neg,
                   has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, out, counts, table, tsat, tmp_rows, lut_mode,
                   count_lut):  # pragma: no cover - jitted
        """Plane by plane: each (sample, output channel) row accumulated by :func:`_acc_row` into
        a per-thread scratch row, then the output stage (and the table when ``lut_mode``)."""
        n = x.shape[0]
        c_out = w.shape[0]
        for row in numba.prange(n * c_out):
            b = row // c_out
            c = row - b * c_out
            t = numba.get_thread_id()
            acc = scratch[t]
            _acc_row(x[b, c // cog], w[c, 0], acc, sh, sw, dh, dw, pt, pl, oh, ow)
            na, no, nl = _finish(acc, out[b, c], tmp_rows[t], c, bias, mult, shift, mult_neg, shift_neg, has_neg,
                                 acc_lo, acc_hi, alo, ahi, qlo, qhi, table, tsat, lut_mode, count_lut)
            counts[row, 0] = na
            counts[row, 1] = no
            counts[row, 2] = nl


#: output rows at least this wide accumulate plane by plane (vectorized along the row); narrower
#: ones channels-last (vectorized across the channels), where per-row overheads would dominate
PLANE_MIN_WIDTH = 48


class DepthwisePlan:
    """Per-params state: the weights as a contiguous ``(C_out, 1, kh, kw)`` array and the
    scratch accumulator dtype."""

    def __init__(self, params: Any) -> None:
        w = params.w_q
        if w.ndim == 3:  # 1-D convolution: one row of height 1
            w = w[:, :, None, :]
        bound = int(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        b = bound << (params.in_format.bits - 1)
        # int32 where it cannot overflow; else float64 holding integers (exact: every partial sum
        # is an integer below 2**53; AVX-512 multiplies float64 far faster than int64); int64 last
        self.acc_dtype = np.int32 if b < (1 << 31) else np.float64 if b < (1 << 53) else np.int64
        self.w = np.ascontiguousarray(w, dtype=self.acc_dtype)
        self.wt = np.ascontiguousarray(self.w[:, 0].transpose(1, 2, 0))  # (kh, kw, C_out)


def applies(params: Any, x: np.ndarray) -> bool:
    """A 1-D or 2-D convolution with one input channel per group (depthwise, any channel
    multiplier) of more than one group."""
    return (params.group > 1 and x.ndim in (3, 4) and params.w_q.shape[1] == 1 and x.shape[1] == params.group
            and x.dtype.kind == "i")


def depthwise(plan: DepthwisePlan, params: Any, x: np.ndarray, pads_begin: tuple[int, ...], out_sp: tuple[int, ...],
              stats: KernelStats | None, lut: Any = None, lut_stats: KernelStats | None = None) -> np.ndarray:
    """The depthwise Conv of ``x`` (``pads_begin``, ``out_sp``: the reference geometry), through the
    output stage of ``params.out`` and the table ``lut`` when given; same integers and counts as
    the reference (and the table step's kernel)."""
    one_d = x.ndim == 3
    x4 = np.ascontiguousarray(x[:, :, None, :] if one_d else x)
    sh, sw = (1, params.strides[0]) if one_d else params.strides
    dh, dw = (1, params.dilations[0]) if one_d else params.dilations
    pt, pl = (0, pads_begin[0]) if one_d else pads_begin
    oh, ow = (1, out_sp[0]) if one_d else out_sp
    n = x.shape[0]
    c_out = plan.w.shape[0]
    npos = oh * ow
    p = params.out
    fmt = p.out_format
    out = np.empty((n, c_out, npos), dtype=lut.table.dtype if lut is not None else fmt.dtype)
    if out.size:
        pr = prepared(p, c_out)
        threads = numba.get_num_threads() + 1
        scratch = np.empty((threads, npos), dtype=plan.acc_dtype)
        counts = np.empty((n * c_out, 3), dtype=np.int64)
        stage = (pr.bias, pr.mult, pr.shift, pr.mult_neg, pr.shift_neg, pr.has_neg, pr.acc_lo, pr.acc_hi, pr.alo,
                 pr.ahi, fmt.qmin, fmt.qmax, out, counts)
        tmp = np.empty((threads, npos), dtype=np.int64)
        if lut is None:  # placeholders of the right types
            table: Any = (np.zeros(1, out.dtype), np.zeros(1, np.uint8), tmp, False, False)
        else:
            table = (lut.table, lut.saturated.view(np.uint8), tmp, True, lut_stats is not None)
        cog = c_out // params.group
        if cog == 1 and ow < PLANE_MIN_WIDTH:
            xt = np.ascontiguousarray(x4.transpose(0, 2, 3, 1))
            acc = np.empty((n, npos, c_out), dtype=plan.acc_dtype)
            _acc_nhwc(xt, plan.wt, sh, sw, dh, dw, pt, pl, oh, ow, acc)
            _out_nhwc(acc, scratch, *stage, *table)
        else:
            _dw_kernel(x4, plan.w, cog, sh, sw, dh, dw, pt, pl, oh, ow, scratch, *stage, *table)
        add_counts(counts, out.size, stats, lut_stats if lut is not None else None)
    return out.reshape((n, c_out) + tuple(out_sp))
