"""Fixed-point primitives shared by every integer kernel (numerics spec ``docs/fixed-point.md``).

Format: ``real = q / (scale * 2**radix)``; ``q = saturate(round(real * scale * 2**radix))``.
The product ``scale * 2**radix`` is called the *factor* of a format: one LSB is ``1 / factor``.

One rounding rule everywhere: **round half to even** (RNE), the rule of ``np.round``/``np.rint``
that the original toolchain uses when it quantizes model inputs. Every integer primitive here
rounds exactly as if the value had been computed with unbounded precision and then rounded to
nearest, ties to even. Saturation (never wrap-around) clamps to ``[qmin, qmax]``.

Integer primitives take and return ``np.int64`` arrays and never use floating point.
Floating point appears only in :func:`multiplier_shift`, :func:`choose_radix_scale`,
:func:`quantize` and :func:`dequantize`, which belong to the *prepare* side of a kernel or to the
float boundary of the model (inputs, outputs, CPU nodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

NUMERICS_VERSION = "1.2"
"""Version of ``docs/fixed-point.md`` implemented by this package; a BIE records the lowest version
whose rules it uses (``npuflow.analysis.program.required_numerics_version``: 1.1 unless it has a
float tail, spec section 10.1)."""

RADIX_MIN = -128
"""Smallest radix :func:`choose_radix_scale` produces (values beyond 2**135 saturate)."""
RADIX_MAX = 127
"""Largest radix :func:`choose_radix_scale` produces (tiny or denormal ranges are clamped)."""

MULT_BITS = 31
"""Requantization multipliers ``M`` are normalized to ``[2**30, 2**31)`` (31 significant bits)."""

INTERMEDIATE_LIMIT = 1 << 62
"""Internal int64 results of :func:`mul_div_round` saturate to ``[-2**62, 2**62]``."""

_I64_MIN = np.iinfo(np.int64).min


class MultiplierRangeError(ValueError):
    """A requantization multiplier would be ``>= 2**31``: the output format is more than 2**31
    times finer than an input's. The analysis catches it and coarsens the output (spec section 3,
    "Multiplier cap"); anything else that sees it has been given inconsistent formats."""

_M32 = np.int64(0xFFFFFFFF)
_ONE = np.int64(1)

ArrayLike = Union[np.ndarray, int, "np.integer[Any]"]


# ----------------------------------------------------------------------------------------------
# ranges and saturation
# ----------------------------------------------------------------------------------------------
def qrange(bits: int) -> tuple[int, int]:
    """Signed two's-complement range of a ``bits``-wide integer: ``(-2**(bits-1), 2**(bits-1)-1)``."""
    if not 2 <= bits <= 63:
        raise ValueError(f"bit width must be in [2, 63], got {bits}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def container_dtype(bits: int) -> np.dtype:
    """Smallest numpy signed integer dtype that holds ``bits`` (int4 lives in int8, int48 in int64)."""
    if bits <= 8:
        return np.dtype(np.int8)
    if bits <= 16:
        return np.dtype(np.int16)
    if bits <= 32:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _as_i64(x: ArrayLike, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.dtype.itemsize >= 8 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise OverflowError(f"{name} does not fit in int64")
    return a.astype(np.int64, copy=False)


def saturate(x: ArrayLike, bits: int) -> np.ndarray:
    """Clamp an integer array to ``qrange(bits)``; returns int64 (no wrap-around, ever)."""
    lo, hi = qrange(bits)
    return np.clip(_as_i64(x), lo, hi)


def count_saturated(x: ArrayLike, bits: int) -> int:
    """Number of elements of ``x`` outside ``qrange(bits)`` (what :func:`saturate` would change)."""
    lo, hi = qrange(bits)
    a = _as_i64(x)
    return int(np.count_nonzero((a < lo) | (a > hi)))


def to_container(x: ArrayLike, bits: int) -> np.ndarray:
    """Saturate to ``bits`` and cast to :func:`container_dtype`."""
    return saturate(x, bits).astype(container_dtype(bits))


# ----------------------------------------------------------------------------------------------
# rounding shifts and divisions (exact, RNE)
# ----------------------------------------------------------------------------------------------
def _rne_up(floor_q: np.ndarray, above: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Add 1 to a non-negative floor where the discarded part is above one half, or exactly one
    half and the floor is odd (ties to even)."""
    return floor_q + (above | (tie & ((floor_q & _ONE) == 1))).astype(np.int64)


def rounding_right_shift(x: ArrayLike, n: ArrayLike) -> np.ndarray:
    """``RNE(x / 2**n)`` on int64.

    ``n`` (scalar or array broadcast against ``x``) may be 0 (identity) or negative (exact left
    shift by ``-n``; the result must fit in int64, else ``OverflowError``). Rounding is to
    nearest, ties to even: ``rounding_right_shift(5, 1) == 2``, ``(7, 1) == 4``,
    ``(-5, 1) == -2``, ``(-7, 1) == -4``. ``x`` must not be ``-2**63``.
    """
    a = _as_i64(x)
    nn = _as_i64(n, "n")
    if a.size and nn.size and nn.min() >= 0 and nn.max() <= 62 and np.abs(a).max() < (1 << 62):
        # fast path: RNE(x / 2**n) = (x + 2**(n-1) - 1 + bit_n(x)) >> n with an arithmetic shift
        # (floor) -- the carry happens iff the remainder is above half, or exactly half with an
        # odd quotient. No overflow for |x| < 2**62.
        half = (_ONE << nn) >> 1
        adj = np.where(nn > 0, half - 1 + ((a >> nn) & _ONE), 0)
        return np.asarray((a + adj) >> nn, dtype=np.int64)
    a, nn = np.broadcast_arrays(a, nn)
    if a.size and a.min() == _I64_MIN:
        raise OverflowError("rounding_right_shift: x = -2**63 is outside the supported domain")
    out = np.empty(a.shape, dtype=np.int64)
    left = nn < 0
    if np.any(left):
        k = -nn[left]
        v = a[left]
        lim = np.where(k >= 63, 0, np.iinfo(np.int64).max >> np.minimum(k, 62))
        if np.any(np.abs(v) > lim):
            raise OverflowError("rounding_right_shift: left shift overflows int64")
        out[left] = v << np.minimum(k, 62)
    right = ~left
    if np.any(right):
        v = a[right]
        k = nn[right]
        neg = v < 0
        mag = np.abs(v)
        kc = np.minimum(k, 62)  # |x| < 2**63, so shifts of 63 and more are handled below
        fl = mag >> kc
        rem = mag & ((_ONE << kc) - 1)
        half = np.where(kc > 0, _ONE << np.maximum(kc - 1, 0), 0)
        above = (kc > 0) & (rem > half)
        tie = (kc > 0) & (rem == half)
        r = _rne_up(fl, above, tie)
        # n == 63: |x|/2**63 < 1, rounds to 1 only when |x| > 2**62 (2**62 itself ties to 0)
        r = np.where(k == 63, (mag > (_ONE << 62)).astype(np.int64), r)
        r = np.where(k >= 64, 0, r)
        out[right] = np.where(neg, -r, r)
    return out


def rounding_divide(num: ArrayLike, den: ArrayLike, k: ArrayLike = 0) -> np.ndarray:
    """``RNE(num / (den * 2**k))`` exactly, on int64.

    Domain: ``|num| < 2**63``, ``1 <= den < 2**62``, ``0 <= k <= 62``. Ties to even:
    ``rounding_divide(5, 2) == 2``, ``(7, 2) == 4``, ``(-5, 2) == -2``, ``(3, 1, 1) == 2``.
    """
    n = _as_i64(num, "num")
    d = _as_i64(den, "den")
    kk = _as_i64(k, "k")
    n, d, kk = np.broadcast_arrays(n, d, kk)
    if d.size and (d.min() < 1 or d.max() >= (1 << 62)):
        raise ValueError("rounding_divide: den must be in [1, 2**62)")
    if kk.size and (kk.min() < 0 or kk.max() > 62):
        raise ValueError("rounding_divide: k must be in [0, 62]")
    if n.size and n.min() == _I64_MIN:
        raise OverflowError("rounding_divide: num = -2**63 is outside the supported domain")
    neg = n < 0
    mag = np.abs(n)
    q1, r1 = np.divmod(mag, d)
    fl = q1 >> kk
    m = q1 & ((_ONE << kk) - 1)
    half = _ONE << np.maximum(kk - 1, 0)
    # k == 0: the fraction is r1/den; compare 2*r1 with den (2*r1 < 2**63 since den < 2**62)
    above0 = 2 * r1 > d
    tie0 = 2 * r1 == d
    # k >= 1: fraction = (m + r1/den) / 2**k, compared with 1/2 <=> m + r1/den vs 2**(k-1)
    above1 = (m > half) | ((m == half) & (r1 > 0))
    tie1 = (m == half) & (r1 == 0)
    r = _rne_up(fl, np.where(kk == 0, above0, above1), np.where(kk == 0, tie0, tie1))
    return np.where(neg, -r, r)


def mul_div_round(x: ArrayLike, m: ArrayLike, den: ArrayLike = 1, s: ArrayLike = 0) -> np.ndarray:
    """``RNE(x * m / (den * 2**s))`` computed exactly (96-bit intermediate), on int64.

    This is the single exact core behind :func:`requantize`, average pooling and the
    interpolating kernels. Domain: ``|x| < 2**63``; ``|m| < 2**31`` (the sign of ``m`` is the sign
    of the multiplier); ``1 <= den < 2**31``; ``s >= 0`` (any size). Arguments broadcast.
    The result saturates to ``[-2**62, 2**62]`` (callers then saturate to their bit width).
    Implementation: ``|x|*|m|`` is split into three 32-bit limbs, divided by ``den`` limb by limb
    (schoolbook long division), and the quotient is shifted right by ``s`` with RNE, using the
    division remainder as a sticky bit.
    """
    xa = _as_i64(x)
    ma = _as_i64(m, "m")
    da = _as_i64(den, "den")
    sa = _as_i64(s, "s")
    # domain checks on the operands before broadcasting (per-channel arrays stay small)
    xmin = int(xa.min()) if xa.size else 0
    xmax = int(xa.max()) if xa.size else 0
    if xmin == _I64_MIN:
        raise OverflowError("mul_div_round: x = -2**63 is outside the supported domain")
    if ma.size and (int(ma.max()) >= (1 << 31) or int(ma.min()) <= -(1 << 31)):
        raise ValueError("mul_div_round: |m| must be < 2**31")
    if da.size and (int(da.min()) < 1 or int(da.max()) >= (1 << 31)):
        raise ValueError("mul_div_round: den must be in [1, 2**31)")
    if sa.size and int(sa.min()) < 0:
        raise ValueError("mul_div_round: s must be >= 0")
    if (da.size == 0 or int(da.max()) == 1) and max(-xmin, xmax) < (1 << 31):
        # common case (int32 accumulators, den 1): |x*m| < 2**62, one exact rounding shift
        return rounding_right_shift(xa * ma, sa)
    mabs = max(-int(ma.min()), int(ma.max())) if ma.size else 0
    if max(-xmin, xmax) * mabs < (1 << 62) and (sa.size == 0 or int(sa.max()) <= 62):
        # the product fits int64 (average pooling's window sums, small accumulators): one exact
        # division with the shift folded in; |result| <= |x*m| < 2**62, so nothing saturates
        # (the limbs below give the same integers: tests/sim/test_fixed_point.py)
        if da.size and int(da.min()) == int(da.max()) and (int(da.max()) & (int(da.max()) - 1)) == 0:
            # one power-of-two divisor (a 2x2 average pool's count 4): a rounding shift, no division
            shifted = rounding_right_shift(xa * ma, sa + (int(da.max()).bit_length() - 1))
            # (the shape of all four arguments broadcast, as the other paths give)
            return np.broadcast_to(shifted, np.broadcast_shapes(shifted.shape, da.shape)).copy()
        return rounding_divide(xa * ma, da, sa)
    xa, ma, da, sa = np.broadcast_arrays(xa, ma, da, sa)
    neg = (xa < 0) ^ (ma < 0)
    a = np.abs(xa)
    mm = np.abs(ma)
    # 96-bit product P = L2*2**64 + L1*2**32 + L0 with 32-bit limbs
    a1 = a >> 32
    a0 = a & _M32
    lo = a0 * mm  # < 2**63
    mid = a1 * mm + (lo >> 32)  # < 2**62 + 2**31
    l0 = lo & _M32
    l1 = mid & _M32
    l2 = mid >> 32  # < 2**30
    # P / den, limb by limb: each partial dividend is < den * 2**32 < 2**63
    q2, r = np.divmod(l2, da)
    q1, r = np.divmod((r << 32) | l1, da)
    q0, r = np.divmod((r << 32) | l0, da)
    qhi = (q2 << 32) | q1  # quotient >> 32, < 2**62 ; the quotient is qhi*2**32 + q0
    lim = np.int64(INTERMEDIATE_LIMIT)

    # --- s < 32: integer part = qhi*2**(32-s) + (q0 >> s) ---------------------------------
    sl = np.clip(sa, 0, 31)
    big = qhi >= (_ONE << (30 + sl))  # integer part would reach 2**62: saturate
    fl_a = np.where(big, lim, (np.where(big, 0, qhi) << (32 - sl)) + (q0 >> sl))
    m_a = q0 & ((_ONE << sl) - 1)
    half_a = _ONE << np.maximum(sl - 1, 0)
    above_a = np.where(sl == 0, 2 * r > da, (m_a > half_a) | ((m_a == half_a) & (r > 0)))
    tie_a = np.where(sl == 0, 2 * r == da, (m_a == half_a) & (r == 0))

    # --- 32 <= s < 95: t = s - 32; integer part = qhi >> t -----------------------------------
    t = np.clip(sa - 32, 0, 62)
    fl_b = qhi >> t
    mh = qhi & ((_ONE << t) - 1)
    half_b = _ONE << np.maximum(t - 1, 0)
    sticky = (q0 > 0) | (r > 0)
    above_b = np.where(
        t == 0,
        (q0 > (_ONE << 31)) | ((q0 == (_ONE << 31)) & (r > 0)),
        (mh > half_b) | ((mh == half_b) & sticky),
    )
    tie_b = np.where(t == 0, (q0 == (_ONE << 31)) & (r == 0), (mh == half_b) & ~sticky)
    # s - 32 > 62: the value is < 2**94 / 2**95 < 1/2, rounds to 0
    huge = sa - 32 > 62
    above_b = above_b & ~huge
    tie_b = tie_b & ~huge
    fl_b = np.where(huge, 0, fl_b)

    small = sa < 32
    fl = np.where(small, fl_a, fl_b)
    res = _rne_up(fl, np.where(small, above_a, above_b), np.where(small, tie_a, tie_b))
    res = np.minimum(res, lim)
    return np.where(neg, -res, res)


# ----------------------------------------------------------------------------------------------
# multipliers
# ----------------------------------------------------------------------------------------------
def multiplier_shift(real: float, *, exp2: int = 0) -> tuple[int, int]:
    """Integer multiplier and shift for ``real * 2**exp2``, computed once in *prepare*.

    Returns ``(M, shift)`` with ``real * 2**exp2 ~= M * 2**-(31 + shift)``, ``|M|`` in
    ``[2**30, 2**31)`` (31 significant bits, mantissa rounded half to even), the sign of
    ``real`` carried by ``M``; ``real == 0`` gives ``(0, 0)``. ``shift`` may be negative
    (multiplier >= 1/2) down to -31; ``|real * 2**exp2| >= 2**31`` raises ``ValueError``.
    Use ``exp2`` to pass the power-of-two part of a ratio of formats exactly
    (``real = scale_ratio``, ``exp2 = radix difference``). Relative error <= 2**-31.
    """
    r = float(real)
    if not math.isfinite(r):
        raise ValueError(f"multiplier must be finite, got {real}")
    if r == 0.0:
        return 0, 0
    mant, e = math.frexp(abs(r))  # |r| = mant * 2**e, mant in [0.5, 1)
    e += int(exp2)
    m = round(mant * (1 << MULT_BITS))  # exact product; Python round() is half to even
    if m == 1 << MULT_BITS:
        m = 1 << (MULT_BITS - 1)
        e += 1
    shift = -e
    if 31 + shift < 0:
        raise MultiplierRangeError(
            f"multiplier {real}*2**{exp2} >= 2**31 is not representable: the output LSB is more "
            "than 2**31 times finer than the input LSB; choose a coarser output format"
        )
    return (m if r > 0 else -m), shift


def multiplier_shift_array(real: np.ndarray | float, *, exp2: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise :func:`multiplier_shift` (per-channel or per-element multipliers).

    Returns int64 arrays ``(M, shift)`` of the broadcast shape of ``real`` and ``exp2``.
    """
    r, e = np.broadcast_arrays(np.asarray(real, dtype=np.float64), np.asarray(exp2, dtype=np.int64))
    if not np.isfinite(r).all():
        raise ValueError("multipliers must be finite")
    mant, ex = np.frexp(np.abs(r))
    ex = ex.astype(np.int64) + e
    m = np.rint(mant * float(1 << MULT_BITS)).astype(np.int64)  # exact product, RNE
    wrap = m == (1 << MULT_BITS)
    m = np.where(wrap, 1 << (MULT_BITS - 1), m)
    ex = ex + wrap
    zero = r == 0.0
    shift = np.where(zero, 0, -ex).astype(np.int64)
    if np.any(31 + shift < 0):
        raise MultiplierRangeError(
            "a multiplier >= 2**31 is not representable: the output LSB is more than 2**31 times "
            "finer than the input LSB; choose a coarser output format"
        )
    return np.where(r < 0, -m, m).astype(np.int64), shift


def requantize(acc: ArrayLike, M: ArrayLike, shift: ArrayLike, bits: int) -> np.ndarray:
    """``saturate(RNE(acc * M / 2**(31 + shift)), bits)`` exactly (int64 math, no floats).

    ``M``/``shift`` come from :func:`multiplier_shift` (scalars or arrays broadcast against
    ``acc``, e.g. per output channel). ``acc`` is any int64 array with ``|acc| < 2**63``.
    Returns int64 values in ``qrange(bits)``.
    """
    return saturate(mul_div_round(acc, M, 1, 31 + _as_i64(shift, "shift")), bits)


def accumulator_bits(in_bits: int, w_bits: int) -> int:
    """Accumulator width of a MAC: int32 when both operands are at most 8 bits (int8, int4),
    int48 otherwise (held in int64)."""
    return 32 if in_bits <= 8 and w_bits <= 8 else 48


# ----------------------------------------------------------------------------------------------
# float boundary
# ----------------------------------------------------------------------------------------------
def format_factor(radix: ArrayLike, scale: ArrayLike) -> np.ndarray:
    """``scale * 2**radix`` in float64 (exact: multiplying by a power of two does not round)."""
    return np.ldexp(np.asarray(scale, dtype=np.float64), np.asarray(radix, dtype=np.int64).astype(np.int32))


def quantize(x: np.ndarray | float, radix: ArrayLike, scale: ArrayLike, bits: int) -> np.ndarray:
    """``q = saturate(RNE(x * scale * 2**radix), bits)`` in the container dtype of ``bits``.

    Computed in float64: one float64 product ``x * factor`` (the factor is exact), then
    ``np.rint`` (half to even), then saturation. ``radix``/``scale`` broadcast against ``x``
    (per-channel formats pass arrays shaped for broadcasting). ``+-inf`` saturate; NaN raises.
    """
    xf = np.asarray(x, dtype=np.float64)
    if np.isnan(xf).any():
        raise ValueError("quantize: input contains NaN")
    lo, hi = qrange(bits)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.rint(xf * format_factor(radix, scale))
    return np.clip(v, lo, hi).astype(container_dtype(bits))


def dequantize(q: ArrayLike, radix: ArrayLike, scale: ArrayLike) -> np.ndarray:
    """``real = q / (scale * 2**radix)`` in float64 (one correctly rounded division)."""
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise TypeError(f"dequantize expects integers, got dtype {qa.dtype}")
    return qa.astype(np.float64) / format_factor(radix, scale)


def ceil_log2(v: float) -> int:
    """Exact ``ceil(log2(v))`` for a positive finite float (denormals included)."""
    mant, e = math.frexp(v)  # v = mant * 2**e, mant in [0.5, 1)
    return e - 1 if mant == 0.5 else e


def choose_radix_scale(abs_max: float, bits: int, *, power_of_two: bool = False) -> tuple[int, float]:
    """Format for a tensor whose values lie in ``[-abs_max, abs_max]`` (the original's rule).

    ``radix = (bits - 1) - ceil(log2(abs_max))`` and ``scale = qmax / (abs_max * 2**radix)``, so
    ``abs_max`` maps exactly onto ``qmax`` and ``scale`` lies in ``[qmax/2**(bits-1),
    qmax/2**(bits-2))`` (about ``[0.99, 1.98)`` for int8). With ``power_of_two=True`` the same
    radix is kept and ``scale = 1.0`` (model inputs: a shift, as the hardware preprocessor
    does); ``abs_max * 2**radix`` is then at most ``2**(bits-1)``, so ``-abs_max`` is exact and
    ``+abs_max`` may saturate by one LSB when it is an exact power of two (e.g. RGB/256-0.5 gives
    radix 8, as the original's hardware templates). ``abs_max == 0`` gives ``(bits - 1, 1.0)``.
    The radix is clamped to ``[RADIX_MIN, RADIX_MAX]``; a clamped radix gets ``scale = 1.0``
    (tiny or denormal ranges quantize to 0; huge ones saturate).
    """
    a = float(abs_max)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"abs_max must be finite and >= 0, got {abs_max}")
    qmax = qrange(bits)[1]
    if a == 0.0:
        return bits - 1, 1.0
    radix = (bits - 1) - ceil_log2(a)
    if radix < RADIX_MIN or radix > RADIX_MAX:
        return int(min(max(radix, RADIX_MIN), RADIX_MAX)), 1.0
    if power_of_two:
        return radix, 1.0
    return radix, qmax / math.ldexp(a, radix)


# ----------------------------------------------------------------------------------------------
# QFormat
# ----------------------------------------------------------------------------------------------
def _norm_scalar_or_tuple(v: Any, conv: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(conv(e) for e in np.asarray(v).ravel().tolist())
    return conv(v)


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format: ``real = q / (scale * 2**radix)`` on ``bits``-wide signed integers.

    Per-tensor: ``radix`` int, ``scale`` float, ``axis`` None. Per-channel: ``radix`` and
    ``scale`` are equal-length tuples and ``axis`` the channel axis of the tensor (negative
    counts from the end). Symmetric, no zero point.
    """

    bits: int
    radix: int | tuple[int, ...]
    scale: float | tuple[float, ...] = 1.0
    axis: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or not 2 <= int(self.bits) <= 48:
            raise ValueError(f"QFormat.bits must be an integer in [2, 48], got {self.bits!r}")
        object.__setattr__(self, "bits", int(self.bits))
        radix = _norm_scalar_or_tuple(self.radix, int)
        scale = _norm_scalar_or_tuple(self.scale, float)
        if self.axis is None:
            if isinstance(radix, tuple) or isinstance(scale, tuple):
                raise ValueError("per-tensor QFormat (axis=None) needs a scalar radix and scale")
        else:
            object.__setattr__(self, "axis", int(self.axis))
            if not isinstance(radix, tuple):
                radix = (radix,) * (len(scale) if isinstance(scale, tuple) else 1)
            if not isinstance(scale, tuple):
                scale = (scale,) * len(radix)
            if len(radix) != len(scale) or not radix:
                raise ValueError(f"per-channel QFormat: {len(radix)} radixes but {len(scale)} scales")
        for s in scale if isinstance(scale, tuple) else (scale,):
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"QFormat.scale must be finite and > 0, got {s}")
        object.__setattr__(self, "radix", radix)
        object.__setattr__(self, "scale", scale)

    # --- properties ---
    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def channels(self) -> int:
        return len(self.radix) if isinstance(self.radix, tuple) else 1

    @property
    def tensor_radix(self) -> int:
        """The radix of a per-tensor format (``TypeError`` if per-channel)."""
        if isinstance(self.radix, tuple):
            raise TypeError("per-channel format has no single radix")
        return self.radix

    @property
    def tensor_scale(self) -> float:
        """The scale of a per-tensor format (``TypeError`` if per-channel)."""
        if isinstance(self.scale, tuple):
            raise TypeError("per-channel format has no single scale")
        return self.scale

    @property
    def qmin(self) -> int:
        return qrange(self.bits)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.bits)[1]

    @property
    def dtype(self) -> np.dtype:
        return container_dtype(self.bits)

    def radix_array(self) -> np.ndarray:
        """Radix per channel as int64 array (length 1 when per-tensor)."""
        return np.atleast_1d(np.asarray(self.radix, dtype=np.int64))

    def scale_array(self) -> np.ndarray:
        """Scale per channel as float64 array (length 1 when per-tensor)."""
        return np.atleast_1d(np.asarray(self.scale, dtype=np.float64))

    def factor(self) -> np.ndarray:
        """``scale * 2**radix`` per channel (float64, length 1 when per-tensor)."""
        return format_factor(self.radix_array(), self.scale_array())

    def _bshape(self, ndim: int) -> tuple[int, ...]:
        if self.axis is None:
            return ()
        ax = self.axis if self.axis >= 0 else self.axis + ndim
        if not 0 <= ax < ndim:
            raise ValueError(f"QFormat axis {self.axis} out of range for a rank-{ndim} tensor")
        shape = [1] * ndim
        shape[ax] = self.channels
        return tuple(shape)

    def broadcast_radix_scale(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Radix and scale shaped to broadcast against a rank-``ndim`` tensor."""
        if self.axis is None:
            return np.asarray(self.radix, dtype=np.int64), np.asarray(self.scale, dtype=np.float64)
        shp = self._bshape(ndim)
        return self.radix_array().reshape(shp), self.scale_array().reshape(shp)

    def quantize(self, x: np.ndarray | float) -> np.ndarray:
        """:func:`quantize` with this format (per-channel along ``axis``)."""
        xf = np.asarray(x, dtype=np.float64)
        r, s = self.broadcast_radix_scale(xf.ndim)
        if self.axis is not None and xf.shape[self.axis] != self.channels:
            raise ValueError(
                f"tensor has {xf.shape[self.axis]} channels on axis {self.axis}, format has {self.channels}"
            )
        return quantize(xf, r, s, self.bits)

    def dequantize(self, q: ArrayLike) -> np.ndarray:
        """:func:`dequantize` with this format (float64)."""
        qa = np.asarray(q)
        r, s = self.broadcast_radix_scale(qa.ndim)
        return dequantize(qa, r, s)

    def with_bits(self, bits: int) -> QFormat:
        return QFormat(bits, self.radix, self.scale, self.axis)

    # --- serialization ---
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; floats round-trip exactly through ``json`` (repr is shortest-exact)."""
        return {
            "bits": self.bits,
            "radix": list(self.radix) if isinstance(self.radix, tuple) else self.radix,
            "scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
            "axis": self.axis,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QFormat:
        return cls(bits=d["bits"], radix=d["radix"], scale=d.get("scale", 1.0), axis=d.get("axis"))

    @classmethod
    def from_abs_max(cls, abs_max: float, bits: int, *, power_of_two: bool = False) -> QFormat:
        """Per-tensor format by :func:`choose_radix_scale`."""
        r, s = choose_radix_scale(abs_max, bits, power_of_two=power_of_two)
        return cls(bits, r, s, None)


def format_ratio(
    num: QFormat, den: QFormat | None = None, *, extra: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers for ``extra * factor(num) / factor(den)`` (per channel, broadcast).

    The scale ratio goes through float64 and the radix difference is passed exactly as a
    power of two (``exp2``), so extreme radixes never under- or overflow. Returns int64
    ``(M, shift)`` arrays (length = max channel count).
    """
    ratio = num.scale_array() * np.asarray(extra, dtype=np.float64)
    e = num.radix_array()
    if den is not None:
        ratio = ratio / den.scale_array()
        e = e - den.radix_array()
    return multiplier_shift_array(ratio, exp2=e)
