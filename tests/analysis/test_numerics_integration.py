"""Analysis + integer simulator against float on small graphs (docs/fixed-point.md).

Each case builds a tiny ONNX graph, runs ``ModelConfig.analysis`` on a few calibration inputs and
compares the simulator's dequantized output with onnxruntime's float output on other inputs.

Stated tolerances (checked below):

* a single int8 MAC layer (Conv + Clip, Conv/Conv + Add + Relu): output SNR >= 30 dB;
* ops straight on the model input (Resize, Softmax, Concat, SiLU): every element within
  ``0.5 LSB_out + g * 0.5 LSB_in + 1e-6`` of float clipped to the output range, ``g`` the op's
  gain on input errors (1 for Resize and Concat, max |d/dx| = 1.1 for SiLU); Softmax:
  ``0.5 LSB_out + expm1(LSB_in)`` (an input error of LSB_in/2 per element moves log p by at most
  LSB_in); at most 5 % of the float values may lie beyond the calibrated output range;
* MNIST (shipped example): output SNR >= 20 dB over the evaluation digits;
* a near-constant tensor (range 1e-12 next to O(1) tensors): analysis succeeds and the output is
  within 1 output LSB + 1e-9 of float.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ktc
import npuflow
from tests.conftest import EXAMPLES

F = onnx.TensorProto.FLOAT
RNG_SEED = 1234


def make_model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "case", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_empty_tensor_value_info(n) for n in outputs],
                          initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 6 if opset < 11 else 7
    return m


def analyse_and_run(model, calib, evals, tmp_path, platform=720, **opts):
    """(km, float outputs, fixed outputs): each a list over ``evals`` of the first output."""
    names = list(calib[0])
    km = ktc.ModelConfig(40000, "0001", platform, onnx_model=model)
    bie = km.analysis({n: [c[n] for c in calib] for n in names}, output_dir=tmp_path, threads=1, progress=False, **opts)
    f, q = npuflow.load(model), npuflow.load(bie)
    ref = [f.run(e)[0].astype(np.float64) for e in evals]
    out = [q.run(e)[0].astype(np.float64) for e in evals]
    return km, ref, out


def snr(ref, x):
    ref, x = np.concatenate([r.ravel() for r in ref]), np.concatenate([v.ravel() for v in x])
    d = ((ref - x) ** 2).sum()
    return np.inf if d == 0 else 10 * np.log10((ref ** 2).sum() / d)


def lsb(km, tensor):
    f = km.analysis_result.program.formats[tensor]
    return 1.0 / float(f.factor()[0])


def max_err(km, ref, out, tensor="y", max_clipped=0.05):
    """Largest |float - fixed| with the float output clipped to the output format's range (values
    beyond the calibrated range saturate by design, spec section 1); at most ``max_clipped`` of
    the values may lie beyond it."""
    f = km.analysis_result.program.formats[tensor]
    top = f.qmax / float(f.factor()[0])
    err, clipped, n = 0.0, 0, 0
    for r, o in zip(ref, out):
        assert r.shape == o.shape
        clipped += int(np.count_nonzero(np.abs(r) > top))
        n += r.size
        err = max(err, float(np.abs(np.clip(r, -top, top) - o).max()))
    assert clipped <= max_clipped * n
    return err


def feeds(name, shape, n, lo=-1.0, hi=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [{name: rng.uniform(lo, hi, shape).astype(np.float32)} for _ in range(n)]


def steps_of(km):
    return km.analysis_result.steps


# ------------------------------------------------------------------------------------------------
def test_mnist_example(tmp_path):
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        cal, ev = z["calib_x"][:8], z["eval_x"][:8]
    model = onnx.load(str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx"))
    _, ref, out = analyse_and_run(model, [{"Input3": x} for x in cal], [{"Input3": x} for x in ev], tmp_path)
    assert snr(ref, out) >= 20


def test_conv_clip_is_one_step(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    w, b = rng.normal(0, 0.4, (8, 3, 3, 3)), rng.normal(0, 0.2, 8)
    m = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                    helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip")],
                   [("x", [1, 3, 8, 8])], ["y"], [("w", w), ("b", b), ("lo", 0.0), ("hi", 6.0)])
    km, ref, out = analyse_and_run(m, feeds("x", (1, 3, 8, 8), 8), feeds("x", (1, 3, 8, 8), 4, seed=9), tmp_path)
    (st,) = [s for s in steps_of(km) if s.op_type == "Conv"]
    assert st.nodes == ("conv", "clip") and st.attrs["activation"] == "Clip" and st.attrs["activation_max"] == 6.0
    assert snr(ref, out) >= 30
    assert min(o.min() for o in out) >= 0 and max(o.max() for o in out) <= 6.0


def test_add_relu_is_one_step(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    w1, w2 = rng.normal(0, 0.4, (4, 3, 3, 3)), rng.normal(0, 2.0, (4, 3, 1, 1))
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
                    helper.make_node("Conv", ["x", "w2"], ["b"], name="c2"),
                    helper.make_node("Add", ["a", "b"], ["s"], name="add"),
                    helper.make_node("Relu", ["s"], ["y"], name="relu")],
                   [("x", [1, 3, 8, 8])], ["y"], [("w1", w1), ("w2", w2)])
    km, ref, out = analyse_and_run(m, feeds("x", (1, 3, 8, 8), 8), feeds("x", (1, 3, 8, 8), 4, seed=9), tmp_path)
    (st,) = [s for s in steps_of(km) if s.op_type == "Add"]
    assert st.nodes == ("add", "relu") and st.attrs["activation"] == "Relu"
    assert snr(ref, out) >= 30


def test_silu_becomes_swish(tmp_path):
    m = make_model([helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
                    helper.make_node("Mul", ["x", "s"], ["y"], name="mul")],
                   [("x", [1, 4, 6, 6])], ["y"])
    km, ref, out = analyse_and_run(m, feeds("x", (1, 4, 6, 6), 4, -4, 4), feeds("x", (1, 4, 6, 6), 2, -4, 4, seed=9),
                                   tmp_path)
    assert [s.op_type for s in steps_of(km)] == ["Swish"]
    assert max_err(km, ref, out) <= 0.5 * lsb(km, "y") + 1.1 * 0.5 * lsb(km, "x") + 1e-6


def test_concat_of_differently_ranged_inputs(tmp_path):
    # x in [-1, 1] next to 100 * x2: the output format is the wide one; x is requantized into it
    m = make_model([helper.make_node("Mul", ["x2", "k"], ["big"], name="scale"),
                    helper.make_node("Concat", ["x", "big"], ["y"], name="cat", axis=1)],
                   [("x", [1, 2, 4, 4]), ("x2", [1, 3, 4, 4])], ["y"], [("k", 100.0)])
    rng = np.random.default_rng(3)
    cal = [{"x": rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32),
            "x2": rng.uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)} for _ in range(4)]
    ev = [{"x": rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32),
           "x2": rng.uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)} for _ in range(2)]
    km, ref, out = analyse_and_run(m, cal, ev, tmp_path)
    lo = lsb(km, "y")
    assert max_err(km, [r[:, :2] for r in ref], [o[:, :2] for o in out]) <= 0.5 * lo + 0.5 * lsb(km, "x") + 1e-6
    assert max_err(km, [r[:, 2:] for r in ref], [o[:, 2:] for o in out]) <= 0.5 * lo + 100 * 0.5 * lsb(km, "x2") + 1e-4


@pytest.mark.parametrize("axis, shape", [(None, [1, 3, 4, 5]), (2, [1, 3, 4, 5]), (-1, [1, 3, 4, 5]), (1, [2, 6])])
def test_softmax_opset11_flattens_from_axis(tmp_path, axis, shape):
    kw = {} if axis is None else {"axis": axis}
    m = make_model([helper.make_node("Softmax", ["x"], ["y"], name="sm", **kw)], [("x", shape)], ["y"], opset=11)
    km, ref, out = analyse_and_run(m, feeds("x", shape, 4, -3, 3), feeds("x", shape, 2, -3, 3, seed=9), tmp_path,
                                   platform=730)  # Softmax runs on the NPU of the 730
    (st,) = steps_of(km)
    assert not st.float_step
    # input errors <= LSB_in/2 move log p by at most LSB_in (the element and the log-sum-exp)
    assert max_err(km, ref, out) <= 0.5 * lsb(km, "y") + np.expm1(lsb(km, "x")) + 1e-6


RESIZE_CASES = [
    # (opset, mode, scales, extra attributes)
    (10, "nearest", [1, 1, 2, 2], {}),
    (10, "nearest", [1, 1, 1.5, 0.5], {}),  # onnxruntime: floor when upsampling, ceil when downsampling
    (10, "linear", [1, 1, 2, 1.5], {}),
    (7, "nearest", [1, 1, 2, 3], {}),  # Upsample-7: scales attribute
    (9, "nearest", [1, 1, 2, 3], {}),  # Upsample-9
    (9, "linear", [1, 1, 2, 2], {}),
    (11, "nearest", [1, 1, 2, 1.5], {}),  # half_pixel + round_prefer_floor defaults
    (11, "nearest", [1, 1, 2, 2], {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    (11, "linear", [1, 1, 2, 1.5], {}),
    (11, "linear", [1, 1, 2, 2], {"coordinate_transformation_mode": "align_corners"}),
]


@pytest.mark.parametrize("opset, mode, scales, extra", RESIZE_CASES)
def test_resize_older_opsets(tmp_path, opset, mode, scales, extra):
    if opset == 7:
        node = helper.make_node("Upsample", ["x"], ["y"], name="rs", mode=mode, scales=[float(v) for v in scales])
        inits = []
    elif opset == 9:
        node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="rs", mode=mode)
        inits = [("scales", np.array(scales, np.float32))]
    elif opset == 10:
        node = helper.make_node("Resize", ["x", "scales"], ["y"], name="rs", mode=mode)
        inits = [("scales", np.array(scales, np.float32))]
    else:
        node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="rs", mode=mode, **extra)
        inits = [("roi", np.array([], np.float32)), ("scales", np.array(scales, np.float32))]
    shape = [1, 2, 5, 6]
    m = make_model([node], [("x", shape)], ["y"], inits, opset=opset)
    km, ref, out = analyse_and_run(m, feeds("x", shape, 4), feeds("x", shape, 2, seed=9), tmp_path)
    (st,) = steps_of(km)
    assert not st.float_step and st.op_type == "Resize", st.reason
    assert max_err(km, ref, out) <= 0.5 * lsb(km, "y") + 0.5 * lsb(km, "x") + 1e-6


def test_unsupported_resize_is_a_float_step_with_a_reason(tmp_path):
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="rs", mode="cubic")
    m = make_model([node], [("x", [1, 2, 5, 6])], ["y"],
                   [("roi", np.array([], np.float32)), ("scales", np.array([1, 1, 2, 2], np.float32))], opset=13)
    km, ref, out = analyse_and_run(m, feeds("x", [1, 2, 5, 6], 4), feeds("x", [1, 2, 5, 6], 1, seed=9), tmp_path)
    (st,) = steps_of(km)
    assert st.float_step and "cubic" in st.reason
    assert snr(ref, out) > 30


def test_kernel_refusal_becomes_a_float_step(tmp_path):
    # Div by a runtime divisor has no integer kernel (spec 6.2); on the 730 Div is an NPU op, so
    # the kernel's refusal turns the node into a float step whose reason quotes the kernel
    m = make_model([helper.make_node("Div", ["x", "d"], ["y"], name="div")], [("x", [1, 4]), ("d", [1, 4])], ["y"])
    rng = np.random.default_rng(5)
    mk = lambda n: [{"x": rng.uniform(-1, 1, (1, 4)).astype(np.float32),
                     "d": rng.uniform(1, 2, (1, 4)).astype(np.float32)} for _ in range(n)]
    km, ref, out = analyse_and_run(m, mk(4), mk(2), tmp_path, platform=730)
    (st,) = steps_of(km)
    assert st.float_step and "integer Div kernel refuses" in st.reason and st.onnx_node is not None
    assert max_err(km, ref, out) <= 0.5 * lsb(km, "y") + 2 * lsb(km, "x") + 1e-6


def test_zero_weights_with_a_tiny_bias(tmp_path):
    # a conv whose output is the constant 1e-12 (all-zero weights): the weight range is widened
    # for the bias (spec section 3), so the bias and the output stay representable
    rng = np.random.default_rng(RNG_SEED)
    m = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
                    helper.make_node("Relu", ["c"], ["r"], name="relu"),
                    helper.make_node("Conv", ["x", "w2"], ["d"], name="conv2"),
                    helper.make_node("Add", ["r", "d"], ["y"], name="add")],
                   [("x", [1, 3, 4, 4])], ["y", "r"],
                   [("w", np.zeros((2, 3, 1, 1))), ("b", np.full(2, 1e-12)), ("w2", rng.normal(0, 0.5, (2, 3, 1, 1)))])
    km, ref, out = analyse_and_run(m, feeds("x", (1, 3, 4, 4), 4), feeds("x", (1, 3, 4, 4), 2, seed=9), tmp_path)
    assert max_err(km, ref, out) <= lsb(km, "y") + 1e-9
    assert snr(ref, out) >= 30
    q = npuflow.load(km.bie_path).run(feeds("x", (1, 3, 4, 4), 1, seed=9)[0])[1]
    np.testing.assert_allclose(q, 1e-12, rtol=0.01)  # the near-constant output itself


def spiky(n, seed):
    """Zeros with one +-1 spike per input: the 0.999 quantile of a conv output is its bias."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = np.zeros((1, 1, 32, 32), np.float32)
        x[0, 0, rng.integers(32), rng.integers(32)] = rng.choice([-1.0, 1.0])
        out.append({"x": x})
    return out


def test_near_constant_tensor_gets_a_coarser_format(tmp_path):
    # c = 1e-12 everywhere but at the spikes: its calibrated range (1e-12) is ~2**32 times finer
    # than the accumulator's LSB, so the multiplier would reach 2**31; the analysis lowers c's
    # radix just enough (multiplier cap, spec section 3) instead of failing
    m = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
                    helper.make_node("Add", ["c", "x"], ["y"], name="add")], [("x", [1, 1, 32, 32])], ["y"],
                   [("w", np.array([1.0, 0.5]).reshape(2, 1, 1, 1)), ("b", np.full(2, 1e-12))])
    km, ref, out = analyse_and_run(m, spiky(4, 0), spiky(2, 9), tmp_path, datapath_range_method="percentage",
                                 percentage=0.999)  # clips the spikes
    prog = km.analysis_result.program
    f_c, f_x = float(prog.formats["c"].factor()[0]), float(prog.formats["x"].factor()[0])
    f_w = prog.params[0].out.mult  # per channel multipliers of f_c / (f_x f_w)
    assert np.all(np.abs(f_w) < 2**31)
    assert 2.0**20 * f_x < f_c < 2.0**40 * f_x  # much finer than the input, but capped
    assert f_c < 2.0**31 * f_x * 127  # the cap: f_w = 127 for the weight 1.0
    for e in spiky(2, 9):
        c = prog.formats["c"].dequantize(prog.run(prog.quantize_inputs(e), keep_all=True)["c"])
        steady = e["x"].repeat(2, axis=1) == 0
        # the float value is the bias alone; it lives in the accumulator format (LSB 1/(f_x*127))
        assert np.abs(c[steady] - 1e-12).max() <= 0.5 / (f_x * 127) + 0.5 / f_c
    for e, r, o in zip(spiky(2, 9), ref, out):  # away from the spikes (which c saturates, by design)
        steady = e["x"].repeat(2, axis=1) == 0
        assert np.abs(r[steady] - o[steady]).max() <= 0.5 * lsb(km, "y") + 1e-6


def _reflect_pad_model():
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((4, 4, 3, 3)) * 0.3, rng.standard_normal((4, 4, 3, 3)) * 0.3
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["a", "pads"], ["p"], name="pad", mode="reflect"),
             helper.make_node("Conv", ["p", "w2"], ["y"], name="c2")]
    inits = [("w1", w1), ("w2", w2)]
    m = make_model(nodes, [("x", [1, 4, 8, 8])], ["y"], inits)
    m.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
    return m


def test_data_movement_on_the_cpu_keeps_its_input_format(tmp_path):
    # a reflect Pad is a CPU node on the 720 (constant mode only there): it moves the values it
    # reads, so its output keeps c1's format exactly (no second rounding); with CPU nodes at 8 bits
    # under a 16-bit datapath the widths differ and the Pad's output is calibrated at 8 bits
    m = _reflect_pad_model()
    km, ref, out = analyse_and_run(m, feeds("x", [1, 4, 8, 8], 8), feeds("x", [1, 4, 8, 8], 2, seed=4), tmp_path / "a")
    pad = next(st for st in steps_of(km) if st.name == "pad")
    p = km.analysis_result.program
    assert pad.float_step and p.formats["p"] == p.formats["a"] and p.notes.width["p"] == "inherit"
    km16, _, _ = analyse_and_run(m, feeds("x", [1, 4, 8, 8], 8), feeds("x", [1, 4, 8, 8], 2, seed=4), tmp_path / "b",
                                 datapath_bitwidth_mode="int16", cpu_node_bitwidth_mode="int8")
    p16 = km16.analysis_result.program
    assert p16.formats["a"].bits == 16 and p16.formats["p"].bits == 8 and p16.notes.width["p"] == "cpu_node"
