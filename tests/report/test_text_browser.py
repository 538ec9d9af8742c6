"""The report stays readable as plain tables in a text browser (Debian's w3m, ``w3m -dump``)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess


from tests.report.conftest import browser_missing

W3M = shutil.which("w3m")


def dump(path, cols=200):
    if W3M is None:
        browser_missing("w3m not found, the text-browser test of the report was SKIPPED (Debian: apt-get install w3m)")
    r = subprocess.run([W3M, "-dump", "-T", "text/html", "-cols", str(cols), "-O", "UTF-8", str(path)],
                       capture_output=True, text=True, timeout=60, check=True)
    return r.stdout


def test_w3m_dump_shows_tables_not_markup(mnist_analysis):
    _, out = mnist_analysis
    text = dump(out / "model_fx_report.html")
    doc = json.loads((out / "model_fx_report.json").read_text())
    q = doc["quantization"]
    for heading in ("Summary", "Where precision is lost", "Quantized nodes (after fusion)", "Model inputs", "Options"):
        assert heading in text
    assert re.search(r"model-output SNR \(dB\)\s+" + re.escape(f"{q['model_output_snr_db']:.2f}"), text)
    # every quantized node has a row with its name, op and cumulative SNR
    for row in q["steps"]:
        line = next((l for l in text.splitlines() if re.match(rf"\s*{row['index']}\s+{re.escape(row['name'])}\s", l)), None)
        assert line is not None, row["name"]
        assert row["op_type"] in line
        if row["outputs"]:
            assert f"{row['cumulative']['snr_db']:.1f}" in line
    # the ranked suggestions are readable text
    assert "node_overrides=" in text
    # charts degrade to their alt text; no markup, CSS or base64 leaks into the text
    assert "[chart: cumulative and isolated SNR" in text
    for leak in ("<svg", "<td", "base64", "border-collapse", "font-size", "data:image"):
        assert leak not in text, leak


def test_w3m_dump_of_evaluate_report(tmp_path):
    import ktc

    from tests.report.conftest import MNIST

    ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST).evaluate(output_dir=tmp_path)
    text = dump(tmp_path / "model_fx_report.html", cols=160)
    assert "estimated fps" in text and "Convolution28" in text and "<" not in text
