"""Every pass preserves what the model computes, on one real input per shared model.

For each shared model, optimize() runs once (tests/passes/conftest.py ``trace``); after every
pass run the model as it stands is executed in onnxruntime on a real, preprocessed input
(tests/passes/real_inputs.py) and compared with the original model's outputs:
``max|ref - got| <= 1e-4 * max|ref|`` for every output.
"""
from __future__ import annotations

import numpy as np
import pytest

from real_inputs import MODELS
import effect_table
from npuflow.passes import PASSES

TOL = 1e-4


@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("name", list(MODELS))
def test_pass_preserves_outputs_on_real_input(trace, name, pass_name):
    t = trace(name)
    runs = t.runs_of(pass_name)
    assert runs, f"{pass_name} never ran on {name}"
    for r in runs:
        assert r.error == "", f"{pass_name} (round {r.stat.round}) left a model onnxruntime cannot run: {r.error}"
        assert r.rel_diff is not None and r.rel_diff <= TOL, (
            f"{pass_name} (round {r.stat.round}) on {name}: max rel diff {r.rel_diff:.3e} > {TOL}")


@pytest.mark.parametrize("name", list(MODELS))
def test_optimized_model_agrees_with_original(trace, name):
    t = trace(name)
    got = effect_table.ort_run(t.optimized, t.feeds)
    assert [o.name for o in t.optimized.graph.output] == [o.name for o in t.original.graph.output]
    for ref, out in zip(t.reference, got, strict=True):
        assert out.shape == ref.shape
        assert np.max(np.abs(ref - out)) <= TOL * np.max(np.abs(ref))
