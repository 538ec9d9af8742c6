"""Sequential bias adjustment (analysis(optimize>=1), docs/fixed-point.md §3.4)."""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

import ktc
import npuflow
from npuflow.analysis import bias_adjust as BA
from npuflow.errors import CompatibilityWarning
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels.base import Activation

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.fixture(scope="module")
def digits():
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _analyse(tmp, digits, **kw):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatibilityWarning)
        bie = km.analysis({"Input3": list(digits["calib_x"])}, output_dir=tmp, threads=1, report=False, **kw)
    return km, bie


def _conv_mean_errors(km, feeds):
    """Per-channel mean error (dequantized fixed - float) of every Conv step output, over ``feeds``,
    measured the way the adjustment measures it (unclamped positions only)."""
    from npuflow.calibration.collector import expose_tensors
    from npuflow.reference.float_runner import FloatRunner

    res = km.analysis_result
    prog = res.program
    targets = BA._targets(prog)
    names = [prog.steps[k].outputs[0] for k in targets]
    runner = FloatRunner(expose_tensors(res.optimized, names))
    x = np.concatenate([f["Input3"] for f in feeds])
    ref = {n: np.concatenate(v) for n, v in zip(names, zip(*[runner.run(f, names) for f in feeds]))}
    env = prog.run(prog.quantize_inputs({"Input3": x}), keep_all=True, batch=len(feeds))
    return {prog.steps[k].name: BA._mean_error(env[n], ref[n], prog, k)[0] for k, n in zip(targets, names)}


def test_mean_error_skips_clamped_positions():
    """Hand vector: format LSB 0.5 (factor 2), ReLU clamp at q = 0 and saturation at 127."""
    fmt = QFormat(8, 1, 1.0)

    class P:
        out = type("O", (), {"act": Activation("relu", 0, 127)})()

    class Prog:
        steps = [type("S", (), {"outputs": ["y"]})()]
        formats = {"y": fmt}
        params = [P()]

    # channel 0: q = [3, 0, 127, 5] -> values [1.5, 0, 63.5, 2.5]; float [1.0, -2.0, 70.0, 2.0]
    # only positions 0 and 3 are unclamped on both sides: errors 0.5 and 0.5 -> mean 0.5
    # channel 1: q = [-1, 2, 4, 6] (q=-1 cannot occur after ReLU but is not in (0, 127) either)
    q = np.array([[[3, 0], [127, 5]], [[-1, 2], [4, 6]]], dtype=np.int8)[None]
    f = np.array([[[1.0, -2.0], [70.0, 2.0]], [[0.5, 1.25], [2.0, 2.5]]], dtype=np.float32)[None]
    err, cnt = BA._mean_error(q, f, Prog(), 0)
    np.testing.assert_allclose(err, [0.5, (-0.25 + 0.0 + 0.5) / 3])
    assert cnt.tolist() == [2, 3]


def test_optimize_3_reduces_conv_mean_errors(tmp_path, digits):
    # the ktc range rule: under "auto" (0.9999 on MNIST) Conv28's mean error is already 0.1 of its
    # output step before the adjustment (0.0051 -> 0.0052 after it: the bias grid's rounding)
    km0, bie0 = _analyse(tmp_path / "a", digits, datapath_range_method="percentage")
    km3, bie3 = _analyse(tmp_path / "b", digits, optimize=3, datapath_range_method="percentage")
    res = km3.analysis_result
    assert res.bias_deltas, "no Conv step was adjusted"
    cx = digits["calib_x"].reshape(-1, 1, 28, 28).astype(np.float32)
    feeds = [{"Input3": cx[i:i + 1]} for i in range(BA.DEFAULT_SAMPLES)]  # the inputs the adjustment used
    before = _conv_mean_errors(km0, feeds)
    after = _conv_mean_errors(km3, feeds)
    for name in res.bias_deltas:
        assert np.abs(after[name]).mean() < np.abs(before[name]).mean(), name
    # recorded in the BIE's options, and the adjusted BIE is an ordinary BIE
    m = npuflow.load(bie3)
    assert m.bie.options["optimize"] == 3 and m.bie.options["bias_adjusted_steps"] == len(res.bias_deltas)
    x = digits["eval_x"][:64].reshape(-1, 1, 28, 28).astype(np.float32)
    acc0 = (npuflow.load(bie0).run_batch([x])[0].argmax(1) == digits["eval_y"][:64]).mean()
    acc3 = (m.run_batch([x])[0].argmax(1) == digits["eval_y"][:64]).mean()
    assert acc3 >= acc0 - 1 / 64


def test_optimize_levels(tmp_path, digits):
    with pytest.warns(CompatibilityWarning, match="feature-map-cut"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST).analysis(
            {"Input3": list(digits["calib_x"][:8])}, output_dir=tmp_path / "o2", threads=1, report=False, optimize=2)
    km1, b1 = _analyse(tmp_path / "o1", digits, optimize=1)
    km3, b3 = _analyse(tmp_path / "o3", digits, optimize=3)
    assert km1.analysis_result.bias_deltas.keys() == km3.analysis_result.bias_deltas.keys()
    _, b3b = _analyse(tmp_path / "o3b", digits, optimize=3)
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: E731
    assert digest(b3) == digest(b3b)  # deterministic


def test_memory_budget_limits_inputs(digits):
    import onnx

    from npuflow.passes import optimize

    model = optimize(onnx.load(MNIST))
    names = [o.name for o in model.graph.output]
    cx = digits["calib_x"].reshape(-1, 1, 28, 28).astype(np.float32)
    feeds = [{"Input3": cx[i:i + 1]} for i in range(10)]
    refs, n = BA._float_references(model, names, feeds, budget=10 * 2 * 3)  # 10 float16 values per input
    assert n == 3 and refs[names[0]].shape[0] == 3 and refs[names[0]].dtype == np.float16
    refs, n = BA._float_references(model, names, feeds, budget=1)  # always at least one input
    assert n == 1
