"""Calibration statistics refuse non-finite values with a clear error."""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.calibration.histogram import AbsHistogram


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError, match="non-finite"):
        AbsHistogram().update(np.array([1.0, bad, -2.0], np.float32))
