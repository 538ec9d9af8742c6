"""Add, Sub, Mul, Div, BatchNormalization: hand vectors (ties, saturation, negative radix,
different input formats) and properties.

Stated bounds: Mul/Div 0.5 LSB (+ multiplier slack); Add/Sub/BatchNormalization
0.5 + n * 2**-(P+1) LSB (two roundings: each input is rescaled with P = 20 extra fraction
bits, then the sum is rounded once more).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats
from tests.sim.helpers import MULT_EPS, PROP, assert_kernel_output, out_format_for, qformats, rand_q, run_float

TESTED_OPS = ("Add", "Sub", "Mul", "Div", "BatchNormalization")

ADD_BOUND = 0.5 + 2 * 2.0**-21 + MULT_EPS
MUL_BOUND = 0.5 + MULT_EPS

F0 = QFormat(8, 0, 1.0)  # LSB 1
F1 = QFormat(8, 1, 1.0)  # LSB 1/2
F2 = QFormat(8, 2, 1.0)  # LSB 1/4


def run(op, fmts, out, inputs, weights=None, attrs=None, stats=None):
    k = KERNELS[op]
    p = k.prepare(attrs or {}, fmts, out, weights)
    return k.eval(
        p, *[np.asarray(v, dtype=f.dtype) for v, f in zip(inputs, [f for f in fmts if f is not None])], stats=stats
    ).tolist()


# ---------------------------------------------------------------------------------------------- hand vectors
def test_add_same_format_saturates():
    st_ = KernelStats()
    assert run("Add", [F0, F0], F0, [[100, 100, -100], [27, 28, -29]], stats=st_) == [127, 127, -128]
    assert st_.out_saturated == 2


def test_add_ties_to_even():
    # a in LSB 1/2, output LSB 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -1.5 -> -2, -2.5 -> -2
    assert run("Add", [F1, F1], F0, [[1, 3, 5, -3, -5], [0, 0, 0, 0, 0]]) == [0, 2, 2, -2, -2]
    # different input formats: 1 + 0.5 = 1.5 -> 2 ; 2 + 0.5 = 2.5 -> 2 ; -2 - 0.5 -> -2
    assert run("Add", [F0, F2], F0, [[1, 2, -2], [2, 2, -2]]) == [2, 2, -2]


def test_add_negative_radix_and_constant_operand():
    # output LSB 4 (radix -2): 6 -> 1.5 -> 2 ; 10 -> 2.5 -> 2 ; 127 + 127 = 254 -> 63.5 -> 64
    assert run("Add", [F0, F0], QFormat(8, -2, 1.0), [[3, 5, 127], [3, 5, 127]]) == [2, 2, 64]
    # constant B = 0.5: 1 -> 1.5 -> 2 ; 2 -> 2.5 -> 2
    assert run("Add", [F0, None], F0, [[1, 2, -1]], weights={"B": np.array(0.5)}) == [2, 2, 0]
    # constant A: Sub(0.5, x)
    assert run("Sub", [None, F0], F0, [[1, 2, -1]], weights={"A": np.array(0.5)}) == [0, -2, 2]


def test_sub_and_fused_relu():
    assert run("Sub", [F0, F1], F0, [[3, 3, -128], [1, 3, 127]]) == [2, 2, -128]  # 2.5->2, 1.5->2, sat
    assert run("Add", [F0, F0], F0, [[3, -3], [1, -1]], attrs={"activation": "Relu"}) == [4, 0]
    assert run(
        "Add",
        [F0, F0],
        F0,
        [[3, -3, 9], [1, -1, 9]],
        attrs={"activation": "Clip", "activation_min": -2.0, "activation_max": 6.0},
    ) == [4, -2, 6]


def test_mul_hand_vectors():
    assert run("Mul", [F0, F1], F0, [[3, 5, -5, 127], [1, 1, 1, 127]]) == [2, 2, -2, 127]  # 1.5, 2.5, -2.5, sat
    assert run("Mul", [F0, None], F0, [[3, 5, -128]], weights={"B": np.array(-0.5)}) == [-2, -2, 64]
    assert run("Mul", [None, F0], F0, [[4, 4]], weights={"A": np.array([0.0, 0.25])}) == [0, 1]
    # negative radix output and int16
    assert run("Mul", [QFormat(16, 0, 1.0), QFormat(16, 0, 1.0)], QFormat(16, -4, 1.0), [[300], [300]]) == [5625]


def test_div_hand_vectors():
    assert run("Div", [F0, None], F0, [[3, 5, -5, 7]], weights={"B": np.array(2.0)}) == [2, 2, -2, 4]
    assert run("Div", [F0, None], F0, [[3, 6]], weights={"B": np.array(-0.5)}) == [-6, -12]
    with pytest.raises(ValueError):
        KERNELS["Div"].prepare({}, [F0, None], F0, {"B": np.array(0.0)})
    with pytest.raises(ValueError):
        KERNELS["Div"].prepare({}, [F0, F0], F0, None)  # runtime divisor: CPU node


def test_batchnorm_hand_vector():
    # y = 0.5 * x + 0.25 per channel 0, y = -x for channel 1 (scale, B, mean 0, var 1 - eps)
    w = {
        "scale": np.array([0.5, -1.0]),
        "B": np.array([0.25, 0.0]),
        "input_mean": np.zeros(2),
        "input_var": np.ones(2) - 1e-5,
    }
    out = run(
        "BatchNormalization", [F0], F0, [np.array([[[1, 3, 5]], [[3, -128, 127]]]).reshape(1, 2, 1, 3)], weights=w
    )
    # ch0: 0.75 -> 1, 1.75 -> 2, 2.75 -> 3 ; ch1: -3, 128 -> 127, -127
    assert np.asarray(out).ravel().tolist() == [1, 2, 3, -3, 127, -127]
    # opset <= 14 schema names
    w_old = {"scale": w["scale"], "B": w["B"], "mean": w["input_mean"], "var": w["input_var"]}
    out_old = run(
        "BatchNormalization", [F0], F0, [np.array([[[1, 3, 5]], [[3, -128, 127]]]).reshape(1, 2, 1, 3)], weights=w_old
    )
    assert out_old == out


# ---------------------------------------------------------------------------------------------- properties
SHAPES = st.sampled_from([((3,), (3,)), ((2, 3), (3,)), ((2, 1, 4), (3, 1)), ((1, 3, 2, 2), (1, 3, 1, 1)), ((), (4,))])


@PROP
@given(
    op=st.sampled_from(["Add", "Sub"]),
    fa=qformats(),
    fb=qformats(),
    shapes=SHAPES,
    const_b=st.booleans(),
    out_bits=st.sampled_from([8, 16]),
    stretch=st.floats(0.4, 2.0),
    seed=st.integers(0, 2**31),
)
def test_add_sub_property(op, fa, fb, shapes, const_b, out_bits, stretch, seed):
    rng = np.random.default_rng(seed)
    a_q = rand_q(rng, shapes[0], fa)
    if const_b:
        b = rng.normal(size=shapes[1]) * float(rng.uniform(0.1, 100))
        ref = run_float(op, {"A": fa.dequantize(a_q)}, {}, {"B": b})[0]
        out_fmt = out_format_for(ref, out_bits, stretch)
        k = KERNELS[op]
        out = k.eval(k.prepare({}, [fa, None], out_fmt, {"B": b}), a_q)
    else:
        b_q = rand_q(rng, shapes[1], fb)
        ref = run_float(op, {"A": fa.dequantize(a_q), "B": fb.dequantize(b_q)})[0]
        out_fmt = out_format_for(ref, out_bits, stretch)
        k = KERNELS[op]
        out = k.eval(k.prepare({}, [fa, fb], out_fmt, None), a_q, b_q)
    assert_kernel_output(out, ref, out_fmt, ADD_BOUND)


@PROP
@given(
    op=st.sampled_from(["Mul", "Div"]),
    fa=qformats(),
    fb=qformats(),
    shapes=SHAPES,
    const_b=st.booleans(),
    out_bits=st.sampled_from([8, 16]),
    stretch=st.floats(0.4, 2.0),
    seed=st.integers(0, 2**31),
)
def test_mul_div_property(op, fa, fb, shapes, const_b, out_bits, stretch, seed):
    rng = np.random.default_rng(seed)
    a_q = rand_q(rng, shapes[0], fa)
    k = KERNELS[op]
    if const_b or op == "Div":
        b = rng.normal(size=shapes[1]) * float(rng.uniform(0.1, 10))
        b = np.where(b == 0, 1.0, b)
        ref = run_float(op, {"A": fa.dequantize(a_q)}, {}, {"B": b})[0]
        out_fmt = out_format_for(ref, out_bits, stretch)
        out = k.eval(k.prepare({}, [fa, None], out_fmt, {"B": b}), a_q)
    else:
        b_q = rand_q(rng, shapes[1], fb)
        ref = run_float(op, {"A": fa.dequantize(a_q), "B": fb.dequantize(b_q)})[0]
        out_fmt = out_format_for(ref, out_bits, stretch)
        out = k.eval(k.prepare({}, [fa, fb], out_fmt, None), a_q, b_q)
    assert_kernel_output(out, ref, out_fmt, MUL_BOUND)


@PROP
@given(
    fx=qformats(),
    c=st.integers(1, 4),
    out_bits=st.sampled_from([8, 16]),
    stretch=st.floats(0.4, 2.0),
    seed=st.integers(0, 2**31),
)
def test_batchnorm_property(fx, c, out_bits, stretch, seed):
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, (2, c, 3, 2), fx)
    w = {
        "scale": rng.normal(size=c) * 3,
        "B": rng.normal(size=c) * 5,
        "input_mean": rng.normal(size=c),
        "input_var": rng.uniform(0.01, 4, size=c),
    }
    ref = run_float(
        "BatchNormalization",
        {"X": fx.dequantize(x_q)},
        {"epsilon": 1e-5},
        w,
        order=["X", "scale", "B", "input_mean", "input_var"],
    )[0]
    out_fmt = out_format_for(ref, out_bits, stretch)
    k = KERNELS["BatchNormalization"]
    out = k.eval(k.prepare({"epsilon": 1e-5}, [fx], out_fmt, w), x_q)
    assert_kernel_output(out, ref, out_fmt, ADD_BOUND)
