"""Float islands: the cheap NPU steps feeding a range-sensitive CPU node, run in float with it
(docs/fixed-point.md section 10.4; issue 15).

* ``find_islands`` on hand-built graphs: ``log(x*x + eps)`` (basic_pitch's front end in small), a
  LayerNorm (gtcrn's: Sub, square, ReduceMean, Add eps, Sqrt, Div), the step limit, a MAC layer
  and a model input as borders.
* The log graph end to end: the island is measured to help, kept, listed in one
  AutoPrecisionWarning, recorded in the BIE (options, numerics 1.2) and the report, shown as CPU
  nodes in evaluate(); its border to the NPU is quantized, its inside float; the BIE simulates the
  same integers as the program in memory, one input at a time and batched; ``auto_precision=False``
  keeps it quantized. ``choose_islands`` keeps nothing when the measurement says the islands hurt.
* basic_pitch (shared, int16): the CQT magnitude -> log island lifts every output's SNR on
  evaluation inputs by 10 dB or more (the int16 regression of the third session).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import ktc
import npuflow
from npuflow.analysis.graph import build_steps
from npuflow.analysis.islands import (
    ISLAND_REASON,
    MAX_NPU_STEPS,
    choose_islands,
    find_islands,
)
from npuflow.analysis.program import needed_stats
from npuflow.errors import AutoPrecisionWarning
from npuflow.evaluate.placement import place_model
from npuflow.passes import optimize
from npuflow.sim.kernels import KERNELS
from tests.analysis.test_float_tails import _init, snr
from tests.analysis.test_float_tails import analyse as _analyse
from tests.conftest import analyse_task

F = onnx.TensorProto.FLOAT


def _model(nodes, inits, out="y"):
    g = helper.make_graph(nodes, "islands", [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                          [helper.make_empty_tensor_value_info(out)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def log_model(scale: float = 20.0) -> onnx.ModelProto:
    """Conv -> x*x -> + 1e-6 -> Log (a CPU node on the 720) -> Conv. One output channel of the first
    Conv is ``scale`` times the others: the square's int8 range is set by it, the others round to 0
    and their log lands on log(1e-6) instead of log(x**2)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (4, 4, 1, 1))
    w[0] *= scale
    return _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                   helper.make_node("Mul", ["c", "c"], ["sq"], name="square"),
                   helper.make_node("Add", ["sq", "eps"], ["a"], name="add_eps"),
                   helper.make_node("Log", ["a"], ["l"], name="log"),
                   helper.make_node("Conv", ["l", "w2"], ["y"], name="conv2")],
                  [_init("w", w), _init("w2", rng.normal(0, 0.5, (4, 4, 1, 1))), _init("eps", 1e-6)])


def layernorm_model() -> onnx.ModelProto:
    """Conv -> LayerNorm over channels (mean, Sub, Pow 2, mean, + eps, Sqrt, Div) -> Conv."""
    rng = np.random.default_rng(1)
    return _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                   helper.make_node("ReduceMean", ["c"], ["m"], axes=[1], name="mean"),
                   helper.make_node("Sub", ["c", "m"], ["d"], name="sub"),
                   helper.make_node("Mul", ["d", "d"], ["p"], name="square"),
                   helper.make_node("ReduceMean", ["p"], ["v"], axes=[1], name="var"),
                   helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
                   helper.make_node("Sqrt", ["ve"], ["s"], name="sqrt"),
                   helper.make_node("Div", ["d", "s"], ["n"], name="div"),
                   helper.make_node("Conv", ["n", "w2"], ["y"], name="conv2")],
                  [_init("w", rng.normal(0, 1, (4, 4, 1, 1))), _init("w2", rng.normal(0, 0.5, (4, 4, 1, 1))),
                   _init("eps", 1e-5)])


def islands_of(model: onnx.ModelProto):
    opt = optimize(model)
    steps = build_steps(opt, place_model(opt, 720), set(KERNELS))
    ins = [i.name for i in opt.graph.input]
    return opt, steps, find_islands(opt, steps, set(needed_stats(opt, steps, ins)))


def feeds(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(n)]


# ------------------------------------------------------------------------------------------------ candidates
def test_the_log_island_moves_the_square_and_the_eps():
    _, _, isl = islands_of(log_model())
    assert [(i.nodes, i.seeds, i.moved, i.inputs) for i in isl] == [
        (("square", "add_eps", "log"), ("log",), ("square", "add_eps"), ("c",))]


def test_a_layernorm_is_one_island():
    _, _, isl = islands_of(layernorm_model())
    assert len(isl) == 1
    i = isl[0]
    # from the Sqrt: add_eps, var, square, sub; from the Div: sub, then the first mean; the seeds'
    # islands overlap and merge; the Conv's output is the border
    assert set(i.nodes) == {"mean", "sub", "square", "var", "add_eps", "sqrt", "div"}
    assert set(i.seeds) == {"sqrt", "div"} and set(i.moved) == {"mean", "sub", "square", "var", "add_eps"}
    assert i.inputs == ("c",)


def test_growth_stops_after_max_npu_steps():
    w = np.full((4, 4, 1, 1), 0.1, np.float32)
    n = MAX_NPU_STEPS + 2
    nodes = [helper.make_node("Conv", ["x", "w"], ["a0"], name="conv")]
    nodes += [helper.make_node("Mul" if k % 2 else "Add", [f"a{k}", f"a{k}" if k % 2 else "one"], [f"a{k + 1}"],
                               name=f"e{k}") for k in range(n)]
    nodes.append(helper.make_node("Log", [f"a{n}"], ["y"], name="log"))
    (i,) = islands_of(_model(nodes, [_init("w", w), _init("one", 1.0)]))[2]
    assert i.moved == tuple(f"e{k}" for k in range(n - MAX_NPU_STEPS, n))
    assert i.inputs == (f"a{n - MAX_NPU_STEPS}",)


def test_no_island_across_a_mac_layer_or_without_a_seed():
    w = np.full((4, 4, 1, 1), 0.1, np.float32)
    # the Log reads a Conv directly: nothing cheap to move, a one-step island changes nothing
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                helper.make_node("Relu", ["c"], ["r"], name="relu"),
                helper.make_node("Log", ["r"], ["y"], name="log")], [_init("w", w)])
    isl = islands_of(m)[2]
    assert all("conv" not in i.nodes for i in isl)
    # no range-sensitive CPU node: no island
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                helper.make_node("Mul", ["c", "c"], ["y"], name="square")], [_init("w", w)])
    assert islands_of(m)[2] == []


def test_choose_islands_keeps_nothing_that_loses():
    opt, steps, isl = islands_of(log_model())
    built = []

    def build(st):
        built.append(st)
        return object()

    base = object()
    scores = iter([{"y": 20.0}, {"y": 19.5}])  # the program as built, then with the islands in float
    out_steps, prog, rec = choose_islands(opt, steps, base, isl, build, lambda p: next(scores))
    assert out_steps is steps and prog is base and not rec["kept"]
    assert rec["worst_db"] == -0.5 and rec["why"].startswith("not kept")
    assert any(st.host for st in built[0])  # the variant measured had the island as host steps


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def log_runs(tmp_path_factory):
    m = log_model()
    calib = feeds(16, 1)
    return m, _analyse(m, tmp_path_factory.mktemp("on"), calib), _analyse(m, tmp_path_factory.mktemp("off"), calib,
                                                                          auto_precision=False)


def test_log_island_kept_in_float(log_runs):
    m, (km, bie, w), (_km_off, bie_off, _) = log_runs
    rec = km.analysis_result.auto_precision["float_islands"]
    assert rec["kept"] and rec["gain_db"] >= 6.0 and rec["islands"][0]["moved"] == ["square", "add_eps"]
    msgs = [str(x.message) for x in w if issubclass(x.category, AutoPrecisionWarning)]
    assert len(msgs) == 1 and "float island" in msgs[0] and "auto_precision=False" in msgs[0]
    p = km.analysis_result.program
    by = {st.name: st for st in p.steps}
    assert all(by[n].host and by[n].float_step and by[n].reason.startswith(ISLAND_REASON)
               for n in ("square", "add_eps", "log"))
    # inside the island float, its border to the NPU quantized at the CPU-node width
    assert "sq" not in p.formats and "a" not in p.formats and p.formats["l"].bits == 8
    assert "c" in p.formats
    meta = {e.key: e.value for e in onnx.load(bie).metadata_props}
    assert meta["npuflow.numerics_version"] == "1.2"
    opts = json.loads(meta["npuflow.options"])
    assert opts["float_islands"] == [{"seeds": ["log"], "nodes": ["square", "add_eps", "log"]}]
    # the BIE gives the integers of the program in memory, one input at a time and batched
    fixed = npuflow.load(bie)
    ev = feeds(6, 2)
    for x in ev[:2]:
        got = fixed.run({"x": x}, data_type="fixed")[0]
        env = p.run(p.quantize_inputs({"x": x}))
        np.testing.assert_array_equal(got, env["y"])
    one = [fixed.run({"x": x})[0] for x in ev]
    np.testing.assert_array_equal(fixed.run_batch({"x": np.concatenate(ev)})[0], np.concatenate(one))
    # on evaluation inputs the island is far better than the quantized chain
    ref = [npuflow.load(m).run({"x": x})[0] for x in ev]
    off = [npuflow.load(bie_off).run({"x": x})[0] for x in ev]
    assert snr(ref, one) >= snr(ref, off) + 6.0


def test_auto_precision_false_keeps_the_island_quantized(log_runs):
    _, _, (km, bie, w) = log_runs
    assert km.analysis_result.auto_precision["float_islands"] == {}
    p = km.analysis_result.program
    assert not any(st.host for st in p.steps) and "sq" in p.formats
    assert not any(issubclass(x.category, AutoPrecisionWarning) for x in w)
    meta = {e.key: e.value for e in onnx.load(bie).metadata_props}
    assert meta["npuflow.numerics_version"] == "1.1" and "float_islands" not in json.loads(meta["npuflow.options"])


def test_report_and_evaluate_show_the_island(log_runs):
    _, (km, _, _), _ = log_runs
    q = km.report["quantization"]
    assert q["auto_precision"]["float_islands"]["kept"]
    rows = {r["name"]: r for r in q["steps"]}
    assert rows["square"]["placement"] == "CPU" and rows["square"]["reason"].startswith(ISLAND_REASON)
    html = Path(km.report_paths["html"]).read_text()
    assert 'id="float-islands"' in html and "Automatic precision" in html
    text = km.evaluate(output_dir=Path(km.report_paths["json"]).parent / "ev")
    assert "square, square, CPU" in text and ISLAND_REASON in text
    # ... and from the BIE alone: every node of the island, its seed included, carries the label
    km_b = ktc.ModelConfig(40000, "0001", 720, bie_path=km.bie_path)
    rows = [line for line in km_b.evaluate(output_dir=Path(km.report_paths["json"]).parent / "ev_bie").splitlines()
            if line.startswith(("1, square", "2, add_eps", "3, log"))]
    assert len(rows) == 3 and all(", CPU, " in r and ISLAND_REASON in r for r in rows)


def test_the_int16_reference_measures_the_islands_too(tmp_path):
    """At scale 1000 the Conv's small channels round to 0 already at its int8 output (the island's
    border), so the island gains nothing at 8 bits and is not kept; at 16 bits it is. The report's
    "every activation in int16" reference is measured with and without the islands and shows the
    better: what analysis(datapath_bitwidth_mode="int16") gives on the same inputs."""
    m = log_model(1000.0)
    calib = feeds(16, 1)
    km, _, _ = _analyse(m, tmp_path / "int8", calib)
    assert not km.analysis_result.auto_precision["float_islands"]["kept"]
    ref16 = km.report["quantization"]["reference_int16"]
    assert ref16["suggestion"]["text"].endswith(", with the float islands run in float (docs/fixed-point.md 10.4)")
    assert ref16["suggestion"]["options"] == {"datapath_bitwidth_mode": "int16", "model_out_bitwidth_mode": "int16",
                                              "cpu_node_bitwidth_mode": "int16"}
    km16, bie16, _ = _analyse(m, tmp_path / "int16", calib, datapath_bitwidth_mode="int16")
    assert km16.analysis_result.auto_precision["float_islands"]["kept"]
    shown = km.report["quantization"]["report_inputs"]["count"]
    ref = [npuflow.load(m).run({"x": x})[0] for x in calib[:shown]]
    got = [npuflow.load(bie16).run({"x": x})[0] for x in calib[:shown]]
    assert ref16["with_suggestion_snr_db"] == pytest.approx(snr(ref, got), abs=0.2)
    assert ref16["with_suggestion_snr_db"] > km.report["quantization"]["model_output_snr_db"] + 10.0


# ------------------------------------------------------------------------------------------------ shared model
def test_basic_pitch_int16_log_island(shared, tmp_path):
    from benchmarks.tasks import get_task

    task = get_task("basic_pitch_nmp", str(shared))
    cal = [f[task.input_name] for f in task.calib_inputs(12)]
    ev = list(task.eval_inputs(3))
    wide = {"datapath_bitwidth_mode": "int16", "weight_bitwidth_mode": "int16", "model_in_bitwidth_mode": "int16",
                "model_out_bitwidth_mode": "int16"}
    runs = {}
    for ap in (True, False):
        runs[ap] = analyse_task(task, cal, tmp_path / str(ap), auto_precision=ap, **wide)
    rec = runs[True][0].analysis_result.auto_precision["float_islands"]
    assert rec["kept"] and any("Log" in i["ops"] for i in rec["islands"])
    ref = [npuflow.load(str(task.model_path)).run(f) for f in ev]
    for j in range(len(ref[0])):
        on = snr([r[j] for r in ref], [runs[True][1].run(f)[j] for f in ev])
        off = snr([r[j] for r in ref], [runs[False][1].run(f)[j] for f in ev])
        assert on >= off + 10.0, (j, on, off)
