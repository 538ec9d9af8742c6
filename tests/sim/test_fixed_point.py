"""Primitives of docs/fixed-point.md: hand-worked vectors and exactness properties."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import (
    INTERMEDIATE_LIMIT,
    NUMERICS_VERSION,
    QFormat,
    accumulator_bits,
    choose_radix_scale,
    container_dtype,
    count_saturated,
    dequantize,
    mul_div_round,
    multiplier_shift,
    multiplier_shift_array,
    qrange,
    quantize,
    requantize,
    rounding_divide,
    rounding_right_shift,
    saturate,
)
from tests.sim.helpers import PROP, PROP_MANY

I64 = 2**63 - 1


def rne(fr: Fraction) -> int:
    return round(fr)  # Fraction.__round__ is half to even


def test_version_matches_doc():
    assert NUMERICS_VERSION == "1.2"
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "fixed-point.md").read_text()
    assert f"Version {NUMERICS_VERSION}" in doc
    assert f"| {NUMERICS_VERSION} |" in doc  # the version history names it


# ---------------------------------------------------------------------------------------------- ranges
def test_qrange_and_containers():
    assert qrange(8) == (-128, 127)
    assert qrange(4) == (-8, 7)
    assert qrange(16) == (-32768, 32767)
    assert qrange(32) == (-(2**31), 2**31 - 1)
    assert container_dtype(4) == np.int8 and container_dtype(16) == np.int16 and container_dtype(48) == np.int64
    with pytest.raises(ValueError):
        qrange(1)


def test_saturate_hand_vectors():
    x = np.array([-200, -129, -128, 0, 127, 128, 300])
    assert saturate(x, 8).tolist() == [-128, -128, -128, 0, 127, 127, 127]
    assert saturate(x, 4).tolist() == [-8, -8, -8, 0, 7, 7, 7]
    assert count_saturated(x, 8) == 4
    with pytest.raises(TypeError):
        saturate(np.array([1.5]), 8)


def test_accumulator_bits():
    assert accumulator_bits(8, 8) == 32
    assert accumulator_bits(8, 4) == 32
    assert accumulator_bits(16, 8) == 48
    assert accumulator_bits(16, 16) == 48


# ---------------------------------------------------------------------------------------------- rounding
def test_rounding_right_shift_ties_to_even():
    x = np.array([5, 7, -5, -7, 6, -6, 1, -1, 3, -3])
    assert rounding_right_shift(x, 1).tolist() == [2, 4, -2, -4, 3, -3, 0, 0, 2, -2]
    # x.5 after a shift by 2: 10/4 = 2.5 -> 2, 14/4 = 3.5 -> 4, 9/4 -> 2, 11/4 -> 3
    x = np.array([10, 14, -10, -14, 9, 11, -11])
    assert rounding_right_shift(x, 2).tolist() == [2, 4, -2, -4, 2, 3, -3]


def test_rounding_right_shift_zero_negative_and_huge_shifts():
    assert rounding_right_shift(np.array([-3, 0, 3]), 0).tolist() == [-3, 0, 3]
    assert rounding_right_shift(np.array([3, -3]), -2).tolist() == [12, -12]
    with pytest.raises(OverflowError):
        rounding_right_shift(np.array([2**62]), -2)
    assert rounding_right_shift(np.array([2**62]), 63).tolist() == [0]  # exactly 1/2: tie to even
    assert rounding_right_shift(np.array([2**62 + 1, -(2**62 + 1)]), 63).tolist() == [1, -1]
    assert rounding_right_shift(np.array([I64, -I64]), 64).tolist() == [0, 0]
    assert rounding_right_shift(np.array([1, 2, 3]), np.array([1, 1, 1])).tolist() == [0, 1, 2]


def test_rounding_divide_hand_vectors():
    assert rounding_divide(np.array([5, 7, -5, -7, 1, 2]), np.array([2, 2, 2, 2, 3, 3])).tolist() == [
        2,
        4,
        -2,
        -4,
        0,
        1,
    ]
    # with an extra power of two: 3/2 -> 2, 5/2 -> 2, 9/(3*2) = 1.5 -> 2, 25/(5*2) = 2.5 -> 2, 7/6 -> 1
    assert rounding_divide(np.array([3, 5, 9, 25, 7]), np.array([1, 1, 3, 5, 3]), 1).tolist() == [2, 2, 2, 2, 1]
    with pytest.raises(ValueError):
        rounding_divide(1, 0)


def test_mul_div_round_hand_vectors():
    assert mul_div_round(np.array([5, 7, -5, -7]), 1, 2, 0).tolist() == [2, 4, -2, -4]
    assert mul_div_round(3, -1, 1, 1).tolist() == -2  # -1.5 -> -2
    big = 10**18
    assert int(mul_div_round(big, 2**31 - 1, 3, 40)) == rne(Fraction(big * (2**31 - 1), 3 * 2**40))
    assert int(mul_div_round(I64, 2**31 - 1, 1, 0)) == INTERMEDIATE_LIMIT  # saturates
    assert int(mul_div_round(I64, 2**31 - 1, 1, 200)) == 0


@PROP_MANY
@given(
    x=st.integers(-I64, I64),
    m=st.integers(-(2**31) + 1, 2**31 - 1),
    den=st.integers(1, 2**31 - 1),
    s=st.integers(0, 100),
)
def test_mul_div_round_is_exact(x, m, den, s):
    exact = rne(Fraction(x * m, den * 2**s))
    exact = max(-INTERMEDIATE_LIMIT, min(INTERMEDIATE_LIMIT, exact))
    assert int(mul_div_round(np.array([x]), m, den, s)[0]) == exact


def test_mul_div_round_product_in_int64_hand_vectors():
    # |x*m| < 2**62 with den > 1: one exact division (rounding_divide) instead of the limbs
    # 9/(3*2) = 1.5 -> 2, 15/(3*2) = 2.5 -> 2, -15/6 -> -2, 7/6 -> 1, 20/(3*2**2) = 1.67 -> 2
    assert mul_div_round(np.array([9, 15, -15, 7]), 1, 3, 1).tolist() == [2, 2, -2, 1]
    assert mul_div_round(np.array([5]), 4, np.array([3]), 2).tolist() == [2]
    # an average pool's mean: sum 2*(2**30) over 4 values, RNE(2**31 * (2**30) / (4 * 2**31)) = 2**28
    assert int(mul_div_round(2**31, 2**30, 4, 31)) == 2**28
    # either side of the int64 product bound, the same exact integers as the Fraction
    for x, m, den, s in ((2**31 - 1, 2**31 - 1, 3, 5), (2**32, 2**30, 3, 5), (-(2**32) + 1, 2**30 - 1, 7, 0),
                         (2**31, 2**31 - 1, 2**31 - 1, 62), (2**31, 2**31 - 1, 2**31 - 1, 63)):
        assert int(mul_div_round(np.array([x]), m, den, s)[0]) == rne(Fraction(x * m, den * 2**s)), (x, m, den, s)


@PROP_MANY
@given(
    x=st.integers(-(2**33), 2**33), m=st.integers(-(2**29), 2**29), den=st.integers(1, 2**31 - 1), s=st.integers(0, 70)
)
def test_mul_div_round_is_exact_when_the_product_fits(x, m, den, s):
    # the int64-product path (|x*m| < 2**62) and, past s = 62, the limbs: both exact
    assert int(mul_div_round(np.array([x]), m, den, s)[0]) == rne(Fraction(x * m, den * 2**s))
    # a power-of-two divisor there: a rounding shift by s + log2(den)
    p2 = 1 << (den.bit_length() - 1)
    assert int(mul_div_round(np.array([x]), m, p2, s)[0]) == rne(Fraction(x * m, p2 * 2**s))


@PROP_MANY
@given(
    x=st.integers(-(2**40), 2**40), m=st.integers(-(2**31) + 1, 2**31 - 1), den=st.integers(1, 7), s=st.integers(0, 40)
)
def test_mul_div_round_is_exact_small(x, m, den, s):
    # small values hit the ties much more often than the full-range test
    assert int(mul_div_round(np.array([x]), m, den, s)[0]) == max(
        -INTERMEDIATE_LIMIT, min(INTERMEDIATE_LIMIT, rne(Fraction(x * m, den * 2**s)))
    )


@PROP_MANY
@given(x=st.integers(-I64, I64), n=st.integers(0, 70))
def test_rounding_right_shift_is_exact(x, n):
    assert int(rounding_right_shift(np.array([x]), n)[0]) == rne(Fraction(x, 2**n))


@PROP_MANY
@given(x=st.integers(-(2**20), 2**20), n=st.integers(0, 8))
def test_rounding_right_shift_small(x, n):
    assert int(rounding_right_shift(np.array([x]), n)[0]) == rne(Fraction(x, 2**n))


@PROP_MANY
@given(x=st.integers(-I64, I64), den=st.integers(1, 2**62 - 1), k=st.integers(0, 62))
def test_rounding_divide_is_exact(x, den, k):
    assert int(rounding_divide(np.array([x]), den, k)[0]) == rne(Fraction(x, den * 2**k))


@PROP_MANY
@given(x=st.integers(-300, 300), den=st.integers(1, 9), k=st.integers(0, 3))
def test_rounding_divide_small(x, den, k):
    assert int(rounding_divide(np.array([x]), den, k)[0]) == rne(Fraction(x, den * 2**k))


# ---------------------------------------------------------------------------------------------- multipliers
@pytest.mark.parametrize(
    "real, exp2, expected",
    [
        (1.0, 0, (2**30, -1)),  # exactly a power of two
        (0.5, 0, (2**30, 0)),
        (0.75, 0, (3 * 2**29, 0)),
        (3.0, 0, (3 * 2**29, -2)),  # > 1: negative shift
        (2.0**-40, 0, (2**30, 39)),  # tiny
        (1.0 - 2.0**-40, 0, (2**30, -1)),  # mantissa rounds up to 2**31: renormalized
        (-0.75, 0, (-(3 * 2**29), 0)),  # sign carried by M
        (0.0, 0, (0, 0)),
        (2.0**30, 0, (2**30, -31)),  # largest exponent allowed
        (1.5, -10, (3 * 2**29, 10 - 1)),  # power of two passed exactly
    ],
)
def test_multiplier_shift_hand_vectors(real, exp2, expected):
    assert multiplier_shift(real, exp2=exp2) == expected


def test_multiplier_shift_rejects():
    with pytest.raises(ValueError):
        multiplier_shift(2.0**31)
    with pytest.raises(ValueError):
        multiplier_shift(float("inf"))
    with pytest.raises(ValueError):
        multiplier_shift(float("nan"))


@PROP
@given(real=st.floats(2.0**-60, 2.0**30, allow_nan=False), neg=st.booleans())
def test_multiplier_shift_precision(real, neg):
    r = -real if neg else real
    m, s = multiplier_shift(r)
    assert 2**30 <= abs(m) < 2**31 and (m < 0) == neg
    approx = Fraction(m, 2 ** (31 + s)) if 31 + s >= 0 else Fraction(m * 2 ** (-(31 + s)))
    assert abs(approx - Fraction(r)) <= abs(Fraction(r)) * Fraction(1, 2**31)
    ma, sa = multiplier_shift_array(np.array([r, r]))
    assert ma.tolist() == [m, m] and sa.tolist() == [s, s]


# ---------------------------------------------------------------------------------------------- requantize
def test_requantize_hand_vectors():
    m, s = multiplier_shift(0.5)
    acc = np.array([100, 3, 5, -5, -3, 1, -1])
    assert requantize(acc, m, s, 8).tolist() == [50, 2, 2, -2, -2, 0, 0]  # 1.5->2, 2.5->2, 0.5->0
    m1, s1 = multiplier_shift(1.0)
    assert requantize(np.array([1000, -1000, 127, -128]), m1, s1, 8).tolist() == [127, -128, 127, -128]
    # int48 accumulator: (2**47 - 1) * 2**-40 = 127.99.. -> 128 -> saturates to 127 in int8, 128 in int16
    m2, s2 = multiplier_shift(2.0**-40)
    acc48 = np.array([2**47 - 1, -(2**47)])
    assert requantize(acc48, m2, s2, 8).tolist() == [127, -128]
    assert requantize(acc48, m2, s2, 16).tolist() == [128, -128]
    # per-channel broadcast
    ms, ss = multiplier_shift_array(np.array([0.5, 0.25]))
    assert requantize(np.array([[6, 6], [10, 10]]), ms[None, :], ss[None, :], 8).tolist() == [[3, 2], [5, 2]]


@PROP_MANY
@given(acc=st.integers(-(2**47), 2**47), real=st.floats(2.0**-45, 2.0**8), bits=st.sampled_from([4, 8, 16, 32]))
def test_requantize_is_exact(acc, real, bits):
    m, s = multiplier_shift(real)
    lo, hi = qrange(bits)
    exact = rne(Fraction(acc * m, 1) / Fraction(2) ** (31 + s))
    assert int(requantize(np.array([acc]), m, s, bits)[0]) == min(max(exact, lo), hi)


# ---------------------------------------------------------------------------------------------- float boundary
def test_quantize_hand_vectors():
    x = np.array([0.5, 1.5, 2.5, -2.5, -0.5, 3.49])
    assert quantize(x, 0, 1.0, 8).tolist() == [0, 2, 2, -2, 0, 3]  # half to even, like np.round
    assert quantize(np.array([1.0, -1.0]), 7, 1.0, 8).tolist() == [127, -128]  # +1.0 saturates by one LSB
    # negative radix: LSB = 8
    assert quantize(np.array([1000.0, 1020.0, 12.0, 20.0, -2000.0]), -3, 1.0, 8).tolist() == [125, 127, 2, 2, -128]
    assert quantize(np.array([np.inf, -np.inf]), 0, 1.0, 8).tolist() == [127, -128]
    with pytest.raises(ValueError):
        quantize(np.array([np.nan]), 0, 1.0, 8)
    assert quantize(np.array([1.0]), 2, 1.5, 8).dtype == np.int8
    assert quantize(np.array([7.4, -9.0]), 0, 1.0, 4).tolist() == [7, -8]


def test_dequantize_hand_vectors():
    assert dequantize(np.array([125, -128]), -3, 1.0).tolist() == [1000.0, -1024.0]
    # the PLUS tutorial's int8 output: fixed 8, scale 1.4717674, radix 2 -> 1.35891
    assert math.isclose(float(dequantize(np.array([8]), 2, 1.4717674)[0]), 1.35891, rel_tol=1e-5)
    with pytest.raises(TypeError):
        dequantize(np.array([1.0]), 0, 1.0)


@PROP
@given(x=st.floats(-1e6, 1e6), radix=st.integers(-10, 20), scale=st.floats(0.5, 2.0), bits=st.sampled_from([4, 8, 16]))
def test_quantize_matches_np_round(x, radix, scale, bits):
    lo, hi = qrange(bits)
    expect = np.clip(np.round(x * scale * 2.0**radix), lo, hi)
    assert int(quantize(np.array([x]), radix, scale, bits)[0]) == int(expect)


@PROP
@given(q=st.integers(-32768, 32767), radix=st.integers(-10, 20), scale=st.floats(0.99, 1.99))
def test_quantize_dequantize_roundtrip(q, radix, scale):
    assert int(quantize(dequantize(np.array([q]), radix, scale), radix, scale, 16)[0]) == q


# ---------------------------------------------------------------------------------------------- radix / scale rule
def test_choose_radix_scale_hand_vectors():
    r, s = choose_radix_scale(21.6, 8)
    assert r == 2 and math.isclose(s, 127 / (21.6 * 4))  # the PLUS example: radix 2, scale ~1.47
    assert choose_radix_scale(0.5, 8, power_of_two=True) == (8, 1.0)  # RGB/256 - 0.5 template
    assert choose_radix_scale(1.0, 8, power_of_two=True) == (7, 1.0)  # RGB/128 - 1
    assert choose_radix_scale(1.0, 8) == (7, 127 / 128)  # exact power of two
    r, s = choose_radix_scale(1000.0, 8)
    assert r == -3 and math.isclose(s, 127 / 125)  # negative radix
    assert choose_radix_scale(0.0, 8) == (7, 1.0)
    assert choose_radix_scale(1e-310, 8) == (127, 1.0)  # denormal: radix clamped
    assert choose_radix_scale(5e-324, 16) == (127, 1.0)
    assert choose_radix_scale(1e300, 8) == (-128, 1.0)
    r, s = choose_radix_scale(3.0, 16)
    assert r == 13 and math.isclose(s, 32767 / (3.0 * 2**13))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            choose_radix_scale(bad, 8)


@PROP
@given(a=st.floats(1e-30, 1e30), bits=st.sampled_from([4, 8, 16]))
def test_choose_radix_scale_maps_abs_max_to_qmax(a, bits):
    r, s = choose_radix_scale(a, bits)
    qmax = qrange(bits)[1]
    assert qmax / 2 ** (bits - 1) <= s < qmax / 2 ** (bits - 2) * (1 + 1e-12)
    assert int(quantize(np.array([a, -a]), r, s, bits)[0]) == qmax
    rp, sp = choose_radix_scale(a, bits, power_of_two=True)
    assert rp == r and sp == 1.0
    assert a * 2.0**rp <= 2 ** (bits - 1)


# ---------------------------------------------------------------------------------------------- QFormat
def test_qformat_per_tensor_and_per_channel():
    f = QFormat(8, 2, 1.5)
    assert (f.qmin, f.qmax, f.dtype, f.per_channel) == (-128, 127, np.int8, False)
    assert f.quantize(np.array([1.0, -100.0])).tolist() == [6, -128]
    pc = QFormat(8, (0, -1), (1.0, 1.0), axis=0)
    w = np.array([[1.5, 2.5], [3.0, 5.0]])
    assert pc.quantize(w).tolist() == [[2, 2], [2, 2]]  # 1.5->2, 2.5->2 ; 3/2 = 1.5->2, 5/2 = 2.5->2
    assert pc.dequantize(pc.quantize(w)).tolist() == [[2.0, 2.0], [4.0, 4.0]]
    pc1 = QFormat(8, (0, -1), (1.0, 1.0), axis=-1)
    assert pc1.quantize(w).tolist() == [[2, 1], [3, 2]]


def test_qformat_validation_and_json_roundtrip():
    for f in (QFormat(8, -3, 1.2345678901234567), QFormat(4, (1, 2, 3), (1.0, 1.5, 1.9999), 0), QFormat(16, 15, 1.0)):
        d = json.loads(json.dumps(f.to_dict()))
        assert QFormat.from_dict(d) == f
    with pytest.raises(ValueError):
        QFormat(8, (1, 2), (1.0, 1.0), None)
    with pytest.raises(ValueError):
        QFormat(8, 1, 0.0)
    with pytest.raises(ValueError):
        QFormat(1, 1, 1.0)
    with pytest.raises(ValueError):
        QFormat(8, (1, 2), (1.0,), 0)
    assert QFormat(8, [1, 2], 1.0, 0).scale == (1.0, 1.0)


def test_mul_div_round_result_has_the_broadcast_shape():
    # a divisor array wider than x: every path returns the shape of all arguments broadcast
    for x, den in ((np.array([6, -6, 10]), np.full((2, 1), 4)), (np.array([6, -6, 10]), np.full((2, 1), 3)),
                   (np.array([2**40, 3, -5]), np.full((2, 1), 4))):
        got = mul_div_round(x, 3, den, 1)
        assert got.shape == (2, 3)
        assert got.tolist() == [[rne(Fraction(int(v) * 3, int(den.flat[0]) * 2)) for v in x]] * 2


def test_mul_div_round_broadcast_counts_like_a_pool():
    # window sums [2, 3, 4, 4] against per-position counts [4, 4] (edge windows hold fewer values)
    rng = np.random.default_rng(7)
    total = rng.integers(-128 * 9, 128 * 9, size=(2, 3, 4, 4))
    count = rng.integers(1, 10, size=(4, 4))
    for m, s in ((1518500250, 32), (2**30, 31), (1, 0), (2**31 - 1, 62)):
        # per-position counts, then one power-of-two count everywhere (a 2x2 pool: a rounding shift)
        for cnt in (count, np.full((4, 4), 4), np.full((4, 4), 1), 8):
            got = mul_div_round(total, m, cnt, s)
            want = [rne(Fraction(int(t) * m, int(c) * 2**s)) for t, c in zip(total.ravel(), np.broadcast_to(cnt, total.shape).ravel())]
            assert got.ravel().tolist() == want
