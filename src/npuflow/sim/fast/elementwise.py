"""Fast Add/Sub and table lookups (numba): the reference arithmetic fused into one pass.

Add/Sub (spec 6.1): ``t_i = RNE(q_i * M_i / 2**s_i)`` for each runtime input (exact: ``|q_i *
M_i| < 2**47``), plus the constant term, then ``RNE(sum / 2**P)``, the fused clamp and the output
saturation; numba computes the same exact integers as ``mul_div_round``/``rounding_right_shift``.
Only same-shape runtime inputs with a scalar (or no) constant are fused here, one runtime input
with a per-channel constant in :mod:`.affine`; anything else, and everything without numba, runs
on the reference kernel.

Tables (spec 7): one gather through a copy of the table reordered so that the raw bits of the
input (viewed unsigned) index it directly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._common import PlanCache, checked, clamp_bounds, count_out
from npuflow.sim.fast._nb import HAVE_NUMBA, njit, use_numba
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels.base import KernelStats
from npuflow.sim.kernels.elementwise import AddParams
from npuflow.sim.kernels.lut import LutParams

if HAVE_NUMBA:
    from npuflow.sim.fast._nb import numba
    from npuflow.sim.fast._requant import _rne, _rne_shr

    @njit(inline="always")
    def _rne_mul(q: int, m: int, s: int) -> int:  # exact RNE(q * m / 2**s), |q * m| < 2**63
        p = q * m
        if p < 0:
            return -_rne_shr(-p, s)
        return _rne_shr(p, s)

    @njit(parallel=True)
    def _add2(a, b, ma, sa, mb, sb, c, p, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        sat = 0
        for i in numba.prange(a.size):
            acc = _rne_mul(np.int64(a[i]), ma, sa) + _rne_mul(np.int64(b[i]), mb, sb) + c
            v = -_rne_shr(-acc, p) if acc < 0 else _rne_shr(acc, p)
            v = min(max(v, alo), ahi)
            cv = min(max(v, qlo), qhi)
            sat += np.int64(cv != v)
            out[i] = cv
        return sat

    @njit(parallel=True)
    def _add2_fast(a, b, ma, sa, mb, sb, c, p, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        # every shift in [1, 62] and |terms| < 2**62: RNE(v / 2**s) = (v + 2**(s-1) - 1 + bit_s(v)) >> s
        ha = (1 << (sa - 1)) - 1
        hb = (1 << (sb - 1)) - 1
        hp = (1 << (p - 1)) - 1
        sat = 0
        for i in numba.prange(a.size):
            acc = _rne(np.int64(a[i]) * ma, sa, ha) + _rne(np.int64(b[i]) * mb, sb, hb) + c
            v = _rne(acc, p, hp)
            v = min(max(v, alo), ahi)
            cv = min(max(v, qlo), qhi)
            sat += np.int64(cv != v)
            out[i] = cv
        return sat

    @njit(parallel=True)
    def _add1_fast(a, ma, sa, c, p, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        # _add1 branch-free (it vectorizes; 15x faster on 590k int8 values): as _add2_fast, every
        # shift in [1, 62] and |terms| < 2**62
        ha = (1 << (sa - 1)) - 1
        hp = (1 << (p - 1)) - 1
        sat = 0
        for i in numba.prange(a.size):
            v = _rne(_rne(np.int64(a[i]) * ma, sa, ha) + c, p, hp)
            v = min(max(v, alo), ahi)
            cv = min(max(v, qlo), qhi)
            sat += np.int64(cv != v)
            out[i] = cv
        return sat

    @njit(parallel=True)
    def _add1(a, ma, sa, c, p, alo, ahi, qlo, qhi, out):  # pragma: no cover - jitted
        sat = 0
        for i in numba.prange(a.size):
            acc = _rne_mul(np.int64(a[i]), ma, sa) + c
            v = -_rne_shr(-acc, p) if acc < 0 else _rne_shr(acc, p)
            v = min(max(v, alo), ahi)
            cv = min(max(v, qlo), qhi)
            sat += np.int64(cv != v)
            out[i] = cv
        return sat


if HAVE_NUMBA:

    @njit(parallel=True)
    def _gather(table, u, out):  # pragma: no cover - jitted
        for i in numba.prange(u.size):
            out[i] = table[u[i]]

    @njit(parallel=True)
    def _gather_count(table, sat, u, out):  # pragma: no cover - jitted
        n = 0
        for i in numba.prange(u.size):
            out[i] = table[u[i]]
            n += np.int64(sat[u[i]])
        return n

    @njit(parallel=True)
    def _requant_copy(q, m, s, qlo, qhi, out):  # pragma: no cover - jitted
        # Requant.apply + finish: saturate(RNE(q * m / 2**s)) exactly (|q * m| < 2**63)
        n = 0
        for i in numba.prange(q.size):
            v = _rne_mul(np.int64(q[i]), m, s)
            cv = min(max(v, qlo), qhi)
            n += np.int64(cv != v)
            out[i] = cv
        return n


if HAVE_NUMBA:

    @njit(parallel=True)
    def _requant_copy_f(q, mf, qlo, qhi, out):  # pragma: no cover - jitted
        # the same value for 8/16-bit q: |q * m| < 2**46, so q * (m * 2**-s) is exact in float64
        # (or below 2**-1022 and then rounds to 0 like the integer path) and rint is RNE
        n = 0
        for i in numba.prange(q.size):
            v = np.rint(np.float64(q[i]) * mf)
            cv = min(max(v, qlo), qhi)
            n += np.int64(cv != v)
            out[i] = cv
        return n


def requant_array(q: np.ndarray, rq: Any, out_fmt: Any, stats: KernelStats | None) -> np.ndarray | None:
    """``finish(rq.apply(q), out_fmt, stats)`` of the reference, fused (None: not applicable)."""
    if not use_numba() or q.dtype.kind != "i" or q.dtype.itemsize > 4:
        return None
    out = np.empty(q.shape, dtype=out_fmt.dtype)
    qc = np.ascontiguousarray(q)
    if rq.identity:
        m, sh = 1, 0
    else:
        m, sh = int(rq.mult), 31 + int(rq.shift)
    if q.dtype.itemsize <= 2 and 0 <= sh <= 900:
        mf = float(m) * 2.0 ** -sh  # exact: a 31-bit integer times a power of two
        n = _requant_copy_f(qc.reshape(-1), mf, float(out_fmt.qmin), float(out_fmt.qmax), out.reshape(-1))
    else:
        n = _requant_copy(qc.reshape(-1), m, sh, out_fmt.qmin, out_fmt.qmax, out.reshape(-1))
    count_out(stats, n, out.size)
    return out


if HAVE_NUMBA:

    @njit(parallel=True)
    def _quantize_f(x, f, qlo, qhi, out):  # pragma: no cover - jitted
        # fixed_point.quantize fused: RNE(float64(x) * f) saturated; NaN counted (the caller
        # then runs the reference, which raises)
        nan = 0
        for i in numba.prange(x.size):
            v = np.float64(x[i]) * f
            if v != v:
                nan += 1
                out[i] = 0
            else:
                out[i] = min(max(np.rint(v), qlo), qhi)
        return nan


def quantize_array(x: Any, fmt: Any) -> np.ndarray:
    """``fmt.quantize(x)`` (the float boundary, spec 2): the same integers, in one fused pass for
    float32/float64 arrays in a per-tensor format (anything else, or NaN: the reference)."""
    if (not use_numba() or fmt.axis is not None or not isinstance(x, np.ndarray) or x.dtype.kind != "f"
            or x.dtype.itemsize < 4 or x.size == 0 or fmt.bits > 32):
        return fmt.quantize(x)
    f = float(np.asarray(fmt.factor(), dtype=np.float64).reshape(-1)[0])
    out = np.empty(x.shape, dtype=fmt.dtype)
    if _quantize_f(np.ascontiguousarray(x).reshape(-1), f, float(fmt.qmin), float(fmt.qmax), out.reshape(-1)):
        return fmt.quantize(x)
    return out


def add(params: AddParams, *inputs: np.ndarray, stats: KernelStats | None = None, _op: str = "Add") -> np.ndarray:
    """Same contract and integers as ``KERNELS["Add"]`` / ``KERNELS["Sub"]`` ``.eval``."""
    ref = KERNELS[_op]
    k = len(inputs)
    c = params.const_term
    if use_numba() and k == 1 == len(params.in_formats) and c is not None and np.ndim(c) != 0 and isinstance(
            inputs[0], np.ndarray):
        from npuflow.sim.fast.affine import add_const

        got = add_const(params, inputs[0], _op, stats)  # a per-channel constant (e.g. a folded bias)
        return got if got is not None else ref.eval(params, *inputs, stats=stats)
    if (not use_numba() or k != len(params.in_formats) or k not in (1, 2)
            or (c is not None and np.ndim(c) != 0) or any(not isinstance(x, np.ndarray) for x in inputs)
            or (k == 2 and inputs[0].shape != inputs[1].shape) or any(f.bits > 24 for f in params.in_formats)):
        return ref.eval(params, *inputs, stats=stats)
    qs = [np.ascontiguousarray(checked(x, _op, "input", f)) for x, f in zip(inputs, params.in_formats)]
    fmt = params.out_format
    out = np.empty(qs[0].shape, dtype=fmt.dtype)
    if out.size == 0:
        return ref.eval(params, *inputs, stats=stats)
    act = params.act
    alo, ahi = clamp_bounds(act)
    cc = int(c) if c is not None else 0
    if k == 2:
        sa, sb, pp = params.rshift[0], params.rshift[1], params.frac_bits
        fast = 1 <= min(sa, sb, pp) and max(sa, sb, pp) <= 62 and abs(cc) < (1 << 60)
        kern = _add2_fast if fast else _add2
        sat = kern(qs[0].reshape(-1), qs[1].reshape(-1), params.mult[0], sa, params.mult[1], sb, cc, pp,
                   alo, ahi, fmt.qmin, fmt.qmax, out.reshape(-1))
    else:
        sa, pp = params.rshift[0], params.frac_bits
        fast = 1 <= min(sa, pp) and max(sa, pp) <= 62 and abs(cc) < (1 << 60)
        sat = (_add1_fast if fast else _add1)(qs[0].reshape(-1), params.mult[0], sa, cc, pp, alo, ahi,
                                               fmt.qmin, fmt.qmax, out.reshape(-1))
    count_out(stats, sat, out.size)
    return out


def sub(params: AddParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    return add(params, *inputs, stats=stats, _op="Sub")


class _LutPlan:
    def __init__(self, params: LutParams) -> None:
        bits = params.in_format.bits
        self.bits = bits
        self.table = self.sat = None
        if bits in (8, 16):
            half = 1 << (bits - 1)
            u = np.arange(1 << bits, dtype=np.int64)
            order = u ^ half  # raw unsigned bits -> q - qmin
            self.table = np.ascontiguousarray(params.table[order])
            self.sat = np.ascontiguousarray(params.saturated[order])
            self.view = np.uint8 if bits == 8 else np.uint16


_LUT_PLANS = PlanCache(_LutPlan)


def lut(params: LutParams, *inputs: np.ndarray, stats: KernelStats | None = None, _op: str = "") -> Any:
    plan: _LutPlan = _LUT_PLANS.get(params)
    x = inputs[0] if len(inputs) == 1 else None
    if (plan.table is None or x is None or not isinstance(x, np.ndarray)
            or x.dtype != np.dtype(params.in_format.dtype)):
        return KERNELS[_op].eval(params, *inputs, stats=stats)
    u = x.view(plan.view)
    if not use_numba() or not x.flags.c_contiguous:
        out = plan.table[u]
        if stats is not None:
            stats.out_saturated += int(np.count_nonzero(plan.sat[u]))
            stats.out_elements += int(x.size)
        return out
    out = np.empty(x.shape, dtype=plan.table.dtype)
    if stats is None:
        _gather(plan.table, u.reshape(-1), out.reshape(-1))
    else:
        stats.out_saturated += int(_gather_count(plan.table, plan.sat, u.reshape(-1), out.reshape(-1)))
        stats.out_elements += int(x.size)
    return out


def lut_for(op: str) -> Any:
    def fn(params: LutParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> Any:
        return lut(params, *inputs, stats=stats, _op=op)

    fn.__name__ = f"lut_{op}"
    return fn
