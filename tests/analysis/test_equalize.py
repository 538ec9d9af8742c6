"""Channel equalization into depthwise convolutions (docs/fixed-point.md section 3.8).

* ``find_pairs``: Conv -> (Relu | LeakyRelu | PRelu | nothing) -> depthwise Conv, and the cases
  that are not pairs (a non-homogeneous activation, a second reader, a model output, shared
  weights, a depth multiplier, a node override with a fixed range; a width override keeps the pair,
  end to end).
* ``scales_for`` by hand: the largest channel over each one, capped at MAX_SCALE, 1 for dead channels.
* ``apply_scales`` keeps the float model's outputs and equalizes the channels.
* End to end (ktc API): a tiny channel amplified by the depthwise convolution is lost without
  equalization and kept with it; the BIE records the pairs and scales, its float graph computes
  what the original does; ``equalize=False`` is recorded and changes nothing else; a calibration
  generator is read once (the first inputs serve the scales and the statistics).
* Overrides: a width override keeps the pair, a range override drops it; the added `<gate>_unscale`
  Mul takes an override; the report's suggestions on a pair's nodes apply as measured.
* retinaface_mnet025 (shared): box and landmark SNR on the evaluation images, each anchor weighted by
  its float p(face), +3 dB or more.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ktc
import npuflow
from npuflow.analysis.equalize import (
    GATED_MAX_SCALE,
    MAX_SCALE,
    apply_scales,
    channel_ranges,
    find_pairs,
    range_overrides,
    scales_for,
)
from npuflow.errors import InvalidConfigError
from npuflow.passes import optimize
from tests.analysis.test_float_tails import _init, snr
from tests.conftest import analyse_task

F = onnx.TensorProto.FLOAT


def dw_model(act: str | None = "Relu", tiny: float = 0.02) -> onnx.ModelProto:
    """x -> Conv a (1x1, 4 -> 4; output channel 0 scaled by ``tiny``) -> ``act`` -> depthwise Conv b
    (3x3; channel 0 scaled by 1 / ``tiny``: the float model's channel 0 is as large as the others
    after it) -> Conv c (1x1) -> y."""
    rng = np.random.default_rng(0)
    wa = rng.normal(0, 1, (4, 4, 1, 1))
    wa[0] *= tiny
    ba = rng.normal(0, 0.1, 4)
    ba[0] *= tiny
    wb = rng.normal(0, 0.3, (4, 1, 3, 3))
    wb[0] /= tiny
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a")]
    t = "a"
    inits = [_init("wa", wa), _init("ba", ba), _init("wb", wb), _init("bb", np.zeros(4)),
             _init("wc", rng.normal(0, 0.5, (4, 4, 1, 1)))]
    if act == "PRelu":
        nodes.append(helper.make_node("PRelu", ["a", "slope"], ["r"], name="act"))
        inits.append(_init("slope", np.full((4, 1, 1), 0.1)))
        t = "r"
    elif act == "SiLU":  # x * sigmoid(x), as PyTorch exports it
        nodes += [helper.make_node("Sigmoid", ["a"], ["sg"], name="gate"),
                  helper.make_node("Mul", ["a", "sg"], ["r"], name="act")]
        t = "r"
    elif act == "HardSwish paddle":  # x * (clip(x + 3, 0, 6) * 1/6), as paddle2onnx writes it
        inits += [_init("three", 3.0), _init("zero", 0.0), _init("six", 6.0), _init("sixth", 1.0 / 6.0)]
        nodes += [helper.make_node("Add", ["a", "three"], ["h1"], name="gate"),
                  helper.make_node("Clip", ["h1", "zero", "six"], ["h2"], name="gate_clip"),
                  helper.make_node("Mul", ["h2", "sixth"], ["h3"], name="gate_scale"),
                  helper.make_node("Mul", ["h3", "a"], ["r"], name="act")]
        t = "r"
    elif act is not None:
        kw = {"alpha": 0.1} if act == "LeakyRelu" else {}
        nodes.append(helper.make_node(act, ["a"], ["r"], name="act", **kw))
        t = "r"
    nodes += [helper.make_node("Conv", [t, "wb", "bb"], ["d"], name="conv_dw", group=4, pads=[1, 1, 1, 1]),
              helper.make_node("Conv", ["d", "wc"], ["y"], name="conv_c")]
    g = helper.make_graph(nodes, "eq", [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", F, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def feeds(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(n)]


# ------------------------------------------------------------------------------------------------ pairs
@pytest.mark.parametrize("act", [None, "Relu", "LeakyRelu", "PRelu"])
def test_pairs_through_homogeneous_activations(act):
    (p,) = find_pairs(optimize(dw_model(act)))
    assert (p.producer, p.consumer) == ("conv_a", "conv_dw")
    assert p.activation == (None if act is None else "act") and p.tensor == ("a" if act is None else "r")


@pytest.mark.parametrize("act", ["Sigmoid", "Tanh"])
def test_no_pair_through_other_activations(act):
    assert find_pairs(optimize(dw_model(act))) == []


@pytest.mark.parametrize("act", ["SiLU", "HardSwish paddle"])
def test_gated_pairs(act):
    (p,) = find_pairs(dw_model(act))
    assert (p.producer, p.activation, p.gate, p.consumer, p.tensor) == ("conv_a", "act", "gate", "conv_dw", "r")
    assert p.max_scale == GATED_MAX_SCALE


def test_a_hardswish_node_is_a_gated_pair_once_optimized():
    # the optimizer writes HardSwish as x * (clip(x + 3, 0, 6) * 1/6) on the 720 (docs/optimizer.md)
    (p,) = find_pairs(optimize(dw_model("HardSwish")))
    assert (p.producer, p.activation, p.gate, p.consumer) == ("conv_a", "Mul_act_1", "Add_act", "conv_dw")


def test_no_gated_pair_unless_x_times_a_gate_of_x():
    m = dw_model("SiLU")
    m.graph.node.append(helper.make_node("Relu", ["a"], ["a2"], name="third_reader"))  # x read elsewhere too
    m.graph.output.append(helper.make_empty_tensor_value_info("a2"))
    assert find_pairs(m) == []
    m = dw_model("SiLU")
    m.graph.output.append(helper.make_empty_tensor_value_info("sg"))  # the gate is a model output
    assert find_pairs(m) == []
    m = dw_model("HardSwish paddle")
    m.graph.node.remove(next(n for n in m.graph.node if n.name == "gate_clip"))  # x * (x + 3) / 6: no gate
    next(n for n in m.graph.node if n.name == "gate_scale").input[0] = "h1"
    assert find_pairs(m) == []
    assert find_pairs(dw_model("SiLU"), skip=["gate"]) == []  # a node override on the gate
    assert find_pairs(dw_model("HardSwish paddle"), skip=["gate_clip"]) == []  # ... on any node of it


def test_no_pair_when_the_tensor_is_read_elsewhere_or_shared():
    m = dw_model("Relu")
    m.graph.output.append(helper.make_empty_tensor_value_info("r"))  # a model output
    assert find_pairs(m) == []
    m = dw_model("Relu")
    m.graph.node.append(helper.make_node("Relu", ["a"], ["a2"], name="second_reader"))
    m.graph.output.append(helper.make_empty_tensor_value_info("a2"))
    assert find_pairs(m) == []
    m = dw_model("Relu")
    m.graph.node[-1].input[1] = "wa"  # conv_c reuses conv_a's weights: rescaling them would change conv_c
    assert find_pairs(m) == []
    assert find_pairs(dw_model("Relu"), skip=["conv_dw"]) == []  # a node override with a fixed range


def test_only_fixed_ranges_stop_equalization():
    from npuflow.analysis.ranges import NodeOverride

    ovs = {"conv_a": NodeOverride(bits=16), "conv_dw": NodeOverride(weight_bits=16), "r_act": NodeOverride(abs_max=2.0)}
    assert range_overrides(ovs) == ["r_act"]
    assert range_overrides({}) == []


def test_no_pair_with_a_depth_multiplier():
    m = dw_model("Relu")
    w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "wb"))
    next(t for t in m.graph.initializer if t.name == "wb").CopyFrom(_init("wb", np.concatenate([w, w])))
    next(t for t in m.graph.initializer if t.name == "bb").CopyFrom(_init("bb", np.zeros(8)))
    next(t for t in m.graph.initializer if t.name == "wc").CopyFrom(_init("wc", np.ones((4, 8, 1, 1))))
    assert find_pairs(m) == []


def test_scales_by_hand():
    assert MAX_SCALE == 4.0 and GATED_MAX_SCALE == 16.0
    np.testing.assert_array_equal(scales_for(np.array([4.0, 2.0, 0.0, 0.1, 4.0, 1.0])), [1.0, 2.0, 1.0, 4.0, 1.0, 4.0])
    np.testing.assert_array_equal(scales_for(np.array([4.0, 2.0, 0.0, 0.1, 4.0, 1.0]), GATED_MAX_SCALE),
                                  [1.0, 2.0, 1.0, 16.0, 1.0, 4.0])
    np.testing.assert_array_equal(scales_for(np.zeros(3)), np.ones(3))


@pytest.mark.parametrize("act", ["SiLU", "HardSwish paddle"])
def test_apply_scales_through_a_gate(act):
    """The Mul reads the scaled x, the gate the unscaled one (through an added Mul by 1 / s just
    before it): the float outputs are the same and the Mul's output channels are equalized."""
    m = dw_model(act)
    (pair,) = find_pairs(m)
    xs = feeds(4, 3)
    r = channel_ranges(m, ["r"], [{"x": x} for x in xs])["r"]
    s = scales_for(r, pair.max_scale)
    assert s.max() > MAX_SCALE  # the tiny channel (x 0.02) gains more than a homogeneous pair's cap
    eq = apply_scales(m, [pair], {"r": s})
    names = [n.name for n in eq.graph.node]
    assert names.index("gate_unscale") == names.index("gate") - 1
    unscale = eq.graph.node[names.index("gate_unscale")]
    assert unscale.input[0] == "a" and "a_unscaled" in eq.graph.node[names.index("gate")].input
    inv = numpy_helper.to_array(next(t for t in eq.graph.initializer if t.name == unscale.input[1]))
    np.testing.assert_allclose(inv.reshape(-1), 1.0 / s, rtol=1e-6)
    assert inv.shape == (1, 4, 1, 1)
    for x in xs:
        a, b = npuflow.load(m).run({"x": x})[0], npuflow.load(eq).run({"x": x})[0]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))
    np.testing.assert_allclose(channel_ranges(eq, ["r"], [{"x": x} for x in xs])["r"], r * s, rtol=1e-5)


def test_apply_scales_keeps_the_float_outputs_and_equalizes():
    m = optimize(dw_model("LeakyRelu"))
    pairs = find_pairs(m)
    xs = feeds(4, 3)
    r = channel_ranges(m, ["r"], [{"x": x} for x in xs])["r"]
    assert r.max() / r.min() > 20
    s = scales_for(r)
    eq = apply_scales(m, pairs, {"r": s})
    before = [npuflow.load(m).run({"x": x})[0] for x in xs]
    after = [npuflow.load(eq).run({"x": x})[0] for x in xs]
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))
    r2 = channel_ranges(eq, ["r"], [{"x": x} for x in xs])["r"]
    np.testing.assert_allclose(r2, r * s, rtol=1e-5)
    # every channel reaches the largest one's range, or gains the factor MAX_SCALE
    np.testing.assert_allclose(r2, np.minimum(r.max(), r * MAX_SCALE), rtol=1e-5)
    # the original is not modified
    assert numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "wa")).flat[0] != \
        numpy_helper.to_array(next(t for t in eq.graph.initializer if t.name == "wa")).flat[0]


# ------------------------------------------------------------------------------------------------ end to end
def _analyse(tmp_path, calib, act="Relu", **kw):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=dw_model(act))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bie = km.analysis({"x": calib}, output_dir=tmp_path, threads=1, progress=False, report=False, **kw)
    return km, bie


def test_equalization_keeps_the_tiny_channel(tmp_path):
    calib, ev = feeds(24, 1), feeds(6, 2)
    km_on, bie_on = _analyse(tmp_path / "on", calib)
    km_off, bie_off = _analyse(tmp_path / "off", calib, equalize=False)
    rec = km_on.analysis_result.equalized
    assert [(p["producer"], p["consumer"], p["tensor"]) for p in rec["pairs"]] == [("conv_a", "conv_dw", "r")]
    assert rec["pairs"][0]["scales"][0] == MAX_SCALE and rec["samples"] == 16
    assert km_off.analysis_result.equalized == {}
    meta_on = json.loads({e.key: e.value for e in onnx.load(bie_on).metadata_props}["npuflow.options"])
    meta_off = json.loads({e.key: e.value for e in onnx.load(bie_off).metadata_props}["npuflow.options"])
    assert meta_on["equalized"][0]["scales"] == rec["pairs"][0]["scales"] and "equalize" not in meta_on
    assert meta_off["equalize"] is False and "equalized" not in meta_off
    assert km_on.analysis_result.samples == 24  # the first 16 inputs serve the scales and the statistics
    ref = [npuflow.load(dw_model("Relu")).run({"x": x})[0] for x in ev]
    fixed_on = npuflow.load(bie_on)
    on = [fixed_on.run({"x": x})[0] for x in ev]
    off = [npuflow.load(bie_off).run({"x": x})[0] for x in ev]
    assert snr(ref, on) >= snr(ref, off) + 4.0, (snr(ref, on), snr(ref, off))  # measured 32.4 vs 27.5 dB
    # the BIE's float graph is the equalized model: the same outputs as the original
    float_graph = fixed_on.bie.float_model
    assert any(numpy_helper.to_array(t).flat[0] != numpy_helper.to_array(u).flat[0]
               for t in float_graph.graph.initializer for u in dw_model("Relu").graph.initializer
               if t.name == u.name == "wa")
    flo = npuflow.load(float_graph)
    for x, a in zip(ev, ref):
        np.testing.assert_allclose(flo.run({"x": x})[0], a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))


def test_gated_equalization_keeps_the_tiny_channel(tmp_path):
    calib, ev = feeds(24, 1), feeds(6, 2)
    km_on, bie_on = _analyse(tmp_path / "on", calib, act="SiLU")
    _, bie_off = _analyse(tmp_path / "off", calib, act="SiLU", equalize=False)
    (pair,) = km_on.analysis_result.equalized["pairs"]
    assert (pair["producer"], pair["activation"], pair["gate"], pair["consumer"]) == ("conv_a", "act", "gate", "conv_dw")
    assert pair["scales"][0] == GATED_MAX_SCALE and km_on.analysis_result.equalized["gated_max_scale"] == GATED_MAX_SCALE
    meta = json.loads({e.key: e.value for e in onnx.load(bie_on).metadata_props}["npuflow.options"])
    assert meta["equalized"][0]["gate"] == "gate" and meta["equalized"][0]["scales"] == pair["scales"]
    ref = [npuflow.load(dw_model("SiLU")).run({"x": x})[0] for x in ev]
    fixed_on = npuflow.load(bie_on)
    on = [fixed_on.run({"x": x})[0] for x in ev]
    off = [npuflow.load(bie_off).run({"x": x})[0] for x in ev]
    assert snr(ref, on) >= snr(ref, off) + 4.0, (snr(ref, on), snr(ref, off))  # measured 31.2 vs 25.4 dB
    flo = npuflow.load(fixed_on.bie.float_model)  # the gate's unscaling Mul is in the BIE's float graph
    for x, a in zip(ev, ref):
        np.testing.assert_allclose(flo.run({"x": x})[0], a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))


def test_a_width_override_keeps_the_pair_a_range_override_drops_it(tmp_path):
    # a user applying the report's suggestion "conv_a to 16 bits" gets the equalized model the report
    # measured it on; a fixed range (abs_max) is of the tensor as the float model computes it: no pair
    calib, ev = feeds(24, 1), feeds(6, 2)
    wide = {"conv_a": {"bits": 16}, "conv_dw": {"weight_bits": 16}}
    km, bie = _analyse(tmp_path / "bits", calib, node_overrides=wide)
    assert [(p["producer"], p["consumer"]) for p in km.analysis_result.equalized["pairs"]] == [("conv_a", "conv_dw")]
    fixed = npuflow.load(bie)
    assert fixed.program.formats["r"].bits == 16
    meta = json.loads({e.key: e.value for e in onnx.load(bie).metadata_props}["npuflow.options"])
    assert meta["equalized"][0]["consumer"] == "conv_dw"
    ref = [npuflow.load(dw_model("Relu")).run({"x": x})[0] for x in ev]
    assert snr(ref, [fixed.run({"x": x})[0] for x in ev]) > 30.0
    for node in ("conv_a", "conv_dw"):
        km2, _ = _analyse(tmp_path / node, calib, node_overrides={node: {"abs_max": 4.0}})
        assert km2.analysis_result.equalized["pairs"] == []


def test_the_added_unscaling_mul_takes_an_override(tmp_path):
    # the report measures and suggests the gate's unscaling Mul like any node (yolox_nano's
    # "Sigmoid_42_unscale"): analysis() must accept the suggestion, say when it changes nothing and
    # still refuse a name that is neither
    calib = feeds(24, 1)
    km, bie = _analyse(tmp_path / "on", calib, act="SiLU", node_overrides={"gate_unscale": {"bits": 16}})
    assert len(km.analysis_result.equalized["pairs"]) == 1
    step = next(st for st in km.analysis_result.program.steps if st.name == "gate_unscale")
    assert km.analysis_result.program.formats[step.outputs[0]].bits == 16
    assert npuflow.load(bie).program.formats[step.outputs[0]].bits == 16
    km_off = ktc.ModelConfig(40000, "0001", 720, onnx_model=dw_model("SiLU"))
    with pytest.warns(npuflow.errors.OptionEffectWarning, match="gate_unscale is not in this analysis"):
        km_off.analysis({"x": calib}, output_dir=tmp_path / "off", threads=1, progress=False, report=False,
                        equalize=False, node_overrides={"gate_unscale": {"bits": 16}})
    with pytest.raises(InvalidConfigError, match="gate_unscal'\\] are not nodes"):
        _analyse(tmp_path / "typo", calib, act="SiLU", node_overrides={"gate_unscal": {"bits": 16}})


@pytest.mark.parametrize("act", ["Relu", "HardSwish paddle"])
def test_report_suggestions_apply_as_measured(tmp_path, act):
    # the report measures each suggestion on the equalized model; re-running analysis() with it must
    # give that program (the same SNR on the report's inputs), also for overrides on a pair's nodes.
    # auto_precision off on both sides: its search answers the changed program anew (here it adds
    # conv_a once conv_dw is 16-bit), which the report's one-change measurement does not include
    calib = feeds(24, 1)
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=dw_model(act))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.analysis({"x": calib}, output_dir=tmp_path / "rep", threads=1, progress=False, report=True,
                    auto_precision=False)
    pair_nodes = {"conv_a", "act", "gate", "gate_clip", "gate_scale", "gate_unscale", "conv_dw"}
    q = json.loads((tmp_path / "rep" / "model_fx_report.json").read_text())["quantization"]
    measured = [r["measured"] for r in q["ranking"] if r["measured"]
                and set(r["measured"]["suggestion"]["node_overrides"]) & pair_nodes]
    assert measured
    flo = npuflow.load(km.analysis_result.optimized)
    for m in measured[:3]:
        sugg = m["suggestion"]
        out = tmp_path / "_".join(sorted(sugg["node_overrides"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = ktc.ModelConfig(40000, "0001", 720, onnx_model=dw_model(act)).analysis(
                {"x": calib}, output_dir=out, threads=1, progress=False, report=False, auto_precision=False,
                node_overrides=sugg["node_overrides"], **sugg["options"])
        fixed = npuflow.load(bie)
        got = snr([flo.run({"x": x})[0] for x in calib[:8]], [fixed.run({"x": x})[0] for x in calib[:8]])
        assert m["with_suggestion_snr_db"] == pytest.approx(got, abs=2e-3), sugg


def test_a_calibration_generator_is_read_once(tmp_path):
    calib = feeds(20, 4)
    reads = []

    def gen():
        for i, x in enumerate(calib):
            reads.append(i)
            yield x

    km, _ = _analyse(tmp_path, gen())
    assert reads == list(range(20)) and km.analysis_result.samples == 20
    assert km.analysis_result.equalized["pairs"]


def test_equalize_must_be_a_bool(tmp_path):
    with pytest.raises(InvalidConfigError, match="equalize must be True or False"):
        _analyse(tmp_path, feeds(2, 1), equalize="yes")


# ------------------------------------------------------------------------------------------------ shared model
def test_retinaface_boxes_and_landmarks_gain(shared, tmp_path):
    from benchmarks.tasks import get_task

    task = get_task("retinaface_mnet025_5pt", str(shared))
    cal = [f[task.input_name] for f in task.calib_inputs()]
    ev = list(task.eval_inputs(4))
    ref = [npuflow.load(str(task.model_path)).run(f) for f in ev]
    got = {}
    for eq in (True, False):
        # auto_precision off on both sides: the equalization's own effect (the precision search runs
        # where the int8 SNR is low, and would answer each side differently)
        km, fixed = analyse_task(task, cal, tmp_path / str(eq), equalize=eq, auto_precision=False)
        got[eq] = [fixed.run(f) for f in ev]
        if eq:
            assert len(km.analysis_result.equalized["pairs"]) >= 8
    names = [o.name for o in onnx.load(str(task.model_path)).graph.output]
    # each anchor weighted by its float p(face), as the analysis measures a detector's outputs
    # (docs/fixed-point.md section 3.1, outputs read per detection): the background anchors'
    # regressions, which no decode reads, would decide a pooled SNR
    conf = names.index("conf")
    root = [np.sqrt(np.asarray(r[conf], np.float64)[..., 1:2]) for r in ref]

    def weighted(outs: list) -> list:
        return [np.asarray(o[j], np.float64) * w for o, w in zip(outs, root)]

    for j, name in enumerate(names):
        on = snr(weighted(ref), weighted(got[True]))
        off = snr(weighted(ref), weighted(got[False]))
        assert on >= off + (3.0 if name in ("loc", "landmarks") else 0.0), (name, on, off)
