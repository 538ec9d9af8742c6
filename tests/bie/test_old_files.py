"""Old files keep working: the MNIST BIE written by main before the validator existed
(tests/fixtures/make_mnist_fixture.py, never regenerated) loads, passes ``npuflow check`` and gives
the integers that main computed."""
from __future__ import annotations

import hashlib
import json

import numpy as np

import npuflow
from npuflow.cli import main

from ._models import FIXTURES


def test_fixture_is_the_recorded_file(mnist_bie):
    info = json.loads((FIXTURES / "mnist_fixture.json").read_text())
    for name, digest in info["sha256"].items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, f"{name} was changed"


def test_old_bie_loads_and_gives_the_same_outputs(mnist_bie):
    with np.load(FIXTURES / "mnist_fixture_outputs.npz", allow_pickle=False) as z:
        xs, fixed, flt = z["x"], z["fixed"], z["float"]
    m = npuflow.load(str(mnist_bie))
    got_fixed = np.concatenate([m.run({"Input3": x}, data_type="fixed")[0] for x in xs])
    np.testing.assert_array_equal(got_fixed, fixed, strict=True)
    np.testing.assert_array_equal(np.concatenate([m.run({"Input3": x})[0] for x in xs]), flt, strict=True)
    np.testing.assert_array_equal(m.run_batch({"Input3": xs}, data_type="fixed")[0], fixed, strict=True)


def test_old_bie_passes_check(mnist_bie, capsys):
    assert main(["check", str(mnist_bie)]) == 0
    out = capsys.readouterr().out
    assert "valid npuflow BIE (format 1.0, numerics 1.1) of model 'mnist_cntk_opt' for platform 720" in out
