"""Shared pieces of the analysis tests."""
from __future__ import annotations

import numpy as np

from npuflow.analysis.ranges import QuantOptions
from npuflow.calibration.histogram import AbsHistogram


def calibration_histogram(values) -> AbsHistogram:
    """The statistics of one tensor over calibration inputs, one update per item of ``values``,
    tracking the quantiles the default options read."""
    h = AbsHistogram(track=QuantOptions().tracked_quantiles())
    for v in values:  # one calibration input each
        h.update(np.asarray(v, np.float32))
    return h
