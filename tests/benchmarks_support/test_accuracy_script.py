"""benchmarks/accuracy.py: its core (quantize, simulate, compare) on MNIST with tiny counts, the
subprocess step with its memory measurement, failure reporting, and the table formatting."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import accuracy as acc
from benchmarks.tasks import classification_metrics


def test_evaluate_task_mnist(shared, tmp_path):
    bad = acc.QuantConfig("npuflow bad", "npuflow", {"datapath_bitwidth_mode": "int3"})
    res = acc.evaluate_task("mnist_cntk_opt", [acc.NPUFLOW_INT8, acc.ORT_MINMAX, bad], calib_count=10, eval_count=20,
                            work_dir=tmp_path, shared=str(shared), threads=1, isolate=False)
    assert (res["calib_n"], res["eval_n"], res["calib_split"], res["eval_split"]) == (10, 20, 1000, 4000)
    for label in (acc.NPUFLOW_INT8.label, acc.ORT_MINMAX.label):
        r = res["results"][label]
        assert r["ok"], r.get("error")
        c = r["compare"]
        assert c["n"] == 20 and c["agreement"] >= 0.9 and c["quant_accuracy"] >= 0.85
        assert len(r["snr_db"]) == 1 and r["snr_db"][0] == pytest.approx(c["output_snr_db"])
        # ORT's QDQ model runs its own arithmetic (graph optimization BASIC): 7.3 dB through ORT's fused
        # int8 kernels on this AVX2 CPU (u8s8 saturation), about 22 dB as the QDQ model defines it
        assert r["snr_db"][0] > 15
        assert r["quantize"]["seconds"] > 0 and r["quantize"]["calib_n"] == 10
    r = res["results"]["npuflow bad"]
    assert not r["ok"] and r["error"]["stage"] == "analysis" and "int3" in r["error"]["message"]
    # the tables and the failure section are built without error and name the failure
    table = "\n".join(acc.models_table([res], [acc.NPUFLOW_INT8, acc.ORT_MINMAX, bad]))
    assert "mnist_cntk_opt (10 / 20)" in table and "accuracy" in table
    board = "\n".join(acc.scoreboard_table([res], [acc.NPUFLOW_INT8, acc.ORT_MINMAX, bad]))
    assert "| mnist_cntk_opt | 10 / 20 | argmax agreement |" in board and "FAILED analysis" in board
    details = "\n".join(acc.failure_details([res]))
    assert "npuflow bad" in details and "analysis failed" in details


def test_isolated_step_measures_memory(shared, tmp_path):
    q = acc.quantize_isolated("mnist_cntk_opt", acc.NPUFLOW_INT8, 5, tmp_path, shared=str(shared), threads=1, timeout=120)
    assert q["ok"], q.get("error")
    assert q["artifact"].endswith(".bie") and q["calib_n"] == 5
    assert q["rss_peak_kib"] >= q["rss_start_kib"] > 10_000  # an interpreter with numpy: > 10 MB


def test_describe_exception_finds_the_node():
    class Step:
        name, op_type = "conv_7", "Conv"

    def run(st):
        raise ValueError("boom")

    try:
        run(Step())
    except ValueError as exc:
        e = acc.describe_exception(exc, "simulation")
    assert (e["node"], e["op"], e["type"], e["message"], e["stage"]) == ("conv_7", "Conv", "ValueError", "boom", "simulation")
    assert "at node conv_7 (Conv)" in acc._short_error(e)


def test_efficientnet_tables_and_targets():
    rng = np.random.default_rng(0)
    labels = list(rng.integers(0, 5, 50))
    ref = [rng.normal(size=(1, 5)) for _ in labels]

    def row(noise, seconds):
        q = [r + noise * rng.normal(size=r.shape) for r in ref]
        return {"ok": True, "quantize": {"seconds": seconds, "rss_start_kib": 200_000, "rss_peak_kib": 300_000},
                "compare": classification_metrics(ref, q, labels), "eval_s_per_input": 0.01}

    res = {"task": "efficientnet_lite0", "calib_n": 5, "calib_split": 200, "eval_n": 50, "eval_split": 800, "results": {
        acc.NPUFLOW_INT8.label: row(0.01, 3.0), acc.NPUFLOW_INT16.label: row(1e-4, 4.0),
        acc.ORT_MINMAX.label: row(0.1, 2.0),
        acc.ORT_PERCENTILE.label: {"ok": False, "quantize": {}, "error": {
            "stage": "ORT quantize_static", "type": "RuntimeError", "message": "x | y", "node": None, "op": None}}}}
    res["results"][acc.NPUFLOW_INT8.label]["quantize"]["timing"] = {"analysis": 2.0, "report": 1.0}
    table = "\n".join(acc.efficientnet_table(res))
    assert "| 3.00 (report 1.00) | 1.50x |" in table
    assert "1.50x" in table and "2.00x" in table and "293 (195 at start)" in table
    assert "FAILED ORT quantize_static: RuntimeError: x \\| y" in table
    targets = "\n".join(acc.efficientnet_targets(res))
    assert targets.count("PASS") == 7, targets  # int8 SNR, +1 dB, agreement, drop, int16 SNR, two time ratios
    assert "n/a" not in targets and "without the report: 2.00 s = 1.00x" in targets
    assert math.isfinite(res["results"][acc.NPUFLOW_INT8.label]["compare"]["logits_snr_db"])
    assert "No warm-up" in acc.warmup_note(res, None)
    res["results"][acc.NPUFLOW_INT8.label]["warmup_s"] = 1.25
    note = acc.warmup_note(res, {"ok": True, "seconds": 30.0})
    assert "30.0 s" in note and "npuflow int8 1.25 s" in note


def test_scoreboard_main_on_a_zoo_model(shared, tmp_path):
    """The whole script (one process per model, a subprocess per quantization) on dlib_gender_v1 with
    a few face crops: the four rows, the Markdown and JSON files."""
    rc = acc.main(["--parts", "models", "--models", "dlib_gender_v1", "--calib-count", "6", "--eval-count", "6",
                   "--threads", "1", "--no-warmup", "--shared", str(shared), "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "accuracy-full.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "accuracy-full.json").read_text(encoding="utf-8"))
    row = next(line for line in md.splitlines() if line.startswith("| dlib_gender_v1 | 6 / 6 |"))
    assert row.count("SNR") == 4, row  # npuflow int8, int16, ORT MinMax, ORT Percentile all ran
    (res,) = data["models"]
    assert res["task"] == "dlib_gender_v1" and set(res["results"]) == {c.label for c in acc.SCOREBOARD_CONFIGS}
    for label, r in res["results"].items():
        assert r["ok"], (label, r.get("error"))
        assert r["compare"]["n"] == 6 and r["compare"]["agreement"] >= 0.5
    assert res["results"]["npuflow int16"]["snr_db"][0] > res["results"]["npuflow int8"]["snr_db"][0] + 10
    assert "quant_pre_process" in md and "### Failures and refusals" in md
    assert data["complete"] is True and "(incomplete" not in md


def test_files_written_after_each_model(tmp_path, monkeypatch):
    """A run that dies after its first model keeps that model's rows in both files, marked incomplete."""
    def fake(name, configs, **kw):
        if name != "dlib_gender_v1":
            raise KeyboardInterrupt  # the run dies here (Ctrl-C, or the machine)
        err = {"stage": "analysis", "type": "ValueError", "message": "boom", "node": None, "op": None}
        return {"task": name, "calib_n": 2, "eval_n": 2, "calib_split": 92, "eval_split": 27, "output_names": ["y"],
                "results": {c.label: {"ok": False, "quantize": {}, "error": err} for c in configs}}

    monkeypatch.setattr(acc, "evaluate_task_isolated", fake)
    with pytest.raises(KeyboardInterrupt):
        acc.main(["--parts", "models", "--models", "dlib_gender_v1,dlib_age_v1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "accuracy-full.json").read_text(encoding="utf-8"))
    md = (tmp_path / "accuracy-full.md").read_text(encoding="utf-8")
    assert data["complete"] is False and [r["task"] for r in data["models"]] == ["dlib_gender_v1"]
    assert "| dlib_gender_v1 | 2 / 2 |" in md and "| dlib_age_v1 |" not in md
    assert "FAILED analysis: ValueError: boom" in md and "#### dlib_gender_v1 / npuflow int8" in md
    assert md.rstrip().splitlines()[-1].startswith("(incomplete: written at ")
    assert "after 1 of 2 models of part 2" in md
    assert not list(tmp_path.glob(".*.tmp"))  # written through a rename


def test_killed_subprocess_is_named_with_its_memory():
    """A worker the kernel's OOM killer ends (SIGKILL, no result): a clear cell, with the RSS seen."""
    import subprocess
    import sys

    code = "import os, time; b = bytearray(60_000_000); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5); os.kill(os.getpid(), 9)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = acc._RssWatch(proc.pid, interval=0.1)
    out, err = proc.communicate(timeout=60)
    watch.stop()
    e = acc._exit_error("ORT quantize_static", proc.returncode, out, err, watch.peak_kib)
    assert e["type"] == "killed by SIGKILL" and watch.peak_kib > 55_000
    assert "most likely out of memory" in e["message"] and "largest RSS seen" in e["message"] and "MiB RAM" in e["message"]
    cell = acc._short_error(e)
    assert cell.startswith("FAILED ORT quantize_static: killed by SIGKILL: the quantization subprocess was killed")
    assert acc._exit_error("analysis", 3, "", "Traceback\nValueError: x\n", None)["message"] == "ValueError: x"


def test_refusal_is_shown_as_a_refusal():
    from npuflow.errors import UnsupportedOperatorError

    def build(node):
        raise UnsupportedOperatorError("GRU", node, "no NPU or CPU implementation")

    try:
        build("gru_3")
    except UnsupportedOperatorError as exc:
        e = acc.describe_exception(exc, "analysis")
    assert e["refusal"] and (e["node"], e["op"]) == ("gru_3", "GRU")
    assert acc._short_error(e).startswith("REFUSED: GRU at node gru_3")
    res = {"task": "gtcrn_simple", "calib_n": 2, "eval_n": 2, "calib_split": 2, "eval_split": 2,
           "results": {acc.NPUFLOW_INT8.label: {"ok": False, "quantize": {}, "error": e}}}
    assert "REFUSED: GRU at node gru_3" in "\n".join(acc.scoreboard_table([res]))
    assert "refused by npuflow" in "\n".join(acc.failure_details([res]))
