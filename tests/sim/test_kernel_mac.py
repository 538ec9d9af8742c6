"""Conv, ConvTranspose, Gemm, MatMul: hand vectors and properties against the float op applied
to the dequantized input, weights and bias. Stated bound: 0.5 LSB (+ multiplier slack)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.quant import quantize_bias, weight_format
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats
from tests.sim.helpers import (
    MULT_EPS,
    PROP,
    PROP_FEW,
    assert_kernel_output,
    out_format_for,
    qformats,
    rand_q,
    run_float,
    run_ort,
)

TESTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
BOUND = 0.5 + MULT_EPS

CONV = KERNELS["Conv"]
F8 = QFormat(8, 0, 1.0)


def conv1x1(x, w_q_value, w_fmt, out_fmt, bias=None, attrs=None, x_fmt=F8):
    W = np.full((1, 1, 1, 1), float(w_fmt.dequantize(np.array([w_q_value]))[0]))
    weights = {"W": W} if bias is None else {"W": W, "B": np.array([bias])}
    p = CONV.prepare(attrs or {}, [x_fmt, w_fmt], out_fmt, weights)
    return CONV.eval(p, np.asarray(x, dtype=x_fmt.dtype).reshape(1, 1, 1, -1)).ravel().tolist(), p


# ---------------------------------------------------------------------------------------------- hand vectors
def test_conv_rounding_ties_after_requantization():
    # w = 0.5 (q=1 at radix 1): acc = x, real multiplier 1/2: 1 -> 0.5 -> 0, 3 -> 1.5 -> 2, 5 -> 2.5 -> 2
    out, p = conv1x1([1, 3, 5, -5, -3, 7], 1, QFormat(8, 1, 1.0), F8)
    assert out == [0, 2, 2, -2, -2, 4]
    assert p.out.acc_bits == 32 and p.out.mult.tolist() == [2**30] and p.out.shift.tolist() == [0]


def test_conv_saturation_at_qmin_qmax():
    w_fmt = QFormat(8, 1, 1.0)
    W = np.full((1, 1, 3, 3), 1.0)  # q = 2
    p = CONV.prepare({}, [F8, w_fmt], F8, {"W": W})
    x = np.full((1, 1, 3, 3), 127, np.int8)
    st_ = KernelStats()
    assert CONV.eval(p, x, stats=st_).ravel().tolist() == [127]  # 127*2*9/2 = 1143 -> 127
    assert CONV.eval(p, np.full((1, 1, 3, 3), -128, np.int8), stats=st_).ravel().tolist() == [-128]
    assert st_.out_saturated == 2 and st_.acc_saturated == 0 and st_.out_elements == 2


def test_conv_negative_radix_output_and_bias_ties():
    # output LSB = 4 (radix -2): acc = 2x at factor 2; real = (1/4) / 2 = 1/8: 12 -> 1.5 -> 2 ; 20 -> 2.5 -> 2
    out, _ = conv1x1([6, 10, -6, 127], 2, QFormat(8, 1, 1.0), QFormat(8, -2, 1.0))
    assert out == [2, 2, -2, 32]
    # bias in the accumulator format (radix 0 + 1): 0.25 -> 0.5 -> 0 ; 0.75 -> 1.5 -> 2 ; -0.75 -> -2
    for b, bq in ((0.25, 0), (0.75, 2), (-0.75, -2), (1.25, 2)):
        _, p = conv1x1([0], 1, QFormat(8, 1, 1.0), F8, bias=b)
        assert p.out.bias.tolist() == [bq], b


def test_conv_accumulator_saturation_is_counted():
    # bias far beyond int32 saturates (prepare counts it); eval saturates the accumulator once
    _, p = conv1x1([127], 127, QFormat(8, 0, 1.0), QFormat(8, -40, 1.0), bias=1e12)
    assert p.out.bias.tolist() == [2**31 - 1] and p.out.bias_saturated == 1
    st_ = KernelStats()
    W = np.full((1, 1, 1, 1), 127.0)
    p2 = CONV.prepare({}, [F8, QFormat(8, 0, 1.0)], QFormat(8, -24, 1.0), {"W": W, "B": np.array([2.0**31 - 2])})
    CONV.eval(p2, np.array([[[[127]]]], np.int8), stats=st_)
    assert st_.acc_saturated == 1
    assert not p2.out.acc_may_overflow or p2.out.acc_bound > 2**31 - 1
    # int16 activations use a 48-bit accumulator: the same bias fits
    _, p3 = conv1x1([1], 127, QFormat(8, 0, 1.0), QFormat(16, -40, 1.0), bias=1e12, x_fmt=QFormat(16, 0, 1.0))
    assert p3.out.acc_bits == 48 and p3.out.bias_saturated == 0 and p3.out.bias.tolist() == [10**12]


def test_conv_fused_relu6_and_leaky():
    out, _ = conv1x1(
        [-5, 3, 20],
        2,
        QFormat(8, 1, 1.0),
        F8,
        attrs={"activation": "Clip", "activation_min": 0.0, "activation_max": 6.0},
    )
    assert out == [0, 3, 6]
    out, _ = conv1x1(
        [-8, -3, 3], 2, QFormat(8, 1, 1.0), F8, attrs={"activation": "LeakyRelu", "activation_alpha": 0.25}
    )
    assert out == [-2, -1, 3]  # -3 * 0.25 = -0.75 -> -1


def test_conv_int4_weights():
    W = np.array([[[[0.9, -0.3], [0.05, -1.0]]]])
    wf = weight_format(W, 4, 0)
    assert wf.bits == 4
    p = CONV.prepare({}, [F8, wf], QFormat(8, 2, 1.0), {"W": W})
    assert p.w_q.dtype == np.int8 and p.w_q.min() >= -8 and p.w_q.max() <= 7
    x = np.array([[[[100, -100], [50, 7]]]], np.int8)
    ref = (x.astype(float) * wf.dequantize(p.w_q)).sum()
    assert abs(int(CONV.eval(p, x).ravel()[0]) - np.clip(ref * 4, -128, 127)) <= BOUND


def test_eval_refuses_float_input():
    _, p = conv1x1([1], 1, QFormat(8, 1, 1.0), F8)
    with pytest.raises(TypeError):
        CONV.eval(p, np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError):
        CONV.eval(p, np.full((1, 1, 1, 1), 300, np.int16))  # outside the int8 input format


# ---------------------------------------------------------------------------------------------- properties
def _bias_deq(b, x_fmt, w_fmt):
    bq, bf, _ = quantize_bias(b, x_fmt, w_fmt)
    return bq, bq / bf.factor()


@PROP
@given(
    x_fmt=qformats(),
    w_bits=st.sampled_from([4, 8, 16]),
    out_bits=st.sampled_from([8, 16]),
    cin=st.integers(1, 4),
    depthwise=st.booleans(),
    cmul=st.integers(1, 2),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    strides=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    use_bias=st.booleans(),
    act=st.sampled_from([None, "Relu", "Clip"]),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_conv_property(
    x_fmt, w_bits, out_bits, cin, depthwise, cmul, k, strides, dil, pads, use_bias, act, stretch, seed
):
    rng = np.random.default_rng(seed)
    group = cin if depthwise else 1
    cout = group * cmul if depthwise else cmul + 1
    h = (k[0] - 1) * dil[0] + 1 + int(rng.integers(0, 4))
    w_ = (k[1] - 1) * dil[1] + 1 + int(rng.integers(0, 4))
    W = rng.normal(size=(cout, cin // group) + k) * rng.uniform(0.01, 4)
    w_fmt = weight_format(W, w_bits, 0)
    w_deq = w_fmt.dequantize(w_fmt.quantize(W))
    x_q = rand_q(rng, (1, cin, h, w_), x_fmt)
    attrs = {"group": group, "strides": list(strides), "dilations": list(dil), "pads": list(pads)}
    weights = {"W": W}
    consts = {"W": w_deq}
    if use_bias:
        b = rng.normal(size=cout) * 10
        bq, bdeq = _bias_deq(b, x_fmt, w_fmt)
        weights["B"], consts["B"] = b, bdeq
    ref = run_float("Conv", {"X": x_fmt.dequantize(x_q)}, attrs, consts)[0]
    if act == "Relu":
        ref = np.maximum(ref, 0)
    elif act == "Clip":
        ref = np.clip(ref, -1.0, 6.0)
    out_fmt = out_format_for(ref, out_bits, stretch)
    kattrs = dict(attrs, activation=act, activation_min=-1.0, activation_max=6.0) if act else attrs
    p = CONV.prepare(kattrs, [x_fmt, w_fmt], out_fmt, weights)
    if use_bias:
        assert p.out.bias.tolist() == bq.tolist()
    out = CONV.eval(p, x_q)
    # Clip bounds are themselves rounded into the output format (exact clip of the rounded value)
    assert_kernel_output(out, ref, out_fmt, BOUND)


@PROP_FEW
@given(
    auto_pad=st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_conv_auto_pad_and_1d(auto_pad, stride, seed):
    rng = np.random.default_rng(seed)
    x_fmt = QFormat(8, 4, 1.3)
    for shape, k in (((1, 2, 7, 6), (3, 2)), ((2, 2, 9), (3,))):
        W = rng.normal(size=(3, 2) + k)
        w_fmt = weight_format(W, 8, 0)
        x_q = rand_q(rng, shape, x_fmt)
        attrs = {"auto_pad": auto_pad, "strides": [stride] * len(k)}
        ref = run_float("Conv", {"X": x_fmt.dequantize(x_q)}, attrs, {"W": w_fmt.dequantize(w_fmt.quantize(W))})[0]
        out_fmt = out_format_for(ref, 8, 1.0)
        out = CONV.eval(CONV.prepare(attrs, [x_fmt, w_fmt], out_fmt, {"W": W}), x_q)
        assert_kernel_output(out, ref, out_fmt, BOUND)


@PROP
@given(
    x_fmt=qformats(),
    cin_g=st.integers(1, 3),
    group=st.integers(1, 2),
    cout_g=st.integers(1, 3),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 1)] * 4),
    out_pad=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    use_bias=st.booleans(),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_conv_transpose_property(x_fmt, cin_g, group, cout_g, k, strides, dil, pads, out_pad, use_bias, stretch, seed):
    rng = np.random.default_rng(seed)
    out_pad = tuple(min(o, s - 1) for o, s in zip(out_pad, strides))  # output_padding < stride
    cin = cin_g * group
    W = rng.normal(size=(cin, cout_g) + k)
    w_fmt = weight_format(W, 8, 1)
    x_q = rand_q(rng, (1, cin, int(rng.integers(1, 5)), int(rng.integers(1, 5))), x_fmt)
    for i in range(2):
        size = strides[i] * (x_q.shape[2 + i] - 1) + out_pad[i] + (k[i] - 1) * dil[i] + 1 - pads[i] - pads[i + 2]
        assume(size >= 1)
    attrs = {
        "group": group,
        "strides": list(strides),
        "dilations": list(dil),
        "pads": list(pads),
        "output_padding": list(out_pad),
    }
    weights = {"W": W}
    consts = {"W": w_fmt.dequantize(w_fmt.quantize(W))}
    if use_bias:
        b = rng.normal(size=cout_g * group)
        wf_full = QFormat(8, np.tile(w_fmt.radix_array(), group), np.tile(w_fmt.scale_array(), group), 0)
        bq, bdeq = _bias_deq(b, x_fmt, wf_full)
        weights["B"], consts["B"] = b, bdeq
    # onnxruntime as the float reference: onnx's ReferenceEvaluator rejects some dilated cases
    ref = run_ort("ConvTranspose", {"X": x_fmt.dequantize(x_q)}, attrs, consts)
    out_fmt = out_format_for(ref, 8, stretch)
    kern = KERNELS["ConvTranspose"]
    p = kern.prepare(attrs, [x_fmt, w_fmt], out_fmt, weights)
    if use_bias:
        assert p.out.bias.tolist() == bq.tolist()
    assert_kernel_output(kern.eval(p, x_q), ref, out_fmt, BOUND)


def test_conv_transpose_hand_vector():
    # 1-D, stride 2, kernel [1, 1] (q=1 at radix 0), input [3, -5]: canvas [3, 3, -5, -5]; output radix -1 halves:
    # 1.5 -> 2, -2.5 -> -2
    kern = KERNELS["ConvTranspose"]
    p = kern.prepare({"strides": [2]}, [F8, QFormat(8, 0, 1.0)], QFormat(8, -1, 1.0), {"W": np.ones((1, 1, 2))})
    assert kern.eval(p, np.array([[[3, -5]]], np.int8)).ravel().tolist() == [2, 2, -2, -2]


@PROP
@given(
    a_fmt=qformats(),
    m=st.integers(1, 4),
    kdim=st.integers(1, 6),
    n=st.integers(1, 5),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    alpha=st.sampled_from([1.0, 0.5, -1.5]),
    beta=st.sampled_from([1.0, 2.0, 0.0]),
    use_c=st.booleans(),
    w_bits=st.sampled_from([4, 8, 16]),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_gemm_property(a_fmt, m, kdim, n, trans_a, trans_b, alpha, beta, use_c, w_bits, stretch, seed):
    rng = np.random.default_rng(seed)
    a_q = rand_q(rng, (kdim, m) if trans_a else (m, kdim), a_fmt)
    B = rng.normal(size=(n, kdim) if trans_b else (kdim, n))
    b_fmt = weight_format(B, w_bits, 0 if trans_b else 1)
    attrs = {"transA": int(trans_a), "transB": int(trans_b), "alpha": alpha, "beta": beta}
    weights = {"B": B}
    consts = {"B": b_fmt.dequantize(b_fmt.quantize(B))}
    if use_c:
        C = rng.normal(size=n) * 5
        weights["C"] = C
        # the kernel quantizes beta*C/alpha into the accumulator format
        _, bdeq = _bias_deq(C * beta / alpha, a_fmt, QFormat(b_fmt.bits, b_fmt.radix, b_fmt.scale, 0))
        consts["C"] = bdeq * alpha / beta if beta != 0 else C
    ref = run_float("Gemm", {"A": a_fmt.dequantize(a_q)}, attrs, consts)[0]
    out_fmt = out_format_for(ref, 8, stretch)
    kern = KERNELS["Gemm"]
    p = kern.prepare(attrs, [a_fmt, b_fmt], out_fmt, weights)
    assert_kernel_output(kern.eval(p, a_q), ref, out_fmt, BOUND)


@PROP
@given(
    a_fmt=qformats(),
    b_fmt=qformats(),
    batch=st.sampled_from([(), (2,), (2, 1)]),
    m=st.integers(1, 3),
    kdim=st.integers(1, 5),
    n=st.integers(1, 4),
    const_b=st.booleans(),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_matmul_property(a_fmt, b_fmt, batch, m, kdim, n, const_b, stretch, seed):
    rng = np.random.default_rng(seed)
    a_q = rand_q(rng, batch + (m, kdim), a_fmt)
    kern = KERNELS["MatMul"]
    if const_b:
        B = rng.normal(size=(kdim, n))
        wf = weight_format(B, 8, -1)
        ref = run_float("MatMul", {"A": a_fmt.dequantize(a_q)}, {}, {"B": wf.dequantize(wf.quantize(B))})[0]
        out_fmt = out_format_for(ref, 16, stretch)
        out = kern.eval(kern.prepare({}, [a_fmt, wf], out_fmt, {"B": B}), a_q)
    else:
        b_q = rand_q(rng, batch + (kdim, n), b_fmt)
        ref = run_float("MatMul", {"A": a_fmt.dequantize(a_q), "B": b_fmt.dequantize(b_q)})[0]
        out_fmt = out_format_for(ref, 16, stretch)
        out = kern.eval(kern.prepare({}, [a_fmt, b_fmt], out_fmt, None), a_q, b_q)
    assert_kernel_output(out, ref, out_fmt, BOUND)


def test_gemm_hand_vector_alpha_negative():
    # A = [[2, 3]], B = [[1], [1]] (q=2 at radix 1), alpha = -0.5: -(2+3)*0.5 = -2.5 -> -2 ; C=0.25*beta 2 -> +0.5
    kern = KERNELS["Gemm"]
    p = kern.prepare(
        {"alpha": -0.5, "beta": 2.0}, [F8, QFormat(8, 1, 1.0)], F8, {"B": np.ones((2, 1)), "C": np.array([0.25])}
    )
    # acc = 2*2 + 3*2 = 10 (factor 2) ; bias = beta*C/alpha = -1.0 -> -2 in the accumulator ; (10 - 2) * (-0.5/2) = -2
    assert kern.eval(p, np.array([[2, 3]], np.int8)).tolist() == [[-2]]
    p = kern.prepare({"alpha": -0.5}, [F8, QFormat(8, 1, 1.0)], F8, {"B": np.ones((2, 1))})
    assert kern.eval(p, np.array([[2, 3], [1, 0], [3, 4]], np.int8)).ravel().tolist() == [-2, 0, -4]  # -2.5, -0.5, -3.5


def test_matmul_hand_vectors():
    k = KERNELS["MatMul"]
    # runtime x runtime: A in LSB 1/2, B in LSB 1: 0.5 + 1.0 = 1.5 -> 2 ; 0.5 + 2.0 = 2.5 -> 2 ; saturation
    p = k.prepare({}, [QFormat(8, 1, 1.0), F8], F8, None)
    b = np.array([[1], [1]], np.int8)
    assert k.eval(p, np.array([[1, 2], [1, 4], [127, 127]], np.int8), b).ravel().tolist() == [2, 2, 127]
    # int16 x int16 -> 48-bit accumulator: 2 * 30000**2 = 1.8e9 ; output LSB 2**16: 27465.82 -> 27466
    p = k.prepare({}, [QFormat(16, 0, 1.0), QFormat(16, 0, 1.0)], QFormat(16, -16, 1.0), None)
    assert p.out.acc_bits == 48
    out = k.eval(p, np.array([[30000, 30000]], np.int16), np.array([[30000], [30000]], np.int16))
    assert out.dtype == np.int16 and out.ravel().tolist() == [27466]
    # constant B per output column (radix 1 and 0): column 0 = 3 * 0.5 = 1.5 -> 2, column 1 = 3 * 1 = 3
    p = k.prepare({}, [F8, QFormat(8, (1, 0), (1.0, 1.0), -1)], F8, {"B": np.array([[0.5, 1.0]])})
    assert k.eval(p, np.array([[3], [5]], np.int8)).tolist() == [[2, 3], [2, 5]]  # 2.5 -> 2
