"""The MAC output stage (spec 5.1-5.2) on exact accumulators given in limbs.

A fast MAC computes its accumulator as a few partial products, *limbs*, each exact in its own
dtype (float32 or float64 holding integers, or int64): ``acc = sum_l parts[l] * 2**sh[l]``. This
module adds the bias, saturates the accumulator once, requantizes per output channel with RNE,
applies the fused activation and saturates the output, exactly as
:func:`npuflow.sim.kernels._mac.mac_finish` does (which the numpy fallback calls directly).

Layout of ``parts``: ``(Lx, N, G, Lw, cog, P)``: ``Lx`` limbs of the input (weight
``2**shx[i]``), ``N`` rows (batch), ``G`` groups, ``Lw`` limbs of the weights (weight
``2**shw[j]``), ``cog`` output channels per group, ``P`` positions. Output channel
``c = g * cog + j``; the result has shape ``(N, G * cog, P)``.

The numba kernel computes the exact value ``RNE(acc * M / 2**(31 + shift))`` with the same
saturations as the reference, so it returns identical integers: in float64 for a row whose every
``|acc| * M`` is below ``2**53`` (then the product is exact and ``rint`` is the one rounding), in
int64 otherwise, with a 96-bit product when ``|acc| >= 2**32`` (int48 accumulators). The tests
check both branches against ``mac_finish`` on random, tie and edge inputs.
"""

from __future__ import annotations

import types
from dataclasses import replace
from typing import Any

import numpy as np

from npuflow.sim.fast._common import PlanCache, clamp_bounds
from npuflow.sim.fast._nb import HAVE_NUMBA, njit, use_numba
from npuflow.sim.fixed_point import qrange
from npuflow.sim.kernels._mac import MacOutput, mac_finish
from npuflow.sim.kernels.base import KernelStats

_LIM61 = (1 << 61) - 1
_M61 = -(1 << 61)


def _assemble(parts: np.ndarray, shx: np.ndarray, shw: np.ndarray) -> np.ndarray:
    """Exact int64 accumulator ``(N, G*cog, P)`` from limbs (numpy)."""
    lx, n, g, lw, cog, p = parts.shape
    acc = np.zeros((n, g, cog, p), dtype=np.int64)
    for i in range(lx):
        for j in range(lw):
            acc += parts[i, :, :, j].astype(np.int64) << int(shx[i] + shw[j])
    return acc.reshape(n, g * cog, p)


def mac_output_numpy(
    parts: np.ndarray, shx: np.ndarray, shw: np.ndarray, p: MacOutput, stats: KernelStats | None
) -> np.ndarray:
    """Reference output stage on the assembled accumulator (the fallback without numba)."""
    return mac_finish(_assemble(parts, shx, shw), 1, p, stats)


if HAVE_NUMBA:
    from npuflow.sim.fast._nb import numba

    @njit(inline="always")
    def _rne_shr(p: int, s: int) -> int:  # p >= 0, p < 2**63, s >= 0: RNE(p / 2**s)
        if s == 0:
            return p
        if s >= 64:
            return 0
        if s == 63:
            return 1 if p > (1 << 62) else 0
        q = p >> s
        rem = p & ((1 << s) - 1)
        half = 1 << (s - 1)
        if rem > half or (rem == half and (q & 1) == 1):
            q += 1
        return q

    @njit(inline="always")
    def _rne(v, s, hm1):  # pragma: no cover - jitted
        # RNE(v / 2**s) for |v| < 2**62, 0 <= s <= 62 (hm1 = 2**(s-1) - 1): a floor shift of
        # v + 2**(s-1) - 1 + bit_s(v), branch-free (it vectorizes); s = 0 is v itself
        if s == 0:
            return v
        return (v + hm1 + ((v >> s) & 1)) >> s

    @njit
    def _mul_rne(acc: int, m: int, s: int) -> int:
        """Exact ``RNE(acc * m / 2**s)`` clamped to ``[-2**61, 2**61 - 1]`` (|acc| <= 2**62, |m| < 2**31)."""
        neg = (acc < 0) != (m < 0)
        a = -acc if acc < 0 else acc
        mm = -m if m < 0 else m
        if a < (1 << 32):
            r = _rne_shr(a * mm, s)
        else:
            lo_full = (a & 0xFFFFFFFF) * mm  # < 2**63
            mid = (a >> 32) * mm + (lo_full >> 32)  # value = mid * 2**32 + lo, mid < 2**62
            lo = lo_full & 0xFFFFFFFF
            if s >= 32:
                t = s - 32
                if t >= 62:  # value < 2**94 / 2**(32 + t) <= 1: 1 only above one half (t == 62)
                    r = 0
                    if t == 62 and (mid > (1 << 61) or (mid == (1 << 61) and lo > 0)):
                        r = 1
                else:
                    q = mid >> t
                    if t == 0:
                        above = lo > (1 << 31)
                        tie = lo == (1 << 31)
                    else:
                        rem = mid & ((1 << t) - 1)
                        half = 1 << (t - 1)
                        above = rem > half or (rem == half and lo > 0)
                        tie = rem == half and lo == 0
                    if above or (tie and (q & 1) == 1):
                        q += 1
                    r = q
            else:
                if mid >= (1 << (29 + s)):  # value / 2**s >= 2**61: saturates anyway
                    r = 1 << 62
                else:
                    q = (mid << (32 - s)) | (lo >> s)
                    if s > 0:
                        rem = lo & ((1 << s) - 1)
                        half = 1 << (s - 1)
                        if rem > half or (rem == half and (q & 1) == 1):
                            q += 1
                    r = q
        if r > (1 << 62):
            r = 1 << 62
        v = -r if neg else r
        if v > _LIM61:
            v = _LIM61
        elif v < _M61:
            v = _M61
        return v

    @njit(inline="always")
    def _assemble_row(parts, b, gi, j, shx, shw, acc):  # pragma: no cover - jitted
        """``acc[k] = sum_l parts[l..., k] << sh[l]``: the exact int64 accumulator of one (sample,
        output channel) row, one limb at a time over the row (contiguous: it vectorizes)."""
        lx, _, _, lw, _, p = parts.shape
        for k in range(p):
            acc[k] = 0
        for i in range(lx):
            for jj in range(lw):
                src = parts[i, b, gi, jj, j]
                sh = shx[i] + shw[jj]
                if parts.itemsize == 4:
                    # float32 limbs (exact integers, |v| <= 2**24) or int32 sums: converted through
                    # int32, which vectorizes (float32 -> int64 has no AVX2 instruction)
                    for k in range(p):
                        acc[k] += np.int64(np.int32(src[k])) << sh
                else:
                    for k in range(p):
                        acc[k] += np.int64(src[k]) << sh

    @njit
    def _row(x, o, bc, m, s, mn, sn, has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, amax):  # pragma: no cover - jitted
        """One output channel of one sample: ``o[k]`` = the reference output of ``x[k] + bc``;
        ``amax`` = ``max |x[k]|``, or a bound on it (``inf`` when unknown: then the float64 and
        31-bit branches open only by the accumulator's width)."""
        p = x.shape[0]
        nacc = 0
        nout = 0
        if (not has_neg) and m > 0 and p >= 16:
            # float64 when this row provably needs no rounding but the final one: every
            # |x[k] + bc| * m < 2**53, so (x[k] + bc) * (m * 2**-s) is the exact real value (a
            # power-of-two scale of an exact product, never subnormal) and rint is the spec's RNE;
            # no accumulator can saturate. One vectorisable pass instead of int64 products.
            ab = amax + abs(np.float64(bc))
            if ab < np.float64((1 << 53) // m) - 2.0 and ab <= min(-np.float64(acc_lo), np.float64(acc_hi)):
                mf = np.float64(m) * 2.0 ** np.float64(-s)
                bf = np.float64(bc)
                glo = np.float64(qlo)
                ghi = np.float64(qhi)
                for k in range(p):
                    v = np.rint((np.float64(x[k]) + bf) * mf)
                    v = min(max(v, np.float64(alo)), np.float64(ahi))
                    nout += (v < glo) | (v > ghi)
                    o[k] = min(max(v, glo), ghi)
                return nacc, nout
        if (not has_neg) and 1 <= s <= 62 and ((acc_lo >= -(1 << 31) and acc_hi < (1 << 31))
                                               or amax + abs(np.float64(bc)) < 2147483648.0):
            # every |acc| < 2**31 (the accumulator's width, or this row's bound: a wider accumulator
            # then saturates nothing), so |acc * M| < 2**62: RNE(v / 2**s) =
            # (v + 2**(s-1) - 1 + bit_s(v)) >> s (a floor shift)
            hm1 = (1 << (s - 1)) - 1
            for k in range(p):
                a = np.int64(x[k]) + bc
                nacc += (a < acc_lo) | (a > acc_hi)
                a = min(max(a, acc_lo), acc_hi)
                pr = a * m
                v = (pr + hm1 + ((pr >> s) & 1)) >> s
                v = min(max(v, alo), ahi)
                nout += (v < qlo) | (v > qhi)
                o[k] = min(max(v, qlo), qhi)
        elif (not has_neg) and acc_lo >= -(1 << 47) and acc_hi < (1 << 47) and 24 <= s <= 62:
            # int48: acc = ah * 2**24 + al (0 <= al < 2**24); acc * M = T * 2**24 + r exactly with
            # T = ah * M + floor(al * M / 2**24), 0 <= r < 2**24; then RNE(/ 2**s) from T and r
            t = s - 24
            tm = (1 << t) - 1
            half = 1 << (s - 1)
            for k in range(p):
                a = np.int64(x[k]) + bc
                nacc += (a < acc_lo) | (a > acc_hi)
                a = min(max(a, acc_lo), acc_hi)
                lm = (a & 0xFFFFFF) * m
                tt = (a >> 24) * m + (lm >> 24)
                q = tt >> t
                rr = ((tt & tm) << 24) + (lm & 0xFFFFFF)
                v = q + ((rr > half) | ((rr == half) & ((q & 1) == 1)))
                v = min(max(v, alo), ahi)
                nout += (v < qlo) | (v > qhi)
                o[k] = min(max(v, qlo), qhi)
        else:
            for k in range(p):
                a = np.int64(x[k]) + bc
                if a < acc_lo:
                    a = acc_lo
                    nacc += 1
                elif a > acc_hi:
                    a = acc_hi
                    nacc += 1
                if has_neg and a < 0:
                    v = _mul_rne(a, mn, sn)
                else:
                    v = _mul_rne(a, m, s)
                v = min(max(v, alo), ahi)
                if v < qlo:
                    v = qlo
                    nout += 1
                elif v > qhi:
                    v = qhi
                    nout += 1
                o[k] = v
        return nacc, nout

    @njit(inline="always")
    def _int_abs_max(row):  # pragma: no cover - jitted
        """``max |row|`` as int64 (exact for int32 rows, ``-2**31`` included, and for rows of
        integer-valued floats below 2**63)."""
        lo = np.int64(0)
        hi = np.int64(0)
        for k in range(row.shape[0]):
            v = np.int64(row[k])
            lo = min(lo, v)
            hi = max(hi, v)
        return max(hi, -lo)

    @njit(inline="always")
    def _table_row(v, o, table, tsat, qlo, count_lut):  # pragma: no cover - jitted
        """``o[k] = table[v[k] - qlo]`` (a fused table step); returns the count of saturated table
        entries read when ``count_lut``, else 0."""
        nl = 0
        if count_lut:
            for k in range(v.shape[0]):
                i = v[k] - qlo
                o[k] = table[i]
                nl += tsat[i]
        else:
            for k in range(v.shape[0]):
                o[k] = table[v[k] - qlo]
        return nl

    @njit(parallel=True)
    def _mac_out_kernel(
        acc3, bias, mult, shift, mult_neg, shift_neg, has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, out, counts, amax
    ):  # pragma: no cover - jitted
        n, c_out, p = acc3.shape
        for row in numba.prange(n * c_out):
            b = row // c_out
            c = row - b * c_out
            na, no = _row(acc3[b, c], out[b, c], bias[c], mult[c], 31 + shift[c], mult_neg[c], 31 + shift_neg[c],
                          has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, amax[row])
            counts[row, 0] = na
            counts[row, 1] = no
            counts[row, 2] = 0

    @njit(parallel=True)
    def _mac_out_lut_kernel(
        acc3, bias, mult, shift, mult_neg, shift_neg, has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, out, counts, amax,
        table, tsat, scratch, count_lut,
    ):  # pragma: no cover - jitted
        n, c_out, p = acc3.shape
        for row in numba.prange(n * c_out):
            b = row // c_out
            c = row - b * c_out
            tmp = scratch[numba.get_thread_id()]
            na, no = _row(acc3[b, c], tmp, bias[c], mult[c], 31 + shift[c], mult_neg[c], 31 + shift_neg[c],
                          has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, amax[row])
            counts[row, 0] = na
            counts[row, 1] = no
            counts[row, 2] = _table_row(tmp, out[b, c], table, tsat, qlo, count_lut)

    @njit(parallel=True)
    def _mac_out_limbs_kernel(
        parts, shx, shw, bias, mult, shift, mult_neg, shift_neg, has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, out,
        counts, amax, scratch, table, tsat, use_lut, count_lut,
    ):  # pragma: no cover - jitted
        # _mac_out_kernel (use_lut False: table and tsat unused) or _mac_out_lut_kernel on limbs:
        # each row's accumulator assembled in a per-thread scratch row (cache-sized) instead of
        # an int64 tensor of the whole output
        lx, n, g, lw, cog, p = parts.shape
        c_out = g * cog
        for row in numba.prange(n * c_out):
            b = row // c_out
            c = row - b * c_out
            gi = c // cog
            t = numba.get_thread_id()
            acc = scratch[t, 0]
            _assemble_row(parts, b, gi, c - gi * cog, shx, shw, acc)
            am = amax[row]
            if am == np.inf and not has_neg:  # no static bound: this row's maximum (opens _row's faster branches)
                am = np.float64(_int_abs_max(acc))
            if use_lut:
                tmp = scratch[t, 1]
                na, no = _row(acc, tmp, bias[c], mult[c], 31 + shift[c], mult_neg[c], 31 + shift_neg[c], has_neg,
                              acc_lo, acc_hi, alo, ahi, qlo, qhi, am)
                counts[row, 2] = _table_row(tmp, out[b, c], table, tsat, qlo, count_lut)
            else:
                na, no = _row(acc, out[b, c], bias[c], mult[c], 31 + shift[c], mult_neg[c], 31 + shift_neg[c],
                              has_neg, acc_lo, acc_hi, alo, ahi, qlo, qhi, am)
                counts[row, 2] = 0
            counts[row, 0] = na
            counts[row, 1] = no

    def _renamed(fn, name):
        """``fn`` under another name: numba names a kernel's cache entries after the function, so
        two kernels compiled from one function (parallel and not) would overwrite each other's."""
        f = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
        f.__qualname__ = name
        return f

    def _abs_max_rows_impl(bits, mask, out):  # pragma: no cover - jitted
        # max |x| of each row of a float array viewed as same-width integers: for IEEE floats
        # without NaN the order of the sign-cleared bit patterns is the order of |x| (an integer
        # max, which vectorizes where a float max reduction does not)
        rows, p = bits.shape
        for r in numba.prange(rows):
            m = bits.dtype.type(0)
            for k in range(p):
                m = max(m, bits[r, k] & mask)
            out[r] = m

    # parallel, and on the calling thread for small tensors: below PARALLEL_MIN values a
    # parallel launch costs more than this short pass (measured on yolox_nano: 1808 calls took
    # 150 ms in parallel, 11 ms split this way)
    _abs_max_rows_par = njit(parallel=True)(_renamed(_abs_max_rows_impl, "_abs_max_rows_par"))
    _abs_max_rows_seq = njit(_renamed(_abs_max_rows_impl, "_abs_max_rows_seq"))

    def _int_abs_max_rows_impl(x, out):  # pragma: no cover - jitted
        # max |x| of each row of an int32 array
        for r in numba.prange(x.shape[0]):
            out[r] = _int_abs_max(x[r])

    _int_abs_max_rows_par = njit(parallel=True)(_renamed(_int_abs_max_rows_impl, "_int_abs_max_rows_par"))
    _int_abs_max_rows_seq = njit(_renamed(_int_abs_max_rows_impl, "_int_abs_max_rows_seq"))

PARALLEL_MIN = 1 << 20


def _row_abs_max(acc3: np.ndarray) -> np.ndarray:
    """``max |acc|`` per (sample, channel) row as float64 (``inf`` where not computed: int64 or
    non-contiguous accumulators), for the float64 branch of the output stage (int32 sums of the
    int8 engine: an exact integer max)."""
    n, c, p = acc3.shape
    if acc3.dtype == np.int32 and acc3.flags.c_contiguous and p:
        out = np.empty(n * c, dtype=np.int64)
        kern = _int_abs_max_rows_par if acc3.size >= PARALLEL_MIN else _int_abs_max_rows_seq
        kern(acc3.reshape(n * c, p), out)
        return out.astype(np.float64)
    if acc3.dtype in (np.float32, np.float64) and acc3.flags.c_contiguous and p:
        it = np.int32 if acc3.dtype == np.float32 else np.int64
        bits = np.empty(n * c, dtype=it)
        kern = _abs_max_rows_par if acc3.size >= PARALLEL_MIN else _abs_max_rows_seq
        kern(acc3.reshape(n * c, p).view(it), it(np.iinfo(it).max), bits)
        return bits.view(acc3.dtype).astype(np.float64)
    return np.full(n * c, np.inf)


class _Prepared:
    """Per-channel arrays of a MAC output stage, contiguous int64, built once per params."""

    def __init__(self, p: MacOutput, c: int) -> None:
        self.c = c
        self.mult = np.ascontiguousarray(np.broadcast_to(p.mult, (c,)), dtype=np.int64)
        self.shift = np.ascontiguousarray(np.broadcast_to(p.shift, (c,)), dtype=np.int64)
        self.has_neg = p.mult_neg is not None and p.shift_neg is not None
        self.mult_neg = (np.ascontiguousarray(np.broadcast_to(p.mult_neg, (c,)), dtype=np.int64)
                         if self.has_neg else self.mult)
        self.shift_neg = (np.ascontiguousarray(np.broadcast_to(p.shift_neg, (c,)), dtype=np.int64)
                          if self.has_neg else self.shift)
        bias = p.bias if p.bias is not None else np.zeros(c, np.int64)
        self.bias = np.ascontiguousarray(np.broadcast_to(bias, (c,)), dtype=np.int64)
        self.acc_lo, self.acc_hi = qrange(p.acc_bits)
        self.alo, self.ahi = clamp_bounds(p.act)
        # largest |acc + bias| for which a channel's float64 branch opens (see ``_row``); -1 for
        # channels that never take it; row maxima are measured only while they open some branch
        m = self.mult
        self.gate = np.where(m > 0, np.minimum((1 << 53) // np.maximum(m, 1) - 2,
                                               min(-self.acc_lo, self.acc_hi) + 1), -1).astype(np.float64)
        self.rows_open: bool | None = None  # unknown until the first measured call


_PREP = PlanCache(lambda p: {})  # params -> {channels: _Prepared}


def prepared(p: MacOutput, c: int) -> _Prepared:
    """The per-channel arrays of ``p`` for ``c`` output channels (built once)."""
    by_c = _PREP.get(p)
    pr = by_c.get(c)
    if pr is None:
        pr = by_c.setdefault(c, _Prepared(p, c))
    return pr


def static_row_bound(p: MacOutput, abs_w_sum: np.ndarray, x_bits: int) -> np.ndarray | None:
    """``sum |w[c]| * 2**(x_bits-1)`` per output channel (float64, exact: below 2**53) when it
    opens the float64 branch of the output stage (see ``_row``) for every channel that row
    maxima could open, else None (then the kernels measure each row)."""
    bound = np.asarray(abs_w_sum, dtype=np.int64) << (x_bits - 1)
    if bound.max(initial=0) >= 1 << 52 or (p.mult_neg is not None and p.shift_neg is not None):
        return None
    pr = prepared(p, len(bound))
    bias = np.abs(pr.bias).astype(np.float64)
    # a channel whose bias alone closes the branch loses nothing either (gate -1: never opens)
    if np.any(~(bound + bias < pr.gate) & (bias < pr.gate)):
        return None
    return bound.astype(np.float64)


def with_bias_offset(p: MacOutput, offset: np.ndarray) -> MacOutput:
    """``p`` with ``offset`` (int64, per output channel) added to its bias: the output stage of a
    product computed on offset operands (the low limb of :func:`npuflow.sim.fast._common.int8_limbs`
    is ``x - 128``), so that it sees the same accumulator."""
    return replace(p, bias=offset if p.bias is None else p.bias.astype(np.int64) + offset)


def add_counts(counts: np.ndarray, size: int, stats: KernelStats | None, lut_stats: KernelStats | None) -> None:
    """Add a kernel's per-row ``counts`` (accumulator saturations, output saturations, table
    saturations) over ``size`` outputs to the MAC step's ``stats`` and a fused table step's
    ``lut_stats``."""
    if stats is not None:
        tot = counts.sum(axis=0)
        stats.acc_saturated += int(tot[0])
        stats.out_saturated += int(tot[1])
        stats.out_elements += int(size)
    if lut_stats is not None:
        lut_stats.out_saturated += int(counts[:, 2].sum())
        lut_stats.out_elements += int(size)


def _writable_into(out: np.ndarray, parts: np.ndarray, p: MacOutput, lut: Any) -> bool:
    """``out`` is what :func:`mac_output` would allocate: its shape, dtype, C-contiguous, writable."""
    _, n, g, _, cog, npos = parts.shape
    dtype = lut.table.dtype if lut is not None else p.out_format.dtype
    return (out.shape == (n, g * cog, npos) and out.dtype == dtype and out.flags.c_contiguous
            and out.flags.writeable)


def mac_output(
    parts: np.ndarray, p: MacOutput, stats: KernelStats | None, *, shx: Any = (0,), shw: Any = (0,),
    lut: Any = None, lut_stats: KernelStats | None = None, row_bound: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Output stage of a MAC on limbs ``parts`` (layout in the module docstring).

    Returns ``(N, G*cog, P)`` in the output container dtype, identical to ``mac_finish`` on the
    assembled int64 accumulator (channel axis 1); adds to ``stats`` like it. ``lut``: a table
    step fused behind the MAC (its ``LutParams``, input format = this output format): the
    result is then the table's output, and ``lut_stats`` gets the table step's counts. Needs
    numba (the caller fuses only then). ``row_bound``: per output channel, a bound on
    ``|accumulator - bias|`` over all inputs in range (from constant weights: see
    :func:`static_row_bound`); it then gates the float64 branch instead of row maxima. ``out``:
    where to write the result (``(N, G*cog, P)``, the result's dtype); it is returned.
    """
    if out is not None and not _writable_into(out, parts, p, lut):  # computed aside, then copied
        out[...] = mac_output(parts, p, stats, shx=shx, shw=shw, lut=lut, lut_stats=lut_stats,
                              row_bound=row_bound).reshape(out.shape)
        return out
    shx_a = np.asarray(shx, dtype=np.int64)
    shw_a = np.asarray(shw, dtype=np.int64)
    if not use_numba():
        res = mac_output_numpy(parts, shx_a, shw_a, p, stats)
        if lut is not None:
            idx = res.astype(np.int64) - lut.in_format.qmin  # LutKernel.eval's gather
            if lut_stats is not None:
                lut_stats.out_saturated += int(np.count_nonzero(lut.saturated[idx]))
                lut_stats.out_elements += int(res.size)
            res = lut.table[idx]
        if out is None:
            return res
        out[...] = res
        return out
    lx, n, g, lw, cog, npos = parts.shape
    c = g * cog
    fmt = p.out_format
    if lut is not None:
        table, tsat = lut.table, lut.saturated.view(np.uint8)
    if out is None:
        out = np.empty((n, c, npos), dtype=table.dtype if lut is not None else fmt.dtype)
    if out.size == 0:
        return out
    pr = prepared(p, c)
    counts = np.empty((n * c, 3), dtype=np.int64)
    fixed = (pr.bias, pr.mult, pr.shift, pr.mult_neg, pr.shift_neg, pr.has_neg, pr.acc_lo, pr.acc_hi, pr.alo, pr.ahi,
             fmt.qmin, fmt.qmax, out, counts)
    if not (lx == 1 and lw == 1 and shx_a[0] == 0 and shw_a[0] == 0):
        # limbs: assembled row by row inside the kernel, which measures each row's maximum there
        # where no static bound is given
        amax = np.tile(row_bound, n) if row_bound is not None and not pr.has_neg else np.full(n * c, np.inf)
        scratch = np.empty((numba.get_num_threads() + 1, 2 if lut is not None else 1, npos), dtype=np.int64)
        if lut is None:  # typed placeholders: the kernel reads no table then
            table, tsat = np.zeros(1, dtype=out.dtype), np.zeros(1, dtype=np.uint8)
        _mac_out_limbs_kernel(parts, shx_a, shw_a, *fixed, amax, scratch, table, tsat, lut is not None,
                              lut_stats is not None)
        add_counts(counts, out.size, stats, lut_stats if lut is not None else None)
        return out
    acc3 = parts.reshape(n, c, npos)
    if pr.has_neg:
        amax = np.full(n * c, np.inf)
    elif row_bound is not None:
        amax = np.tile(row_bound, n)
    elif pr.rows_open is False:  # the first call's maxima opened no branch (int16 sums, mostly)
        amax = np.full(n * c, np.inf)
    else:
        amax = _row_abs_max(acc3)
        if pr.rows_open is None:
            pr.rows_open = bool(np.any(amax.reshape(n, c) + np.abs(pr.bias) < pr.gate))
    if lut is None:
        _mac_out_kernel(acc3, *fixed, amax)
    else:
        scratch = np.empty((numba.get_num_threads() + 1, npos), dtype=np.int64)
        _mac_out_lut_kernel(acc3, *fixed, amax, table, tsat, scratch, lut_stats is not None)
    add_counts(counts, out.size, stats, lut_stats if lut is not None else None)
    return out
