"""Fixtures of the BIE validator tests: the old MNIST fixture BIE and a BIE of the many-kernel
``zoo`` model (with CPU steps), analysed once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from ._models import FIXTURES, analyse, zoo_model


@pytest.fixture(scope="session")
def mnist_bie() -> Path:
    """examples/mnist analysed by main before the validator (tests/fixtures/make_mnist_fixture.py)."""
    return FIXTURES / "mnist_cntk_opt.kdp720.scaled.bie"


@pytest.fixture(scope="session")
def zoo_bie(tmp_path_factory) -> Path:
    return analyse(zoo_model(), tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def sources(mnist_bie, zoo_bie) -> dict[str, Path]:
    return {"mnist": mnist_bie, "zoo": zoo_bie}
