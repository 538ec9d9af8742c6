"""Small pieces of npuflow.report.precision: pooled metrics, clipped fraction, sampling, charts."""
from __future__ import annotations

import base64
import math
import xml.dom.minidom

import numpy as np
import pytest

from npuflow.calibration.histogram import AbsHistogram
from npuflow.report import charts
from npuflow.report.precision import SAMPLE, ErrAcc, _pick, _sampled, chosen_range, clipped_fraction, snr_db
from npuflow.sim.fixed_point import QFormat


def test_pooled_snr_and_cosine():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000), rng.standard_normal(500)
    na, nb = 0.01 * rng.standard_normal(1000), 0.1 * rng.standard_normal(500)
    acc = ErrAcc()
    acc.add(a.astype(np.float32), a + na)
    acc.add(b, b + nb)
    ref, x = np.concatenate([a.astype(np.float32), b]).astype(np.float64), np.concatenate([a + na, b + nb])
    assert acc.snr() == pytest.approx(10 * math.log10((ref ** 2).sum() / ((ref - x) ** 2).sum()), abs=1e-9)
    assert acc.cosine() == pytest.approx(ref @ x / math.sqrt((ref @ ref) * (x @ x)), abs=1e-12)
    exact = ErrAcc()
    exact.add(a, a)
    assert exact.snr() is None and exact.cosine() == pytest.approx(1.0)
    assert snr_db(0.0, 1.0) == -300.0 and snr_db(1.0, 0.0) is None


def test_clipped_fraction_and_range():
    h = AbsHistogram()
    h.update(np.linspace(-10, 10, 200001))
    assert clipped_fraction(h, 5.0) == pytest.approx(0.5, abs=0.002)
    assert clipped_fraction(h, 10.0) == 0.0 and clipped_fraction(None, 1.0) == 0.0
    f = QFormat.from_abs_max(21.6, 8)
    assert chosen_range(f) == pytest.approx(21.6)


def test_sampling_is_deterministic_and_bounded():
    assert _pick(SAMPLE) is None
    i1, i2 = _pick(SAMPLE * 3 + 7), _pick(SAMPLE * 3 + 7)
    assert i1 is i2 and i1.size == SAMPLE and np.all(np.diff(i1) > 0)
    x = np.arange(SAMPLE * 3 + 7)
    np.testing.assert_array_equal(_sampled(x), x[i1])
    np.testing.assert_array_equal(_sampled(x, full=True), x)


def test_charts_are_valid_escaped_svg():
    rows = [{"index": i, "placement": "CPU" if i == 2 else "NPU", "outputs": [{}], "pass_through": False,
             "cumulative": {"snr_db": 30.0 - i}, "isolated": {"snr_db": None if i == 1 else 40.0 - i}} for i in range(5)]
    svg = charts.snr_along_graph(rows, [{"rank": 1, "index": 3, "isolated_snr_db": 37.0}])
    h = {"name": "<b>&'x\"", "bits": 8, "hi": 4.0, "counts": [5, 0, 3, 1], "chosen": 3.0, "abs_max": 3.9, "clipped_calib": 0.01}
    for s in (svg, charts.histogram(h), charts.time_bars([{"name": "a<b", "ms": 1.0, "bound": "compute"}])):
        xml.dom.minidom.parseString(s)
        assert "<b>" not in s
    uri = charts.data_uri(charts.histogram(h))
    assert base64.b64decode(uri.split(",", 1)[1]).decode().startswith("<svg")
