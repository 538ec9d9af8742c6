"""The mixed modes (docs/fixed-point.md section 10.3; issue 16 part 1-2): "mix light" and "mix
balance" as fixed rules, "mixbw" as a measured search under the estimated-time bound
t <= (1 + flops_ratio) * t_int8, with the original's valid combinations and refusals.

The model is the ill-conditioned stem of test_promotions (x -> Conv c1 (8 channels, ranges 0.02 ..
60) -> SiLU -> depthwise dw -> Conv c3 (256 channels)): its SiLU output is the one tensor whose
16-bit form matters, which the search must find (with ``auto_precision=False``, so that the
automatic promotion does not take it first).
"""
from __future__ import annotations

import json

import onnx
import pytest

import npuflow
from npuflow.analysis.precision import (
    MIXBW_INT4_TRIAL_LOSS_DB,
    MIXBW_SAMPLES,
    SMALL_CHANNELS,
)
from npuflow.errors import InvalidConfigError
from tests.analysis.test_promotions import _analyse, _data, stem_model


def _km(tmp_path, platform="720", model=None):
    path = tmp_path / "stem.onnx"
    onnx.save(model or stem_model(), path)
    return npuflow.ModelConfig(1, "0001", platform, onnx_path=str(path))


def _run(tmp_path, name, **kw):
    """(ModelConfig, BIE path, warnings) of the stem model analysed with ``kw`` (no report by default)."""
    return _analyse(tmp_path, stem_model(), name, **{"report": False, **kw})


@pytest.fixture(scope="module")
def mixbw_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixbw")
    return (tmp, *_run(tmp, "bw", datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw", flops_ratio=0.2,
                       auto_precision=False, report=True))


def test_mixbw_finds_the_ill_conditioned_tensor_inside_the_time_bound(mixbw_run):
    tmp, km, bie, w = mixbw_run
    # the 16-bit model input/output/CPU nodes are the mode's: not reported as options that change nothing
    assert not any("bitwidth_mode='int8'" in str(x.message) for x in w)
    mx = km.analysis_result.mixed
    assert mx["mode"] == {"datapath": "mixbw", "weight": "mixbw"} and mx["samples"] == MIXBW_SAMPLES
    assert mx["fps_bound"] == pytest.approx(mx["fps_int8"] / 1.2, rel=1e-3)
    accepted = [r for r in mx["measured"] if r["accepted"]]
    assert accepted and accepted[0]["label"] == "b"  # the SiLU output unit, first by its estimate and measured
    # every accepted point is inside the bound; the chosen point is the last of the front, the highest SNR
    assert all(r["fps"] >= mx["fps_bound"] for r in accepted)
    assert mx["chosen"] == mx["front"][-1] and mx["front"][-1]["snr_db"] > mx["front"][0]["snr_db"]
    assert [p["snr_db"] for p in mx["front"]] == sorted(p["snr_db"] for p in mx["front"])
    assert {p["label"] for p in mx["references"]} == {"int8", "mix light"}
    p = km.analysis_result.program
    assert p.formats["b"].bits == 16 == p.formats["a"].bits
    # model input and output are 16-bit under mixbw (as the original forces them)
    assert p.formats["x"].bits == 16 == p.formats["y"].bits
    # the BIE loads and records the mode; the report shows the front
    fixed = npuflow.load(bie)
    assert fixed.run({"x": _data(1, 5)[0]})[0].shape == (1, 256, 32, 32)
    opts = json.loads({e.key: e.value for e in onnx.load(bie).metadata_props}["npuflow.options"])
    assert opts["datapath_bitwidth_mode"] == "mixbw" and opts["flops_ratio"] == 0.2
    doc = json.loads((tmp / "bw" / "model_fx_report.json").read_text())
    assert doc["quantization"]["mixed_precision"]["chosen"]["label"] == "b"
    html = (tmp / "bw" / "model_fx_report.html").read_text()
    assert 'id="mixbw-front"' in html and 'id="mixbw-candidates"' in html and 'id="front-chart"' in html


def test_mixbw_on_the_720_has_no_int4_phase(mixbw_run):
    mx = mixbw_run[1].analysis_result.mixed
    assert mx["int4"] is False and {r["phase"] for r in mx["measured"]} == {"promote"}


def _run730(tmp_path, name, **kw):
    kw.setdefault("equalize", False)  # the stem as it is (see tests/analysis/test_promotions.py)
    km = _km(tmp_path, "730")
    bie = km.analysis({"x": _data(16, 1)}, output_dir=str(tmp_path / name), threads=1, progress=False, report=False,
                      datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw", auto_precision=False, **kw)
    return km, bie


def test_mixbw_int4_weights_on_the_730_buy_a_promotion_over_the_bound(tmp_path):
    # flops_ratio 0.001: on the 720 nothing fits (test above: over the time bound); on the 730 the
    # int4 demotions free time and the SiLU output's promotion ("b") is measured again and taken
    km, bie = _run730(tmp_path, "int4", flops_ratio=0.001)
    mx = km.analysis_result.mixed
    rows = {(r["phase"], r["label"]): r for r in mx["measured"]}
    assert mx["int4"] is True
    assert "over the time bound" in rows[("promote", "b")]["why"]
    demoted = [r for r in mx["measured"] if r["phase"] == "int4" and r["accepted"]]
    assert demoted and all(r["snr_db"] >= mx["front"][0]["snr_db"] - MIXBW_INT4_TRIAL_LOSS_DB for r in demoted)
    assert rows[("promote again", "b")]["accepted"]
    wb = _weight_bits(km)
    assert {r["label"].split()[0] for r in demoted} == {n for n, b in wb.items() if b == 4}
    p = km.analysis_result.program
    assert p.formats["b"].bits == 16
    chosen = mx["chosen"]
    assert chosen == mx["front"][-1] and chosen["fps"] >= mx["fps_bound"]
    assert chosen["snr_db"] > mx["front"][0]["snr_db"] + 3  # measured: 4.3 -> 11.6 dB
    fixed = npuflow.load(bie)
    assert fixed.run({"x": _data(1, 5)[0]})[0].shape == (1, 256, 32, 32)


def test_mixbw_int4_phase_is_undone_when_it_buys_nothing(tmp_path, mixbw_run):
    # flops_ratio 0.2: "b" fits without int4; the int4 demotions that follow cost SNR and the
    # promotions left over the bound all set a demoted step's weights: the phase is undone
    km, _ = _run730(tmp_path, "undo", flops_ratio=0.2)
    mx = km.analysis_result.mixed
    int4 = [r for r in mx["measured"] if r["phase"] == "int4"]
    assert int4 and not any(r["accepted"] for r in int4)
    assert not any(b == 4 for b in _weight_bits(km).values())
    assert [p["label"] for p in mx["front"]] == [p["label"] for p in mixbw_run[1].analysis_result.mixed["front"]]


def test_mixbw_a_tighter_bound_accepts_less(tmp_path, mixbw_run):
    _, km_wide, _, _ = mixbw_run
    km, _, _ = _run(tmp_path, "tight", datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw", flops_ratio=0.01,
                    auto_precision=False)
    mx = km.analysis_result.mixed
    assert all(r["fps"] >= mx["fps_bound"] for r in mx["measured"] if r["accepted"])
    assert any("over the time bound" in r.get("why", "") for r in mx["measured"])
    assert mx["chosen"]["fps"] >= km_wide.analysis_result.mixed["chosen"]["fps"]


def test_mixbw_debug_writes_the_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXBW_DEBUG", "True")
    km, _, _ = _run(tmp_path, "dbg", datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="int16")
    rec = json.loads((tmp_path / "dbg" / "mixbw_debug" / "candidates.json").read_text())
    assert rec["mode"] == {"datapath": "mixbw", "weight": None}
    assert all(r["kind"] == "activations" for r in rec["measured"])  # int16 weights: nothing to search there
    assert all(b == 16 for n, b in _weight_bits(km).items())


def _weight_bits(km):
    from npuflow.analysis.precision import program_bits

    return program_bits(km.analysis_result.program, km.analysis_result.options)[1]


def test_node_overrides_win_under_mixbw(tmp_path):
    km, _, _ = _run(tmp_path, "user", datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw",
                    node_overrides={"c1": {"bits": 8}}, auto_precision=False)
    mx = km.analysis_result.mixed
    assert not any(r["label"].startswith("b") for r in mx["measured"])
    assert km.analysis_result.program.formats["a"].bits == 8


def test_mix_light_and_mix_balance_rules(tmp_path):
    km, _, _ = _run(tmp_path, "light", datapath_bitwidth_mode="mix light", weight_bitwidth_mode="mix light")
    p = km.analysis_result.program
    # c1 and dw have 8 output channels (<= SMALL_CHANNELS): 16-bit outputs and weights; c3 (256) stays 8
    assert SMALL_CHANNELS >= 8
    assert p.formats["a"].bits == 16 and p.formats["d"].bits == 16 and p.formats["y"].bits == 8
    wb = _weight_bits(km)
    assert wb["c1"] == wb["dw"] == 16 and wb["c3"] == 8
    assert km.analysis_result.mixed["rule_overrides"]["c1"] == {"bits": 16, "weight_bits": 16}
    km, _, _ = _run(tmp_path, "balance", datapath_bitwidth_mode="mix balance", weight_bitwidth_mode="mix balance")
    p = km.analysis_result.program
    wb = _weight_bits(km)
    # c3 holds most of the MACs: 8-bit there, 16-bit everywhere else
    assert wb["c3"] == 8 and wb["c1"] == wb["dw"] == 16
    assert p.formats["d"].bits == 16 and p.formats["a"].bits == 16


def test_refusals_and_warnings(tmp_path):
    km520 = _km(tmp_path, "520")
    with pytest.raises(InvalidConfigError, match="no 16-bit datapath"):
        km520.analysis({"x": _data(2, 1)}, output_dir=str(tmp_path / "o520"), datapath_bitwidth_mode="mixbw",
                       weight_bitwidth_mode="mixbw")
    assert not (tmp_path / "o520").exists()
    km = _km(tmp_path)
    with pytest.warns(UserWarning, match="flops_ratio=0.5 only applies to .*'mixbw'"):
        km.analysis({"x": _data(2, 1)}, output_dir=str(tmp_path / "o1"), flops_ratio=0.5, report=False, progress=False)
    with pytest.warns(UserWarning, match="model_out_bitwidth_mode='int16' is ignored"):
        km.analysis({"x": _data(2, 1)}, output_dir=str(tmp_path / "o2"), datapath_bitwidth_mode="mixbw",
                    weight_bitwidth_mode="int16", model_out_bitwidth_mode="int16", report=False, progress=False)
