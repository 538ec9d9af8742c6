"""Fast Conv, ConvTranspose, Gemm, MatMul return the reference integers (Hypothesis over shapes,
strides, pads, dilations, groups, activations and bit widths, including weights at full scale
that force the limb splits)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fast import FAST, _requant
from npuflow.sim.fast import conv as fast_conv
from npuflow.sim.fast import matmul as fast_matmul
from npuflow.sim.fast._ort import int8_engine_exact
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from tests.sim_fast.helpers import FAST_FEW, FAST_PROP, act_attrs, int_weights, out_fmt, rand_q, same, weight_fmt, window_case


@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    """Run each property with the compiled output stage and with the pure-numpy fallback."""
    if request.param == "numba" and not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    if request.param == "numpy":
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    return request.param


@st.composite
def conv_cases(draw, nd_choices=(1, 2)):
    nd = draw(st.sampled_from(nd_choices))
    n = draw(st.integers(1, 3))
    grouping = draw(st.sampled_from(["one", "group", "depthwise"]))
    cg = 1 if grouping == "depthwise" else draw(st.integers(1, 4))
    g = 1 if grouping == "one" else draw(st.integers(2, 4))
    cog = draw(st.integers(1, 3))
    k, sp, attrs = draw(window_case(nd, 4, 9))
    attrs["group"] = g
    attrs.update(draw(act_attrs()))
    return dict(nd=nd, n=n, c=cg * g, cout=cog * g, cg=cg, k=k, sp=sp, attrs=attrs,
                x_bits=draw(st.sampled_from([8, 8, 16])), w_bits=draw(st.sampled_from([4, 8, 8, 16])),
                out_bits=draw(st.sampled_from([8, 16])), big=draw(st.booleans()), bias=draw(st.booleans()),
                stretch=draw(st.sampled_from([0.02, 0.3, 1.0, 4.0])), seed=draw(st.integers(0, 2**32 - 1)))


def _conv_params(c, transpose=False):
    rng = np.random.default_rng(c["seed"])
    x_fmt = QFormat(c["x_bits"], int(rng.integers(-2, 9)), float(rng.uniform(1, 1.99)))
    if transpose:
        g = c["attrs"]["group"]
        cog = c["cout"] // g
        shape = (c["c"], cog) + c["k"]
        w_fmt = weight_fmt(rng, c["w_bits"], cog, 1)
        k_sum = (c["c"] // g) * int(np.prod(c["k"]))
    else:
        shape = (c["cout"], c["cg"]) + c["k"]
        w_fmt = weight_fmt(rng, c["w_bits"], c["cout"], 0)
        k_sum = c["cg"] * int(np.prod(c["k"]))
    W = int_weights(rng, shape, c["w_bits"], c["big"])
    o_fmt = out_fmt(rng, c["out_bits"], x_fmt, w_fmt, k_sum, c["stretch"])
    weights = {"W": W}
    if c["bias"]:
        weights["B"] = rng.normal(0, 3, c["cout"])
    op = "ConvTranspose" if transpose else "Conv"
    params = KERNELS[op].prepare(c["attrs"], [x_fmt, w_fmt, None], o_fmt, weights)
    x = rand_q(rng, (c["n"], c["c"]) + c["sp"], x_fmt, extreme=0.3 if c["big"] else 0.0)
    return params, x


@FAST_PROP
@given(c=conv_cases())
def test_conv_fast_equals_reference(engine, c):
    params, x = _conv_params(c)
    same("Conv", FAST["Conv"], params, x)


@FAST_FEW
@given(c=conv_cases(nd_choices=(3,)))
def test_conv3d_fast_equals_reference(engine, c):
    params, x = _conv_params(c)
    same("Conv", FAST["Conv"], params, x)


def _has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), c=st.sampled_from([1, 3, 16, 96, 300]),
       cout=st.integers(1, 9), sp=st.sampled_from([(1, 1), (5, 7), (16, 16)]), w_bits=st.sampled_from([4, 8]),
       out_bits=st.sampled_from([8, 16]), big=st.booleans(), bias=st.booleans(), stretch=st.sampled_from([0.02, 1.0, 4.0]),
       pads=st.sampled_from(["none", "VALID"]), act=act_attrs(), x_bits=st.sampled_from([8, 8, 12, 16]))
def test_pointwise_int8_engine_equals_reference(engine, seed, n, c, cout, sp, w_bits, out_bits, big, bias, stretch,
                                                pads, act, x_bits):
    """1x1 Conv with at most 8-bit weights on the int8 matrix-product engine (MatMulInteger,
    int32 sums): int8 activations in one product, 12- and 16-bit ones in two int8 limbs (the
    low limb's offset folded into the bias); full-scale weights and activations at the limits (the
    products a saturating int16 pair sum gets wrong), activations, accumulator and output
    saturation."""
    attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1, **act}
    if pads == "VALID":
        attrs["auto_pad"] = "VALID"
    case = dict(nd=2, n=n, c=c, cout=cout, cg=c, k=(1, 1), sp=sp, attrs=attrs, x_bits=x_bits, w_bits=w_bits,
                out_bits=out_bits, big=big, bias=bias, stretch=stretch, seed=seed)
    params, x = _conv_params(case)
    plan = fast_conv._PLANS.get(params)
    assert plan.int8 if x_bits == 8 else (plan.int16x8 and not plan.int8)
    same("Conv", FAST["Conv"], params, x)
    if int8_engine_exact():
        assert plan.i8 is not None


@pytest.mark.parametrize("compiled", [True, False])
def test_int8_limbs_hand_worked(compiled, monkeypatch):
    """``x = 256 * hi + lo + 128`` with both limbs int8, at the int16 limits and the byte edges."""
    from npuflow.sim.fast._common import int8_limbs

    if not compiled:
        monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    elif not _requant.HAVE_NUMBA:
        pytest.skip("numba not installed")
    x = np.array([-32768, -32767, -257, -256, -255, -129, -128, -1, 0, 1, 127, 128, 255, 256, 32767], np.int16)
    hi, lo = int8_limbs(x)
    assert hi.dtype == lo.dtype == np.int8
    np.testing.assert_array_equal(hi, [-128, -128, -2, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 1, 127])
    np.testing.assert_array_equal(lo, [-128, -127, 127, -128, -127, -1, 0, 127, -128, -127, -1, 0, 127, -128, 127])
    np.testing.assert_array_equal(256 * hi.astype(np.int64) + lo + 128, x)
    every = np.arange(-32768, 32768, dtype=np.int16).reshape(4, -1)
    h, low = int8_limbs(every)
    np.testing.assert_array_equal(256 * h.astype(np.int64) + low + 128, every)


def test_int8_engine_self_test_and_switch(monkeypatch):
    """The engine is checked against int64 numpy on this machine (exact where the CPU has VNNI, as
    CI's does: asserted there), and NPUFLOW_SIM_INT8=0 turns it off (the float32 engines then
    decide, with the same integers)."""
    if _has_vnni():
        assert int8_engine_exact()
    monkeypatch.setenv("NPUFLOW_SIM_INT8", "0")
    assert not int8_engine_exact()
    case = dict(nd=2, n=2, c=64, cout=5, cg=64, k=(1, 1), sp=(4, 4), x_bits=8, w_bits=8, out_bits=8, big=True,
                bias=True, stretch=1.0, seed=7, attrs={"kernel_shape": [1, 1], "group": 1})
    params, x = _conv_params(case)
    same("Conv", FAST["Conv"], params, x)
    assert fast_conv._PLANS.get(params).i8 is None


def test_conv_limb_paths_are_taken():
    """Full-scale weights make every split of ``choose`` happen (and still match)."""
    seen = set()
    for seed, (x_bits, w_bits, cg, k) in enumerate([(8, 8, 1, 1), (8, 8, 64, 5), (16, 8, 4, 3), (8, 16, 4, 3),
                                                     (8, 16, 128, 1), (16, 16, 1, 3), (16, 16, 64, 3), (16, 16, 512, 3)]):
        c = dict(nd=2, n=2, c=cg, cout=3, cg=cg, k=(k, k), sp=(6, 7), x_bits=x_bits, w_bits=w_bits, out_bits=8,
                 big=True, bias=True, stretch=1.0, seed=seed,
                 attrs={"kernel_shape": [k, k], "pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1],
                        "group": 1})
        params, x = _conv_params(c)
        seen.add(fast_conv._PLANS.get(params).choose(x))
        same("Conv", FAST["Conv"], params, x)
    # (Lx, bx, Lw): single pass, input split (int8 / int16), weight split, both; None: reference
    assert {(1, 0, 1), (2, 4, 1), (2, 8, 1), (1, 0, 2), (3, 6, 1), (2, 8, 2), None} <= seen, seen


@st.composite
def convt_cases(draw):
    c = draw(conv_cases(nd_choices=(1, 2)))
    nd = c["nd"]
    a = c["attrs"]
    s = a["strides"]
    d = a["dilations"]
    a["output_padding"] = [draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(nd)]
    if a["auto_pad"] == "NOTSET" and draw(st.booleans()):
        keff = [(c["k"][i] - 1) * d[i] + 1 for i in range(nd)]
        a["output_shape"] = [s[i] * (c["sp"][i] - 1) + keff[i] + draw(st.integers(-2, 1)) for i in range(nd)]
        assume(all(v >= 1 for v in a["output_shape"]))
    if a.get("activation") == "LeakyRelu":
        a.pop("activation_alpha")
        a["activation"] = "Relu"
    return c


@FAST_PROP
@given(c=convt_cases())
def test_conv_transpose_fast_equals_reference(engine, c):
    try:
        params, x = _conv_params(c, transpose=True)
        KERNELS["ConvTranspose"].eval(params, x)
    except ValueError:
        assume(False)
    same("ConvTranspose", FAST["ConvTranspose"], params, x)


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 5), k=st.integers(1, 40), n=st.integers(1, 6),
       trans_a=st.booleans(), trans_b=st.booleans(), runtime_b=st.booleans(), a_bits=st.sampled_from([8, 16]),
       b_bits=st.sampled_from([4, 8, 16]), big=st.booleans(), alpha=st.sampled_from([1.0, 0.5, -1.25]),
       bias=st.booleans(), act=act_attrs())
def test_gemm_fast_equals_reference(engine, seed, m, k, n, trans_a, trans_b, runtime_b, a_bits, b_bits, big,
                                    alpha, bias, act):
    rng = np.random.default_rng(seed)
    a_fmt = QFormat(a_bits, int(rng.integers(-2, 9)), 1.3)
    attrs = {"transA": int(trans_a), "transB": int(trans_b), "alpha": alpha, **act}
    b_shape = (n, k) if trans_b else (k, n)
    if runtime_b:
        b_fmt = QFormat(8 if b_bits == 4 else b_bits, 4, 1.1)
        weights = {}
    else:
        b_fmt = weight_fmt(rng, b_bits, n, 0 if trans_b else 1)
        weights = {"B": int_weights(rng, b_shape, b_bits, big)}
    if bias:
        weights["C"] = rng.normal(0, 2, n)
    o_fmt = out_fmt(rng, 8, a_fmt, b_fmt, k, 1.0)
    params = KERNELS["Gemm"].prepare(attrs, [a_fmt, b_fmt, None], o_fmt, weights)
    a = rand_q(rng, (k, m) if trans_a else (m, k), a_fmt, extreme=0.3 if big else 0.0)
    inputs = [a] if not runtime_b else [a, rand_q(rng, b_shape, b_fmt, extreme=0.3 if big else 0.0)]
    same("Gemm", FAST["Gemm"], params, *inputs)


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 4), k=st.sampled_from([1, 7, 300, 1280]), n=st.integers(1, 9),
       trans_a=st.booleans(), trans_b=st.booleans(), b_bits=st.sampled_from([4, 8]), big=st.booleans(),
       bias=st.booleans(), act=act_attrs(), op=st.sampled_from(["Gemm", "MatMul"]), lead=st.sampled_from([(), (2,)]),
       a_bits=st.sampled_from([8, 8, 12, 16]), out_bits=st.sampled_from([8, 16]),
       stretch=st.sampled_from([0.02, 1.0, 4.0]))
def test_gemm_matmul_int8_engine_equals_reference(engine, seed, m, k, n, trans_a, trans_b, b_bits, big, bias, act,
                                                  op, lead, a_bits, out_bits, stretch):
    """Gemm/MatMul with int8 (one product) or int16 (two int8 limbs) activations and a constant
    int8 B on the int8 engine (transposed product), full-scale values included."""
    rng = np.random.default_rng(seed)
    a_fmt = QFormat(a_bits, int(rng.integers(-2, 9)), 1.3)
    if op == "MatMul":
        trans_a = trans_b = False
        bias = False
        attrs = dict(act)
    else:
        lead = ()
        attrs = {"transA": int(trans_a), "transB": int(trans_b), **act}
    b_shape = (n, k) if trans_b else (k, n)
    b_fmt = weight_fmt(rng, b_bits, n, 0 if trans_b else 1)
    weights = {"B": int_weights(rng, b_shape, b_bits, big)}
    if bias:
        weights["C"] = rng.normal(0, 2, n)
    o_fmt = out_fmt(rng, out_bits, a_fmt, b_fmt, k, stretch)
    params = KERNELS[op].prepare(attrs, [a_fmt, b_fmt, None], o_fmt, weights)
    a = rand_q(rng, lead + ((k, m) if trans_a else (m, k)), a_fmt, extreme=0.3 if big else 0.0)
    same(op, FAST[op], params, a)
    if int8_engine_exact():
        assert "int8" in fast_matmul._PLANS.get(params).sessions


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), lead=st.lists(st.integers(1, 3), max_size=2), m=st.integers(1, 5),
       k=st.integers(1, 40), n=st.integers(1, 6), runtime_b=st.booleans(), a_bits=st.sampled_from([8, 16]),
       b_bits=st.sampled_from([4, 8, 16]), big=st.booleans(), act=act_attrs(leaky=False))
def test_matmul_fast_equals_reference(engine, seed, lead, m, k, n, runtime_b, a_bits, b_bits, big, act):
    rng = np.random.default_rng(seed)
    a_fmt = QFormat(a_bits, int(rng.integers(-2, 9)), 1.7)
    if runtime_b:
        b_fmt = QFormat(8 if b_bits == 4 else b_bits, 3, 1.2)
        weights = {}
    else:
        b_fmt = weight_fmt(rng, b_bits, n, -1)
        weights = {"B": int_weights(rng, (k, n), b_bits, big)}
    o_fmt = out_fmt(rng, 16, a_fmt, b_fmt, k, 1.0)
    params = KERNELS["MatMul"].prepare(act, [a_fmt, b_fmt], o_fmt, weights)
    a = rand_q(rng, tuple(lead) + (m, k), a_fmt, extreme=0.3 if big else 0.0)
    inputs = [a] if not runtime_b else [a, rand_q(rng, tuple(lead) + (k, n), b_fmt)]
    same("MatMul", FAST["MatMul"], params, *inputs)
