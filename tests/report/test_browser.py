"""The report of a real model in headless Chromium: loads without console errors, shows the tables
and the charts. Screenshot: tests/report/artifacts/mnist_model_fx_report.png (gitignored;
NPUFLOW_REPORT_ARTIFACTS overrides the folder). Only an installed Chromium is used (Debian packages
chromium, chromium-driver); without one the test is skipped with a banner."""
from __future__ import annotations

import json

import pytest

from tests.report.browser import Chromium, find_chromium
from tests.report.conftest import ARTIFACTS, browser_missing


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        browser_missing("Chromium not found, the graphical browser test of the report was SKIPPED "
                        "(Debian: apt-get install chromium chromium-driver; or set NPUFLOW_CHROMIUM)")
    with Chromium(binary) as c:
        yield c


def test_report_renders_in_chromium(mnist_analysis, chromium):
    _, out = mnist_analysis
    doc = json.loads((out / "model_fx_report.json").read_text())
    problems = chromium.open((out / "model_fx_report.html").resolve().as_uri())
    assert problems == [], problems
    page = chromium.evaluate("""(() => {
        const rows = id => document.querySelectorAll('#' + id + ' tr').length;
        const imgs = [...document.querySelectorAll('img.chart')];
        const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
        return {title: document.title, summary: rows('summary'), ranking: rows('ranking'), steps: rows('steps'),
                nodes: rows('nodes'), charts: imgs.map(i => ({kind: i.dataset.chart, ok: i.complete && i.naturalWidth > 0,
                size: box(i)})), stepsBox: box(document.getElementById('steps'))};
    })()""")
    q = doc["quantization"]
    assert page["title"].startswith("npuflow report: mnist_cntk_opt")
    assert page["steps"] == len(q["steps"]) + 1 and page["ranking"] == len(q["ranking"]) + 1
    assert page["nodes"] == len(doc["nodes"]) + 1 and page["summary"] > 10
    kinds = [c["kind"] for c in page["charts"]]
    assert kinds.count("snr") == 1 and kinds.count("hist") == len(q["histograms"]) >= 1 and "time" in kinds
    for c in page["charts"]:
        assert c["ok"] and c["size"][0] > 100 and c["size"][1] > 100, c
    assert page["stepsBox"][0] > 300 and page["stepsBox"][1] > 100
    shot = chromium.screenshot(ARTIFACTS / "mnist_model_fx_report.png")
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


@pytest.mark.slow
def test_yolox_report_renders_in_chromium(shared, chromium, tmp_path):
    """A detector with 265 quantized nodes (slow case: NPUFLOW_SLOW=1). Screenshot:
    tests/report/artifacts/yolox_nano_model_fx_report.png."""
    from benchmarks.tasks import get_task

    import ktc

    task = get_task("yolox_nano", shared)
    calib = list(task.calib_inputs(8))
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path), input_shapes=task.input_shapes)
    km.analysis({task.input_name: [c[task.input_name] for c in calib]}, output_dir=tmp_path, threads=2, report_samples=2)
    assert chromium.open((tmp_path / "model_fx_report.html").resolve().as_uri()) == []
    rows = chromium.evaluate("document.querySelectorAll('#steps tr').length")
    assert rows == len(km.report["quantization"]["steps"]) + 1
    assert chromium.evaluate("[...document.querySelectorAll('img.chart')].every(i => i.complete && i.naturalWidth > 0)")
    assert (tmp_path / "model_fx_report.html").stat().st_size < 5_000_000
    chromium.screenshot(ARTIFACTS / "yolox_nano_model_fx_report.png", max_height=6000)
