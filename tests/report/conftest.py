"""Fixtures of the report tests: one MNIST analysis (with its report) shared by the module tests,
and a loud banner when the text or graphical browser tests had to be skipped."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")
#: where the browser test saves its screenshot (gitignored); NPUFLOW_REPORT_ARTIFACTS overrides
ARTIFACTS = Path(os.environ.get("NPUFLOW_REPORT_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
BROWSER_SKIP_TAG = "BROWSER MISSING"
_skipped_browser: list[str] = []


def browser_missing(message: str) -> None:
    """Skip loudly (banner at the end of the run), or fail where NPUFLOW_REQUIRE_BROWSER=1 (CI)."""
    text = f"{BROWSER_SKIP_TAG}: {message}"
    if os.environ.get("NPUFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(text + " (NPUFLOW_REQUIRE_BROWSER=1)")
    pytest.skip(text)


@pytest.fixture(scope="session")
def digits():
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def mnist_analysis(tmp_path_factory, digits):
    """(ModelConfig, output dir) of an int8 analysis of MNIST on 32 calibration digits, with its report."""
    import ktc

    out = tmp_path_factory.mktemp("mnist_report")
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    km.analysis({"Input3": list(digits["calib_x"][:32])}, output_dir=out, threads=1, report_samples=8)
    return km, out


def pytest_runtest_logreport(report):
    if report.skipped and BROWSER_SKIP_TAG in str(report.longrepr):
        _skipped_browser.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _skipped_browser:
        tr = terminalreporter
        tr.write_sep("!", "REPORT BROWSER TESTS SKIPPED", red=True, bold=True)
        for node in _skipped_browser:
            tr.write_line(f"SKIPPED: {node}")
        tr.write_line("Install the Debian packages w3m, chromium and chromium-driver (.ci/run does) to run them; "
                      "NPUFLOW_REQUIRE_BROWSER=1 turns this skip into a failure.")
