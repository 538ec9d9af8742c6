"""The headroom of 16-bit ranges (docs/fixed-point.md section 3.1): in a 16-bit datapath the chosen
range times 4, for 16-bit tensors in an 8-bit datapath (promotions, 16-bit outputs) times 2; 8-bit
tensors and model inputs get none. And what it is for: an evaluation value three times the
calibration maximum saturates with times 2 and passes with times 4."""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.analysis.ranges import (
    INT16_HEADROOM,
    PROMOTED_HEADROOM,
    QuantOptions,
    choose_abs_max,
)
from npuflow.quant.formats import activation_format
from tests.analysis.helpers import calibration_histogram as _hist


@pytest.mark.parametrize("method", ["auto", "percentage", "mmse"])
def test_headroom_by_width_and_datapath(method):
    h = _hist([np.linspace(-2.0, 2.0, 1001), np.linspace(-5.0, 5.0, 1001)])
    i16 = QuantOptions(datapath_bits=16, range_method=method, percentage_16b=1.0, percentage=1.0)
    i8 = QuantOptions(datapath_bits=8, range_method=method, percentage_16b=1.0, percentage=1.0)
    assert (INT16_HEADROOM, PROMOTED_HEADROOM) == (4.0, 2.0)
    # model outputs are never clipped: their exact abs max, then the headroom of their width
    assert choose_abs_max(h, 16, i16, "output") == pytest.approx(4 * 5.0)
    assert choose_abs_max(h, 16, i8, "output") == pytest.approx(2 * 5.0)
    assert choose_abs_max(h, 8, i8, "output") == pytest.approx(5.0)
    # model inputs: the exact abs max, no headroom at any width
    assert choose_abs_max(h, 16, i16, "input") == choose_abs_max(h, 8, i8, "input") == pytest.approx(5.0)
    # internal tensors: the calibrated value times the headroom of the datapath (4 / 2 = 2 between them)
    assert choose_abs_max(h, 16, i16, "internal") == pytest.approx(2 * choose_abs_max(h, 16, i8, "internal"))
    if method != "mmse":  # quantile 1.0: the calibration maximum itself
        assert choose_abs_max(h, 16, i16, "internal") == pytest.approx(4 * 5.0)
        assert choose_abs_max(h, 8, i8, "internal") == pytest.approx(5.0)


def test_three_times_the_calibration_maximum_saturates_only_without_the_second_bit():
    calib_max, seen_later = 5.0, 15.0  # measured: evaluation inputs at 2.2 to 3.1x the calibration max
    for headroom, saturates in ((PROMOTED_HEADROOM, True), (INT16_HEADROOM, False)):
        fmt = activation_format(headroom * calib_max, 16)
        q = fmt.quantize(np.array([seen_later]))
        assert bool(abs(int(q[0])) == 2**15 - 1) is saturates
        if not saturates:
            assert fmt.dequantize(q)[0] == pytest.approx(seen_later, rel=1e-4)
