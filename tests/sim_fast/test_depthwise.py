"""The compiled depthwise Conv kernel (:mod:`npuflow.sim.fast.depthwise`) returns the reference
integers and counts in both layouts (plane by plane, channels-last), with and without a fused
table step, int32 and int64 scratch accumulators; plus hand-worked accumulators."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fast import FAST, _requant
from npuflow.sim.fast._nb import use_numba
from npuflow.sim.fast import conv as fast_conv
from npuflow.sim.fast import depthwise as dw
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats
from tests.sim_fast.helpers import FAST_PROP, act_attrs, int_weights, out_fmt, rand_q, same, weight_fmt, window_case

pytestmark = pytest.mark.skipif(not _requant.HAVE_NUMBA, reason="the depthwise kernel needs numba")


@pytest.fixture(params=["plane", "channels_last"])
def layout(request, monkeypatch):
    """Force one accumulation layout, and count the kernel's calls."""
    monkeypatch.setattr(dw, "PLANE_MIN_WIDTH", 0 if request.param == "plane" else 10**9)
    calls = []
    real = fast_conv.depthwise

    def spy(*a, **kw):
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(fast_conv, "depthwise", spy)
    return calls


@st.composite
def dw_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2]))
    c = draw(st.integers(2, 6))
    cog = draw(st.sampled_from([1, 1, 2]))
    k, sp, attrs = draw(window_case(nd, 5, 13))
    attrs["group"] = c
    attrs.update(draw(act_attrs()))
    return dict(n=draw(st.integers(1, 2)), c=c, cout=c * cog, k=k, sp=sp, attrs=attrs,
                x_bits=draw(st.sampled_from([8, 16])), w_bits=draw(st.sampled_from([4, 8, 16])),
                out_bits=draw(st.sampled_from([8, 16])), big=draw(st.booleans()), bias=draw(st.booleans()),
                stretch=draw(st.sampled_from([0.02, 0.3, 1.0, 4.0])), seed=draw(st.integers(0, 2**32 - 1)))


def _params(c):
    rng = np.random.default_rng(c["seed"])
    x_fmt = QFormat(c["x_bits"], int(rng.integers(-2, 9)), float(rng.uniform(1, 1.99)))
    w_fmt = weight_fmt(rng, c["w_bits"], c["cout"], 0)
    W = int_weights(rng, (c["cout"], 1) + c["k"], c["w_bits"], c["big"])
    o_fmt = out_fmt(rng, c["out_bits"], x_fmt, w_fmt, int(np.prod(c["k"])), c["stretch"])
    weights = {"W": W}
    if c["bias"]:
        weights["B"] = rng.normal(0, 3, c["cout"])
    params = KERNELS["Conv"].prepare(c["attrs"], [x_fmt, w_fmt, None], o_fmt, weights)
    x = rand_q(rng, (c["n"], c["c"]) + c["sp"], x_fmt, extreme=0.3 if c["big"] else 0.0)
    return params, x, rng


@FAST_PROP
@given(c=dw_cases())
def test_depthwise_kernel_equals_reference(layout, c):
    layout.clear()  # the fixture lives across the examples
    params, x, _ = _params(c)
    same("Conv", FAST["Conv"], params, x)
    # the compiled kernel ran (unless NPUFLOW_SIM=numpy switches numba off: then the numpy path did)
    assert (layout and all(p is params for p in layout)) if use_numba() else not layout


@FAST_PROP
@given(c=dw_cases(), op=st.sampled_from(["Swish", "Sigmoid", "HardSwish"]), lut_bits=st.sampled_from([8, 16]))
def test_depthwise_with_fused_table_equals_two_steps(layout, c, op, lut_bits):
    layout.clear()
    params, x, rng = _params(c)
    c_fmt = params.out.out_format
    lp = KERNELS[op].prepare({}, [c_fmt], QFormat(lut_bits, int(rng.integers(2, 12)), 1.0))
    s1, s2, t1, t2 = KernelStats(), KernelStats(), KernelStats(), KernelStats()
    ref = KERNELS[op].eval(lp, KERNELS["Conv"].eval(params, x, stats=s1), stats=t1)
    got = fast_conv.conv_lut(params, op, lp, x, stats=s2, lut_stats=t2)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert (s1, t1) == (s2, t2)
    np.testing.assert_array_equal(fast_conv.conv_lut(params, op, lp, x), ref)
    assert bool(layout) == use_numba()


def test_scratch_accumulator_width():
    """int32 scratch exactly while ``sum |w| * 2**(bits-1) < 2**31``, float64 (integers) below
    2**53, int64 beyond."""
    def plan(w_max, taps, bits):
        w = np.zeros((2, 1, 1, taps), np.int16)
        w[1] = w_max
        p = type("P", (), {"w_q": w, "in_format": QFormat(bits, 0)})
        return dw.DepthwisePlan(p).acc_dtype

    assert plan(127, 9, 8) == np.int32
    assert plan(32767, 25, 16) == np.float64
    # 2**15 * 2**15 * 2 = 2**31: one past the int32 range
    assert plan(16384, 4, 16) == np.float64
    assert plan(16383, 4, 16) == np.int32
    # 2**14 * 2**39 = 2**53: one past the exact float64 integers
    assert plan(16384, 1, 40) == np.int64
    assert plan(16383, 1, 40) == np.float64


# hand-worked: x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,-1],[2,0]], pads 1 on every side, stride 1
# out[oy, ox] = sum_{ky,kx} w[ky,kx] * x[oy-1+ky, ox-1+kx] (zero outside)
_X = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
_W = np.array([[1, -1], [2, 0]])
_ACC = np.array([
    [0 - 0 + 0, 0 - 0 + 2 * 1, 0 - 0 + 2 * 2, 0 - 0 + 2 * 3],
    [0 - 1 + 0, 1 - 2 + 2 * 4, 2 - 3 + 2 * 5, 3 - 0 + 2 * 6],
    [0 - 4 + 0, 4 - 5 + 2 * 7, 5 - 6 + 2 * 8, 6 - 0 + 2 * 9],
    [0 - 7, 7 - 8, 8 - 9, 9 - 0],
])
# stride 2, dilation 2, pads (0, 1) at the start: rows oy*2 + {0, 2}, columns ox*2 - 1 + {0, 2}
_ACC_S2D2 = np.array([[_W[0, 1] * 2 + _W[1, 1] * 8, _W[0, 0] * 2 + _W[1, 0] * 8]])


def _both_layouts(x, w, geometry, oh, ow):
    """The accumulators of ``x`` (one 2-D channel) and ``w`` by the plane and the channels-last
    kernel; ``geometry``: strides, dilations and leading pads ``(sh, sw, dh, dw, pt, pl)``."""
    plane = np.empty(oh * ow, w.dtype)
    dw._acc_row(x, w, plane, *geometry, oh, ow)
    nhwc = np.empty((1, oh * ow, 1), w.dtype)
    dw._acc_nhwc(np.ascontiguousarray(x[None, :, :, None]), np.ascontiguousarray(w[:, :, None]), *geometry, oh, ow,
                 nhwc)
    return plane.reshape(oh, ow), nhwc.reshape(oh, ow)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_accumulators_hand_worked(dtype):
    x = _X.astype(np.int8)
    w = _W.astype(dtype)
    for got in _both_layouts(x, w, (1, 1, 1, 1, 1, 1), 4, 4):
        np.testing.assert_array_equal(got, _ACC)
    for got in _both_layouts(x, w, (2, 2, 2, 2, 0, 1), 1, 2):
        np.testing.assert_array_equal(got, _ACC_S2D2)


def test_full_scale_int16_extremes():
    """int16 inputs at both ends with full-scale int16 weights (int64 scratch, the largest sums)."""
    rng = np.random.default_rng(7)
    x_fmt = QFormat(16, 4)
    w_fmt = QFormat(16, (10, 10, 10), (1.0, 1.0, 1.0), 0)
    W = np.where(rng.random((3, 1, 5, 5)) < 0.5, 32767, -32768) / 2**10
    for out_bits in (8, 16):
        o_fmt = QFormat(out_bits, -12 if out_bits == 8 else -4)
        params = KERNELS["Conv"].prepare({"pads": [2, 2, 2, 2], "group": 3}, [x_fmt, w_fmt], o_fmt, {"W": W})
        for fill in (-32768, 32767):
            x = np.full((1, 3, 9, 9), fill, np.int16)
            x[0, 1, ::2] = -x[0, 1, ::2] - 1 if fill < 0 else -fill - 1
            for width in (0, 10**9):
                for acc_dtype in (np.float64, np.int64):  # the chosen scratch, and the widest
                    d = dw.DepthwisePlan(params)
                    d.acc_dtype, d.w, d.wt = acc_dtype, d.w.astype(acc_dtype), d.wt.astype(acc_dtype)
                    fast_conv._PLANS.get(params).dw = d
                    dw.PLANE_MIN_WIDTH, old = width, dw.PLANE_MIN_WIDTH
                    try:
                        same("Conv", FAST["Conv"], params, x)
                    finally:
                        dw.PLANE_MIN_WIDTH = old
