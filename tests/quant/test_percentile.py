"""abs_percentile: order statistic of |x| without interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuflow.quant import abs_percentile


def test_hand_vectors():
    x = np.array([-10.0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert abs_percentile(x, 1.0) == 10.0
    assert abs_percentile(x, 0.9) == 9.0  # ceil(0.9 * 10) - 1 = 8 -> 9
    assert abs_percentile(x, 0.95) == 10.0  # ceil(9.5) - 1 = 9
    assert abs_percentile(x, 0.05) == 1.0
    x = np.arange(1000.0)
    assert abs_percentile(x, 0.999) == 998.0  # drops the top 0.1 %
    assert abs_percentile(np.array([]), 0.5) == 0.0
    per_ch = abs_percentile(np.array([[1.0, -5.0], [2.0, 3.0]]), 1.0, axis=1)
    assert per_ch.tolist() == [2.0, 5.0]


def test_rejects():
    with pytest.raises(ValueError):
        abs_percentile(np.array([1.0]), 0.0)
    with pytest.raises(ValueError):
        abs_percentile(np.array([np.nan]), 0.5)


@settings(max_examples=50, deadline=None)
@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), p=st.floats(0.01, 1.0))
def test_fraction_below_is_at_least_p(xs, p):
    a = np.abs(np.array(xs))
    v = abs_percentile(a, p)
    assert v in a
    assert np.mean(a <= v) >= p - 1e-12
    assert np.mean(a < v) < p + 1e-12
