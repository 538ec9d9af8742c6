"""Fast MaxPool (2-D windows of 8/16-bit integers: one compiled loop; otherwise onnxruntime on
integers held in float32: a maximum is exact), AveragePool (one
compiled loop: int64 window sums and the reference's single exact rounding), Concat (a plain
concatenation when no input needs requantizing) and nearest Resize (cached indices)."""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._common import PlanCache, checked, count_out
from npuflow.sim.fast._nb import HAVE_NUMBA, njit, use_numba
from npuflow.sim.fast._ort import single_node_session
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels._geometry import window_geometry
from npuflow.sim.kernels.base import KernelStats, finish
from npuflow.sim.kernels.movement import ConcatParams
from npuflow.sim.kernels.pool import PoolParams, pool_window
from npuflow.sim.kernels.resize import ResizeParams


class _PoolPlan:
    def __init__(self, params: PoolParams) -> None:
        self.sessions: dict[tuple, Any] = {}
        self.failed: set[tuple] = set()


_POOL_PLANS = PlanCache(_PoolPlan)


def _has_empty_window(in_sp: tuple[int, ...], params: PoolParams, pb: list[int], out_sp: list[int]) -> bool:
    """Whether some window (with dilation) covers no input element, only padding: the reference
    defines its maximum as ``qmin - 1`` (docs/fixed-point.md §9), onnxruntime returns 0 or -inf."""
    return any(int(_window_counts(int(n), int(k), int(s), int(d), int(b), 0, int(o), False).min(initial=1)) < 1
               for n, k, s, d, b, o in zip(in_sp, params.kernel_shape, params.strides, params.dilations, pb, out_sp))


def max_pool(params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["MaxPool"].eval``."""
    ref = KERNELS["MaxPool"]
    nd = len(params.kernel_shape)
    if len(inputs) != 1 or params.in_format.bits > 24 or nd == 0:
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "MaxPool", "X", params.in_format)
    if x.ndim != nd + 2 or x.size == 0:
        return ref.eval(params, x, stats=stats)
    pb, pe, ex, out_sp = window_geometry(x.shape[2:], pool_window(params))
    if _has_empty_window(x.shape[2:], params, pb, out_sp):
        return ref.eval(params, x, stats=stats)  # the reference's qmin - 1 (onnxruntime: 0 or -inf)
    if use_numba() and nd == 2 and params.in_format.bits <= 16:
        return _max_pool_compiled(params, x, pb, out_sp, stats)
    pads = tuple(int(v) for v in pb) + tuple(int(e + x_) for e, x_ in zip(pe, ex))
    if any(pads[i] >= params.kernel_shape[i % nd] for i in range(2 * nd)):
        return ref.eval(params, x, stats=stats)  # onnxruntime wants pads below the kernel size
    plan: _PoolPlan = _POOL_PLANS.get(params)
    if pads in plan.failed:
        return ref.eval(params, x, stats=stats)
    try:
        sess = plan.sessions.get(pads)
        if sess is None:
            sess = single_node_session("MaxPool", {}, {
                "kernel_shape": list(params.kernel_shape), "strides": list(params.strides),
                "dilations": list(params.dilations), "pads": list(pads)}, rank=x.ndim)
            plan.sessions[pads] = sess
        (y,) = sess.run(None, {"x": x.astype(np.float32)})
    except Exception:  # noqa: BLE001 - any engine refusal: the reference gives the answer
        plan.failed.add(pads)
        return ref.eval(params, x, stats=stats)
    if tuple(y.shape[2:]) != tuple(out_sp):
        return ref.eval(params, x, stats=stats)
    return _max_pool_out(params, y.astype(np.int64), stats)


def _max_pool_out(params: PoolParams, m: np.ndarray, stats: KernelStats | None) -> np.ndarray:
    """The window maxima ``m`` (integers of the input format) in the output format: copied where
    it is the same or wider, else the reference's requantization (fused for 8/16-bit ``m``)."""
    from npuflow.sim.fast.elementwise import requant_array

    if params.rq.identity and params.out_format.bits >= params.in_format.bits:
        if stats is not None:
            stats.out_elements += int(m.size)
        return m.astype(params.out_format.dtype, copy=False)
    r = requant_array(m, params.rq, params.out_format, stats)
    return r if r is not None else finish(params.rq.apply(m.astype(np.int64)), params.out_format, stats)


def _mean_of_trailing(x: np.ndarray, first: int, keepdims: bool, mult: int, shift: int, out_fmt: Any,
                      stats: KernelStats | None) -> np.ndarray:
    """The mean over the axes ``first..`` of ``x`` as the reference computes it: the per-plane
    int64 sums in one compiled pass (exact in any order), then ``mean_requant`` of each total."""
    from npuflow.sim.kernels.pool import mean_requant

    lead = x.shape[:first]
    total = np.empty(int(np.prod(lead)), dtype=np.int64)
    _plane_sums(np.ascontiguousarray(x).reshape(total.size, -1), total)
    count = int(np.prod(x.shape[first:]))
    total = total.reshape(lead + ((1,) * (x.ndim - first) if keepdims else ()))
    return finish(mean_requant(total, count, mult, shift), out_fmt, stats)


def global_avg_pool(params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["GlobalAveragePool"].eval``: the per-plane sums in
    one compiled pass, then the reference's single rounding of each mean (:func:`_mean_of_trailing`)."""
    ref = KERNELS["GlobalAveragePool"]
    if (not use_numba() or len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or inputs[0].ndim < 3
            or inputs[0].size == 0 or params.in_format.bits > 16):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "GlobalAveragePool", "X", params.in_format)
    return _mean_of_trailing(x, 2, True, params.mult, params.shift, params.out_format, stats)


def reduce_mean(params: Any, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["ReduceMean"].eval``: where the reduced axes are the
    trailing ones (an SE block's mean over H, W), :func:`_mean_of_trailing`; other axes run on the
    reference."""
    from npuflow.sim.kernels.base import norm_axis

    ref = KERNELS["ReduceMean"]
    if (not use_numba() or len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or params.noop
            or params.axes is None or inputs[0].size == 0 or params.in_format.bits > 16):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "ReduceMean", "data", params.in_format)
    try:
        axes = sorted({norm_axis(a, x.ndim, "ReduceMean") for a in params.axes})
    except ValueError:
        return ref.eval(params, x, stats=stats)  # the reference's error
    first = x.ndim - len(axes)
    if axes != list(range(first, x.ndim)) or first == 0:
        return ref.eval(params, x, stats=stats)
    return _mean_of_trailing(x, first, params.keepdims, params.mult, params.shift, params.out_format, stats)


def _max_pool_compiled(params: PoolParams, x: np.ndarray, pb: Any, out_sp: Any, stats: KernelStats | None) -> np.ndarray:
    """2-D MaxPool of 8/16-bit integers in one compiled pass (the window maxima in the input's
    own container), then :func:`_max_pool_out`."""
    n, c, h, w = x.shape
    m = np.empty((n * c, int(out_sp[0]), int(out_sp[1])), dtype=x.dtype)
    (kh, kw), (sh, sw), (dh, dw) = params.kernel_shape, params.strides, params.dilations
    _max_pool_hw(np.ascontiguousarray(x).reshape(n * c, h, w), int(kh), int(kw), int(sh), int(sw), int(dh), int(dw),
                 int(pb[0]), int(pb[1]), m)
    return _max_pool_out(params, m.reshape(n, c, int(out_sp[0]), int(out_sp[1])), stats)


def concat(params: ConcatParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Concat"].eval``: inputs already in the output
    format are copied, the others requantized by the fused reference arithmetic."""
    from npuflow.sim.fast.elementwise import requant_array

    ref = KERNELS["Concat"]
    out = params.out_format
    dt = np.dtype(out.dtype)
    if (len(inputs) != len(params.in_formats) or not inputs
            or any(not isinstance(q, np.ndarray) or q.ndim != inputs[0].ndim or q.ndim == 0 for q in inputs)):
        return ref.eval(params, *inputs, stats=stats)
    nd = inputs[0].ndim
    a = params.axis + nd if params.axis < 0 else params.axis
    if not 0 <= a < nd:
        return ref.eval(params, *inputs, stats=stats)
    parts = []
    local = KernelStats() if stats is not None else None
    for q, f, rq in zip(inputs, params.in_formats, params.rqs):
        q = checked(q, "Concat", "input", f)
        if rq.identity and f.bits <= out.bits and q.dtype == dt:
            parts.append(q)
            continue
        r = requant_array(q, rq, out, local)
        if r is None:
            return ref.eval(params, *inputs, stats=stats)
        parts.append(r)
    try:
        res = np.concatenate(parts, axis=a)
    except ValueError:
        return ref.eval(params, *inputs, stats=stats)
    if stats is not None and local is not None:
        stats.out_saturated += local.out_saturated
        stats.out_elements += int(res.size)
    return res


_RESIZE_PLANS = PlanCache(lambda p: {})  # params -> {input shape: per-axis steps}

if HAVE_NUMBA:
    from npuflow.sim.fast._nb import numba
    from npuflow.sim.fast._requant import _mul_rne

    @njit(inline="always")
    def _mul_rne_split(v, m, s):  # pragma: no cover - jitted
        # exact RNE(v * m / 2**s), branch-free, for |v| <= 2**55, |m| < 2**31, 25 <= s <= 86:
        # v = vh * 2**24 + vl (vl in [0, 2**24)), so v * m = c * 2**24 + bl with c = vh * m +
        # floor(vl * m / 2**24) (|c| < 2**63) and bl = (vl * m) mod 2**24; the quotient is
        # floor(c / 2**t), t = s - 24, and the remainder (c mod 2**t) + bl / 2**24 is above one
        # half, or exactly one half (bl = 0) with an odd quotient, when it rounds up
        vh = v >> 24
        b = (v & 0xFFFFFF) * m
        c = vh * m + (b >> 24)
        t = s - 24
        q = c >> t
        cm = c & ((np.int64(1) << t) - 1)
        half = np.int64(1) << (t - 1)
        return q + np.int64((cm > half) | ((cm == half) & (((b & 0xFFFFFF) != 0) | ((q & 1) == 1))))

    @njit(parallel=True)
    def _linear_hw(x, iy0, iy1, wy0, wy1, ix0, ix1, wx0, wx1, m, s, split, qlo, qhi, out):  # pragma: no cover - jitted
        # out[p, oy, ox] = sat(RNE(sum_{y, x} wy * wx * x[p, y, x] * m / 2**s)): the two taps
        # of each axis, the exact int64 sum (< 2**55 for 16-bit data and 20-bit weights), one
        # exact rounding: ``split`` (25 <= s <= 86) the branch-free _mul_rne_split (about 2x faster on
        # u2netp), else the 96-bit _mul_rne (beyond 2**61 it clamps, and so saturates anyway)
        planes, oh, ow = out.shape
        sat = 0
        for t in numba.prange(planes * oh):
            pi = t // oh
            oy = t - pi * oh
            r0 = x[pi, iy0[oy]]
            r1 = x[pi, iy1[oy]]
            a0 = wy0[oy]
            a1 = wy1[oy]
            o = out[pi, oy]
            n = 0
            for ox in range(ow):
                j0 = ix0[ox]
                j1 = ix1[ox]
                v = (a0 * (wx0[ox] * np.int64(r0[j0]) + wx1[ox] * np.int64(r0[j1]))
                     + a1 * (wx0[ox] * np.int64(r1[j0]) + wx1[ox] * np.int64(r1[j1])))
                q = _mul_rne_split(v, m, s) if split else _mul_rne(v, m, s)
                cq = min(max(q, qlo), qhi)
                n += np.int64(cq != q)
                o[ox] = cq
            sat += n
        return sat

    @njit
    def _rne_mul_div(total, m, c, k):  # pragma: no cover - jitted
        """``RNE(total * m / (c * 2**k))`` exactly, for ``|total * m| < 2**62``, ``c >= 1`` and
        ``k >= 0`` (as the reference ``mul_div_round``: the division's remainder breaks the
        shift's ties)."""
        p = total * m
        neg = p < 0
        a = -p if neg else p
        q1 = a // c
        r1 = a - q1 * c
        if k == 0:
            r = q1
            if 2 * r1 > c or (2 * r1 == c and (q1 & 1) == 1):
                r += 1
        elif k >= 63:  # a / c < 2**62: the quotient is below one half
            r = np.int64(0)
        else:
            r = q1 >> k
            rem = q1 & ((np.int64(1) << k) - 1)
            half = np.int64(1) << (k - 1)
            if rem > half or (rem == half and (r1 > 0 or (r & 1) == 1)):
                r += 1
        return -r if neg else r

    @njit
    def _avg_row(x, pi, oy, kh, kw, sh, sw, dh, dw, pt, pl, cnt_h, cnt_w, m, k, qlo, qhi, o):  # pragma: no cover - jitted
        """Output row ``oy`` of plane ``pi`` (see :func:`_avg_pool_hw`); returns its saturations."""
        h = x.shape[1]
        w = x.shape[2]
        sat = 0
        for ox in range(o.shape[0]):
            total = np.int64(0)
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                if iy >= 0 and iy < h:
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if ix >= 0 and ix < w:
                            total += np.int64(x[pi, iy, ix])
            q = _rne_mul_div(total, m, cnt_h[oy] * cnt_w[ox], k)
            cq = min(max(q, qlo), qhi)
            if cq != q:
                sat += 1
            o[ox] = cq
        return sat

    @njit(parallel=True)
    def _plane_sums(x, out):  # pragma: no cover - jitted
        # out[p] = the int64 sum of plane p (exact in any order)
        for p in numba.prange(x.shape[0]):
            t = np.int64(0)
            for j in range(x.shape[1]):
                t += np.int64(x[p, j])
            out[p] = t

    @njit
    def _tap_range(n_out, k, stride, dil, pad, size, lo, hi):  # pragma: no cover - jitted
        # per output position o: the taps [lo[o], hi[o]) of its window that lie inside [0, size)
        for o in range(n_out):
            start = o * stride - pad
            a = 0
            while a < k and start + a * dil < 0:
                a += 1
            b = k
            while b > a and start + (b - 1) * dil >= size:
                b -= 1
            lo[o] = a
            hi[o] = b

    @njit(parallel=True)
    def _max_pool_hw(x, kh, kw, sh, sw, dh, dw, pt, pl, out):  # pragma: no cover - jitted
        # out[p, oy, ox] = the largest element of the window inside the input (padding never
        # wins; the caller has checked that no window is all padding). Per output row, the
        # maximum over the window's rows first (a contiguous pass that vectorizes), then over
        # each window's columns: 6x faster than one loop per window on u2netp's 2x2 pools
        planes, oh, ow = out.shape
        h = x.shape[1]
        w = x.shape[2]
        kxl = np.empty(ow, dtype=np.int64)
        kxh = np.empty(ow, dtype=np.int64)
        _tap_range(ow, kw, sw, dw, pl, w, kxl, kxh)
        for t in numba.prange(planes * oh):
            pi = t // oh
            oy = t - pi * oh
            y0 = oy * sh - pt
            row = np.empty(w, dtype=x.dtype)
            first = True
            for ky in range(kh):
                y = y0 + ky * dh
                if 0 <= y < h:
                    src = x[pi, y]
                    if first:
                        row[:] = src
                        first = False
                    else:
                        for j in range(w):
                            row[j] = max(row[j], src[j])
            for ox in range(ow):
                x0 = ox * sw - pl
                best = row[x0 + kxl[ox] * dw]
                for kx in range(kxl[ox] + 1, kxh[ox]):
                    best = max(best, row[x0 + kx * dw])
                out[pi, oy, ox] = best

    @njit(parallel=True)
    def _avg_pool_hw(x, kh, kw, sh, sw, dh, dw, pt, pl, cnt_h, cnt_w, m, k, qlo, qhi, out):  # pragma: no cover - jitted
        # out[p, oy, ox] = sat(RNE(sum of the window's inside elements * m / (count * 2**k))),
        # count = cnt_h[oy] * cnt_w[ox] (the reference's, padding rules included)
        planes, oh = out.shape[0], out.shape[1]
        sat = 0
        for t in numba.prange(planes * oh):
            pi = t // oh
            oy = t - pi * oh
            sat += _avg_row(x, pi, oy, kh, kw, sh, sw, dh, dw, pt, pl, cnt_h, cnt_w, m, k, qlo, qhi, out[pi, oy])
        return sat


def _window_counts(n: int, k: int, s: int, d: int, b: int, e: int, out: int, include_pad: bool) -> np.ndarray:
    """Per output position along one axis: how many of the window's taps the reference averages
    over (inside the input, or inside input and explicit pads with ``count_include_pad``; the
    ceil_mode overhang never counts)."""
    pos = np.arange(out, dtype=np.int64)[:, None] * s - b + np.arange(k, dtype=np.int64)[None, :] * d
    inside = (pos >= -b) & (pos < n + e) if include_pad else (pos >= 0) & (pos < n)
    return inside.sum(axis=1).astype(np.int64)


def avg_pool(params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["AveragePool"].eval`` (2-D windows, 8- and 16-bit
    inputs, numba; anything else runs the reference)."""
    ref = KERNELS["AveragePool"]
    if (not use_numba() or len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or inputs[0].ndim != 4
            or len(params.kernel_shape) != 2 or params.in_format.bits > 16 or inputs[0].size == 0):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "AveragePool", "X", params.in_format)
    k = 31 + params.shift
    (kh, kw), m = params.kernel_shape, params.mult
    # the product total * m stays below 2**62 (|x| <= 2**15, at most kh * kw taps, m < 2**31)
    if k < 0 or not 0 <= m < (1 << 31) or (1 << (params.in_format.bits - 1)) * kh * kw * max(m, 1) >= (1 << 62):
        return ref.eval(params, x, stats=stats)
    pb, pe, _, out_sp = window_geometry(x.shape[2:], pool_window(params))
    cnt = [_window_counts(int(x.shape[2 + a]), int(params.kernel_shape[a]), int(params.strides[a]),
                          int(params.dilations[a]), int(pb[a]), int(pe[a]), int(out_sp[a]), bool(params.count_include_pad))
           for a in range(2)]
    if any(int(c.min(initial=1)) < 1 for c in cnt) or any(int(o) < 1 for o in out_sp):
        return ref.eval(params, x, stats=stats)  # a window over nothing: the reference's error
    n, c = x.shape[:2]
    out_fmt = params.out_format
    out = np.empty((n * c, int(out_sp[0]), int(out_sp[1])), dtype=out_fmt.dtype)
    sat = _avg_pool_hw(np.ascontiguousarray(x).reshape(n * c, x.shape[2], x.shape[3]), kh, kw,
                       int(params.strides[0]), int(params.strides[1]), int(params.dilations[0]),
                       int(params.dilations[1]), int(pb[0]), int(pb[1]), cnt[0], cnt[1], int(m), int(k),
                       int(out_fmt.qmin), int(out_fmt.qmax), out)
    count_out(stats, sat, out.size)
    return out.reshape(n, c, int(out_sp[0]), int(out_sp[1]))


def _linear_plan(steps: list[tuple[int, Any]], shape: tuple[int, ...]) -> tuple[np.ndarray, ...] | None:
    """The reference's linear steps as the two last axes' taps and weights (an axis that does
    not change: its own index with weight 2**20, which the caller's shift compensates), or None
    when another axis changes."""
    from npuflow.sim.kernels.resize import RESIZE_WEIGHT_BITS

    nd = len(shape)
    if nd < 2 or len(steps) > 2 or any(a < nd - 2 for a, _ in steps):
        return None
    by_axis = dict(steps)
    taps: list[np.ndarray] = []
    for a in (nd - 2, nd - 1):
        if a in by_axis:
            taps.extend(np.ascontiguousarray(v, dtype=np.int64) for v in by_axis[a])
        else:
            i = np.arange(shape[a], dtype=np.int64)
            taps.extend((i, i, np.full(shape[a], 1 << RESIZE_WEIGHT_BITS, np.int64), np.zeros(shape[a], np.int64)))
    return tuple(taps)


def _resize_linear(params: ResizeParams, x: np.ndarray, taps: tuple[np.ndarray, ...],
                   stats: KernelStats | None) -> np.ndarray | None:
    from npuflow.sim.kernels.resize import RESIZE_WEIGHT_BITS

    s = 31 + params.shift + 2 * RESIZE_WEIGHT_BITS  # both axes weighted (see _linear_plan)
    if params.in_format.bits > 16 or s < 0 or not -(1 << 31) < params.mult < (1 << 31):
        return None
    fmt = params.out_format
    h, w = x.shape[-2:]
    oh, ow = taps[0].size, taps[4].size
    out = np.empty(x.shape[:-2] + (oh, ow), dtype=fmt.dtype)
    sat = _linear_hw(np.ascontiguousarray(x).reshape(-1, h, w), *taps, params.mult, s, 25 <= s <= 86, fmt.qmin,
                     fmt.qmax, out.reshape(-1, oh, ow))
    count_out(stats, sat, out.size)
    return out


def resize(params: ResizeParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Resize"].eval``: the per-axis source indices
    (exact rational coordinates) are computed once per input shape; nearest mode gathers the
    integers in their own container and requantizes once (fused, with numba); linear mode over
    the two last axes is one compiled pass (with numba)."""
    from npuflow.sim.fast.elementwise import requant_array

    ref = KERNELS["Resize"]
    if len(inputs) != 1 or params.mode not in ("nearest", "linear") or not isinstance(inputs[0], np.ndarray):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "Resize", "X", params.in_format)
    by_shape = _RESIZE_PLANS.get(params)
    steps = by_shape.get(x.shape)
    if steps is None:
        steps = by_shape.setdefault(x.shape, ref.plan(params, x.shape))
    if params.mode == "linear":
        taps = _linear_plan(steps, x.shape) if use_numba() and x.size else None
        got = _resize_linear(params, x, taps, stats) if taps is not None else None
        return got if got is not None else ref.eval(params, *inputs, stats=stats)
    v = x
    for a, idx in steps:
        v = np.take(v, idx, axis=a)
    r = requant_array(v, params.rq, params.out_format, stats)
    if r is None:
        return finish(params.rq.apply(v.astype(np.int64)), params.out_format, stats)
    return r
