"""Relu, Clip, LeakyRelu, PRelu. Bounds: 0 LSB when the output format equals the input's
(Relu, Clip), else 0.5 LSB (+ multiplier slack); LeakyRelu/PRelu 0.5 LSB."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from tests.sim.helpers import MULT_EPS, PROP, assert_kernel_output, out_format_for, qformats, rand_q, run_float

TESTED_OPS = ("Relu", "Clip", "LeakyRelu", "PRelu")
BOUND = 0.5 + MULT_EPS
F0 = QFormat(8, 0, 1.0)
F1 = QFormat(8, 1, 1.0)


def run(op, fin, fout, x, attrs=None, weights=None):
    k = KERNELS[op]
    return k.eval(k.prepare(attrs or {}, [fin], fout, weights), np.asarray(x, dtype=fin.dtype)).tolist()


def test_relu_same_format_is_exact_and_requantizes_otherwise():
    assert run("Relu", F0, F0, [-128, -1, 0, 1, 127]) == [0, 0, 0, 1, 127]
    assert run("Relu", F1, F0, [-3, 1, 3, 5, 127]) == [0, 0, 2, 2, 64]  # 0.5->0, 1.5->2, 2.5->2, 63.5->64
    assert run("Relu", QFormat(16, 0, 1.0), F0, [300, -300]) == [127, 0]  # saturation int16 -> int8


def test_clip_bounds_round_into_output_format():
    # Clip(x, 0, 6) = Relu6 on LSB 1/2: 6.0 -> 12 exactly
    assert run("Clip", F1, F1, [-5, 3, 11, 12, 13, 127], weights={"min": np.array(0.0), "max": np.array(6.0)}) == [
        0,
        3,
        11,
        12,
        12,
        12,
    ]
    # opset < 11 attributes; bound 1.25 on LSB 1 rounds to 1 (exact result of clip then round)
    assert run("Clip", F1, F0, [1, 3, 5, -7], attrs={"min": -1.25, "max": 1.25}) == [0, 1, 1, -1]
    # shape-(1,) constants, as some exporters write them
    assert run("Clip", F1, F1, [-5, 13], weights={"min": np.array([0.0]), "max": np.array([6.0])}) == [0, 12]
    # only a max
    assert run("Clip", F0, F0, [-128, 100], weights={"max": np.array(50.0)}) == [-128, 50]


def test_leaky_relu_hand_vectors():
    assert run("LeakyRelu", F0, F0, [-3, -5, -6, 4, -128], attrs={"alpha": 0.5}) == [-2, -2, -3, 4, -64]
    assert run("LeakyRelu", F0, F0, [-3, 4], attrs={"alpha": -1.0}) == [3, 4]  # negative slope
    assert run("LeakyRelu", F0, QFormat(8, -1, 1.0), [-128, 127, 3, 5], attrs={"alpha": 0.1}) == [-6, 64, 2, 2]


def test_prelu_per_channel_slope():
    x = np.array([[[-4], [-4], [4]]], dtype=np.int8)  # (1, 3, 1)
    slope = np.array([[0.25], [-0.5], [3.0]])
    assert np.asarray(run("PRelu", F0, F0, x, weights={"slope": slope})).ravel().tolist() == [-1, 2, 4]


@PROP
@given(
    op=st.sampled_from(["Relu", "Clip", "LeakyRelu", "PRelu"]),
    fin=qformats(),
    same=st.booleans(),
    out_bits=st.sampled_from([8, 16]),
    stretch=st.floats(0.4, 2.0),
    alpha=st.floats(-2, 2),
    lo=st.floats(-50, 0),
    width=st.floats(0, 100),
    seed=st.integers(0, 2**31),
)
def test_activation_property(op, fin, same, out_bits, stretch, alpha, lo, width, seed):
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, (2, 3, 4), fin)
    x = fin.dequantize(x_q)
    attrs: dict = {}
    weights = None
    consts: dict = {}
    if op == "LeakyRelu":
        attrs = {"alpha": float(np.float32(alpha))}  # an ONNX attribute is float32 (0.7 is not)
    elif op == "Clip":
        consts = weights = {"min": np.array(lo), "max": np.array(lo + width)}
    elif op == "PRelu":
        consts = weights = {"slope": rng.normal(size=(3, 1))}
    ref = run_float(op, {"X": x}, attrs, consts, order=["X"] + list(consts))[0]
    out_fmt = fin if same and op in ("Relu", "Clip") else out_format_for(ref, out_bits, stretch)
    assume(float(out_fmt.factor()[0] / fin.factor()[0]) < 2.0**30)  # representable requantization (spec 4)
    k = KERNELS[op]
    out = k.eval(k.prepare(attrs, [fin], out_fmt, weights), x_q)
    bound = 1e-9 if (out_fmt == fin and op == "Relu") else BOUND  # exact up to float64 round trip
    if op == "Clip" and out_fmt == fin:
        bound = 0.5  # only the clip bounds are rounded
    assert_kernel_output(out, ref, out_fmt, bound)
