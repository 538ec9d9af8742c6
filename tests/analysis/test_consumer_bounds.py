"""Consumer bounds (docs/fixed-point.md section 3.1, "Consumer bounds"; npuflow.analysis.flat): the
interval outside which a tensor's readers cannot tell its values apart. Each case is checked twice:
the bound found, and that clipping the tensor to it leaves every model output unchanged
(onnxruntime, inputs far outside the bounds)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuflow.analysis.flat import consumer_bounds, describe
from npuflow.calibration.collector import clip_to

C = 4


def _model(nodes, inits=(), outputs=("y",), opset=13, shape=(1, C, 3, 3)):
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["t"], name="src"), *nodes], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _run(m, x):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


def _check_exact(m, tensor="t", rtol=1e-6):
    b = consumer_bounds(m, [tensor])
    assert tensor in b
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1, C, 3, 3)) * 40).astype(np.float32)
    for a, c in zip(_run(m, x), _run(_clip_all(m, {tensor: b[tensor]}), x)):
        np.testing.assert_allclose(c, a, rtol=rtol, atol=1e-5)
    return b[tensor]


def test_single_readers_with_a_knee():
    lo, hi = _check_exact(_model([helper.make_node("HardSwish", ["t"], ["y"])], opset=14))
    assert (float(lo), float(hi)) == (-3.0, np.inf)
    lo, hi = _check_exact(_model([helper.make_node("Relu", ["t"], ["y"])]))
    assert (float(lo), float(hi)) == (0.0, np.inf)
    lo, hi = _check_exact(_model([helper.make_node("HardSigmoid", ["t"], ["y"], alpha=0.2, beta=0.5)]))
    assert (float(lo), float(hi)) == pytest.approx((-2.5, 2.5))
    # Clip: bounds as inputs (opset >= 11), as attributes (opset 6), one bound absent
    lo, hi = _check_exact(_model([helper.make_node("Clip", ["t", "a", "b"], ["y"])], [("a", 0.0), ("b", 6.0)]))
    assert (float(lo), float(hi)) == (0.0, 6.0)
    # (opset 6 has no broadcasting Max for the clipped copy: the bound only)
    lo, hi = consumer_bounds(_model([helper.make_node("Clip", ["t"], ["y"], min=-1.0, max=2.0)], opset=6), ["t"])["t"]
    assert (float(lo), float(hi)) == (-1.0, 2.0)
    lo, hi = _check_exact(_model([helper.make_node("Clip", ["t", "", "b"], ["y"])], [("b", 6.0)]))
    assert (float(lo), float(hi)) == (-np.inf, 6.0)


def test_decomposed_hardswish_and_the_affine_chain_before_a_knee():
    # paddle2onnx's HardSwish: x * clip(x + 3, 0, 6) / 6
    nodes = [helper.make_node("Add", ["t", "three"], ["u"]), helper.make_node("Clip", ["u", "zero", "six"], ["v"]),
             helper.make_node("Div", ["v", "six"], ["g"]), helper.make_node("Mul", ["t", "g"], ["y"])]
    inits = [("three", 3.0), ("zero", 0.0), ("six", 6.0)]
    lo, hi = _check_exact(_model(nodes, inits))
    assert (float(lo), float(hi)) == (-3.0, np.inf)
    # the tensor before the Clip alone (Add's input) is read only inside [-3, 3]
    m = _model([helper.make_node("Add", ["t", "three"], ["u"]), helper.make_node("Clip", ["u", "zero", "six"], ["y"])],
               inits)
    lo, hi = _check_exact(m)
    assert (float(lo), float(hi)) == (-3.0, 3.0)
    # HardSigmoid as the gate, and a Mul by 1/6 after it
    nodes = [helper.make_node("HardSigmoid", ["t"], ["h"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["h", "k"], ["g"]), helper.make_node("Mul", ["g", "t"], ["y"])]
    lo, hi = _check_exact(_model(nodes, [("k", 0.5)]))
    assert (float(lo), float(hi)) == pytest.approx((-3.0, np.inf))


def test_equalized_gate_gives_per_channel_bounds():
    # an equalized pair (npuflow.analysis.equalize): the gate reads t * (1 / s) per channel
    s = np.array([1.0, 2.0, 4.0, 16.0], dtype=np.float32).reshape(C, 1, 1)
    nodes = [helper.make_node("Mul", ["t", "inv_s"], ["tu"]), helper.make_node("Add", ["tu", "three"], ["u"]),
             helper.make_node("Clip", ["u", "zero", "six"], ["v"]), helper.make_node("Mul", ["v", "sixth"], ["g"]),
             helper.make_node("Mul", ["t", "g"], ["y"])]
    inits = [("inv_s", 1 / s), ("three", 3.0), ("zero", 0.0), ("six", 6.0), ("sixth", 1 / 6)]
    m = _model(nodes, inits)
    lo, hi = _check_exact(m)
    np.testing.assert_allclose(np.asarray(lo).reshape(-1), -3.0 * s.reshape(-1), rtol=1e-6)
    assert np.all(np.isposinf(hi))
    assert describe((lo, hi)) == {"lo": {"min": -48.0, "max": -3.0}, "hi": None}
    # the unscaled tensor (the gate's own input) is read only inside [-3, 3]
    lo, hi = _check_exact(m, "tu")
    assert (float(lo), float(hi)) == (-3.0, 3.0)


@pytest.mark.parametrize("case", ["conv_reader", "model_output", "negative_scale", "silu", "two_sided_sub",
                                  "widening_constant", "tensor_read_twice"])
def test_no_bound(case):
    w = np.ones((C, C, 1, 1), dtype=np.float32)
    if case == "conv_reader":  # one reader without a flat region decides
        m = _model([helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Conv", ["t", "w"], ["z"])],
                   [("w", w)], outputs=("y", "z"))
    elif case == "model_output":
        m = _model([helper.make_node("Relu", ["t"], ["y"])], outputs=("y", "t"))
    elif case == "negative_scale":  # Mul by a negative constant turns the knee around
        m = _model([helper.make_node("Mul", ["t", "k"], ["u"]), helper.make_node("Relu", ["u"], ["y"])], [("k", -2.0)])
    elif case == "silu":  # Sigmoid never reaches 0: no flat region
        m = _model([helper.make_node("Sigmoid", ["t"], ["g"]), helper.make_node("Mul", ["t", "g"], ["y"])])
    elif case == "two_sided_sub":  # c - t is decreasing in t
        m = _model([helper.make_node("Sub", ["k", "t"], ["u"]), helper.make_node("Relu", ["u"], ["y"])], [("k", 1.0)])
    elif case == "widening_constant":  # a constant that broadcasts the tensor to a larger shape
        m = _model([helper.make_node("Add", ["t", "k"], ["u"]), helper.make_node("Relu", ["u"], ["y"])],
                   [("k", np.zeros((2, C, 3, 3)))])
    else:  # Mul(t, t) is not a gate
        m = _model([helper.make_node("Mul", ["t", "t"], ["y"])])
    assert consumer_bounds(m, ["t"]) == {}


def test_pass_through_readers_keep_a_scalar_bound():
    nodes = [helper.make_node("MaxPool", ["t"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("Reshape", ["p", "shp"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    m = _model(nodes, [("shp", np.array([1, -1]))])
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shp"))
    lo, hi = _check_exact(m)
    assert (float(lo), float(hi)) == (0.0, np.inf)


def test_clip_to_never_widens_a_tensor():
    y = np.arange(-6, 6, dtype=np.float32).reshape(1, 3, 2, 2)
    lo = np.array([-1.0, -2.0, -3.0]).reshape(3, 1, 1)
    got = clip_to(y, (lo, np.array(np.inf)))
    assert got.dtype == np.float32 and got.shape == y.shape
    np.testing.assert_array_equal(got, np.maximum(y, lo.astype(np.float32)))
    assert clip_to(y, (np.zeros((2, 3, 1, 1)), np.array(np.inf))) is y  # would broadcast y to batch 2
    assert clip_to(y, (np.zeros(5), np.array(np.inf))) is y  # does not broadcast at all


def test_read_max_limits_every_rule_but_never_widens():
    from npuflow.analysis.ranges import QuantOptions, choose_abs_max
    from npuflow.calibration.histogram import AbsHistogram

    h = AbsHistogram((0.999, 0.9999, 0.99999, 0.999999))
    rng = np.random.default_rng(3)
    vals = np.concatenate([-rng.uniform(0, 40, 5000), rng.uniform(0, 5, 5000)]).astype(np.float32)
    h.update(vals)
    h.note_read_max(float(np.abs(np.maximum(vals, -3.0)).max()))
    assert h.read_max == pytest.approx(5.0, abs=0.01)
    for opts in (QuantOptions(), QuantOptions(range_method="percentage"), QuantOptions(range_method="mmse")):
        assert choose_abs_max(h, 8, opts, "internal") == h.read_max
    # 16 bits: the headroom on top of the limited range
    assert choose_abs_max(h, 16, QuantOptions(datapath_bits=16), "internal") == pytest.approx(4 * h.read_max)
    # model inputs and outputs keep their exact max; a read max above the rule's range changes nothing
    assert choose_abs_max(h, 8, QuantOptions(), "input") == h.abs_max
    assert choose_abs_max(h, 8, QuantOptions(), "output") == h.abs_max
    h.read_max = 1e9
    assert choose_abs_max(h, 8, QuantOptions(), "internal") < 41
    h.read_max = 0.0  # every value in the flat region: the rule's range, not an empty one
    assert choose_abs_max(h, 8, QuantOptions(), "internal") > 30
    # merged histograms keep the larger read max
    h2 = AbsHistogram()
    h2.update(np.array([1.0], np.float32))
    h2.note_read_max(7.0)
    h.merge(h2)
    assert h.read_max == 7.0
    # the executors ship histograms to their workers by pickle (npuflow.analysis.executors)
    import pickle

    assert pickle.loads(pickle.dumps(h, protocol=pickle.HIGHEST_PROTOCOL)).read_max == 7.0


def _negative_stem(path):
    """Conv (half its channels far negative) -> HardSwish -> Conv 1x1: the HardSwish input's range
    comes from values the HardSwish maps to 0."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32)
    b1 = np.where(np.arange(8) % 2 == 0, -30.0, 0.5).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 1, 1)) * 0.5).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
         helper.make_node("Conv", ["h", "w2"], ["y"], name="conv2")],
        "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return m


def test_end_to_end_range_and_precision(tmp_path, monkeypatch):
    """analysis() limits the HardSwish input's range to what the HardSwish reads, the model output
    gets closer to float than with the bounds switched off, and the report shows the interval."""
    import json
    import warnings

    import npuflow
    from npuflow.analysis import run

    path = tmp_path / "stem.onnx"
    m = _negative_stem(path)
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(8)]
    evals = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(8)]
    ref = [_run(m, x)[0] for x in evals]

    def analyse(out):
        km = npuflow.ModelConfig(32769, "0001", "720", onnx_path=str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = km.analysis({"x": calib}, output_dir=str(tmp_path / out), progress=False, report=out == "on")
        q = npuflow.load(bie)
        got = [np.asarray(q.run({"x": x})[0]).reshape(r.shape) for x, r in zip(evals, ref)]
        snr = 10 * np.log10(sum((r ** 2).sum() for r in ref) / sum(((r - g) ** 2).sum() for r, g in zip(ref, got)))
        return km.analysis_result, snr

    res, snr_on = analyse("on")
    bounded = [t for t in res.bounds if t in res.program.formats]
    assert bounded, res.bounds
    t = bounded[0]
    h = res.stats[t]
    assert h.read_max is not None and h.read_max < h.abs_max / 3
    fmt = res.program.formats[t]
    assert fmt.dequantize(np.array([127]))[0] == pytest.approx(h.read_max, rel=0.02)
    report = json.loads((tmp_path / "on" / "model_fx_report.json").read_text())
    rows = [r for r in report["quantization"]["steps"] for o in r["outputs"] if o["tensor"] == t]
    assert rows and rows[0]["range"]["read_between"] == {"lo": -3.0, "hi": None}
    assert rows[0]["range"]["read_max"] == pytest.approx(h.read_max, rel=1e-5)
    import csv

    with open(tmp_path / "on" / "model_fx_report.csv", newline="", encoding="utf-8") as f:
        cells = [r["read_max"] for r in csv.DictReader(f) if r["name"] == rows[0]["name"]]
    assert cells and float(cells[0]) == pytest.approx(h.read_max, rel=1e-5)
    assert "read up to" in (tmp_path / "on" / "model_fx_report.html").read_text(encoding="utf-8")
    monkeypatch.setattr(run, "consumer_bounds", lambda *a, **k: {})
    res_off, snr_off = analyse("off")
    assert res_off.stats[t].read_max is None
    assert snr_on > snr_off + 3, (snr_on, snr_off)


def _clip_all(model, bounds):
    """``model`` with every bounded tensor replaced, for all its readers, by its clip to the bound."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    nodes = list(g.node)
    del g.node[:]
    for n in nodes:
        g.node.append(n)
        for t in n.output:
            if t not in bounds:
                continue
            lo, hi = (np.asarray(b, dtype=np.float32) for b in bounds[t])
            g.initializer.extend([numpy_helper.from_array(np.maximum(lo, -3e38), t + "__lo"),
                                  numpy_helper.from_array(np.minimum(hi, 3e38), t + "__hi")])
            g.node.extend([helper.make_node("Max", [t, t + "__lo"], [t + "__m"]),
                           helper.make_node("Min", [t + "__m", t + "__hi"], [t + "__c"])])
    for n in g.node:
        if n.op_type in ("Max", "Min") and n.output[0].endswith(("__m", "__c")):
            continue
        for i, name in enumerate(n.input):
            if name in bounds:
                n.input[i] = name + "__c"
    return m


@pytest.mark.parametrize("name", ["pan_mnv3s_skin_clothes_hair", "ch_ppocr_mobile_v2.0_cls_infer",
                                  "en_number_mobile_v2.0_rec_infer"])
def test_real_models_outputs_unchanged_by_every_bound(shared, name, tmp_path):
    """On real networks (HardSwish / HardSigmoid as paddle2onnx writes them, equalized gates): the
    optimized float graph with every bounded tensor clipped to its bound gives the same outputs on
    real inputs, and the analysis found bounds on the tensors its steps quantize."""
    import warnings

    import npuflow
    from benchmarks.tasks import get_task

    task = get_task(name, shared)
    feeds = list(task.calib_inputs(2))
    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(task.model_path), input_shapes=task.input_shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.analysis({k: [f[k] for f in feeds] for k in task.input_shapes}, output_dir=str(tmp_path),
                    progress=False, report=False, auto_precision=False)
    res = km.analysis_result
    quantized = [o for st in res.steps for o in st.outputs if o in res.program.formats]
    assert len([t for t in res.bounds if t in quantized]) >= 20, sorted(res.bounds)
    every = consumer_bounds(res.optimized)  # every node output, not only the quantized ones
    assert set(res.bounds) <= set(every)
    clipped = _clip_all(res.optimized, every)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(res.optimized.SerializeToString(), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(clipped.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for f in list(task.eval_inputs(1)) + feeds:
        for x, y in zip(a.run(None, f), b.run(None, f)):
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * float(np.abs(x).max() or 1.0))
