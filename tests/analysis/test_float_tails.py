"""Float tails after the last MAC layer (docs/fixed-point.md section 10.1; issue 15 part 2).

* ``find_tails``: the candidates of hand-built graphs: the nodes after the last MAC layer, without
  an activation fused into it, without leading data movement, never a MAC layer; per connected part.
* A box-decode graph (Exp x priors concatenated with centres into one tensor, as ultraface's):
  the tail is measured to help, runs as host float steps inside the BIE (outputs not quantized, the
  model's outputs kept: names, shapes, order), listed in one AutoPrecisionWarning, in the report and
  as "host post-processing" in evaluate() after analysis() and from the BIE; the BIE records
  numerics 1.2; ``auto_precision=False`` keeps every tail quantized (numerics 1.1).
* A tail that does not help is measured and not kept; MNIST (no tail) gives the same BIE bytes
  whatever auto_precision, and ``auto_precision=False`` is reported as changing nothing there.
* post_sigmoid with a Sigmoid in a kept tail caps the Sigmoid's NPU input.
* ultraface_rfb_320 / yolox_nano (shared): the decode tail is kept on ultraface (boxes SNR on
  evaluation images +5 dB or more; estimated FPS not below 90 % of auto_precision=False's), not on
  yolox; no tail holds a MAC layer.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ktc
import npuflow
from npuflow.analysis.graph import MAC_OPS, build_steps
from npuflow.analysis.program import required_numerics_version
from npuflow.analysis.tails import HOST_REASON, MIN_GAIN_DB, find_tails, host_steps_of
from npuflow.errors import AutoPrecisionWarning, OptionEffectWarning
from npuflow.evaluate.placement import place_model
from npuflow.passes import optimize
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from tests.conftest import EXAMPLES

F = onnx.TensorProto.FLOAT
MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


def _init(name, v, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(v, dtype=dtype), name)


def _model(nodes, inits, outputs, in_shape=(1, 4, 8, 8)):
    g = helper.make_graph(nodes, "tails", [helper.make_tensor_value_info("x", F, list(in_shape))],
                          [helper.make_empty_tensor_value_info(o) for o in outputs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def decode_model(sigmoid: bool = False) -> onnx.ModelProto:
    """x -> Conv (+Relu on a side output) -> Reshape -> Transpose -> [centres: Slice, Mul, Add priors;
    sizes: Slice, Mul, Exp, Mul priors] -> Concat -> "boxes" (ultraface's decode, in small).
    The prior sizes span 0.005 .. 4: int8 over the Concat crushes the small boxes and the centres.
    ``sigmoid``: the centres come from a Conv of their own through Reshape, Transpose and a Sigmoid
    (for post_sigmoid), the sizes from the first Conv."""
    rng = np.random.default_rng(0)
    n = 64
    w = rng.normal(0, 0.5, (4, 4, 1, 1))
    centres = rng.uniform(0, 1, (1, n, 2))
    sizes = np.exp(rng.uniform(np.log(0.005), np.log(4.0), (1, n, 2)))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["side"], name="relu_side"),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1], name="transpose"),
        helper.make_node("Slice", ["t", "s2", "s4", "ax2"], ["siz"], name="slice_size"),
    ]
    if sigmoid:
        nodes += [helper.make_node("Conv", ["x", "wl"], ["cl"], name="conv_loc"),
                  helper.make_node("Reshape", ["cl", "shape2"], ["rl"], name="reshape_loc"),
                  helper.make_node("Transpose", ["rl"], ["loc"], perm=[0, 2, 1], name="transpose_loc"),
                  helper.make_node("Sigmoid", ["loc"], ["loc_s"], name="sigmoid_loc")]
        loc = "loc_s"
    else:
        nodes.append(helper.make_node("Slice", ["t", "s0", "s2", "ax2"], ["loc"], name="slice_loc"))
        loc = "loc"
    nodes += [
        helper.make_node("Mul", [loc, "k01"], ["loc1"], name="mul_var0"),
        helper.make_node("Add", ["loc1", "pc"], ["cxy"], name="add_prior"),
        helper.make_node("Mul", ["siz", "k02"], ["siz1"], name="mul_var1"),
        helper.make_node("Exp", ["siz1"], ["e"], name="exp"),
        helper.make_node("Mul", ["e", "ps"], ["wh"], name="mul_prior"),
        helper.make_node("Concat", ["cxy", "wh"], ["boxes"], axis=2, name="concat_boxes"),
    ]
    inits = [_init("w", w), _init("b", np.zeros(4)), _init("shape", [1, 4, n], np.int64),
             _init("s0", [0], np.int64), _init("s2", [2], np.int64), _init("s4", [4], np.int64),
             _init("ax2", [2], np.int64), _init("k01", 0.1), _init("k02", 0.2), _init("pc", centres),
             _init("ps", sizes)]
    if sigmoid:
        inits += [_init("wl", rng.normal(0, 3.0, (2, 4, 1, 1))), _init("shape2", [1, 2, n], np.int64)]
    return _model(nodes, inits, ["boxes", "side"])


def feeds(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(n)]


def candidates(model: onnx.ModelProto, platform: int = 720):
    opt = optimize(model)
    steps = build_steps(opt, place_model(opt, platform), set(KERNELS))
    return opt, find_tails(opt, steps)


def analyse(model, tmp_path, calib, **kw):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=model)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        bie = km.analysis({"x": calib}, output_dir=tmp_path, threads=1, progress=False, **kw)
    return km, bie, w


def snr(ref, x):
    ref = np.concatenate([np.ravel(r) for r in ref]).astype(np.float64)
    d = ref - np.concatenate([np.ravel(v) for v in x]).astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / (d ** 2).sum())


# ------------------------------------------------------------------------------------------------ candidates
def test_candidates_of_a_decode_graph():
    opt, tails = candidates(decode_model())
    # one candidate per connected part: the side output's Relu (not fused: the Conv output has two
    # readers) and the decode; Reshape/Transpose/Slice at the start copy integers (stay on the NPU)
    assert [t.outputs for t in tails] == [("side",), ("boxes",)]
    t = tails[1]
    assert set(t.nodes) == {"mul_var0", "add_prior", "mul_var1", "exp", "mul_prior", "concat_boxes"}
    assert t.inputs == ("loc", "siz")
    ops = {n.name: n.op_type for n in opt.graph.node}
    assert not any(ops[n] in MAC_OPS for tt in tails for n in tt.nodes)


def test_activation_fused_into_the_last_mac_layer_stays():
    w = np.ones((4, 4, 1, 1), np.float32) * 0.1
    m = _model([helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
                helper.make_node("Relu", ["a"], ["r"], name="relu"),
                helper.make_node("Exp", ["r"], ["y"], name="exp")], [_init("w", w)], ["y"])
    tails = candidates(m)[1]
    assert [(t.nodes, t.inputs) for t in tails] == [(("exp",), ("r",))]


def test_no_candidate_before_a_mac_layer_or_without_computation():
    # Conv -> Exp -> Conv: the Exp is followed by a MAC layer; a trailing Transpose only copies
    w = np.ones((4, 4, 1, 1), np.float32) * 0.1
    m = _model([helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
                helper.make_node("Exp", ["a"], ["e"], name="exp"),
                helper.make_node("Conv", ["e", "w"], ["b"], name="c2"),
                helper.make_node("Transpose", ["b"], ["y"], perm=[0, 2, 3, 1], name="tr")],
               [_init("w", w)], ["y"])
    assert candidates(m)[1] == []
    # MNIST ends with a Gemm; efficientnet too (shared test below covers the real models)
    assert candidates(onnx.load(MNIST))[1] == []


def test_separate_outputs_are_separate_candidates():
    w = np.ones((4, 4, 1, 1), np.float32) * 0.1
    m = _model([helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
                helper.make_node("Exp", ["a"], ["y1"], name="exp"),
                helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
                helper.make_node("Mul", ["s", "k"], ["y2"], name="mul")],
               [_init("w", w), _init("k", 3.0)], ["y1", "y2"])
    tails = candidates(m)[1]
    assert [t.outputs for t in tails] == [("y1",), ("y2",)]
    assert [set(t.nodes) for t in tails] == [{"exp"}, {"sig", "mul"}]


# ------------------------------------------------------------------------------------------------ the decode graph
@pytest.fixture(scope="module")
def decode_runs(tmp_path_factory):
    m = decode_model()
    calib, evals = feeds(16, 1), feeds(8, 2)
    on = analyse(m, tmp_path_factory.mktemp("on"), calib)
    off = analyse(m, tmp_path_factory.mktemp("off"), calib, auto_precision=False)
    return m, evals, on, off


def test_decode_tail_kept_in_float_and_measured(decode_runs):
    m, evals, (km, bie, w), _ = decode_runs
    res = km.analysis_result
    recs = res.auto_precision["float_tails"]
    assert res.auto_precision["enabled"] and [r["kept"] for r in recs] == [False, True]  # side, boxes
    rec = recs[1]
    assert rec["gain_db"] >= MIN_GAIN_DB and rec["samples"] == 8
    assert rec["snr_float_db"]["boxes"] - rec["snr_quantized_db"]["boxes"] == pytest.approx(rec["gain_db"], abs=1e-2)
    # one warning line naming the tail and its gain
    msgs = [str(x.message) for x in w if issubclass(x.category, AutoPrecisionWarning)]
    assert len(msgs) == 1 and "boxes" in msgs[0] and "auto_precision=False" in msgs[0] and "\n" not in msgs[0]
    # host steps: one per ONNX node, float, outputs not quantized; no MAC layer
    p = res.program
    hs = [p.steps[k] for k in host_steps_of(p)]
    assert {st.name for st in hs} == set(rec["nodes"])
    assert all(st.host and st.float_step and st.reason.startswith(HOST_REASON) for st in hs)
    assert not any(st.op_type in MAC_OPS for st in hs)
    assert all(y not in p.formats for st in hs for y in st.outputs)
    assert "t" in p.formats  # the NPU's output to the host stays quantized
    # the BIE keeps the model's outputs (names, order, shapes) and records numerics 1.2 and the tail
    fixed = npuflow.load(bie)
    assert fixed.output_names == ["boxes", "side"]
    meta = {e.key: e.value for e in onnx.load(bie).metadata_props}
    assert meta["npuflow.numerics_version"] == "1.2" == required_numerics_version(fixed.program)
    opts = json.loads(meta["npuflow.options"])
    assert opts["float_tails"] == [{"outputs": ["boxes"], "nodes": rec["nodes"]}] and "auto_precision" not in opts
    ref = [npuflow.load(m).run({"x": x}) for x in evals]
    out = [fixed.run({"x": x}) for x in evals]
    assert all(o[0].shape == r[0].shape == (1, 64, 4) and o[0].dtype == np.float32 for o, r in zip(out, ref))
    raw = fixed.run({"x": evals[0]}, data_type="fixed")
    assert raw[0].dtype == np.float32 and raw[1].dtype == np.int8  # a float tail's output is float in both
    # the batch path gives the same values
    batch = fixed.run_batch({"x": np.concatenate(evals)})
    np.testing.assert_array_equal(batch[0], np.concatenate([o[0] for o in out]))


def test_auto_precision_false_keeps_the_tail_quantized(decode_runs):
    m, evals, (km_on, bie_on, _), (km, bie, w) = decode_runs
    assert not any(issubclass(x.category, AutoPrecisionWarning) for x in w)
    assert km.analysis_result.auto_precision == {"enabled": False, "float_tails": [], "promotions": [], "float_islands": {}}
    p = km.analysis_result.program
    assert not host_steps_of(p) and "boxes" in p.formats
    meta = {e.key: e.value for e in onnx.load(bie).metadata_props}
    assert meta["npuflow.numerics_version"] == "1.1"
    opts = json.loads(meta["npuflow.options"])
    assert opts["auto_precision"] is False and "float_tails" not in opts
    # the head is the same program: every tensor both quantize has the same format
    p_on = km_on.analysis_result.program
    assert all(p_on.formats[t] == f for t, f in p.formats.items() if t in p_on.formats)
    # measured on evaluation inputs: the float tail is far better on the decoded boxes
    ref = [npuflow.load(m).run({"x": x})[0] for x in evals]
    q_on = [npuflow.load(bie_on).run({"x": x})[0] for x in evals]
    q_off = [npuflow.load(bie).run({"x": x})[0] for x in evals]
    assert snr(ref, q_on) >= snr(ref, q_off) + MIN_GAIN_DB


def test_report_and_evaluate_show_host_post_processing(decode_runs):
    _, _, (km, _, _), _ = decode_runs
    doc = km.report
    q = doc["quantization"]
    assert q["auto_precision"]["enabled"] and q["auto_precision"]["float_tails"][1]["kept"]
    rows = {r["name"]: r for r in q["steps"]}
    assert rows["exp"]["host"] and rows["exp"]["placement"] == "CPU" and rows["exp"]["reason"].startswith(HOST_REASON)
    assert not rows["conv"]["host"]
    # the float output counts in the model-output SNR (it is not quantized)
    assert {o["name"] for o in q["outputs"]} == {"boxes", "side"}
    n_host = len(q["auto_precision"]["float_tails"][1]["nodes"])
    assert doc["summary"]["host_node_count"] == n_host
    html = Path(km.report_paths["html"]).read_text()
    assert "Automatic precision" in html and HOST_REASON in html
    # evaluate() after analysis(): the same nodes are host post-processing (CPU, no NPU time)
    text = km.evaluate(output_dir=Path(km.report_paths["json"]).parent / "ev")
    assert f"kdp720/{HOST_REASON}: " in text and "exp(Exp)" in text
    ev = json.loads((Path(km.report_paths["json"]).parent / "ev" / "model_fx_report.json").read_text())
    host = [n for n in ev["nodes"] if n["reason"].startswith(HOST_REASON)]
    assert len(host) == n_host and all(n["placement"] == "CPU" and n["time_ms"] == 0 for n in host)
    # ... and from the BIE alone
    km_b = ktc.ModelConfig(40000, "0001", 720, bie_path=km.bie_path)
    assert f"kdp720/{HOST_REASON}: " in km_b.evaluate(output_dir=Path(km.report_paths["json"]).parent / "ev2")


def test_tail_that_does_not_help_is_not_kept(tmp_path):
    # Conv -> Add -> Relu -> output: floating it only removes the output's own int8 rounding (the
    # Add's constant varies over rows, so that fold_conv_affine cannot fold it into the bias)
    rng = np.random.default_rng(3)
    m = _model([helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
                helper.make_node("Add", ["a", "k"], ["s"], name="add"),
                helper.make_node("Relu", ["s"], ["y"], name="relu")],
               [_init("w", rng.normal(0, 0.5, (4, 4, 1, 1))), _init("k", np.linspace(0.0, 0.5, 8).reshape(1, 1, 8, 1))],
               ["y"])
    km, bie, w = analyse(m, tmp_path, feeds(8, 4), report=False)
    rec = km.analysis_result.auto_precision["float_tails"]
    assert len(rec) == 1 and not rec[0]["kept"] and rec[0]["gain_db"] < MIN_GAIN_DB and "not kept" in rec[0]["why"]
    assert not any(issubclass(x.category, AutoPrecisionWarning) for x in w)
    assert not host_steps_of(km.analysis_result.program)
    assert {e.key: e.value for e in onnx.load(bie).metadata_props}["npuflow.numerics_version"] == "1.1"


def test_mnist_bie_does_not_change(tmp_path, mnist_digits):
    calib = list(mnist_digits["calib_x"][:16])
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    a = km.analysis({"Input3": calib}, output_dir=tmp_path / "a", report=False)
    digest_a = hashlib.sha256(Path(a).read_bytes()).hexdigest()
    ap = dict(km.analysis_result.auto_precision)
    search = ap.pop("search")  # MNIST's int8 output SNR needs no precision search (docs/fixed-point.md 10.2)
    assert ap == {"enabled": True, "float_tails": [], "promotions": [], "float_islands": {}}
    assert search["ran"] is False and search["start_snr_db"] >= search["below_db"]
    with pytest.warns(OptionEffectWarning, match="auto_precision=False: the model has no float tail"):
        b = km.analysis({"Input3": calib}, output_dir=tmp_path / "b", report=False, auto_precision=False)
    ma, mb = onnx.load(a), onnx.load(b)
    meta_a = {e.key: e.value for e in ma.metadata_props}
    meta_b = {e.key: e.value for e in mb.metadata_props}
    assert meta_a["npuflow.numerics_version"] == "1.1" and "auto_precision" not in meta_a["npuflow.options"]
    assert meta_a["npuflow.plan"] == meta_b["npuflow.plan"]  # only the recorded option differs
    # the default BIE is the file it was before float tails existed: the same bytes as a second run
    c = km.analysis({"Input3": calib}, output_dir=tmp_path / "c", report=False)
    assert hashlib.sha256(Path(c).read_bytes()).hexdigest() == digest_a


def test_post_sigmoid_caps_the_npu_input_of_a_host_sigmoid(tmp_path):
    km, _, _ = analyse(decode_model(sigmoid=True), tmp_path, feeds(16, 1), report=False,
                       quantize_mode="post_sigmoid")
    res = km.analysis_result
    kept = [r for r in res.auto_precision["float_tails"] if r["kept"]]
    assert len(kept) == 1 and "sigmoid_loc" in kept[0]["nodes"]
    # the side output's tail has no Sigmoid: post_sigmoid takes it as logits to cap, it is not measured
    (side,) = [r for r in res.auto_precision["float_tails"] if r["outputs"] == ["side"]]
    assert not side["kept"] and side["gain_db"] is None and side["why"].startswith("not measured: quantize_mode")
    # the Sigmoid runs on the host; its logit comes from the NPU through Transpose and Reshape
    # (pass-through) from conv_loc's output: that tensor is capped at 8
    p = res.program
    # ("side" is a model output no Sigmoid produces: capped as logits, the rule of section 3.7)
    assert set(p.notes.capped) == {"cl", "side"} and "sigmoid_loc" in p.notes.capped["cl"][2]
    a, c, _ = p.notes.capped["cl"]
    assert a > 8 and c == 8 and p.formats["cl"] == QFormat.from_abs_max(8.0, 8)


# ------------------------------------------------------------------------------------------------ shared models
def _images(shared: Path, folder: str, spec: str, n: int) -> list[np.ndarray]:
    from npuflow.preprocess import PRESETS, load_image, parse

    s = PRESETS[spec] if spec in PRESETS else parse(spec)
    lines = (shared / "data" / folder / "calib.txt").read_text().split()
    evals = (shared / "data" / folder / "eval.txt").read_text().split()
    return [load_image(shared / "data" / folder / f, s) for f in (lines[:n] + evals[:4])]


@pytest.mark.shared
def test_ultraface_decode_tail_kept(shared, tmp_path):
    from npuflow.analysis.tails import host_nodes
    from npuflow.evaluate import evaluate_model

    xs = _images(shared, "faces", "resize=240x320,order=RGB,mean=127,std=128", 16)
    calib, evals = xs[:16], xs[16:]
    path = str(shared / "models" / "ultraface_rfb_320.onnx")
    runs = {}
    for ap in (True, False):
        km = ktc.ModelConfig(40000, "0001", 720, onnx_path=path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = km.analysis({"input": calib}, output_dir=tmp_path / str(ap), report=False, threads=2,
                              auto_precision=ap)
        runs[ap] = (km, npuflow.load(bie))
    res = runs[True][0].analysis_result
    kept = [r for r in res.auto_precision["float_tails"] if r["kept"]]
    assert [r["outputs"] for r in kept] == [["boxes"]] and "Exp" in kept[0]["ops"]
    assert not any(res.program.steps[k].op_type in MAC_OPS for k in host_steps_of(res.program))
    f = npuflow.load(path)
    ref = [f.run({"input": x})[1] for x in evals]
    on = [runs[True][1].run({"input": x})[1] for x in evals]
    off = [runs[False][1].run({"input": x})[1] for x in evals]
    assert snr(ref, on) >= snr(ref, off) + 5.0
    # estimated FPS (cost model unchanged: host nodes are CPU nodes) not below 90 % of auto_precision=False's
    fps_on = evaluate_model(res.optimized, 720, host_nodes=host_nodes(res.steps)).fps
    fps_off = evaluate_model(runs[False][0].analysis_result.optimized, 720).fps
    assert fps_on >= 0.9 * fps_off


@pytest.mark.shared
def test_no_tail_holds_a_mac_layer_on_the_shared_models(shared):
    found = {}
    for name, shapes in (("yolox_nano", None), ("ultraface_rfb_320", None), ("pan_mnv3s_skin_clothes_hair", None),
                         ("efficientnet_lite0", {"input": [1, 3, 224, 224]}),
                         ("en_PP-OCRv3_det_infer", {"x": [1, 3, 640, 640]})):
        opt = optimize(onnx.load(str(shared / "models" / f"{name}.onnx")), input_shapes=shapes)
        steps = build_steps(opt, place_model(opt, 720), set(KERNELS))
        ops = {n.name: n.op_type for n in opt.graph.node}
        tails = find_tails(opt, steps)
        found[name] = [t.outputs for t in tails]
        for t in tails:
            assert not any(ops[n] in MAC_OPS for n in t.nodes), name
    assert found["efficientnet_lite0"] == [] and found["ultraface_rfb_320"] == [("scores",), ("boxes",)]
    assert found["yolox_nano"] == [("output",)]


def test_cli_no_auto_precision(tmp_path, mnist_digits):
    from npuflow.cli import build_parser, main

    assert build_parser().parse_args(["analysis", MNIST, "-p", "720", "-i", "Input3=d"]).auto_precision is True
    (tmp_path / "cal").mkdir()
    for i, x in enumerate(mnist_digits["calib_x"][:4]):
        np.save(tmp_path / "cal" / f"{i}.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={tmp_path / 'cal'}", "-o", str(tmp_path / "o"),
                     "--no-auto-precision", "--no-report"]) == 0
    bie = next((tmp_path / "o").glob("*.bie"))
    opts = json.loads({e.key: e.value for e in onnx.load(bie).metadata_props}["npuflow.options"])
    assert opts["auto_precision"] is False
