"""Error-compensating weight rounding (docs/fixed-point.md §3.6)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ktc
import npuflow
from npuflow.analysis.program import mac_weight_format
from npuflow.bie import read_bie
from npuflow.errors import CompatibilityWarning, InvalidConfigError
from npuflow.quant import weight_rounding as wr
from npuflow.sim.fixed_point import QFormat
from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


def _brute_moment(x, w_shape, attrs):
    """sum x x^T over every output position (explicit loops, zero padding), 2-D only."""
    g = attrs.get("group", 1)
    kh, kw = w_shape[2:]
    (sh, sw), (ph, pw) = attrs.get("strides", [1, 1]), attrs.get("pads", [0, 0, 0, 0])[:2]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (ph, attrs["pads"][2]), (pw, attrs["pads"][3])])
    n, c, hh, ww = xp.shape
    oh, ow = (hh - kh) // sh + 1, (ww - kw) // sw + 1
    rows = []
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                rows.append(xp[b, :, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(c, -1))
    pat = np.stack(rows)  # (P, C, taps)
    if g > 1:
        return np.einsum("pck,pcl->ckl", pat, pat), len(rows)
    flat = pat.reshape(len(rows), -1)
    return (flat.T @ flat)[None], len(rows)


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_second_moment_equals_brute_force(depthwise, stride):
    rng = np.random.default_rng(3)
    c = 4
    attrs = {"kernel_shape": [3, 3], "strides": [stride, stride], "pads": [1, 0, 1, 2], "group": c if depthwise else 1}
    w_shape = (c, 1, 3, 3) if depthwise else (5, c, 3, 3)
    x = rng.normal(size=(2, c, 9, 8)).astype(np.float32)
    sm = wr.SecondMoment(attrs, w_shape)
    sm.update(x[:1])
    sm.update(x[1:])
    ref, count = _brute_moment(x, w_shape, attrs)
    assert sm.count == count and sm.samples == 2
    np.testing.assert_allclose(sm.sum, ref, rtol=1e-5, atol=1e-4)  # float32 sums
    np.testing.assert_allclose(sm.moment(), ref / count, rtol=1e-5, atol=1e-6)


def test_second_moment_subsamples_a_grid_of_positions(monkeypatch):
    """Above POSITIONS output positions, every r-th position along each axis (here r = 2)."""
    monkeypatch.setattr(wr, "POSITIONS", 20)
    attrs = {"kernel_shape": [1, 2], "strides": [1, 1], "pads": [0, 0, 0, 0]}
    x = np.arange(2 * 6 * 7, dtype=np.float32).reshape(1, 2, 6, 7)
    sm = wr.SecondMoment(attrs, (3, 2, 1, 2))
    sm.update(x)
    assert sm.count == 3 * 3  # output 6 x 6 = 36 > 20 -> r = 2 -> 3 x 3 positions
    sub = x[:, :, ::2, :][:, :, :, [0, 2, 4]]
    nxt = x[:, :, ::2, :][:, :, :, [1, 3, 5]]
    pat = np.stack([sub, nxt], axis=2).reshape(2 * 2, -1).astype(np.float64)  # (C*taps, P), tap-minor
    np.testing.assert_allclose(sm.sum[0], pat @ pat.T, rtol=1e-6)


def test_second_moment_is_full_after_enough_inputs_or_positions(monkeypatch):
    monkeypatch.setattr(wr, "SAMPLES", 3)
    x = np.ones((1, 2, 4, 4), np.float32)
    big = wr.SecondMoment({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": 2}, (2, 1, 3, 3))
    for _ in range(3):
        assert not big.full
        big.update(x)
    assert big.full and big.samples == 3  # SAMPLES inputs (16 positions each, far below 64 * 9)
    monkeypatch.setattr(wr, "POSITIONS_PER_TAP", 1)
    small = wr.SecondMoment({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": 2}, (2, 1, 3, 3))
    small.update(x)
    assert small.full and small.samples == 1  # 16 positions >= 1 * 9


def test_collector_stops_feeding_full_moments():
    """The calibration pass feeds an accumulator until it is full, then never again."""
    from npuflow.calibration.collector import StatsCollector
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    acc = wr.SecondMoment({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": 2}, (2, 1, 3, 3))
    col = StatsCollector(model, ["y"], moments={"y": [acc]})
    for i in range(wr.SAMPLES + 5):
        col.feed({"x": np.full((1, 2, 4, 4), float(i), np.float32)})
    col.close()
    assert acc.samples == wr.SAMPLES and col.samples == wr.SAMPLES + 5


def test_second_moment_ignores_a_foreign_shape():
    sm = wr.SecondMoment({"kernel_shape": [3, 3]}, (2, 3, 3, 3))
    sm.update(np.ones((1, 4, 5, 5), np.float32))  # 4 channels, the layer reads 3
    assert sm.count == 0 and sm.moment() is None


def test_eligible_layers():
    assert wr.eligible("Conv", {"group": 8}, (8, 1, 3, 3))  # depthwise
    assert wr.eligible("Conv", {}, (32, 3, 3, 3))  # a stem: 27 taps
    assert not wr.eligible("Conv", {}, (32, 64, 3, 3))  # 576 taps > MAX_TAPS
    assert not wr.eligible("Conv", {}, (32, 64, 1, 1))  # pointwise: one tap
    assert not wr.eligible("Conv", {"group": 2}, (8, 4, 3, 3))  # grouped, not depthwise
    assert not wr.eligible("ConvTranspose", {}, (4, 4, 3, 3))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 6), k=st.sampled_from([2, 4, 9]))
def test_white_inputs_give_nearest_rounding(seed, c, k):
    """With uncorrelated inputs of equal power (H = I) no error can be compensated: the result is
    the nearest rounding, in range and in the format's container dtype."""
    from npuflow.quant.formats import weight_format

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(c, 1, k)).astype(np.float32)
    fmt = weight_format(w, 8, 0)
    q = wr.compensated_round(w, fmt, np.eye(k)[None])
    assert q.dtype == fmt.dtype and q.shape == w.shape
    np.testing.assert_array_equal(q, fmt.quantize(w))


def test_correlated_inputs_lower_the_output_error():
    """Smooth inputs (neighbouring taps strongly correlated): the expected output error
    ``dW^T H dW`` of compensated rounding is below that of nearest rounding on almost every
    channel, and much lower in total; the integers stay within one step of nearest rounding's
    range."""
    from npuflow.quant.formats import weight_format

    rng = np.random.default_rng(0)
    k = 9
    idx = np.arange(k)
    h = 0.95 ** np.abs(idx[:, None] - idx[None, :]) + 0.2  # correlated taps, non-zero mean
    w = rng.normal(size=(64, 1, k)).astype(np.float32)
    fmt = weight_format(w, 8, 0)
    q_near = fmt.quantize(w)
    q_comp = wr.compensated_round(w, fmt, h[None])
    assert q_comp.min() >= fmt.qmin and q_comp.max() <= fmt.qmax

    def err(q):
        d = (fmt.dequantize(q) - w).reshape(64, k)
        return np.einsum("ck,kl,cl->c", d, h, d)

    e_near, e_comp = err(q_near), err(q_comp)
    assert e_comp.sum() < 0.5 * e_near.sum()
    assert np.mean(e_comp <= e_near) > 0.9


def _analyse(tmp, digits, **kw):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatibilityWarning)
        return km, km.analysis({"Input3": list(digits["calib_x"])}, output_dir=tmp, threads=1, report=False, **kw)


@pytest.fixture(scope="module")
def digits():
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_analysis_rounds_mnist_convolutions_with_compensation(tmp_path, digits):
    """MNIST's two 5x5 convolutions (25 and 200 taps) get compensated rounding by default: the
    BIE says so, their integer weights differ from nearest rounding in the same format, and the
    other weights (the Gemm) do not."""
    km_c, bie_c = _analyse(tmp_path / "c", digits)
    km_n, bie_n = _analyse(tmp_path / "n", digits, weight_rounding="nearest")
    prog_c, prog_n = km_c.analysis_result.program, km_n.analysis_result.program
    assert sorted(km_c.analysis_result.weight_moments) == sorted(s.name for s in prog_c.steps if s.op_type == "Conv")
    assert km_n.analysis_result.weight_moments == {}
    opts_c, opts_n = read_bie(bie_c).options, read_bie(bie_n).options
    assert (opts_c["weight_rounding"], opts_c["compensated_steps"]) == ("compensated", 2)
    assert (opts_n["weight_rounding"], opts_n["compensated_steps"]) == ("nearest", 0)
    kinds = set()
    for k, step in enumerate(prog_c.steps):
        pc, pn = prog_c.params[k], prog_n.params[k]
        # same formats everywhere: only the integers of the convolutions' weights move
        assert prog_c.formats[step.outputs[0]] == prog_n.formats[step.outputs[0]]
        if step.op_type == "Conv":
            kinds.add(step.op_type)
            assert pc.in_format == pn.in_format
            assert 0 < np.count_nonzero(pc.w_q != pn.w_q), step.name
            # the kernel stores exactly the integers of compensated_round in the nearest-rounding grid
            w_fmt = mac_weight_format(step, prog_c.formats[step.runtime_inputs[0]], 8)
            want = wr.compensated_round(step.weights["W"], w_fmt, km_c.analysis_result.weight_moments[step.name])
            np.testing.assert_array_equal(pc.w_q, want)
            np.testing.assert_array_equal(pn.w_q, w_fmt.quantize(step.weights["W"]))
        elif step.op_type == "Gemm":
            kinds.add(step.op_type)
            np.testing.assert_array_equal(pc.b_q, pn.b_q)
    assert kinds == {"Conv", "Gemm"}
    # and the simulator runs it: the same digits classified on the held-out split
    m_c, m_n = npuflow.load(bie_c), npuflow.load(bie_n)
    x = digits["eval_x"]
    y_c = np.concatenate([m_c.run({"Input3": v})[0] for v in x]).argmax(axis=1)
    y_n = np.concatenate([m_n.run({"Input3": v})[0] for v in x]).argmax(axis=1)
    assert np.mean(y_c == y_n) > 0.9


def test_weight_rounding_option_is_checked(tmp_path, digits):
    with pytest.raises(InvalidConfigError, match="weight_rounding must be"):
        _analyse(tmp_path, digits, weight_rounding="gptq")
    assert not any(tmp_path.iterdir())


def test_sixteen_bit_weights_keep_nearest_rounding(tmp_path, digits):
    """int16 weights (a grid 256 times finer) get no second moments and nearest rounding."""
    km, bie = _analyse(tmp_path, digits, weight_bitwidth_mode="int16", datapath_bitwidth_mode="int16")
    assert km.analysis_result.weight_moments == {}
    assert read_bie(bie).options["compensated_steps"] == 0


def test_hand_worked_two_taps_seeing_the_same_input():
    """Two taps that always see the same value act as one weight 0.3 + 0.3 = 0.6 (grid step 1):
    nearest rounding gives 0 + 0; compensation carries the first tap's error (0.3) to the second
    (0.3 + 0.3 * H01/H11 with the 1 % damping), which rounds to 1: the pair's sum 0.6 -> 1."""
    fmt = QFormat(8, (0,), (1.0,), 0)
    w = np.array([[0.3, 0.3]], np.float32)
    h = np.ones((1, 2, 2))
    np.testing.assert_array_equal(fmt.quantize(w), [[0, 0]])
    np.testing.assert_array_equal(wr.compensated_round(w, fmt, h), [[0, 1]])
    # white inputs: nothing to carry
    np.testing.assert_array_equal(wr.compensated_round(w, fmt, np.eye(2)[None]), [[0, 0]])
    with pytest.raises(ValueError, match="does not match"):
        wr.compensated_round(w, fmt, np.ones((3, 2, 2)))
