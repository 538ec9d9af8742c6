"""The batch paths of the fast MAC kernels return the reference integers and counts:

* a batch whose onnxruntime buffers exceed ``conv.CHUNK_BYTES`` runs in chunks of samples, each
  written into its slice of the output, on every engine path (float32 limbs, grouped weight limbs,
  ConvTranspose, the float64 and int8 matrix products, a fused table step);
* the uint8 x uint8 matrix engine of 1x1 convolutions (where uint8 x int8 is not exact: x86
  without VNNI) and its uint8 limbs;
* the two-limb float32 conversion, and the output stage's 31-bit branch opened by a row's measured
  maximum under a wider (48-bit) accumulator.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fast import FAST, _requant
from npuflow.sim.fast import conv as fast_conv
from npuflow.sim.fast._common import limbs_f32, split_limbs, uint8_limbs
from npuflow.sim.fast._ort import uint8_engine_exact
from npuflow.sim.fixed_point import QFormat, qrange
from npuflow.sim.kernels import KERNELS, KernelStats
from npuflow.sim.kernels._mac import MacOutput, mac_finish
from npuflow.sim.kernels.base import Activation
from tests.sim_fast.helpers import FAST_FEW, FAST_PROP, act_attrs, rand_q, same
from tests.sim_fast.test_mac import _conv_params, conv_cases, convt_cases


@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numba" and not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    if request.param == "numpy":
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    return request.param


def test_chunks_cover_the_batch(monkeypatch):
    monkeypatch.setattr(fast_conv, "CHUNK_BYTES", 100)
    assert fast_conv._chunks(5, 1000) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert fast_conv._chunks(5, 40) == [(0, 1), (1, 3), (3, 5)]  # 2 a chunk at most, near-equal
    assert fast_conv._chunks(4, 30) == [(0, 2), (2, 4)]
    assert fast_conv._chunks(3, 1) == [(0, 3)]
    assert fast_conv._chunks(1, 10**9) == [(0, 1)]


def _small_chunks(monkeypatch, data, x):
    """Chunks of ``size`` samples (1 to 3; the last one shorter), whatever the buffers' sizes."""
    size = data.draw(st.integers(1, 3))
    monkeypatch.setattr(fast_conv, "_chunks", lambda n, per_sample: [(i, min(n, i + size)) for i in range(0, n, size)])


@FAST_FEW
@given(c=conv_cases(), n=st.integers(2, 5), data=st.data())
def test_conv_in_chunks_equals_reference(engine, c, n, data, monkeypatch):
    c = {**c, "n": n}
    params, x = _conv_params(c)
    _small_chunks(monkeypatch, data, x)
    same("Conv", FAST["Conv"], params, x)


@FAST_FEW
@given(c=convt_cases(), n=st.integers(2, 4), data=st.data())
def test_conv_transpose_in_chunks_equals_reference(engine, c, n, data, monkeypatch):
    c = {**c, "n": n}
    try:
        params, x = _conv_params(c, transpose=True)
        KERNELS["ConvTranspose"].eval(params, x)
    except ValueError:
        assume(False)
    _small_chunks(monkeypatch, data, x)
    same("ConvTranspose", FAST["ConvTranspose"], params, x)


@FAST_FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 5), x_bits=st.sampled_from([8, 16]),
       w_bits=st.sampled_from([8, 16]), c=st.sampled_from([3, 40]), act=act_attrs(), data=st.data())
def test_pointwise_in_chunks_equals_reference(engine, seed, n, x_bits, w_bits, c, act, data, monkeypatch):
    """1x1 Conv at full scale: the int8 matrix product (int8 engine where exact, else float32 limbs)
    for 8-bit weights, the float64 product for 16-bit weights and activations."""
    case = {"nd": 2, "n": n, "c": c, "cout": 5, "cg": c, "k": (1, 1), "sp": (6, 7), "x_bits": x_bits,
            "w_bits": w_bits, "out_bits": 16, "big": True, "bias": True, "stretch": 1.0, "seed": seed,
            "attrs": {"kernel_shape": [1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1, **act}}
    params, x = _conv_params(case)
    _small_chunks(monkeypatch, data, x)
    same("Conv", FAST["Conv"], params, x)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("x_bits", [8, 16])
def test_conv_lut_in_chunks_equals_two_steps(engine, k, x_bits, monkeypatch):
    """A fused table step behind a chunked Conv: the table's integers and both steps' counts."""
    if engine == "numpy":
        pytest.skip("conv_lut is used with numba only")
    monkeypatch.setattr(fast_conv, "CHUNK_BYTES", 1)  # one sample a chunk
    assert fast_conv._chunks(4, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    rng = np.random.default_rng(k + x_bits)
    x_fmt = QFormat(x_bits, 5 if x_bits == 8 else 13, 1.0)
    w_fmt = QFormat(8, tuple(int(v) for v in rng.integers(3, 8, 4)), tuple(float(v) for v in rng.uniform(1, 2, 4)), 0)
    c_fmt = QFormat(16, 6, 1.5)
    params = KERNELS["Conv"].prepare({"pads": [k // 2] * 4}, [x_fmt, w_fmt], c_fmt,
                                     {"W": rng.normal(0, 0.3, (4, 3, k, k)), "B": rng.normal(0, 1, 4)})
    lp = KERNELS["Swish"].prepare({}, [c_fmt], QFormat(16, 10, 1.0))
    x = rand_q(rng, (4, 3, 5, 6), x_fmt)
    s1, s2, t1, t2 = KernelStats(), KernelStats(), KernelStats(), KernelStats()
    ref = KERNELS["Swish"].eval(lp, KERNELS["Conv"].eval(params, x, stats=s1), stats=t1)
    got = fast_conv.conv_lut(params, "Swish", lp, x, stats=s2, lut_stats=t2)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert (s1, t1) == (s2, t2)


def test_mac_output_into_a_given_array(engine):
    """``mac_output(out=...)`` writes the result into ``out`` (also one it cannot write directly:
    then through a copy) and returns it."""
    rng = np.random.default_rng(3)
    x_fmt = QFormat(16, 13, 1.0)
    w_fmt = QFormat(8, 6, 1.0)
    params = KERNELS["Conv"].prepare({}, [x_fmt, w_fmt], QFormat(16, 6, 1.5), {"W": rng.normal(0, 0.3, (4, 3, 1, 1))})
    parts = rng.integers(-(1 << 20), 1 << 20, (2, 3, 1, 1, 4, 10)).astype(np.float32)
    want = _requant.mac_output(parts, params.out, None, shx=(8, 0))
    big = np.zeros((5, 4, 10), want.dtype)
    got = _requant.mac_output(parts, params.out, None, shx=(8, 0), out=big[1:4])
    assert got.base is big or got is big[1:4] or np.shares_memory(got, big)
    np.testing.assert_array_equal(big[1:4], want)
    assert not big[0].any() and not big[4].any()
    strided = np.zeros((3, 4, 20), want.dtype)[:, :, ::2]  # not C-contiguous: computed aside, copied
    _requant.mac_output(parts, params.out, None, shx=(8, 0), out=strided)
    np.testing.assert_array_equal(strided, want)


# -- the uint8 x uint8 engine ---------------------------------------------------------------------

_ENGINE = fast_conv._int8_engine

@pytest.fixture
def u8_engine(monkeypatch):
    """1x1 convolutions on the uint8 x uint8 engine (skipped where it is not exact)."""
    if not uint8_engine_exact():
        pytest.skip("onnxruntime's uint8 x uint8 MatMulInteger is not exact here")
    monkeypatch.setattr(fast_conv, "_int8_engine", lambda: "u8")


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), c=st.sampled_from([1, 3, 16, 96, 300]),
       cout=st.integers(1, 9), sp=st.sampled_from([(1, 1), (5, 7), (16, 16)]), w_bits=st.sampled_from([4, 8]),
       out_bits=st.sampled_from([8, 16]), big=st.booleans(), bias=st.booleans(), stretch=st.sampled_from([0.02, 1.0, 4.0]),
       act=act_attrs(), x_bits=st.sampled_from([8, 8, 12, 16]), data=st.data())
def test_pointwise_uint8_engine_equals_reference(engine, u8_engine, seed, n, c, cout, sp, w_bits, out_bits, big, bias,
                                                 stretch, act, x_bits, data, monkeypatch):
    """int8 activations as ``x + 128`` in one product, 12- and 16-bit ones as two uint8 limbs;
    full-scale weights and activations at the limits, saturation, chunks of samples."""
    attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1, **act}
    case = {"nd": 2, "n": n, "c": c, "cout": cout, "cg": c, "k": (1, 1), "sp": sp, "attrs": attrs, "x_bits": x_bits,
            "w_bits": w_bits, "out_bits": out_bits, "big": big, "bias": bias, "stretch": stretch, "seed": seed}
    params, x = _conv_params(case)
    if data.draw(st.booleans()):
        _small_chunks(monkeypatch, data, x)
    same("Conv", FAST["Conv"], params, x)
    plan = fast_conv._PLANS.get(params)
    assert plan.i8 is not None and plan.i8_engine == "u8"


@pytest.mark.parametrize("x_bits", [8, 16])
def test_pointwise_uint8_engine_with_table_and_switch(u8_engine, x_bits, monkeypatch):
    """A fused table step behind the uint8 engine; NPUFLOW_SIM_INT8=0 turns the engine off."""
    rng = np.random.default_rng(x_bits)
    x_fmt = QFormat(x_bits, 5 if x_bits == 8 else 13, 1.0)
    w_fmt = QFormat(8, tuple(int(v) for v in rng.integers(3, 8, 6)), tuple(float(v) for v in rng.uniform(1, 2, 6)), 0)
    c_fmt = QFormat(16, 6, 1.5)
    params = KERNELS["Conv"].prepare({}, [x_fmt, w_fmt], c_fmt,
                                     {"W": rng.normal(0, 0.3, (6, 40, 1, 1)), "B": rng.normal(0, 1, 6)})
    lp = KERNELS["Sigmoid"].prepare({}, [c_fmt], QFormat(16, 14, 1.0))
    x = rand_q(rng, (3, 40, 5, 6), x_fmt, extreme=0.3)
    s1, s2, t1, t2 = KernelStats(), KernelStats(), KernelStats(), KernelStats()
    ref = KERNELS["Sigmoid"].eval(lp, KERNELS["Conv"].eval(params, x, stats=s1), stats=t1)
    got = fast_conv.conv_lut(params, "Sigmoid", lp, x, stats=s2, lut_stats=t2)
    np.testing.assert_array_equal(got, ref)
    assert (s1, t1) == (s2, t2)
    assert fast_conv._PLANS.get(params).i8_engine == "u8"
    monkeypatch.setenv("NPUFLOW_SIM_INT8", "0")
    monkeypatch.setattr(fast_conv, "_int8_engine", _ENGINE)  # the real choice again
    assert not uint8_engine_exact() and _ENGINE() is None
    params2 = KERNELS["Conv"].prepare({}, [x_fmt, w_fmt], c_fmt, {"W": rng.normal(0, 0.3, (6, 40, 1, 1))})
    same("Conv", FAST["Conv"], params2, x)
    assert fast_conv._PLANS.get(params2).i8 is None


@pytest.mark.parametrize("compiled", [True, False])
def test_uint8_limbs_hand_worked(compiled, monkeypatch):
    """``x = 256 * (hi - 128) + (lo - 128) + 128`` with both limbs uint8, every int16 value."""
    if not compiled:
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    elif not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    x = np.array([-32768, -32767, -257, -256, -255, -129, -128, -1, 0, 1, 127, 128, 255, 256, 32767], np.int16)
    hi, lo = uint8_limbs(x)
    assert hi.dtype == lo.dtype == np.uint8
    np.testing.assert_array_equal(hi, [0, 0, 126, 127, 127, 127, 127, 127, 128, 128, 128, 128, 128, 129, 255])
    np.testing.assert_array_equal(lo, [0, 1, 255, 0, 1, 127, 128, 255, 0, 1, 127, 128, 255, 0, 255])
    every = np.arange(-32768, 32768, dtype=np.int16).reshape(4, -1)
    h, low = uint8_limbs(every)
    np.testing.assert_array_equal(256 * (h.astype(np.int64) - 128) + low, every)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("bits", [9, 12, 15, 16])
def test_two_float32_limbs_every_value(compiled, bits, monkeypatch):
    """The two-limb fast case of :func:`limbs_f32` equals the balanced split, for every value of
    the width (and an int8 container, and three limbs: the general loop)."""
    if not compiled:
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    elif not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    every = np.arange(-(1 << (bits - 1)), 1 << (bits - 1), dtype=np.int16)
    cases = [(every, 2), (every[::7].copy(), 3), (np.arange(-128, 128, dtype=np.int8), 2)]
    for x, k in cases:
        b = bits if x.dtype == np.int16 else 8
        got, shifts = limbs_f32(x, b, k)
        want, want_shifts, _ = split_limbs(x, b, k)
        assert list(shifts) == list(want_shifts)
        np.testing.assert_array_equal(got, np.stack(want).astype(np.float32))


# -- the output stage's 31-bit branch under a 48-bit accumulator ----------------------------------

@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 4), npos=st.integers(1, 60), edge=st.booleans(),
       kind=st.sampled_from(["none", "relu", "clip"]))
def test_row_maximum_opens_31_bit_branch(seed, c, npos, edge, kind):
    """Rows whose ``|acc + bias|`` stays below 2**31 take the 31-bit branch although the
    accumulator is 48 bits wide (the maximum measured in the limbs kernel, or a bound given): ties
    of the final rounding, rows at ``2**31 - 1`` and just past it, limbs of float32, int32 and int64."""
    if not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(seed)
    mult = rng.integers(1 << 29, 1 << 31, c)
    mult[rng.random(c) < 0.3] = (rng.integers(1, 8) << 28)  # few significant bits: exact ties
    shift = rng.integers(-5, 25, c)
    bias = rng.integers(-(1 << 20), 1 << 20, c) if rng.random() < 0.7 else None
    fmt = QFormat(16, 3, 1.0)
    lo, hi = (fmt.qmin, fmt.qmax)
    if kind == "clip":
        lo, hi = sorted(int(v) for v in rng.integers(fmt.qmin, fmt.qmax + 1, 2))
    elif kind == "relu":
        lo = 0
    p = MacOutput(fmt, 48, bias, mult, shift, None, None, Activation(kind, int(lo), int(hi), 0.1), 0, 0)
    mag = int(2 ** rng.uniform(4, 34))
    acc = rng.integers(-mag, mag + 1, (2, c, npos)).astype(np.int64)
    b = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    if edge:  # |acc + bias| at 2**31 - 1 (branch open) in sample 0; closed in sample 1: at 2**31, and
        # far enough past it that its products would overflow int64 there
        acc[0, :, 0] = (1 << 31) - 1 - b
        acc[1, :, -1] = -(1 << 31) - b
        acc[1, :, 0] = (1 << 33) - 7 - b
    s = np.clip(31 + shift, 1, 62)
    acc[..., : min(2, npos)] = rng.integers(-9, 10, (2, c, min(2, npos))) * np.left_shift(1, s - 1)[None, :, None]
    s1, s2 = KernelStats(), KernelStats()
    ref = mac_finish(acc, 1, p, s1)
    low = ((acc + 128) & 255) - 128
    high = (acc - low) >> 8
    limbs = np.stack([high, low]).reshape(2, 2, 1, 1, c, npos)
    views = [limbs]
    if np.abs(limbs).max() <= 1 << 24:
        views.append(limbs.astype(np.float32))
    if np.abs(limbs).max() < 1 << 31:
        views.append(limbs.astype(np.int32))
    for parts in views:
        np.testing.assert_array_equal(_requant.mac_output(parts, p, s2, shx=(8, 0)), ref)
    assert s2.out_saturated == s1.out_saturated * len(views) and s2.acc_saturated == s1.acc_saturated * len(views)
    # a per-channel bound instead of the measured maxima, and the plain (one-limb) path
    bound = np.abs(acc).max(axis=(0, 2)).astype(np.float64)
    np.testing.assert_array_equal(_requant.mac_output(limbs, p, None, shx=(8, 0), row_bound=bound), ref)
    np.testing.assert_array_equal(_requant.mac_output(acc.reshape(1, 2, 1, 1, c, npos), p, None, row_bound=bound),
                                  ref)
    assert qrange(48)[1] > (1 << 31)
