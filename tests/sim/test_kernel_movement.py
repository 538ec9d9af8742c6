"""Data movement (format passes through: bound 0, bit-exact against the ONNX op on the integers)
and Concat (bound 0 for inputs already in the output format, else 0.5 LSB)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from tests.sim.helpers import MULT_EPS, PROP, assert_kernel_output, qformats, rand_q, run_float

TESTED_OPS = (
    "Concat",
    "Identity",
    "Reshape",
    "Flatten",
    "Transpose",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Split",
    "Pad",
)
BOUND = 0.5 + MULT_EPS
F0 = QFormat(8, 0, 1.0)

# (op, input shape, attrs, constant inputs keyed by schema name, ONNX input order)
CASES = [
    ("Identity", (2, 3), {}, {}, ["data"]),
    ("Reshape", (2, 3, 4), {}, {"shape": np.array([0, -1], np.int64)}, ["data", "shape"]),
    ("Reshape", (2, 3, 4), {}, {"shape": np.array([4, 3, 2], np.int64)}, ["data", "shape"]),
    ("Flatten", (2, 3, 4), {"axis": 2}, {}, ["data"]),
    ("Flatten", (2, 3, 4), {"axis": 0}, {}, ["data"]),
    ("Transpose", (2, 3, 4), {"perm": [2, 0, 1]}, {}, ["data"]),
    ("Transpose", (2, 3, 4), {}, {}, ["data"]),
    (
        "Slice",
        (5, 6),
        {},
        {
            "starts": np.array([1, -2], np.int64),
            "ends": np.array([100, 0], np.int64),
            "axes": np.array([0, 1], np.int64),
            "steps": np.array([2, -1], np.int64),
        },
        ["data", "starts", "ends", "axes", "steps"],
    ),
    (
        "Slice",
        (5, 6),
        {},
        {"starts": np.array([-100], np.int64), "ends": np.array([3], np.int64)},
        ["data", "starts", "ends"],
    ),
    (
        "Slice",
        (5, 6),
        {},
        {
            "starts": np.array([4], np.int64),
            "ends": np.array([-100], np.int64),
            "axes": np.array([1], np.int64),
            "steps": np.array([-2], np.int64),
        },
        ["data", "starts", "ends", "axes", "steps"],
    ),
    ("Squeeze", (1, 3, 1, 2), {}, {"axes": np.array([0, -2], np.int64)}, ["data", "axes"]),
    ("Squeeze", (1, 3, 1, 2), {}, {}, ["data"]),
    ("Unsqueeze", (3, 2), {}, {"axes": np.array([0, -1], np.int64)}, ["data", "axes"]),
    ("Gather", (4, 3), {"axis": 0}, {"indices": np.array([3, -1, 0], np.int64)}, ["data", "indices"]),
    ("Gather", (4, 3), {"axis": 1}, {"indices": np.array([[2, 0], [1, 1]], np.int64)}, ["data", "indices"]),
    ("Gather", (4, 3), {"axis": 1}, {"indices": np.array(1, np.int64)}, ["data", "indices"]),
    ("Pad", (2, 3), {"mode": "constant"}, {"pads": np.array([1, 0, 0, 2], np.int64)}, ["data", "pads"]),
    ("Pad", (2, 3), {"mode": "reflect"}, {"pads": np.array([1, 2, 1, 2], np.int64)}, ["data", "pads"]),
    ("Pad", (2, 3), {"mode": "edge"}, {"pads": np.array([0, 2, 1, 0], np.int64)}, ["data", "pads"]),
]


@pytest.mark.parametrize("op, shape, attrs, consts, order", CASES)
def test_data_movement_is_bit_exact(op, shape, attrs, consts, order):
    rng = np.random.default_rng(0)
    for fmt in (QFormat(8, 3, 1.3), QFormat(16, -2, 1.0)):
        x_q = rand_q(rng, shape, fmt)
        ref = run_float(op, {"data": x_q.astype(np.int64)}, attrs, consts, order=order)[0]
        k = KERNELS[op]
        out = k.eval(k.prepare(attrs, [fmt] + [None] * (len(order) - 1), fmt, consts), x_q)
        assert out.dtype == fmt.dtype
        assert out.tolist() == ref.tolist()


def test_gather_runtime_indices_and_pad_constant_value():
    k = KERNELS["Gather"]
    p = k.prepare({"axis": 0}, [F0, None], F0, None)
    assert k.eval(p, np.array([5, 6, 7], np.int8), np.array([2, 0], np.int64)).tolist() == [7, 5]
    with pytest.raises(TypeError):
        k.eval(p, np.array([5, 6, 7], np.int8), np.array([2.0]))
    # Pad value 2.5 in LSB 1 -> 2 (tie to even); 300 saturates to 127
    kp = KERNELS["Pad"]
    for v, q in ((2.5, 2), (3.5, 4), (300.0, 127), (-0.5, 0)):
        p = kp.prepare({}, [F0], F0, {"pads": np.array([1, 0]), "constant_value": np.array(v)})
        assert kp.eval(p, np.array([9], np.int8)).tolist() == [q, 9]


def test_pad_negative_pads_crop():
    k = KERNELS["Pad"]
    x = np.array([[1, 2, 3], [4, 5, 6]], np.int8)
    p = k.prepare({}, [F0, None], F0, {"pads": np.array([-1, 1, 0, -1])})  # drop row 0, add a column, drop last column
    assert k.eval(p, x).tolist() == [[0, 4, 5]]


def test_split_hand_vectors():
    k = KERNELS["Split"]
    x = np.arange(7, dtype=np.int8)
    outs = k.eval(k.prepare({"axis": 0}, [F0, None], [F0, F0], {"split": np.array([3, 4])}), x)
    assert [o.tolist() for o in outs] == [[0, 1, 2], [3, 4, 5, 6]]
    outs = k.eval(k.prepare({"axis": 0, "num_outputs": 3}, [F0], [F0, F0, F0]), x)  # ceil split: 3, 3, 1
    assert [o.tolist() for o in outs] == [[0, 1, 2], [3, 4, 5], [6]]
    # one output in another format: requantized to LSB 2: 3 -> 1.5 -> 2, 4 -> 2, 5 -> 2.5 -> 2, 6 -> 3
    outs = k.eval(k.prepare({"axis": 0}, [F0], [F0, QFormat(8, -1, 1.0)], {"split": np.array([3, 4])}), x)
    assert outs[1].tolist() == [2, 2, 2, 3]


def test_concat_hand_vectors():
    k = KERNELS["Concat"]
    a = np.array([[1, 3]], np.int8)  # LSB 1/2 -> 0.5, 1.5
    b = np.array([[5, -128]], np.int8)  # LSB 1
    p = k.prepare({"axis": 1}, [QFormat(8, 1, 1.0), F0], F0, None)
    assert k.eval(p, a, b).tolist() == [[0, 2, 5, -128]]
    assert p.rqs[1].identity and not p.rqs[0].identity
    # output with a coarser LSB saturates nothing but rounds: LSB 4
    p = k.prepare({"axis": 0}, [F0, F0], QFormat(8, -2, 1.0), None)
    assert k.eval(p, np.array([6], np.int8), np.array([10], np.int8)).tolist() == [2, 2]


@PROP
@given(fa=qformats(), fb=qformats(), shared=st.booleans(), axis=st.sampled_from([0, 1, -1]), seed=st.integers(0, 2**31))
def test_concat_property(fa, fb, shared, axis, seed):
    rng = np.random.default_rng(seed)
    if shared:
        fb = fa
    a_q = rand_q(rng, (2, 3, 2), fa)
    b_q = rand_q(rng, (2, 3, 2), fb)
    ref = run_float("Concat", {"A": fa.dequantize(a_q), "B": fb.dequantize(b_q)}, {"axis": axis})[0]
    out_fmt = fa
    k = KERNELS["Concat"]
    out = k.eval(k.prepare({"axis": axis}, [fa, fb], out_fmt, None), a_q, b_q)
    assert_kernel_output(out, ref, out_fmt, 1e-9 if shared else BOUND)


@PROP
@given(fin=qformats(), fout=qformats(), case=st.sampled_from(CASES), seed=st.integers(0, 2**31))
def test_data_movement_with_format_change(fin, fout, case, seed):
    op, shape, attrs, consts, order = case
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, shape, fin)
    ref = run_float(op, {"data": fin.dequantize(x_q)}, attrs, consts, order=order)[0]
    k = KERNELS[op]
    out = k.eval(k.prepare(attrs, [fin] + [None] * (len(order) - 1), fout, consts), x_q)
    assert_kernel_output(out, ref, fout, 1e-9 if fin == fout else BOUND)
