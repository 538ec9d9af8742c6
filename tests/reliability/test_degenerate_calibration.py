"""Issue 18 item 8: degenerate calibration data give a loud warning, not a silently useless BIE.

One calibration input scaled by 1e15..1e30 among eight, or all-zero calibration data, used to give
a BIE with ~0 dB output SNR (0 % MNIST accuracy) and no warning. Now ``analysis()`` warns
(``CalibrationWarning``, on stderr; the report's ``warnings`` in JSON and HTML) when one input's
max is more than 100x the others' for a tensor (naming the input and the tensors), when a
tensor's every calibration value is 0 (naming the tensors), and when the model-output SNR the
report measures is below 10 dB (npuflow.calibration.degenerate). A normal calibration does not.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from npuflow.calibration.degenerate import LOW_SNR_DB, OUTLIER_RATIO, check_output_snr, check_statistics
from npuflow.calibration.histogram import AbsHistogram
from npuflow.errors import CalibrationWarning
from tests.conftest import EXAMPLES

MNIST = EXAMPLES / "mnist" / "mnist_cntk_opt.onnx"


def _analyse(x, out, threads=1, **kw):
    import ktc

    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(MNIST))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km.analysis({"Input3": list(x)}, output_dir=out, threads=threads, report_samples=8, **kw)
    ours = [str(w.message) for w in caught if issubclass(w.category, CalibrationWarning)]
    return km, ours


def _report(out):
    from npuflow.report import REPORT_SCHEMA, validate_report

    doc = json.loads((out / "model_fx_report.json").read_text())
    validate_report(doc)
    pytest.importorskip("jsonschema").validate(doc, REPORT_SCHEMA)
    return doc, (out / "model_fx_report.html").read_text()


@pytest.fixture(scope="module")
def digits(mnist_digits):
    return mnist_digits["calib_x"][:8].astype(np.float32)


# ---- end to end on MNIST ---------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e15, 1e20, 1e30])
def test_one_scaled_input_among_eight_warns(tmp_path, digits, scale):
    x = digits.copy()
    x[3] *= scale
    # the report measures on the unscaled digits: what the BIE does on real data
    km, ours = _analyse(x, tmp_path, report_inputs={"Input3": list(digits)})
    outlier = [m for m in ours if m.startswith("calibration input #3 ")]
    assert len(outlier) == 1, ours
    assert "Input3 (model input)" in outlier[0] and f"{scale:.4g}" in outlier[0]
    doc, html = _report(tmp_path)
    found = {w["kind"]: w for w in doc["warnings"]}
    assert found["outlier_input"]["input_index"] == 3 and found["outlier_input"]["tensors"][0] == "Input3"
    assert found["outlier_input"]["message"] == outlier[0]
    assert 'id="warnings"' in html and "calibration input #3" in html
    assert km.analysis_result is not None  # the BIE is still written: a warning, not an error
    # on real data the BIE is useless (the ranges follow the scaled input): the report's own check says
    # so too. (Measured on the calibration inputs instead, the pooled SNR hides behind the scaled
    # input's own signal: 32 dB at 1e20 once its second moments no longer overflow into garbage weights.)
    assert doc["quantization"]["model_output_snr_db"] < LOW_SNR_DB
    assert found["low_output_snr"]["snr_db"] < LOW_SNR_DB and found["low_output_snr"]["threshold_db"] == 10.0
    assert any(m.startswith("the fixed-point model's output SNR is") and "below 10 dB" in m for m in ours)


def test_all_zero_calibration_warns(tmp_path, digits):
    _, ours = _analyse(np.zeros_like(digits), tmp_path)
    zero = [m for m in ours if "every value of" in m]
    assert len(zero) == 1 and "Input3 (model input)" in zero[0] and "all 8 calibration input(s)" in zero[0], ours
    assert "model input(s) Input3 are all zeros" in zero[0]
    doc, html = _report(tmp_path)
    z = [w for w in doc["warnings"] if w["kind"] == "zero_range"]
    assert len(z) == 1 and z[0]["model_inputs"] == ["Input3"] and z[0]["tensors"][0] == "Input3"
    assert "every value of" in html


def test_normal_calibration_does_not_warn(tmp_path, digits):
    _, ours = _analyse(digits, tmp_path)
    assert ours == []
    doc, html = _report(tmp_path)
    assert doc["warnings"] == [] and 'id="warnings"' not in html
    assert doc["quantization"]["model_output_snr_db"] > LOW_SNR_DB


@pytest.mark.parametrize("threads", [1, 2])  # 2: statistics updated by worker threads, still in input order
def test_the_data_checks_warn_without_a_report(tmp_path, digits, threads):
    x = digits.copy()
    x[5] *= 1e20
    _, ours = _analyse(x, tmp_path, threads=threads, report=False)
    assert len(ours) == 1 and ours[0].startswith("calibration input #5 ") and "Input3" in ours[0]


def test_the_cli_prints_the_warning(tmp_path, digits):
    """``npuflow analysis`` (a real process: stderr as a user sees it) prints the warning."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "cal"
    folder.mkdir()
    for i, d in enumerate(digits):
        np.save(folder / f"{i:02d}.npy", d * (1e20 if i == 2 else 1.0))
    env = {**os.environ, "NPUFLOW_QUIET": "1"}
    r = subprocess.run([sys.executable, "-m", "npuflow", "analysis", str(MNIST), "-p", "720", "-i", f"Input3={folder}",
                        "-o", str(tmp_path / "out"), "--threads", "1"], check=False, capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("npuflow: warning: calibration input #2 ")]
    assert len(lines) == 1 and "Input3 (model input)" in lines[0]


# ---- the checks on the statistics ------------------------------------------------------------
def _hist(maxima):
    h = AbsHistogram()
    for m in maxima:
        h.update(np.array([0.5 * m, -m], np.float32))
    return h


def test_per_input_maxima_are_kept_by_the_histogram():
    h = _hist([1.0, 3.0, 2.0, 500.0, 4.0])
    assert (h.updates, h.input_max, h.input_max_at, h.input_max_2) == (5, 500.0, 3, 4.0)
    one = _hist([7.0])
    assert (one.input_max, one.input_max_at, one.input_max_2) == (7.0, 0, None)
    a, b = _hist([1.0, 2.0]), _hist([3.0, 900.0])
    a.merge(b)  # b's inputs come after a's
    assert (a.updates, a.input_max, a.input_max_at, a.input_max_2) == (4, 900.0, 3, 3.0)


def test_the_ratio_threshold_is_strict_and_needs_two_inputs():
    assert OUTLIER_RATIO == 100.0
    above = check_statistics({"t": _hist([1.0, 1.0, 101.0])})
    assert [f["kind"] for f in above] == ["outlier_input"] and above[0]["input_index"] == 2
    assert above[0]["details"][0]["ratio"] == pytest.approx(101.0)
    assert check_statistics({"t": _hist([1.0, 1.0, 100.0])}) == []
    assert check_statistics({"t": _hist([1e20])}) == []  # one input: nothing to compare with
    assert check_statistics({"t": _hist([5.0, 5.0])}) == []  # a tie
    other_zero = check_statistics({"t": _hist([0.0, 0.0, 3.0])})
    assert other_zero[0]["details"][0]["ratio"] is None and "every value of the other 2 inputs is 0" in other_zero[0]["message"]


def test_findings_name_model_inputs_first_and_group_by_input():
    stats = {"conv": _hist([1.0, 1e6, 1.0]), "x": _hist([2.0, 2e9, 1.0]), "y": _hist([1.0, 1.0, 1e4]),
             "dead": _hist([0.0, 0.0, 0.0])}
    found = check_statistics(stats)  # no model inputs named: any all-zero tensor is a finding
    kinds = [(f["kind"], f.get("input_index")) for f in found]
    assert kinds == [("outlier_input", 1), ("outlier_input", 2), ("zero_range", None)]
    assert found[0]["tensors"] == ["conv", "x"]
    named = check_statistics(stats, inputs=["x"])  # model inputs first, marked
    assert named[0]["tensors"] == ["x", "conv"] and "x (model input), conv" in named[0]["message"]
    assert found[1]["tensors"] == ["y"] and found[2]["tensors"] == ["dead"] and found[2]["model_inputs"] == []


def test_zero_ranges_need_a_model_input():
    dead = {"x": _hist([1.0, 2.0]), "dead": _hist([0.0, 0.0])}  # a dead branch on real data: no finding
    assert check_statistics(dead, inputs=["x"]) == []
    zero = {"x": _hist([0.0, 0.0]), "state": _hist([1.0, 2.0]), "dead": _hist([0.0, 0.0])}
    (f,) = check_statistics(zero, inputs=["x", "state"])
    assert f["kind"] == "zero_range" and f["tensors"] == ["x", "dead"] and f["model_inputs"] == ["x"]
    assert "x (model input), dead" in f["message"] and "model input(s) x are all zeros" in f["message"]


def test_low_snr_threshold():
    assert LOW_SNR_DB == 10.0
    assert check_output_snr(9.99, count=8)["snr_db"] == 9.99
    assert check_output_snr(10.0, count=8) is None and check_output_snr(None, count=8) is None
    assert "the 4 report_inputs" in check_output_snr(0.0, count=4, source="user")["message"]


def test_huge_input_gives_no_numpy_overflow_warning(tmp_path, digits):
    """An input x1e20 overflows float32 second moments (compensated rounding, spec 3.6): that moment
    is dropped (nearest rounding for those convolutions) without numpy's 'overflow encountered'
    warnings next to the CalibrationWarning that names the input."""
    import ktc

    x = digits.copy()
    x[5] *= 1e20
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(MNIST))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km.analysis({"Input3": list(x)}, output_dir=tmp_path, threads=1, report=False)
    numpy_warnings = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert numpy_warnings == []
    assert km.analysis_result.weight_moments == {}  # every moment overflowed: none is used
