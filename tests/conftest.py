"""Shared test fixtures.

Tests over the large shared assets (models, images) use the ``shared`` fixture. The folder is
``$NPUFLOW_SHARED`` or ``../shared`` next to the repository. When it is missing those tests are
skipped and the session ends with a loud banner saying how many were skipped and why; CI always
has the folder and sets ``NPUFLOW_REQUIRE_SHARED=1`` so that a missing folder fails instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def shared_root() -> Path:
    return Path(os.environ.get("NPUFLOW_SHARED", REPO.parent / "shared")).resolve()


SHARED = shared_root()
HAVE_SHARED = (SHARED / "models").is_dir()
_skipped_for_shared: list[str] = []


@pytest.fixture(scope="session")
def shared() -> Path:
    if not HAVE_SHARED:
        if os.environ.get("NPUFLOW_REQUIRE_SHARED") == "1":
            pytest.fail(f"shared assets required (NPUFLOW_REQUIRE_SHARED=1) but not found at {SHARED}")
        pytest.skip(f"shared assets not found at {SHARED} (set NPUFLOW_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def mnist_example() -> Path:
    return EXAMPLES / "mnist" / "mnist_cntk_opt.onnx"


@pytest.fixture(scope="session")
def mnist_digits() -> dict:
    """The shipped real MNIST digits (examples/mnist/digits.npz): calib_x, eval_x, labels."""
    import numpy as np

    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def pytest_addoption(parser):
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files (tests/golden/mnist_golden.txt) from their reference instead of asserting them "
        "(review the diff before committing)",
    )


def pytest_collection_modifyitems(config, items):
    slow_on = os.environ.get("NPUFLOW_SLOW") == "1" or "slow" in (config.getoption("-m") or "")
    skip_slow = pytest.mark.skip(reason="slow case: run with NPUFLOW_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords and not slow_on:
            item.add_marker(skip_slow)


def pytest_runtest_logreport(report):
    if report.skipped and "shared assets not found" in str(report.longrepr):
        _skipped_for_shared.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _skipped_for_shared:
        tr = terminalreporter
        tr.write_sep("!", "SHARED ASSETS MISSING", red=True, bold=True)
        tr.write_line(
            f"{len(_skipped_for_shared)} tests over real models/data were SKIPPED: no shared folder at {SHARED}."
        )
        tr.write_line("Set NPUFLOW_SHARED=/path/to/shared to run them. CI always runs them.")


def analyse_task(task, calib: list, output_dir: Path, **kw):
    """``ktc.ModelConfig(...).analysis`` of a benchmarks task on 720 with ``calib`` (arrays of its one
    input), 2 threads, no report, warnings silenced; returns (the ModelConfig, the loaded BIE)."""
    import warnings

    import ktc
    import npuflow

    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=str(task.model_path), input_shapes=task.input_shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bie = km.analysis({task.input_name: calib}, output_dir=output_dir, threads=2, progress=False, report=False,
                          **kw)
    return km, npuflow.load(bie)
