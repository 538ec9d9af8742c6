"""Fixtures and the ``--regen-golden`` option of the MNIST end-to-end golden.

``--regen-golden`` (declared in the root ``tests/conftest.py``) rewrites
``tests/golden/mnist_golden.txt`` from the loop reference instead of asserting it (and only when the
loop reference and the simulator agree bit for bit)::

    pytest tests/golden --regen-golden
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO / "examples" / "mnist"


@pytest.fixture(scope="session")
def regen_golden(request) -> bool:
    return bool(request.config.getoption("--regen-golden", default=False))


@pytest.fixture(scope="session")
def mnist_digits() -> dict[str, np.ndarray]:
    with np.load(MNIST_DIR / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _analyse(tmp_path_factory, mnist_digits, **kw) -> Path:
    import ktc

    out = tmp_path_factory.mktemp("golden_bie")
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(MNIST_DIR / "mnist_cntk_opt.onnx"))
    return Path(km.analysis({"Input3": list(mnist_digits["calib_x"])}, output_dir=str(out), **kw))


@pytest.fixture(scope="session")
def mnist_bie(tmp_path_factory, mnist_digits) -> Path:
    """The BIE of the shipped MNIST model, analysed on the 64 shipped calibration digits (KL720)
    with nearest weight rounding, so that ``spec_prepare`` can re-derive every stored weight from
    the float model and the spec text alone (the default compensated rounding of spec §3.6 depends
    on calibration moments the BIE does not store: ``mnist_bie_default``)."""
    return _analyse(tmp_path_factory, mnist_digits, weight_rounding="nearest")


@pytest.fixture(scope="session")
def mnist_bie_default(tmp_path_factory, mnist_digits) -> Path:
    """The same analysis with every default (compensated weight rounding, spec §3.6)."""
    return _analyse(tmp_path_factory, mnist_digits)
