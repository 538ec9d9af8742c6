"""Ranges -> formats: per-tensor activations, power-of-two inputs, per-channel weights
(int8, int4), bias in the accumulator format, platform widths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuflow.quant import (
    activation_format,
    bias_format,
    channel_abs_max,
    input_format,
    quantize_bias,
    quantize_weights,
    shared_format,
    weight_format,
)
from npuflow.sim.fixed_point import QFormat


def test_activation_and_input_formats():
    f = activation_format(21.6, 8)
    assert f.radix == 2 and math.isclose(f.scale, 127 / 86.4) and not f.per_channel
    assert input_format(0.5) == QFormat(8, 8, 1.0)  # RGB/256 - 0.5 -> radix 8, scale 1
    assert input_format(1.0) == QFormat(8, 7, 1.0)  # RGB/128 - 1
    assert input_format(255.0) == QFormat(8, -1, 1.0)  # raw pixels: negative radix
    assert input_format(1.0, 16) == QFormat(16, 15, 1.0)


def test_weight_format_per_channel_int8_and_int4():
    w = np.zeros((3, 2, 1, 1))
    w[0] = 0.5
    w[1, 0] = -3.0
    f = weight_format(w, 8, 0)
    assert f.axis == 0 and f.radix == (8, 5, 7)  # 0.5 -> 8 ; 3 -> 7 - 2 = 5 ; all-zero channel -> 7
    assert f.scale[2] == 1.0
    q, f4 = quantize_weights(w, 4, 0)
    assert f4.bits == 4 and q.dtype == np.int8
    assert q.min() >= -8 and q.max() <= 7
    assert q[1, 0, 0, 0] == -7 and q[0, 0, 0, 0] == 7  # abs max maps to qmax (symmetric)
    assert channel_abs_max(w, 0).tolist() == [0.5, 3.0, 0.0]
    assert weight_format(w, 8, None).per_channel is False


def test_weight_range_widened_so_the_bias_fits():
    xf = QFormat(8, 7, 1.0)  # f_in = 128
    w = np.array([[1e-9], [0.5]])  # channel 0: almost zero weights (BN folding) but a large bias
    b = np.array([100.0, 0.1])
    plain = weight_format(w, 8, 0)
    assert quantize_bias(b, xf, plain)[2] == 1  # saturates without widening
    wide = weight_format(w, 8, 0, bias=b, in_format=xf)
    q, _, nsat = quantize_bias(b, xf, wide)
    assert nsat == 0 and abs(int(q[0])) <= 2**30
    assert wide.radix[1] == plain.radix[1] and wide.scale[1] == plain.scale[1]  # other channels untouched
    with pytest.raises(ValueError):
        weight_format(w, 8, 0, bias=b)


def test_weight_widening_bias_shapes():
    xf = QFormat(8, 7, 1.0)
    w = np.full((2, 3), 0.5)  # 2 channels on axis 0
    # a scalar bias counts for every channel; one value per channel; a multiple (grouped
    # ConvTranspose: entry j serves channel j of every group) takes the largest |b| per entry
    s = weight_format(w, 8, 0, bias=np.array([1e6]), in_format=xf)
    assert s.radix[0] == s.radix[1] and s.radix[0] < weight_format(w, 8, 0).radix[0]
    g = weight_format(w, 8, 0, bias=np.array([0.0, 1e6, 1e6, 0.0]), in_format=xf)
    per = weight_format(w, 8, 0, bias=np.array([1e6, 1e6]), in_format=xf)
    assert g == per
    with pytest.raises(ValueError, match="3 bias values for 2"):
        weight_format(w, 8, 0, bias=np.ones(3), in_format=xf)


def test_bias_format_and_quantization():
    xf = QFormat(8, 4, 1.5)
    wf = QFormat(8, (6, 7), (1.25, 1.0), 0)
    bf = bias_format(xf, wf)
    assert bf.bits == 32 and bf.radix == (10, 11) and bf.scale == (1.5 * 1.25, 1.5)
    q, _, nsat = quantize_bias(np.array([1.0, -1e12]), xf, wf)
    assert q.tolist() == [round(1.0 * 1.875 * 1024), -(2**31)] and nsat == 1
    assert bias_format(QFormat(16, 4, 1.0), wf).bits == 48
    # per-tensor weights broadcast to the bias length
    q, f, _ = quantize_bias(np.array([0.25, 0.75]), QFormat(8, 0, 1.0), QFormat(8, 1, 1.0))
    assert f.channels == 2
    assert q.tolist() == [0, 2]  # 0.5 -> 0, 1.5 -> 2 (ties to even)


def test_shared_format_takes_the_widest_range():
    f = shared_format([activation_format(2.0), activation_format(10.0), activation_format(1.0, 16)])
    assert f.bits == 16
    assert math.isclose(f.qmax / float(f.factor()[0]), 10.0, rel_tol=1e-6)


def spec_width_table() -> dict[int, dict[str, tuple[int, ...]]]:
    """The platform width table of docs/fixed-point.md section 3, parsed from the document."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "fixed-point.md").read_text()
    lines = [ln for ln in doc.splitlines() if ln.startswith("|")]
    head = next(i for i, ln in enumerate(lines) if ln.replace(" ", "").startswith("||520|720|"))
    cols = [c.strip() for c in lines[head].strip("|").split("|")][1:]
    rows = {}
    for ln in lines[head + 2: head + 4]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        kind = "weight" if cells[0].startswith("weights") else "datapath"
        rows[kind] = [tuple(int(v.strip()[3:]) for v in c.split(",")) for c in cells[1:]]
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    for j, col in enumerate(cols):
        for pid in col.split("/"):
            out[int(pid)] = {kind: rows[kind][j] for kind in rows}
    return out


def test_platform_files_agree_with_the_spec_widths():
    """One source of truth: the platform files (npuflow.platforms); the spec's table must match them."""
    from npuflow.platforms import PLATFORMS, get_platform

    table = spec_width_table()
    assert sorted(table) == sorted(int(p) for p in PLATFORMS)
    for pid, widths in table.items():
        bw = get_platform(pid).bitwidths
        for kind, allowed in widths.items():
            assert tuple(bw[kind]) == allowed, (pid, kind, bw[kind])
        for kind in ("model_in", "model_out", "cpu_node"):  # "activations" row covers these too
            assert tuple(bw[kind]) == widths["datapath"], (pid, kind, bw[kind])


@settings(max_examples=50, deadline=None)
@given(bits=st.sampled_from([4, 8, 16]), seed=st.integers(0, 2**31), scale=st.floats(1e-4, 1e4))
def test_weight_quantization_error_is_half_lsb(bits, seed, scale):
    w = np.random.default_rng(seed).normal(size=(4, 3, 2)) * scale
    q, f = quantize_weights(w, bits, 0)
    err = np.abs(f.dequantize(q) - w) * f.factor().reshape(-1, 1, 1)
    assert err.max() <= 0.5 + 1e-9
    assert np.array_equal(np.abs(q).max(axis=(1, 2)), np.full(4, f.qmax))
