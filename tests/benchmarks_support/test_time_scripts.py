"""benchmarks/report_time.py, resume_time.py and mixbw_time.py run end to end on small counts.

They are measurement scripts, not features, but they broke unnoticed before (report_time.py's
yolox part stopped at a report suggestion analysis() refused): each runs here once, with its
checks, on real models and few inputs."""
from __future__ import annotations

import json

from benchmarks import mixbw_time, report_time, resume_time


def test_report_time_both_parts_with_the_suggestions_applied(shared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPUFLOW_SHARED", str(shared))
    out = tmp_path / "out"
    rc = report_time.main(["--parts", "time,yolox", "--calib-count", "8", "--report-samples", "2",
                           "--yolox-calib-count", "4", "--verify-count", "2", "--threads", "1",
                           "--no-screenshots", "--out", str(out), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    t = res["time"]
    assert t["calibration_inputs"] == 8 and t["report_inputs"] == 2
    assert 0 < t["analysis_without_report_s"] and 0 < t["analysis_part_s"] <= t["analysis_with_report_s"]
    y = res["yolox"]
    # the baseline and each applied suggestion (the top ranks, then together) were re-analysed and simulated
    assert y["check"][0]["change"] == "baseline (no change)" and len(y["check"]) >= 2
    for row in y["check"]:
        assert isinstance(row["snr_db"], float)
    text = capsys.readouterr().out
    assert "estimated FPS" in text and "Check on all 2 evaluation images" in text


def test_resume_time_row_on_mnist(shared, capsys):
    rc = resume_time.main(["--models", "mnist_cntk_opt", "--repeats", "1", "--threads", "1", "--shared", str(shared)])
    out = capsys.readouterr().out
    assert rc == 0, out  # 1 when the two BIEs differ
    row = next(line for line in out.splitlines() if line.startswith("| mnist_cntk_opt |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "8" and cells[-1] == "yes"
    assert float(cells[2]) > 0 and float(cells[3]) > 0


def test_mixbw_time_on_mnist_with_the_pool(shared, tmp_path):
    rc = mixbw_time.main(["--models", "mnist_cntk_opt", "--calib", "8", "--eval", "16", "--threads", "2",
                          "--shared", str(shared), "--json", str(tmp_path / "m.json")])
    assert rc == 0
    (row,) = json.loads((tmp_path / "m.json").read_text())
    assert row["model"] == "mnist_cntk_opt" and row["calib"] == 8 and row["eval"] == 16
    assert row["front"] and row["chosen"] and row["fps_bound"] > 0
    assert row["pool_bie_identical"] is True  # the process pool wrote the serial run's BIE, byte for byte
    for key in ("int8_metric", "mixbw_metric"):
        assert row[key]  # the task metric of both fixed-point models
