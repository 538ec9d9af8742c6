"""Fast per-channel affine and product ops (numba): BatchNormalization, Add/Sub of one runtime
input and a per-channel constant, Mul, Relu/Clip -- the reference arithmetic fused into one pass.

Layout: the output ``(d0, C, *rest)`` is walked as ``R = d0 * C`` rows of ``I = prod(rest)``
values; every per-channel quantity (multiplier, shift, bias, a broadcast operand) is a vector of
size 1, ``C`` or ``R`` read at ``r % size`` (row ``r = o * C + c``), so one kernel serves scalar,
per-channel and per-(sample, channel) values. Rows are split into chunks so that a few large rows
still use every thread. Shapes that do not fit (other broadcasts, per-element constants) run on
the reference kernel, as does everything without numba.

Arithmetic (the reference's, exactly): ``RNE(q * m / 2**s)`` (``mul_div_round(q, m, 1, s)``)
from one exact int64 product (``|q * m| < 2**61`` for inputs of at most 16 bits and ``|m| <
2**31``) and a branch-free rounding shift (``_rne``, shifts 0..62, checked by the callers), the
bias added, ``RNE(t / 2**p)`` (``rounding_right_shift``) the same way; the fused activation
clamps, then the output saturates (counted).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._common import NO_CLAMP, checked, clamp_bounds, count_out
from npuflow.sim.fast._nb import HAVE_NUMBA, njit, use_numba
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels.base import KernelStats

if HAVE_NUMBA:
    from npuflow.sim.fast._nb import numba
    from npuflow.sim.fast._requant import _rne

    @njit(inline="always")
    def _chunk(t, nch, size, m, s):  # pragma: no cover - jitted
        # chunk t: row r = t // nch, its values [j0, j1), and that row's multiplier and shift
        r = t // nch
        k = t % nch
        return r, k * size // nch, (k + 1) * size // nch, m[r % m.size], s[r % s.size]

    @njit(inline="always")
    def _store(v, alo, ahi, qlo, qhi):  # pragma: no cover - jitted
        # the fused clamp, then the output saturation: (value, 1 if it saturated)
        v = min(max(v, alo), ahi)
        cv = min(max(v, qlo), qhi)
        return cv, np.int64(cv != v)

    @njit(parallel=True)
    def _affine_rows(x, m, s, b, p, nch, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        # out = sat(clamp(RNE((RNE(x * m[r] / 2**s[r]) + b[r]) / 2**p)))
        rows, size = x.shape
        hp = ((1 << p) >> 1) - 1
        sat = 0
        for t in numba.prange(rows * nch):
            r, j0, j1, mm, ss = _chunk(t, nch, size, m, s)
            bb = b[r % b.size]
            hs = ((1 << ss) >> 1) - 1
            for j in range(j0, j1):
                v = _rne(np.int64(x[r, j]) * mm, ss, hs) + bb
                cv, k = _store(_rne(v, p, hp), alo, ahi, qlo, qhi)
                sat += k
                out[r, j] = cv
        return sat

    @njit(parallel=True)
    def _mul_rows(a, b, m, s, nch, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        # out = sat(clamp(RNE(a * b * m[r] / 2**s[r]))); b is (rows or fewer, size) -- the same
        # shape as a, read at row r % b.shape[0] -- or (rows or fewer, 1): one value per row.
        # The two layouts are separate loops (the per-row one folds b * m[r] out of it: the same
        # product, |a * b * m| < 2**61): 13-30 % faster than one loop choosing per value
        rows, size = a.shape
        full = b.shape[1] > 1 or size == 1
        sat = 0
        for t in numba.prange(rows * nch):
            r, j0, j1, mm, ss = _chunk(t, nch, size, m, s)
            rb = r % b.shape[0]
            hs = ((1 << ss) >> 1) - 1
            n = 0
            if full:
                for j in range(j0, j1):
                    cv, k = _store(_rne(np.int64(a[r, j]) * np.int64(b[rb, j]) * mm, ss, hs), alo, ahi, qlo, qhi)
                    n += k
                    out[r, j] = cv
            else:
                bm = np.int64(b[rb, 0]) * mm
                for j in range(j0, j1):
                    cv, k = _store(_rne(np.int64(a[r, j]) * bm, ss, hs), alo, ahi, qlo, qhi)
                    n += k
                    out[r, j] = cv
            sat += n
        return sat


def _rows(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(R, C, I)`` of the row layout (module docstring)."""
    if len(shape) < 2:
        return 1, 1, int(np.prod(shape, dtype=np.int64))
    return shape[0] * shape[1], shape[1], int(np.prod(shape[2:], dtype=np.int64))


def _vector(v: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``v`` (broadcastable to ``shape``) as a row vector of size 1, C or R, or None when it
    varies along other axes (or does not broadcast)."""
    a = np.asarray(v)
    if a.size == 1:
        return a.reshape(1)
    if len(shape) < 2 or a.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - a.ndim) + a.shape
    if any(d != 1 for d in full[2:]) or full[1] != shape[1] or full[0] not in (1, shape[0]):
        return None
    return np.ascontiguousarray(a).reshape(-1)


def _chunks(rows: int, size: int) -> int:
    """Chunks per row: enough for every thread when rows are few, none smaller than 4096."""
    want = 4 * max(1, numba.get_num_threads())
    return max(1, min(-(-want // max(rows, 1)), size // 4096))


def _shifts_ok(s: np.ndarray) -> bool:
    return bool(s.size) and int(s.min()) >= 0 and int(s.max()) <= 62


def _affine(x: np.ndarray, m: np.ndarray, s: np.ndarray, b: np.ndarray, p: int, alo: int, ahi: int, fmt: Any,
            stats: KernelStats | None) -> np.ndarray:
    out = np.empty(x.shape, dtype=fmt.dtype)
    r, _, i = _rows(x.shape)
    sat = _affine_rows(np.ascontiguousarray(x).reshape(r, i), m.astype(np.int64), s.astype(np.int64),
                       b.astype(np.int64), p, _chunks(r, i), alo, ahi, fmt.qmin, fmt.qmax, out.reshape(r, i))
    count_out(stats, sat, out.size)
    return out


def batch_norm(params: Any, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["BatchNormalization"].eval``."""
    ref = KERNELS["BatchNormalization"]
    if not use_numba() or len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or inputs[0].ndim < 2:
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "BatchNormalization", "X", params.in_format)
    c = x.shape[1]
    m, s, b = (np.asarray(v).reshape(-1) for v in (params.mult, params.rshift, params.bias))
    if (x.size == 0 or params.in_format.bits > 16 or any(v.size not in (1, c) for v in (m, s, b))
            or not _shifts_ok(s) or not 0 <= params.frac_bits <= 62 or int(np.abs(b).max()) >= 1 << 61):
        return ref.eval(params, *inputs, stats=stats)
    return _affine(x, m, s, b, params.frac_bits, -NO_CLAMP, NO_CLAMP, params.out_format, stats)


def add_const(params: Any, x: np.ndarray, op: str, stats: KernelStats | None) -> np.ndarray | None:
    """Add/Sub of one runtime input and a constant that is per channel (or per sample and
    channel): the affine kernel (None: not applicable, the caller decides)."""
    c = params.const_term
    vec = _vector(c, x.shape) if c is not None else None
    if (vec is None or x.ndim < 2 or x.size == 0 or params.in_formats[0].bits > 16
            or np.broadcast_shapes(np.shape(c), x.shape) != x.shape or not 0 <= params.rshift[0] <= 62
            or not 0 <= params.frac_bits <= 62 or int(np.abs(vec).max()) >= 1 << 61):
        return None
    x = checked(x, op, "input", params.in_formats[0])
    alo, ahi = clamp_bounds(params.act)
    return _affine(x, np.array([params.mult[0]]), np.array([params.rshift[0]]), vec, params.frac_bits, alo, ahi,
                   params.out_format, stats)


def mul(params: Any, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Mul"].eval``: two runtime inputs of one shape or
    one of them per channel, or one runtime input and a scalar or per-channel constant."""
    ref = KERNELS["Mul"]
    k = len(params.in_formats)
    if (not use_numba() or len(inputs) != k or any(not isinstance(v, np.ndarray) for v in inputs)
            or any(f.bits > 16 for f in params.in_formats)):
        return ref.eval(params, *inputs, stats=stats)
    qs = [checked(v, "Mul", "input", f) for v, f in zip(inputs, params.in_formats)]
    if k == 2 and qs[0].size < qs[1].size:  # the product commutes: the larger operand first
        qs = qs[::-1]
    a = qs[0]
    s = np.asarray(params.shift).reshape(-1) + 31
    mv, sv = _vector(params.mult, a.shape), _vector(np.asarray(params.shift), a.shape)
    if a.size == 0 or mv is None or sv is None or not _shifts_ok(s) or (k == 2 and np.broadcast_shapes(
            qs[0].shape, qs[1].shape) != a.shape) or (k == 1 and np.broadcast_shapes(np.shape(params.mult), a.shape)
                                                      != a.shape):
        return ref.eval(params, *inputs, stats=stats)
    fmt = params.out_format
    alo, ahi = clamp_bounds(params.act)
    out = np.empty(a.shape, dtype=fmt.dtype)
    r, _, i = _rows(a.shape)
    a2 = np.ascontiguousarray(a).reshape(r, i)
    args = (mv.astype(np.int64), sv.astype(np.int64) + 31, _chunks(r, i), alo, ahi, fmt.qmin, fmt.qmax,
            out.reshape(r, i))
    if k == 1:
        b2 = np.ones((1, 1), np.int64)
    elif qs[1].shape == a.shape:
        b2 = np.ascontiguousarray(qs[1]).reshape(r, i)
    else:
        bv = _vector(qs[1], a.shape)
        if bv is None:
            return ref.eval(params, *inputs, stats=stats)
        b2 = bv.reshape(-1, 1)
    sat = _mul_rows(a2, b2, *args)
    count_out(stats, sat, out.size)
    return out


def clamp(params: Any, *inputs: np.ndarray, stats: KernelStats | None = None, _op: str = "Relu") -> np.ndarray:
    """Same contract and integers as ``KERNELS["Relu"]`` / ``KERNELS["Clip"]`` ``.eval``: the
    requantization to the output format, then the clamp, then the saturation."""
    ref = KERNELS[_op]
    if (not use_numba() or len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or inputs[0].size == 0
            or params.in_format.bits > 16):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], _op, "X", params.in_format)
    rq = params.rq
    m, s = (1, 0) if rq.identity else (int(rq.mult), 31 + int(rq.shift))
    if not 0 <= s <= 62:
        return ref.eval(params, *inputs, stats=stats)
    fmt = params.out_format
    flat = np.ascontiguousarray(x).reshape(1, -1)
    out = np.empty(x.shape, dtype=fmt.dtype)
    sat = _mul_rows(flat, np.ones((1, 1), np.int64), np.array([m], np.int64), np.array([s], np.int64),
                    _chunks(1, flat.shape[1]), int(params.lo), int(params.hi), fmt.qmin, fmt.qmax, out.reshape(1, -1))
    count_out(stats, sat, out.size)
    return out


def clip(params: Any, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    return clamp(params, *inputs, stats=stats, _op="Clip")
