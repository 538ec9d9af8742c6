"""Table nonlinearities (Sigmoid, Tanh, Exp, HardSigmoid, HardSwish, Swish = fused SiLU) and
Softmax. Tables cover the whole int8/int16 input domain, so every output is correctly rounded:
bound 0.5 LSB. Softmax: 0.5 + f_out * (N + 1) * 2**-31 LSB (exp table rounding)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat, qrange
from npuflow.sim.kernels import KERNELS, KernelStats
from tests.sim.helpers import MULT_EPS, PROP, PROP_FEW, assert_kernel_output, qformats, rand_q, run_float

LUT_OPS = ("Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Swish")
TESTED_OPS = LUT_OPS + ("Softmax",)
BOUND = 0.5 + 1e-6  # float evaluation slack of the reference (float32 constants in ONNX reference ops)
OPSET = {"Swish": 24, "HardSwish": 22}


def lut(op, fin, fout, x, attrs=None, stats=None):
    k = KERNELS[op]
    return k.eval(k.prepare(attrs or {}, [fin], fout, None), np.asarray(x, dtype=fin.dtype), stats=stats)


def test_sigmoid_hand_vectors():
    # input LSB 1/16, output radix 7 scale 1 (LSB 1/128; 1.0 saturates to 127)
    fin, fout = QFormat(8, 4, 1.0), QFormat(8, 7, 1.0)
    st_ = KernelStats()
    out = lut("Sigmoid", fin, fout, [0, 127, -128, 16], stats=st_).tolist()
    # sigmoid(0) = 0.5 -> 64 ; sigmoid(7.94) = 0.99965 -> 127.96 -> 128 -> 127 (saturated)
    # sigmoid(-8) = 3.35e-4 -> 0.043 -> 0 ; sigmoid(1) = 0.731 -> 93.58 -> 94
    assert out == [64, 127, 0, 94]
    assert st_.out_saturated == 1


def test_hard_sigmoid_and_hard_swish_ties():
    # HardSigmoid alpha 0.25 beta 0.5 at x = 1 (LSB 1/2 input): 0.75 ; output LSB 1/2: 1.5 -> 2 (tie to even)
    assert lut(
        "HardSigmoid", QFormat(8, 1, 1.0), QFormat(8, 1, 1.0), [2, 0, -4, 4], {"alpha": 0.25, "beta": 0.5}
    ).tolist() == [2, 1, 0, 2]
    # HardSwish(3) = 3, HardSwish(-3) = 0, HardSwish(1) = 1*(1/6+0.5) = 0.667 -> 1 ; (-1.5) -> -0.375 -> 0 (LSB 1)
    assert lut("HardSwish", QFormat(8, 1, 1.0), QFormat(8, 0, 1.0), [6, -6, 2, -3]).tolist() == [3, 0, 1, 0]


def test_swish_is_fused_silu():
    # x = q/2, output LSB 1/4: 2 * sigmoid(2) = 1.7616 -> 7.05 -> 7 ; -1 * sigmoid(-1) = -0.2689 -> -1.08 -> -1 ;
    # 63.5 -> 254 -> 127 (saturated) ; -64 * sigmoid(-64) ~ -1e-26 -> 0
    assert lut("Swish", QFormat(8, 1, 1.0), QFormat(8, 2, 1.0), [4, -2, 127, -128, 0]).tolist() == [7, -1, 127, 0, 0]


def test_exp_saturates_and_negative_radix():
    # input LSB 1 (radix 0), output radix -4 (LSB 16): exp(5) = 148.4 -> 9.28 -> 9 ; exp(10) -> 1376 -> 127
    assert lut("Exp", QFormat(8, 0, 1.0), QFormat(8, -4, 1.0), [5, 10, -3]).tolist() == [9, 127, 0]


def test_int16_table_and_width_limit():
    fin, fout = QFormat(16, 12, 1.0), QFormat(16, 15, 1.0)
    x = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    out = lut("Tanh", fin, fout, x)
    assert out.dtype == np.int16
    ref = np.clip(np.rint(np.tanh(x / 4096.0) * 32768), -32768, 32767)
    assert out.tolist() == ref.tolist()
    with pytest.raises(ValueError):
        KERNELS["Sigmoid"].prepare({}, [QFormat(32, 0, 1.0)], fout, None)


@PROP
@given(
    op=st.sampled_from(LUT_OPS),
    fin=qformats(radix=(-2, 14)),
    out_bits=st.sampled_from([8, 16]),
    out_radix=st.integers(-3, 15),
    seed=st.integers(0, 2**31),
)
def test_lut_property(op, fin, out_bits, out_radix, seed):
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, (4, 16), fin)
    # ONNX float attributes are float32: pass values that are exact in float32
    attrs = {"alpha": float(np.float32(0.3)), "beta": float(np.float32(0.4))} if op == "HardSigmoid" else {}
    with np.errstate(over="ignore", invalid="ignore"):
        ref = run_float(op, {"X": fin.dequantize(x_q)}, attrs, opset=OPSET.get(op, 21))[0]
    fout = QFormat(out_bits, min(out_radix, out_bits - 1), 1.0)
    assert_kernel_output(lut(op, fin, fout, x_q, attrs), ref, fout, BOUND)


def test_lut_covers_whole_int8_domain_exactly():
    fin, fout = QFormat(8, 5, 1.37), QFormat(8, 7, 1.0)
    x = np.arange(-128, 128, dtype=np.int8)
    out = lut("Sigmoid", fin, fout, x)
    ref = np.clip(np.rint(1 / (1 + np.exp(-fin.dequantize(x))) * 128), -128, 127)
    assert out.tolist() == ref.tolist()


# ---------------------------------------------------------------------------------------------- softmax
def softmax_bound(fout: QFormat, n: int) -> float:
    return 0.5 + float(fout.factor()[0]) * (n + 1) * 2.0**-31 + MULT_EPS


def test_softmax_hand_vectors():
    k = KERNELS["Softmax"]
    fin, fout = QFormat(8, 0, 1.0), QFormat(8, 7, 1.0)
    p = k.prepare({"axis": -1}, [fin], fout, None)
    # equal inputs: 1/4 each -> 32 exactly; two equal: 0.5 -> 64 ; one dominant (100 vs 0): 1 -> 128 -> 127
    out = k.eval(p, np.array([[5, 5, 5, 5], [7, 7, -128, -128], [100, 0, 0, 0]], np.int8)).tolist()
    assert out == [[32, 32, 32, 32], [64, 64, 0, 0], [127, 0, 0, 0]]
    # shift invariance (max subtraction): same output for x and x + c
    a = k.eval(p, np.array([[1, 2, 3]], np.int8))
    b = k.eval(p, np.array([[101, 102, 103]], np.int8))
    assert a.tolist() == b.tolist()
    assert p.exp_table[0] == 2**30


@PROP
@given(
    fin=qformats(radix=(-2, 12)),
    out_bits=st.sampled_from([8, 16]),
    n=st.integers(1, 64),
    axis=st.sampled_from([0, 1, -1]),
    seed=st.integers(0, 2**31),
)
def test_softmax_property(fin, out_bits, n, axis, seed):
    rng = np.random.default_rng(seed)
    shape = [3, 2, 2]
    shape[axis] = n
    x_q = rand_q(rng, shape, fin)
    ref = run_float("Softmax", {"X": fin.dequantize(x_q)}, {"axis": axis})[0]
    fout = QFormat(out_bits, out_bits - 1, 1.0)
    k = KERNELS["Softmax"]
    out = k.eval(k.prepare({"axis": axis}, [fin], fout, None), x_q)
    assert_kernel_output(out, ref, fout, softmax_bound(fout, n))


@PROP_FEW
@given(seed=st.integers(0, 2**31))
def test_softmax_int16_wide_row(seed):
    rng = np.random.default_rng(seed)
    fin, fout = QFormat(16, 11, 1.0), QFormat(16, 15, 1.0)
    x_q = rand_q(rng, (1, 1000), fin)
    ref = run_float("Softmax", {"X": fin.dequantize(x_q)}, {"axis": -1})[0]
    k = KERNELS["Softmax"]
    out = k.eval(k.prepare({}, [fin], fout, None), x_q)
    assert_kernel_output(out, ref, fout, softmax_bound(fout, 1000))
    assert qrange(16)[1] >= out.max()


@PROP_FEW
@given(fin=qformats(radix=(-2, 12)), axis=st.sampled_from([0, 1, 2, 3, -1, -2]), seed=st.integers(0, 2**31))
def test_softmax_coerce_2d_is_softmax_11(fin, axis, seed):
    """``coerce_2d = 1`` (spec 8): opset-11 semantics, normalised over every axis from ``axis`` on;
    the integers equal the one-axis kernel on the input reshaped to 2-D at ``axis``."""
    rng = np.random.default_rng(seed)
    shape = (2, 3, 2, 4)
    x_q = rand_q(rng, shape, fin)
    fout = QFormat(8, 7, 1.0)
    k = KERNELS["Softmax"]
    out = k.eval(k.prepare({"axis": axis, "coerce_2d": 1}, [fin], fout, None), x_q)
    a = axis % len(shape)
    flat = x_q.reshape(int(np.prod(shape[:a])), -1)
    two_d = k.eval(k.prepare({"axis": -1}, [fin], fout, None), flat).reshape(shape)
    np.testing.assert_array_equal(out, two_d)
    # float64 reference of the opset-11 definition (onnx's ReferenceEvaluator applies opset-13
    # semantics to Softmax-11; onnxruntime agrees with this formula)
    xf = fin.dequantize(flat)
    e = np.exp(xf - xf.max(axis=1, keepdims=True))
    ref = (e / e.sum(axis=1, keepdims=True)).reshape(shape)
    assert_kernel_output(out, ref, fout, softmax_bound(fout, flat.shape[1]))
    # without the flag the default axis is -1 (opset 13), with it 1 (opset < 13)
    assert k.prepare({}, [fin], fout, None).axis == -1
    assert k.prepare({"coerce_2d": 1}, [fin], fout, None).axis == 1
