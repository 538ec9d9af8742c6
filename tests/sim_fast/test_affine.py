"""Fast BatchNormalization, Add/Sub with a per-channel constant, Mul and Relu/Clip return the
reference integers (sim/fast/affine.py): Hypothesis over shapes, broadcasts, formats and
activations, plus hand-worked ties and saturation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fast import FAST
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats
from tests.sim_fast.helpers import FAST_PROP, act_attrs, rand_q, same

fmts = st.builds(lambda b, r, s: QFormat(b, r, s), st.sampled_from([8, 16]), st.integers(-3, 12),
                 st.sampled_from([1.0, 1.37, 1.99]))
shapes = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


def _prepare(op, attrs, formats, fo, weights=None):
    try:
        return KERNELS[op].prepare(attrs, formats, fo, weights)
    except ValueError:
        assume(False)


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), fi=fmts, fo=fmts, shape=shapes, spread=st.floats(0.01, 50))
def test_batch_norm_fast_equals_reference(seed, fi, fo, shape, spread):
    rng = np.random.default_rng(seed)
    c = shape[1]
    weights = {"scale": rng.normal(0, spread, c), "B": rng.normal(0, spread, c), "input_mean": rng.normal(0, 2, c),
               "input_var": rng.uniform(0.01, 4, c)}
    params = _prepare("BatchNormalization", {"epsilon": 1e-5}, [fi], fo, weights)
    same("BatchNormalization", FAST["BatchNormalization"], params, rand_q(rng, shape, fi, extreme=0.2))


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["Add", "Sub"]), which=st.sampled_from(["A", "B"]),
       fi=fmts, fo=fmts, shape=shapes, const=st.sampled_from(["channel", "channel_nd", "sample_channel", "last"]),
       act=act_attrs(leaky=False))
def test_add_sub_channel_constant_equals_reference(seed, op, which, fi, fo, shape, const, act):
    rng = np.random.default_rng(seed)
    c = shape[1]
    cshape = {"channel": (c,) + (1,) * (len(shape) - 2), "channel_nd": (1, c) + (1,) * (len(shape) - 2),
              "sample_channel": shape[:2] + (1,) * (len(shape) - 2), "last": shape[-1:]}[const]
    other = "B" if which == "A" else "A"
    formats = [fi, None] if which == "A" else [None, fi]
    params = _prepare(op, act, formats, fo, {other: rng.normal(0, 4, cshape)})
    same(op, FAST[op], params, rand_q(rng, shape, fi, extreme=0.2))


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), fa=fmts, fb=fmts, fo=fmts, shape=shapes,
       kind=st.sampled_from(["same", "b_channel", "a_channel", "b_sample_channel", "other_broadcast", "const_scalar",
                             "const_channel", "const_element"]),
       act=act_attrs(leaky=False))
def test_mul_fast_equals_reference(seed, fa, fb, fo, shape, kind, act):
    rng = np.random.default_rng(seed)
    c = shape[1]
    per_c = (1, c) + (1,) * (len(shape) - 2)
    if kind.startswith("const"):
        cshape = {"const_scalar": (), "const_channel": per_c, "const_element": shape}[kind]
        params = _prepare("Mul", act, [fa, None], fo, {"B": rng.normal(0, 3, cshape)})
        same("Mul", FAST["Mul"], params, rand_q(rng, shape, fa, extreme=0.2))
        return
    sa, sb = {"same": (shape, shape), "b_channel": (shape, per_c), "a_channel": (per_c, shape),
              "b_sample_channel": (shape, shape[:2] + (1,) * (len(shape) - 2)),
              "other_broadcast": (shape, (1,) * (len(shape) - 1) + shape[-1:])}[kind]
    params = _prepare("Mul", act, [fa, fb], fo)
    same("Mul", FAST["Mul"], params, rand_q(rng, sa, fa, extreme=0.2), rand_q(rng, sb, fb, extreme=0.2))


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["Relu", "Clip"]), fi=fmts, fo=fmts,
       shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), lo=st.floats(-5, 1), width=st.floats(0.1, 8))
def test_relu_clip_fast_equal_reference(seed, op, fi, fo, shape, lo, width):
    rng = np.random.default_rng(seed)
    attrs = {"min": lo, "max": lo + width} if op == "Clip" else {}
    params = _prepare(op, attrs, [fi], fo)
    same(op, FAST[op], params, rand_q(rng, shape, fi, extreme=0.2))


def test_mul_hand_worked_ties_and_saturation():
    """out = RNE(qa * qb / 2) (output factor half the product's): ties go to even, both
    directions; 127 * 127 and -128 * -128 saturate."""
    one, half = QFormat(8, 0, 1.0), QFormat(8, -1, 1.0)
    params = KERNELS["Mul"].prepare({}, [one, one], half)
    qa = np.array([[1, 3, 5, -1, -3, -5, 127, -128, 7]], np.int8)
    qb = np.array([[1, 1, 1, 1, 1, 1, 127, -128, 2]], np.int8)
    stats = KernelStats()
    got = FAST["Mul"](params, qa, qb, stats=stats)
    np.testing.assert_array_equal(got, [[0, 2, 2, 0, -2, -2, 127, 127, 7]])
    assert (stats.out_saturated, stats.out_elements) == (2, 9)
    same("Mul", FAST["Mul"], params, qa, qb)
    # per channel: channel 0 times 1, channel 1 times 3 (a broadcast (1, 2, 1) operand)
    qa3 = np.array([[[1, 3, 5], [1, 3, 5]]], np.int8)
    got = FAST["Mul"](params, qa3, np.array([[[1], [3]]], np.int8))
    np.testing.assert_array_equal(got, [[[0, 2, 2], [2, 4, 8]]])  # 1.5 -> 2, 4.5 -> 4, 7.5 -> 8


@pytest.mark.parametrize("op", ["Mul", "BatchNormalization", "Relu", "Clip"])
def test_numpy_mode_runs_the_reference(op, monkeypatch):
    """Without numba (NPUFLOW_SIM=numpy) the new fast functions hand over to the reference."""
    monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    f = QFormat(8, 3, 1.0)
    rng = np.random.default_rng(0)
    weights = {"BatchNormalization": {"scale": np.ones(3), "B": np.zeros(3), "input_mean": np.zeros(3),
                                      "input_var": np.ones(3)}}.get(op)
    formats = [f, f] if op == "Mul" else [f]
    params = KERNELS[op].prepare({"min": -1.0, "max": 1.0} if op == "Clip" else {}, formats, QFormat(8, 2, 1.0),
                                 weights)
    xs = [rand_q(rng, (2, 3, 4), f) for _ in formats]
    same(op, FAST[op], params, *xs)
