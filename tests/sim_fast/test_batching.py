"""batching.per_sample: one sample or ``per`` samples per call give the same concatenation."""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.sim.fast.batching import BatchUnsupported, micro_batch, per_sample


@pytest.mark.parametrize("per", [1, 2, 3, 7, 8])
def test_per_sample_chunks_equal_whole(per):
    rng = np.random.default_rng(0)
    a = rng.integers(-5, 5, size=(7 * 2, 3))  # 7 samples of 2 rows each
    b = rng.integers(-5, 5, size=(7, 3))
    calls = []

    def fn(x, y):
        calls.append(x.shape[0])
        return x.reshape(-1, 2, 3).sum(axis=1) + y, y * 2

    got = per_sample(fn, [a, b], 7, per=per)
    np.testing.assert_array_equal(got[0], a.reshape(7, 2, 3).sum(axis=1) + b)
    np.testing.assert_array_equal(got[1], b * 2)
    assert sum(calls) == 14 and max(calls) == 2 * min(per, 7)


def test_per_sample_refuses_unbatched_inputs(monkeypatch):
    with pytest.raises(BatchUnsupported):
        per_sample(lambda x: x, [np.zeros((5, 2))], 2)
    monkeypatch.setenv("NPUFLOW_SIM_MICROBATCH", "0")
    assert micro_batch() == 1
