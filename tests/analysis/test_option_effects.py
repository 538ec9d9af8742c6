"""Bit-width and range options do what they say (docs/fixed-point.md section 3.7).

* ``model_out_bitwidth_mode`` reaches a model output through every op whose output keeps its
  input's format (each pass-through kernel and Concat), at 8 and 16 bits: the output, and the
  tensor it copies, get the model-output width; the fast path equals the reference kernels.
* ``quantize_mode="post_sigmoid"`` caps the input of every Sigmoid whose output reaches a model
  output (through the same ops, and as channels of a Concat), and the outputs themselves when no
  Sigmoid produces them (logits whose Sigmoid was removed); it warns where it changes nothing.
* Options that change nothing say so in one ``OptionEffectWarning`` and in the report; under a
  16-bit datapath every tensor that stays 8-bit is listed in one warning and marked in the report.
* yolox_nano (shared): both options change the output integers, the output is 16-bit / the
  post-sigmoid cap applies to its Sigmoid inputs.

Each option test fails when the option is made a no-op again (checked by hand, see the closing
note of issue 14).
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ktc
import npuflow
from npuflow.analysis import run as analysis_run
from npuflow.analysis.effects import CARRIERS
from npuflow.analysis.ranges import INT16_HEADROOM, POST_SIGMOID_CAP, QuantOptions
from npuflow.errors import OptionEffectWarning
from npuflow.platforms import get_platform
from npuflow.report import REPORT_SCHEMA
from npuflow.sim.fixed_point import QFormat

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")
P720 = get_platform(720)


# ---------------------------------------------------------------------------------------------- models
def _const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


#: op -> (nodes after the producer ``p`` [1, 4, 6, 6], extra initializers, model outputs)
def _carrier(op: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[str]]:
    def n(*a, **k):
        return helper.make_node(*a, name=f"{op.lower()}_0", **k)

    if op == "Transpose":
        return [n("Transpose", ["p"], ["y"], perm=[0, 2, 3, 1])], [], ["y"]
    if op == "Reshape":
        return [n("Reshape", ["p", "shape"], ["y"])], [_const("shape", [1, -1])], ["y"]
    if op == "Flatten":
        return [n("Flatten", ["p"], ["y"], axis=1)], [], ["y"]
    if op == "Slice":
        return [n("Slice", ["p", "st", "en", "ax"], ["y"])], [_const("st", [1]), _const("en", [3]), _const("ax", [1])], ["y"]
    if op == "Squeeze":
        return [n("Squeeze", ["p", "ax"], ["y"])], [_const("ax", [0])], ["y"]
    if op == "Unsqueeze":
        return [n("Unsqueeze", ["p", "ax"], ["y"])], [_const("ax", [0])], ["y"]
    if op == "Gather":
        return [n("Gather", ["p", "idx"], ["y"], axis=1)], [_const("idx", [0, 2, 3])], ["y"]
    if op == "Split":
        return [n("Split", ["p", "sp"], ["y", "y2"], axis=1)], [_const("sp", [1, 3])], ["y", "y2"]
    if op == "Pad":
        return [n("Pad", ["p", "pads"], ["y"], mode="constant")], [_const("pads", [0, 0, 1, 1, 0, 0, 1, 1])], ["y"]
    if op == "Identity":
        return [n("Identity", ["p"], ["y"])], [], ["y"]
    if op == "MaxPool":
        return [n("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], [], ["y"]
    if op == "GlobalMaxPool":
        return [n("GlobalMaxPool", ["p"], ["y"])], [], ["y"]
    if op == "Concat":  # the producer's output and a second convolution's, as channels
        return [helper.make_node("Conv", ["x", "w2"], ["p2"], name="conv_2", pads=[1, 1, 1, 1]),
                n("Concat", ["p", "p2"], ["y"], axis=1)], [], ["y"]
    raise AssertionError(op)


def carrier_model(op: str, *, sigmoid: bool = False, gain: float = 1.0) -> onnx.ModelProto:
    """``x -> Conv (c) [-> Sigmoid] (p) -> <op> -> y``: the model output ``y`` copies ``p``'s values.
    ``gain`` scales the convolution's weights (logits beyond 8 need a large one)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((gain * rng.normal(0, 0.5, (4, 3, 3, 3))).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b"),
             numpy_helper.from_array((gain * rng.normal(0, 0.5, (4, 3, 3, 3))).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if sigmoid else "p"], name="conv_1", pads=[1, 1, 1, 1])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["p"], name="sigmoid_1"))
    more, extra, outs = _carrier(op)
    nodes += more
    inits += extra
    g = helper.make_graph(nodes, f"carrier_{op}", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def _inputs(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)} for _ in range(n)]


def _analyse(model: onnx.ModelProto, opts: QuantOptions, monkeypatch) -> analysis_run.AnalysisResult:
    """The analysis with every node on the NPU (Squeeze, Unsqueeze, Split run on the CPU of the
    720: forced onto the NPU here, so that each pass-through kernel is exercised) and without float
    tails (auto_precision, docs/fixed-point.md 10.1: a Sigmoid + carrier after one Conv can gain
    6 dB in float; these tests are about the integer kernels)."""
    monkeypatch.setattr(analysis_run, "place_model", lambda model, platform: [])
    opts = dataclasses.replace(opts, auto_precision=False)
    return analysis_run.analyse(model, P720, {"x": [f["x"] for f in _inputs(12)]}, opts, threads=1, progress=False)


def _run_both(program, feeds, monkeypatch, keep_all: bool = True) -> list[dict[str, np.ndarray]]:
    """Every tensor (``keep_all``) or output, reference kernels and fast path: identical integers
    and dtypes (returned once)."""
    out = []
    for f in feeds:
        q = program.quantize_inputs(f)
        monkeypatch.setenv("NPUFLOW_SIM", "reference")
        ref = program.run(q, keep_all=keep_all)
        monkeypatch.delenv("NPUFLOW_SIM", raising=False)
        fast = program.run(q, keep_all=keep_all)
        assert ref.keys() == fast.keys()
        for n in ref:
            assert ref[n].dtype == fast[n].dtype, n
            np.testing.assert_array_equal(ref[n], fast[n], err_msg=n)
        out.append(ref)
    return out


OPS = sorted(CARRIERS)


# ---------------------------------------------------------------------------------------------- model_out
@pytest.mark.parametrize("sigmoid", [False, True], ids=["conv", "sigmoid"])
@pytest.mark.parametrize("datapath,model_out", [(8, 16), (16, 8)], ids=["dp8-out16", "dp16-out8"])
@pytest.mark.parametrize("op", OPS)
def test_model_out_reaches_through_every_pass_through_kernel(op, datapath, model_out, sigmoid, monkeypatch):
    """The output's producer (a Conv, or a Sigmoid table fed at the datapath width) gets the output width."""
    model = carrier_model(op, sigmoid=sigmoid)
    res = _analyse(model, QuantOptions(datapath_bits=datapath, model_out_bits=model_out), monkeypatch)
    prog = res.program
    st = next(s for s in prog.steps if s.op_type == op)
    assert not st.float_step
    # the model output and every tensor it copies (the convolutions' outputs) have the output width
    for t in ["y", "p"] + (["p2"] if op == "Concat" else []):
        assert prog.formats[t].bits == model_out, (t, prog.formats[t])
        assert prog.notes.width[t] in ("model_out", "inherit")
    # the other tensors keep the datapath / input width
    assert prog.formats["x"].bits == 8
    if sigmoid:
        assert prog.formats["c"].bits == datapath
    # the options' effect: different integers from the same analysis at the other output width
    base = _analyse(model, QuantOptions(datapath_bits=datapath, model_out_bits=datapath), monkeypatch).program
    feeds = _inputs(2, seed=5)
    got, ref = _run_both(prog, feeds, monkeypatch), _run_both(base, feeds, monkeypatch)
    assert got[0]["y"].dtype == (np.int16 if model_out == 16 else np.int8)
    assert any(not np.array_equal(prog.formats["y"].dequantize(a["y"]), base.formats["y"].dequantize(b["y"]))
               for a, b in zip(got, ref))
    eff = res.effects
    assert [c["output"] for c in eff["model_out"]][:1] == ["y"] and "p" in eff["model_out"][0]["tensors"]


def test_model_out_int16_on_mnist(tmp_path):
    cal = {"Input3": list(_digits()["calib_x"][:16])}
    p8 = _km().analysis(cal, output_dir=tmp_path / "a", report=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptionEffectWarning)  # it changes something: no warning
        p16 = _km().analysis(cal, output_dir=tmp_path / "b", report=False, model_out_bitwidth_mode="int16")
    m8, m16 = npuflow.load(p8), npuflow.load(p16)
    out = m16.program.output_names[0]
    assert m8.program.formats[out].bits == 8 and m16.program.formats[out].bits == 16
    x = _digits()["eval_x"][:4]
    a = [m8.program.run(m8.program.quantize_inputs({"Input3": v}))[out] for v in x]
    b = [m16.program.run(m16.program.quantize_inputs({"Input3": v}))[out] for v in x]
    assert b[0].dtype == np.int16 and not all(np.array_equal(u.astype(np.int64), v.astype(np.int64)) for u, v in zip(a, b))


# ---------------------------------------------------------------------------------------------- post_sigmoid
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", OPS)
def test_post_sigmoid_caps_the_sigmoid_input_through_every_pass_through_kernel(op, bits, monkeypatch):
    model = carrier_model(op, sigmoid=True, gain=12.0)  # with a Concat: raw channels beside (yolox's boxes)
    opts = QuantOptions(datapath_bits=bits, model_out_bits=bits, cpu_bits=bits)  # cpu follows the datapath (API default)
    res = _analyse(model, QuantOptions(datapath_bits=bits, model_out_bits=bits, cpu_bits=bits, post_sigmoid=True), monkeypatch)
    base = _analyse(model, opts, monkeypatch)
    prog, b = res.program, base.program
    # the logit (the Sigmoid's input) is capped at 8 (times the int16 headroom at 16 bits)
    head = INT16_HEADROOM if bits > 8 else 1.0
    assert prog.formats["c"] == QFormat.from_abs_max(head * POST_SIGMOID_CAP, bits)
    assert prog.formats["c"] != b.formats["c"]
    (entry,) = [e for e in res.effects["post_sigmoid"] if e["tensor"] == "c"]
    assert entry["applies"] and entry["capped"] == head * POST_SIGMOID_CAP < entry["calibrated"]
    # nothing else changes: the Sigmoid's output and, with a Concat, the raw channels keep their formats
    assert all(prog.formats[t] == b.formats[t] for t in prog.formats if t != "c")
    assert not res.effects["no_effect"]
    feeds = _inputs(3, seed=9)
    got, ref = _run_both(prog, feeds, monkeypatch), _run_both(b, feeds, monkeypatch)
    # the Sigmoid's output integers change (GlobalMaxPool then keeps the channel maxima, often 1.0
    # either way: its output may not)
    assert any(not np.array_equal(u["p"], v["p"]) for u, v in zip(got, ref))
    if op != "GlobalMaxPool":
        assert any(not np.array_equal(u["y"], v["y"]) for u, v in zip(got, ref))


def test_post_sigmoid_caps_logits_of_an_output_without_sigmoid(tmp_path):
    """MNIST's output is logits (no Sigmoid): ktc's documented use, the output range is capped."""
    cal = {"Input3": list(_digits()["calib_x"][:16])}
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptionEffectWarning)
        p = _km().analysis(cal, output_dir=tmp_path / "ps", report=False, quantize_mode="post_sigmoid")
    p0 = _km().analysis(cal, output_dir=tmp_path / "d", report=False)
    m, m0 = npuflow.load(p), npuflow.load(p0)
    out = m.program.output_names[0]
    assert m.program.formats[out] == QFormat.from_abs_max(POST_SIGMOID_CAP, 8) != m0.program.formats[out]


def test_post_sigmoid_that_changes_nothing_warns(tmp_path, monkeypatch):
    """Outputs within +-8 and no Sigmoid: one warning, and the same integers as the defaults."""
    model = carrier_model("Transpose", gain=0.2)
    cal = {"x": [f["x"] for f in _inputs(8)]}
    with pytest.warns(OptionEffectWarning, match="quantize_mode='post_sigmoid'.*no model output comes from a Sigmoid"):
        p = ktc.ModelConfig(40000, "0001", 720, onnx_model=model).analysis(cal, output_dir=tmp_path / "a", report=False,
                                                                            quantize_mode="post_sigmoid")
    p0 = ktc.ModelConfig(40000, "0001", 720, onnx_model=model).analysis(cal, output_dir=tmp_path / "b", report=False)
    assert npuflow.load(p).program.formats == npuflow.load(p0).program.formats


def test_post_sigmoid_skips_a_logit_read_elsewhere(monkeypatch):
    """A logit that another node reads too is not clipped; the report says why."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array((12 * rng.normal(0, 0.5, (4, 3, 3, 3))).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in ("s", "r")],
                          initializer=[w])
    m = onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    res = _analyse(m, QuantOptions(post_sigmoid=True), monkeypatch)
    assert "c" not in res.program.notes.capped
    assert any("sig: its input c has other consumers" in s for s in res.effects["post_sigmoid_skipped"])
    # the output "r" has no Sigmoid: its own values are capped (logits whose Sigmoid was removed)
    assert "r" in res.program.notes.capped


# ---------------------------------------------------------------------------------------------- warnings + report
def _digits() -> dict[str, np.ndarray]:
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _km(platform: int = 720) -> ktc.ModelConfig:
    return ktc.ModelConfig(40000, "0001", platform, onnx_path=MNIST)


def test_options_that_change_nothing_warn_once(tmp_path):
    cal = {"Input3": list(_digits()["calib_x"][:8])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _km().analysis(cal, output_dir=tmp_path, report=False, cpu_node_bitwidth_mode="int16", percentage_16b=0.9999,
                       outlier_factor=2.0)
    ours = [w for w in caught if issubclass(w.category, OptionEffectWarning)]
    assert len(ours) == 1 and ours[0].filename == __file__  # attributed to the user's line
    msg = str(ours[0].message)
    for option in ("cpu_node_bitwidth_mode='int16'", "percentage_16b=0.9999", "outlier_factor=2.0"):
        assert option in msg
    with warnings.catch_warnings():  # defaults: nothing to say
        warnings.simplefilter("error", OptionEffectWarning)
        _km().analysis(cal, output_dir=tmp_path / "d", report=False)


def test_int16_datapath_lists_the_tensors_that_stay_8bit(tmp_path):
    from jsonschema import validate

    cal = {"Input3": list(_digits()["calib_x"][:8])}
    km = _km()
    with pytest.warns(OptionEffectWarning) as rec:
        km.analysis(cal, output_dir=tmp_path, datapath_bitwidth_mode="int16", report_samples=2)
    msgs = [str(w.message) for w in rec if issubclass(w.category, OptionEffectWarning)]
    (msg,) = [m for m in msgs if "stay 8-bit" in m]
    assert "model_in_bitwidth_mode='int8': Input3" in msg and "model_out_bitwidth_mode='int8': Plus214_Output_0" in msg
    doc = json.loads((tmp_path / "model_fx_report.json").read_text())
    validate(doc, REPORT_SCHEMA)
    fx = doc["quantization"]["option_effects"]
    assert {(e["tensor"], e["option"]) for e in fx["stays_8bit"]} == {("Input3", "model_in_bitwidth_mode"),
                                                                     ("Plus214_Output_0", "model_out_bitwidth_mode")}
    # every 8-bit tensor of the program is listed, and marked in the node table and the inputs
    prog = km.analysis_result.program
    assert {e["tensor"] for e in fx["stays_8bit"]} == {t for t, f in prog.formats.items() if f.bits == 8}
    marked = [o for r in doc["quantization"]["steps"] for o in r["outputs"] if o.get("stays_8bit")]
    assert [o["tensor"] for o in marked] == ["Plus214_Output_0"]
    assert doc["quantization"]["inputs"][0]["stays_8bit"] == "model_in_bitwidth_mode"
    html = (tmp_path / "model_fx_report.html").read_text()
    assert 'id="effects"' in html and html.count("stays 8-bit: ") == 2


def test_report_lists_options_that_change_nothing(tmp_path):
    cal = {"Input3": list(_digits()["calib_x"][:8])}
    with pytest.warns(OptionEffectWarning, match="cpu_node_bitwidth_mode"):
        _km().analysis(cal, output_dir=tmp_path, cpu_node_bitwidth_mode="int16", report_samples=2)
    doc = json.loads((tmp_path / "model_fx_report.json").read_text())
    (e,) = doc["quantization"]["option_effects"]["no_effect"]
    assert e["option"] == "cpu_node_bitwidth_mode" and e["value"] == "int16" and "CPU node" in e["reason"]
    html = (tmp_path / "model_fx_report.html").read_text()
    assert "changes nothing" in html and "cpu_node_bitwidth_mode=int16" in html


# ---------------------------------------------------------------------------------------------- yolox_nano
def _yolox(shared, tmp_path, **kw):
    from benchmarks.tasks import get_task

    task = get_task("yolox_nano", shared)
    calib = [c["images"] for c in task.calib_inputs(8)]
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptionEffectWarning)  # both options change something here
        bie = km.analysis({"images": calib}, output_dir=tmp_path / ("-".join(map(str, kw.values())) or "default"),
                          threads=2, report=False, progress=False, **kw)
    return npuflow.load(bie), km.analysis_result, [x["images"] for x in task.eval_inputs(2)]


@pytest.fixture(scope="module")
def yolox_default(shared, tmp_path_factory):
    return _yolox(shared, tmp_path_factory.mktemp("yolox"))


@pytest.mark.shared
def test_yolox_model_out_int16(shared, tmp_path, yolox_default, monkeypatch):
    m0, _, xs = yolox_default
    _, res, _ = _yolox(shared, tmp_path, model_out_bitwidth_mode="int16")
    p, p0 = res.program, m0.program  # the analysis' program (with its notes) is the BIE's
    assert p0.formats["output"].bits == 8 and p.formats["output"].bits == 16
    # through Transpose, Concat, Reshape, Concat: the box convolutions and the score Sigmoids are 16-bit
    chain = res.effects["model_out"][0]["tensors"]
    producers = {p.notes.producer[t] for t in chain}
    assert {"Concat_422", "Concat_364", "Sigmoid_362", "Sigmoid_363", "Conv_360"} <= producers
    assert all(p.formats[t].bits == 16 for t in chain)
    # (the fast path equals the reference kernels on these formats: the carrier tests above; the int16
    # reference kernels take 20 s on this model)
    got = p.run(p.quantize_inputs({"images": xs[0]}))["output"]
    base = p0.run(p0.quantize_inputs({"images": xs[0]}))["output"]
    assert got.dtype == np.int16
    assert not np.array_equal(p.formats["output"].dequantize(got), p0.formats["output"].dequantize(base))


@pytest.mark.shared
def test_yolox_post_sigmoid(shared, tmp_path, yolox_default, monkeypatch):
    m0, res0, xs = yolox_default
    _, res, _ = _yolox(shared, tmp_path, quantize_mode="post_sigmoid")
    p, p0 = res.program, m0.program  # the analysis' program (with its notes) is the BIE's
    # the inputs of the six score Sigmoids (objectness and classes of three levels) are capped at 8,
    # the box channels and everything else keep their formats
    capped = {e["tensor"]: e for e in res.effects["post_sigmoid"]}
    # (the SiLUs' gates are Sigmoid steps too since the gated channel equalization, spec 3.8: they
    # read the unscaled value and are not capped)
    sigmoids = [st for st in p.steps if st.op_type == "Sigmoid" and not st.inputs[0].endswith("_unscaled")]
    assert len(sigmoids) == 6 and {st.inputs[0] for st in sigmoids} == set(capped)
    for t, (a, c, _) in p.notes.capped.items():
        assert c == min(a, POST_SIGMOID_CAP) and p.formats[t] == QFormat.from_abs_max(c, 8)
    applied = [t for t, e in capped.items() if e["applies"]]
    assert applied and all(p.formats[t] == QFormat.from_abs_max(POST_SIGMOID_CAP, 8) != p0.formats[t] for t in applied)
    # the budgeted precision search (spec 10.2) measures each program and may widen other steps in
    # one run and not the other: every other tensor keeps its format
    searched = {y for r in (res, res0) for st in r.program.steps
                if st.name in ((r.auto_precision or {}).get("search") or {}).get("overrides", {}) for y in st.outputs}
    assert all(p.formats[t] == p0.formats[t] for t in p.formats if t not in capped and t not in searched)
    got = _run_both(p, [{"images": xs[0]}], monkeypatch, keep_all=False)[0]["output"]
    base = p0.run(p0.quantize_inputs({"images": xs[0]}))["output"]
    assert not np.array_equal(got, base)
