"""The compiled MAC output stage equals the reference ``mac_finish`` (random and edge accumulators)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fast import _requant
from npuflow.sim.fixed_point import QFormat, qrange
from npuflow.sim.kernels._mac import MacOutput, mac_finish
from npuflow.sim.kernels.base import Activation, KernelStats
from tests.sim_fast.helpers import FAST_PROP


def _params(rng, bits, acc_bits, c, kind):
    fmt = QFormat(bits, 3, 1.0)
    mult = rng.integers(-(2**31) + 1, 2**31, c)
    mult[rng.random(c) < 0.15] = 0
    shift = rng.integers(-31, 70, c)
    lo, hi = fmt.qmin, fmt.qmax
    if kind == "clip":
        lo, hi = sorted(int(v) for v in rng.integers(fmt.qmin, fmt.qmax + 1, 2))
    elif kind == "relu":
        lo = 0
    mn = sn = None
    if kind == "leakyrelu":
        mn = rng.integers(-(2**31) + 1, 2**31, c)
        sn = rng.integers(-31, 70, c)
    a_lo, a_hi = qrange(acc_bits)
    bias = rng.integers(a_lo // 2, a_hi // 2, c) if rng.random() < 0.7 else None
    return MacOutput(fmt, acc_bits, bias, mult, shift, mn, sn, Activation(kind, int(lo), int(hi), 0.1), 0, 0)


def _acc(rng, p, n, c, npos):
    mag = 2.0 ** rng.integers(0, 50)
    acc = np.rint(rng.normal(0, mag, (n, c, npos))).clip(-(2.0**52), 2.0**52).astype(np.int64)
    # exact ties and near-ties of the final rounding, and the accumulator limits
    s = np.clip(31 + p.shift, 0, 62).astype(np.int64)
    k = min(3, npos)
    # (shifts beyond 50 get multiples of 2**49 instead: a tie at 2**61 times 4..6 is no int64, let
    # alone an accumulator; -4 * 2**61 wrapped to -2**63, which the limb split cannot represent)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.clip(s - 1, 0, 49)), 0)
    acc[..., :k] = rng.integers(-6, 7, (n, c, k)) * half[None, :, None]
    lo, hi = qrange(p.acc_bits)
    if npos > 4:
        acc[0, :, 3] = lo - 5
        acc[0, :, 4] = hi + 5
    return acc


@pytest.mark.parametrize("numba_on", [True, False])
@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([8, 16]), acc_bits=st.sampled_from([32, 48]),
       kind=st.sampled_from(["none", "relu", "clip", "leakyrelu"]), c=st.integers(1, 5), npos=st.integers(1, 40))
def test_mac_output_equals_mac_finish(numba_on, seed, bits, acc_bits, kind, c, npos, monkeypatch):
    if numba_on and not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    if not numba_on:
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    rng = np.random.default_rng(seed)
    p = _params(rng, bits, acc_bits, c, kind)
    acc = _acc(rng, p, 2, c, npos)
    s1, s2 = KernelStats(), KernelStats()
    ref = mac_finish(acc, 1, p, s1)
    got = _requant.mac_output(acc.reshape(1, 2, 1, 1, c, npos), p, s2)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert s1 == s2
    # the same accumulator as two balanced limbs (float64), and with groups/weight limbs
    lo = ((acc + 128) & 255) - 128
    hi = (acc - lo) >> 8
    parts = np.stack([hi, lo]).reshape(2, 2, 1, 1, c, npos).astype(np.float64)
    np.testing.assert_array_equal(_requant.mac_output(parts, p, None, shx=(8, 0)), ref)
    w_parts = np.stack([hi, lo], axis=1).reshape(1, 2, 1, 2, c, npos)  # (Lx, N, G, Lw, cog, P)
    np.testing.assert_array_equal(_requant.mac_output(w_parts, p, None, shw=(8, 0)), ref)


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([8, 16]), kind=st.sampled_from(["none", "relu", "clip"]),
       c=st.integers(1, 4), npos=st.integers(16, 70), near=st.booleans())
def test_float64_row_path_equals_mac_finish(seed, bits, kind, c, npos, near):
    """Rows whose ``|acc| * M`` stays below 2**53 take the kernel's float64 branch: exact ties
    (odd accumulators with an effective multiplier of 1/2, 3/2, ...), output saturation, and
    accumulators at the largest magnitude the branch accepts (``near``) or just past it (the
    integer branch then decides)."""
    if not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(seed)
    p = _params(rng, bits, 32, c, kind)
    # multipliers with few significant bits make exact ties of the final rounding frequent
    mult = (rng.integers(1, 8, c) << 28).astype(np.int64)
    shift = rng.integers(-30, 3, c).astype(np.int64)
    p = MacOutput(p.out_format, 32, None if rng.random() < 0.3 else rng.integers(-999, 1000, c), mult, shift,
                  None, None, p.act, 0, 0)
    lim = (1 << 53) // int(mult.max())
    mag = lim - 1000 if near else int(rng.integers(1, 5000))
    acc = rng.integers(-mag, mag + 1, (2, c, npos)).astype(np.int64)
    if near:
        acc[0, :, 0] = lim + 5  # past the limit: this row runs the integer branch
        acc[1, :, 1] = -lim - 4  # likewise, past it on the negative side only
    s1, s2 = KernelStats(), KernelStats()
    ref = mac_finish(acc, 1, p, s1)
    views = [acc, acc.astype(np.float64)]
    if np.abs(acc).max() < 2**31:  # the int8 engine's int32 sums (the row maxima of ints)
        views.append(acc.astype(np.int32))
    for parts in views:
        got = _requant.mac_output(parts.reshape(1, 2, 1, 1, c, npos), p, s2)
        np.testing.assert_array_equal(got, ref)
    assert s1.out_saturated * len(views) == s2.out_saturated
    # a per-channel bound given instead of the row maxima (constant weights: static_row_bound),
    # and the maxima skipped (rows_open False) or measured: the branch never changes the integers
    bound = np.abs(acc).max(axis=(0, 2)).astype(np.float64)
    np.testing.assert_array_equal(
        _requant.mac_output(acc.reshape(1, 2, 1, 1, c, npos), p, None, row_bound=bound), ref)
    pr = _requant.prepared(p, c)
    for state in (False, True, None):
        pr.rows_open = state
        np.testing.assert_array_equal(
            _requant.mac_output(acc.astype(np.float64).reshape(1, 2, 1, 1, c, npos), p, None), ref)


def test_static_row_bound():
    """``sum |w[c]| * 2**(bits-1)``: reached by the input ``-2**(bits-1) * sign(w)``; None when
    some channel's branch could open with row maxima but not with the bound."""
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (4, 50))
    sums = np.abs(w).sum(axis=1)
    acc = (w * (-128 * np.sign(w))).sum(axis=1)
    small = MacOutput(QFormat(8, 3), 32, None, np.full(4, 1 << 30), np.zeros(4, np.int64), None, None,
                      Activation("none", -128, 127, 0.0), 0, 0)
    bound = _requant.static_row_bound(small, sums, 8)
    np.testing.assert_array_equal(bound, sums * 128.0)
    assert (np.abs(acc) == bound).all()
    # a multiplier so large that the bound closes the branch where a small row could open it
    big = MacOutput(QFormat(8, 3), 32, None, np.full(4, (1 << 31) - 1), np.zeros(4, np.int64), None, None,
                    Activation("none", -128, 127, 0.0), 0, 0)
    assert _requant.static_row_bound(big, sums * 1000, 8) is None
    # ... unless the bias alone closes it anyway
    huge_bias = MacOutput(QFormat(8, 3), 32, np.full(4, 1 << 30), np.full(4, (1 << 31) - 1),
                          np.zeros(4, np.int64), None, None, Activation("none", -128, 127, 0.0), 0, 0)
    assert _requant.static_row_bound(huge_bias, sums * 1000, 8) is not None


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64])
@pytest.mark.parametrize("rows", [3, 5000])
def test_row_abs_max_is_exact(dtype, rows):
    """The per-row maxima that gate the float64 branch: exact for int32 sums (the int8 engine),
    ``-2**31`` included, and for float accumulators; both the sequential and the parallel size."""
    if not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(rows)
    info = np.iinfo(np.int32)
    acc = rng.integers(-5000, 5000, (1, rows, 300)).astype(np.int64)
    acc[0, 0, 7] = info.min if dtype is np.int32 else -(1 << 24)  # negative side largest
    acc[0, 1, 9] = info.max if dtype is np.int32 else (1 << 24)
    acc[0, 2, :] = -3  # all negative
    a = acc.astype(dtype)
    got = _requant._row_abs_max(a)
    np.testing.assert_array_equal(got, np.abs(acc).max(axis=2).reshape(-1).astype(np.float64))
