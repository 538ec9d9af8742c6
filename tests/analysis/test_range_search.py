"""``datapath_range_method="auto"`` (docs/fixed-point.md section 3.1; issue 15 part 3): each 8-bit
tensor's range is a per-input quantile chosen by what the model outputs measure.

The search logic runs here on a stand-in program whose "SNR" is a known function of the choice
(so each rule of the search is checked exactly); the analysis, the BIE, the report and the mmse
comparison run on the shipped MNIST model; the reason for the feature runs on a real detector from
the shared assets (ddddocr's, where the ktc rule loses most of the float boxes).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import npuflow
from npuflow.analysis import range_search as RS
from npuflow.analysis.ranges import AUTO_QUANTILES, QuantOptions, range_rule
from npuflow.errors import OptionEffectWarning
from npuflow.quant.formats import QFormat

TENSORS = [f"t{i}" for i in range(8)]


def _fake(rules=None):
    steps = [SimpleNamespace(outputs=[t]) for t in TENSORS] + [SimpleNamespace(outputs=["out"])]
    rules = rules or {**{t: "auto 0.999" for t in TENSORS}, "out": "output"}
    return SimpleNamespace(steps=steps, notes=SimpleNamespace(range=rules), range_choice={})


def _search(snr_of, opts=None, groups=4):
    """choose_ranges with build() = a stand-in carrying the choice and measure() = snr_of(choice)."""
    opts = opts or QuantOptions()

    def build(o):
        p = _fake()
        p.range_choice = dict(o.range_choice)
        return p

    def measure(p):
        choice = {t: p.range_choice.get(t, opts.percentage) for t in TENSORS}
        return snr_of(choice)

    return RS.choose_ranges(_fake(), opts, build, measure, groups=groups)


def test_searchable_are_the_auto_rule_tensors_in_program_order():
    rules = {"t0": "input", "t1": "auto 0.999", "t2": "abs_max", "t3": "percentage_16b", "t4": "auto max", "out": "output"}
    assert RS.searchable(_fake(rules)) == ["t1", "t4"]


def test_whole_model_choice_needs_the_minimum_gain():
    # every tensor at q scores base[q]; 0.9999 beats the start by more than MIN_GAIN_DB, 0.99999 by less
    for gain, expect in ((RS.MIN_GAIN_DB + 0.2, 0.9999), (RS.MIN_GAIN_DB - 0.2, 0.999)):
        base = {0.999: 10.0, 0.9999: 10.0 + gain, 0.99999: 9.0, 1.0: 8.0}
        _prog, opts, rec = _search(lambda c, base=base: {"out": float(np.mean([base[q] for q in c.values()]))})
        assert rec["whole_model_choice"] == RS._label(expect)
        assert [w["quantile"] for w in rec["whole_model"]] == ["0.999", "0.9999", "0.99999", "max"]
        assert set(opts.range_choice) == set(TENSORS)
        assert rec["start_snr_db"] == 10.0


def test_whole_model_takes_the_best_acceptable_candidate():
    # the max is best on the lowest output (0.03 dB above 0.9999) but lowers the other output by more
    # than MAX_LOSS_DB: 0.9999, which passes, is taken (not the start), as on ultraface_rfb_320
    table = {0.999: (22.41, 52.68), 0.9999: (33.77, 52.78), 0.99999: (33.76, 52.05), 1.0: (33.80, 51.58)}

    def snr(c):  # the mean over the tensors of each one's table row (the parts then move nothing)
        return {"scores": float(np.mean([table[q][0] for q in c.values()])),
                "boxes": float(np.mean([table[q][1] for q in c.values()]))}

    _prog, opts, rec = _search(snr)
    assert rec["whole_model_choice"] == "0.9999" and set(opts.range_choice.values()) == {0.9999}
    assert [w["snr_db"] for w in rec["whole_model"]] == [22.41, 33.77, 33.76, 33.8]
    # none passes (each gains the lowest output but costs the other 1 dB): the start stays
    _prog, opts, rec = _search(lambda c: {"scores": 22.41 + 5.0 * float(np.mean([q != 0.999 for q in c.values()])),
                                          "boxes": 52.68 - float(np.mean([q != 0.999 for q in c.values()]))})
    assert rec["whole_model_choice"] == "0.999"


def test_parts_move_one_notch_and_keep_only_measured_gains():
    # the first two tensors (part 0 of 4) want the max, the others 0.9999: the whole-model step takes
    # 0.9999, then part 0 moves to 0.99999 (one notch), never straight to the max in one pass
    def snr(c):
        s = 20.0
        for t, q in c.items():
            want = 1.0 if t in ("t0", "t1") else 0.9999
            s -= abs(AUTO_QUANTILES.index(q) - AUTO_QUANTILES.index(want)) * 2.0
        return {"out": s}

    prog, opts, rec = _search(snr)
    assert rec["whole_model_choice"] == "0.9999"
    assert rec["parts"][0]["quantile"] == "0.99999" and [t["quantile"] for t in rec["parts"][0]["tried"]] == ["0.999", "0.99999"]
    assert all(p["quantile"] == "0.9999" for p in rec["parts"][1:])
    assert opts.range_choice["t0"] == 0.99999 and opts.range_choice["t5"] == 0.9999
    assert rec["chosen_snr_db"] == snr(opts.range_choice)["out"]
    # at most len(candidates) - 1 + 2 x GROUPS programs
    assert rec["measurements"] <= len(RS.candidates(QuantOptions())) - 1 + 2 * RS.GROUPS
    assert prog.range_choice == opts.range_choice  # the program returned is the one measured for the choice


def test_a_gain_that_costs_another_output_is_refused():
    # the max everywhere raises output a by 3 dB but lowers b by 0.5 dB (more than MAX_LOSS_DB)
    def snr(c):
        m = float(np.mean([q == 1.0 for q in c.values()]))
        return {"a": 10.0 + 3.0 * m, "b": 15.0 - 0.5 * m}

    _, opts, rec = _search(snr)
    assert rec["whole_model_choice"] == "0.999"
    assert all(q == 0.999 for q in opts.range_choice.values())


def test_no_searchable_tensor_costs_nothing():
    calls = []
    rules = {t: "percentage_16b" for t in TENSORS}
    prog = _fake(rules)
    out, _opts, rec = RS.choose_ranges(prog, QuantOptions(), lambda o: calls.append(o), lambda p: calls.append(p))
    assert out is prog and not calls and rec["tensors"] == 0 and rec["measurements"] == 0


def test_range_rule_labels():
    o = QuantOptions(range_choice={"a": 0.9999, "b": 1.0})
    assert range_rule(8, o, "internal", "a") == "auto 0.9999"
    assert range_rule(8, o, "internal", "b") == "auto max"
    assert range_rule(8, o, "internal", "c") == "auto 0.999"  # no choice: percentage
    assert range_rule(16, o, "internal", "a") == "percentage_16b"
    assert range_rule(8, replace(o, range_method="percentage"), "internal", "a") == "percentage"
    assert set(QuantOptions().tracked_quantiles()) >= {0.999, 0.9999, 0.99999, 0.999999}


@pytest.fixture(scope="module")
def mnist_auto(tmp_path_factory, mnist_example, mnist_digits):
    """The shipped MNIST model analysed with the defaults (auto) and with the ktc rule."""
    out = {}
    for method in ("auto", "percentage"):
        d = tmp_path_factory.mktemp(method)
        km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(mnist_example))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = km.analysis({"Input3": list(mnist_digits["calib_x"][:32])}, output_dir=str(d), threads=1,
                              datapath_range_method=method, report=method == "auto")
        out[method] = (km, bie, d)
    return out


def test_mnist_auto_formats_follow_the_choice(mnist_auto):
    km, bie, out = mnist_auto["auto"]
    res = km.analysis_result
    rec = res.ranges
    assert rec["tensors"] > 0 and rec["measurements"] >= len(RS.candidates(QuantOptions())) - 1
    assert rec["chosen_snr_db"] >= rec["start_snr_db"]
    prog = res.program
    for t, label in rec["chosen"].items():
        q = 1.0 if label == "max" else float(label)
        assert res.options.range_choice[t] == q
        assert prog.formats[t] == QFormat.from_abs_max(res.stats[t].per_input_percentile(q), 8), t
        assert prog.notes.range[t] == f"auto {label}"
    # the BIE records the choice, the report shows it (JSON and HTML)
    assert npuflow.load(bie).bie.options["auto_ranges"] == rec["chosen"]
    doc = json.loads((out / "model_fx_report.json").read_text())
    assert doc["quantization"]["ranges"]["chosen"] == rec["chosen"]
    rules = {r["outputs"][0]["tensor"]: r["range"]["rule"] for r in doc["quantization"]["steps"] if r["outputs"]}
    assert {rules[t] for t in rec["chosen"]} == {f"auto {v}" for v in rec["chosen"].values()}
    html = (out / "model_fx_report.html").read_text()
    assert 'id="range-choice"' in html


def test_mnist_percentage_keeps_the_ktc_rule(mnist_auto):
    km, bie, _ = mnist_auto["percentage"]
    res = km.analysis_result
    assert res.ranges == {} and res.options.range_choice == {}
    assert "auto_ranges" not in npuflow.load(bie).bie.options
    assert {r for r in res.program.notes.range.values()} <= {"input", "output", "percentage", "percentage_16b"}


def test_mmse_is_compared_with_percentage_and_warns_when_it_loses():
    def build(o):
        return SimpleNamespace(method=o.range_method)

    snr = {"mmse": 6.0, "percentage": 12.0}
    rec = RS.check_mmse(build(QuantOptions(range_method="mmse")), QuantOptions(range_method="mmse"), build,
                        lambda p: {"y": snr[p.method]})
    assert rec["mmse_snr_db"] == 6.0 and rec["percentage_snr_db"] == 12.0
    assert "6.00 dB below 'percentage'" in rec["warning"]
    snr["mmse"] = 11.5  # within MMSE_WARN_DB: no warning
    rec = RS.check_mmse(build(QuantOptions(range_method="mmse")), QuantOptions(range_method="mmse"), build,
                        lambda p: {"y": snr[p.method]})
    assert rec["warning"] is None


def test_mmse_analysis_records_the_comparison(tmp_path, mnist_example, mnist_digits):
    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(mnist_example))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km.analysis({"Input3": list(mnist_digits["calib_x"][:16])}, output_dir=str(tmp_path), threads=1, report=False,
                    datapath_range_method="mmse")
    rec = km.analysis_result.ranges
    assert rec["method"] == "mmse" and rec["mmse_snr_db"] is not None and rec["percentage_snr_db"] is not None
    warned = [w for w in caught if issubclass(w.category, OptionEffectWarning) and "mmse" in str(w.message)
              and "below 'percentage'" in str(w.message)]
    assert bool(warned) == (rec["warning"] is not None)


def test_ddddocr_auto_keeps_the_boxes_the_ktc_rule_loses(shared):
    """ddddocr's text detector (shared zoo): the ktc rule (0.999 of each input) clips the rare stroke
    activations that carry the boxes; auto measures that on the calibration images and widens the
    ranges. Checked on the three evaluation images (never calibrated on): output SNR vs float."""
    import onnxruntime as ort

    from benchmarks.tasks import get_task
    from npuflow.analysis.run import analyse
    from npuflow.platforms import get_platform

    task = get_task("ddddocr_common_det", shared)  # calibration: 5 OCR images; evaluation: the 3 others
    model_path = task.model_path
    calib = [f["images"] for f in task.calib_inputs(None)]
    evals = [f["images"] for f in task.eval_inputs(None)]
    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(model_path), input_shapes={"images": [1, 3, 416, 416]})
    model = km.optimized_model()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = [ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
           for x in evals]
    snr = {}
    for method in ("percentage", "auto"):
        res = analyse(model, get_platform(720), {"images": calib}, QuantOptions(range_method=method), threads=2,
                      progress=False)
        p = res.program
        got = [p.formats["output"].dequantize(p.run(p.quantize_inputs({"images": x}))["output"]) for x in evals]
        f = np.concatenate([r.ravel() for r in ref]).astype(np.float64)
        g = np.concatenate([r.ravel() for r in got])
        snr[method] = 10 * np.log10(np.sum(f * f) / np.sum((f - g) ** 2))
    assert snr["auto"] >= snr["percentage"] + 3.0, snr


def test_parts_are_skipped_when_the_whole_model_hardly_moves():
    # every candidate within MIN_SPREAD_DB of the others: 3 programs, no part searched
    base = {0.999: 20.0, 0.9999: 20.4, 0.99999: 19.8, 1.0: 19.9}
    _, _, rec = _search(lambda c: {"out": float(np.mean([base[q] for q in c.values()]))})
    assert rec["spread_db"] < RS.MIN_SPREAD_DB and rec["parts"] == [] and rec["measurements"] == 3


class _Split:
    """measure() with halves(): each half's "SNR" from its own function of the choice."""

    def __init__(self, even, odd):
        self.even, self.odd = even, odd

    def _choice(self, p):
        return {t: p.range_choice.get(t, 0.999) for t in TENSORS}

    def __call__(self, p):
        c = self._choice(p)
        return {"out": (self.even(c) + self.odd(c)) / 2}

    def halves(self, p):
        c = self._choice(p)
        return {"out": self.even(c)}, {"out": self.odd(c)}


def test_halves_are_recorded_and_decide_only_when_set(monkeypatch):
    def build(o):
        p = _fake()
        p.range_choice = dict(o.range_choice)
        return p

    def m(c):
        return float(np.mean([q == 1.0 for q in c.values()]))

    split = _Split(lambda c: 10 + 9 * m(c), lambda c: 10 - 1 * m(c))  # max: +4 dB overall, -1 dB on the odd half
    _, _, rec = RS.choose_ranges(_fake(), QuantOptions(), build, split)
    assert rec["whole_model"][-1]["halves_snr_db"] == [19.0, 9.0]
    assert rec["whole_model_choice"] == "max"  # HALF_GAIN_DB None (the default): recorded, not deciding
    monkeypatch.setattr(RS, "HALF_GAIN_DB", 0.25)
    _, _, rec = RS.choose_ranges(_fake(), QuantOptions(), build, split)
    assert rec["whole_model_choice"] == "0.999"
    _, _, rec = RS.choose_ranges(_fake(), QuantOptions(), build, _Split(lambda c: 10 + 4.5 * m(c), lambda c: 10 + 3.5 * m(c)))
    assert rec["whole_model_choice"] == "max"


def test_output_snr_halves_pool_to_the_whole(mnist_example, mnist_digits):
    """OutputSnr.halves: the even- and odd-numbered inputs' SNRs from the same run, consistent with
    the pooled one (batched run split per input)."""
    import math

    from npuflow.analysis.precision import OutputSnr
    from npuflow.analysis.run import analyse
    from npuflow.platforms import get_platform

    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(mnist_example))
    model = km.optimized_model()
    xs = [mnist_digits["calib_x"][i].reshape(1, 1, 28, 28).astype(np.float32) for i in range(6)]
    res = analyse(model, get_platform(720), {"Input3": xs}, QuantOptions(range_method="percentage"), threads=1,
                  progress=False)
    meas = OutputSnr(model, [{"Input3": x} for x in xs], ["Plus214_Output_0"], threads=1)
    whole = meas(res.program)["Plus214_Output_0"]
    even, odd = (h["Plus214_Output_0"] for h in meas.halves(res.program))
    alone = [OutputSnr(model, [{"Input3": x} for x in xs[k::2]], ["Plus214_Output_0"], threads=1)(res.program)
             ["Plus214_Output_0"] for k in (0, 1)]
    assert even == pytest.approx(alone[0], abs=1e-9) and odd == pytest.approx(alone[1], abs=1e-9)
    assert min(even, odd) <= whole <= max(even, odd) and math.isfinite(whole)
