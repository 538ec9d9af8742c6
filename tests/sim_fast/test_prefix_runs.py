"""PrefixRuns (sim/fast/runner.py): a program measured after another one on the same inputs runs
only from the first plan entry that differs, and gets exactly the integers of a full run.

The analysis measures dozens of programs that differ in a few steps (a range notch for one part of
the network, one tensor at 16 bits); these tests build such programs the way the analysis does
(``build_program`` with the calibration statistics: unchanged steps get the same parameter objects
back) and compare every output with ``Program.run`` from scratch, in orders where the store must
pick the right earlier run, evict one, or start over."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import ktc
from npuflow.analysis.program import as_float_step, build_program
from npuflow.analysis.ranges import NodeOverride
from npuflow.errors import CompatibilityWarning
from npuflow.sim.fast.runner import PrefixRuns
from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


def _analyse(onnx_path, inputs, tmp_path, **kw):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=onnx_path, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatibilityWarning)
        km.analysis(inputs, output_dir=tmp_path, threads=1, report=False)
    return km.analysis_result


def _build(res, opts):
    p = res.program
    return build_program(res.optimized, res.steps, res.stats, opts, p.input_names, p.output_names,
                         channel_means=res.channel_means.get, weight_moments=res.weight_moments)


def _override(res, k, **fields):
    return dataclasses.replace(res.options, overrides={**res.options.overrides,
                                                       res.steps[k].nodes[0]: NodeOverride(**fields)})


def _check(runs, prog, feed, batch=None):
    """Run ``prog`` through ``runs`` and from scratch; equal outputs; returns the entries skipped."""
    before = runs.skipped
    got = runs.run(prog, lambda: prog.quantize_inputs(feed), batch=batch)
    want = prog.run(prog.quantize_inputs(feed), batch=batch)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return runs.skipped - before


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        calib, evals = z["calib_x"][:32], z["eval_x"][:4]
    res = _analyse(MNIST, {"Input3": list(calib)}, tmp_path_factory.mktemp("prefix"))
    feed = {"Input3": np.concatenate([x.reshape(1, 1, 28, 28) for x in evals]).astype(np.float32)}
    return res, feed


def test_a_program_changed_late_resumes_and_matches(mnist):
    res, feed = mnist
    base = _build(res, res.options)
    convs = [k for k, st in enumerate(res.steps) if st.op_type == "Conv"]
    late = _build(res, _override(res, convs[-1], bits=16))
    early = _build(res, _override(res, convs[0], bits=16))
    runs = PrefixRuns()
    assert _check(runs, base, feed, batch=4) == 0  # nothing stored yet
    assert _check(runs, late, feed, batch=4) > 0  # shares everything before the last Conv
    skipped_early = _check(runs, early, feed, batch=4)
    assert skipped_early < runs.ran  # (it may share the model input only)
    # the base again: an exact prefix of itself is stored (the whole run)
    assert _check(runs, base, feed, batch=4) > 0


def test_new_input_formats_or_new_parameters_start_over(mnist):
    res, feed = mnist
    base = _build(res, res.options)
    runs = PrefixRuns()
    _check(runs, base, feed, batch=4)
    # 16-bit model input: the quantized feeds differ, nothing of the base run applies
    wide_in = _build(res, dataclasses.replace(res.options, model_in_bits=16))
    assert any(base.formats[n] != wide_in.formats[n] for n in base.input_names)
    assert _check(runs, wide_in, feed, batch=4) == 0
    # every weight rounded otherwise: the first step's parameters are new objects
    nearest = _build(res, dataclasses.replace(res.options, weight_rounding="nearest"))
    first_mac = next(k for k, st in enumerate(res.steps) if st.op_type == "Conv")
    assert nearest.params[first_mac] is not base.params[first_mac]
    skipped = _check(runs, nearest, feed, batch=4)
    assert skipped <= first_mac  # at most the steps before the first Conv


def test_no_budget_or_one_run_kept_still_gives_the_same_integers(mnist):
    res, feed = mnist
    convs = [k for k, st in enumerate(res.steps) if st.op_type == "Conv"]
    progs = [_build(res, res.options), _build(res, _override(res, convs[-1], bits=16)),
             _build(res, _override(res, convs[0], bits=16)), _build(res, res.options)]
    none = PrefixRuns(budget=0)
    for p in progs:
        assert _check(none, p, feed, batch=4) == 0
    one = PrefixRuns(runs=1)
    for p in progs + progs[::-1]:
        _check(one, p, feed, batch=4)
    assert one.skipped > 0


def test_yolox_range_notches_and_promotions_match_full_runs(shared, tmp_path):
    """A real detector with equalized gated pairs, fused Conv+table entries and a batch of inputs:
    the programs the range choice and the precision search build, in the order they build them."""
    from benchmarks.tasks import get_task

    task = get_task("yolox_nano", str(shared))
    calib = list(task.calib_inputs(4))
    res = _analyse(str(task.model_path), {k: [f[k] for f in calib] for k in task.input_shapes}, tmp_path,
                   input_shapes=task.input_shapes)
    evals = list(task.eval_inputs(2))
    feed = {k: np.concatenate([f[k] for f in evals]) for k in evals[0]}
    base = _build(res, res.options)
    convs = [k for k, st in enumerate(res.steps) if st.op_type == "Conv"]
    variants = [_build(res, _override(res, convs[len(convs) * q // 4], bits=16)) for q in (3, 1, 2)]
    variants.append(_build(res, _override(res, convs[len(convs) // 2], abs_max=1.0)))
    runs = PrefixRuns()
    assert _check(runs, base, feed, batch=2) == 0
    skipped = [_check(runs, v, feed, batch=2) for v in variants]
    assert all(s > 0 for s in skipped), skipped
    assert skipped[0] > skipped[2] > skipped[1]  # the later the change, the more is skipped


def test_analysis_writes_the_same_bie_with_and_without_resuming(shared, tmp_path, monkeypatch):
    """End to end: the range choice and the precision search measure through PrefixRuns; with no
    snapshot budget every measurement runs from the start, and the BIE is byte-identical."""
    from benchmarks.tasks import get_task
    from npuflow.sim.fast import runner

    task = get_task("yolox_nano", str(shared))
    calib = list(task.calib_inputs(4))
    inputs = {k: [f[k] for f in calib] for k in task.input_shapes}
    blobs = []
    for budget in (runner.PREFIX_BUDGET, 0):
        monkeypatch.setattr(runner, "PREFIX_BUDGET", budget)
        skipped = []
        orig = runner.PrefixRuns.run

        def run(self, *a, _orig=orig, _skipped=skipped, **k):
            out = _orig(self, *a, **k)
            _skipped.append(self.skipped)
            return out

        monkeypatch.setattr(runner.PrefixRuns, "run", run)
        out = tmp_path / f"b{budget}"
        km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path), input_shapes=task.input_shapes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = km.analysis(inputs, output_dir=out, threads=1, report=False)
        with open(bie, "rb") as f:
            blobs.append(f.read())
        monkeypatch.setattr(runner.PrefixRuns, "run", orig)
        assert (max(skipped) > 0) == (budget > 0), skipped  # the measurements did resume, or did not
    assert blobs[0] == blobs[1]


def test_a_float_step_before_the_change_is_run_through(mnist):
    """A step that runs in float (onnxruntime, between its formats) is told apart by its step and
    formats, not by its per-plan function: a later change still resumes after it."""
    res, feed = mnist
    k = next(i for i, st in enumerate(res.steps) if st.op_type == "MaxPool")
    st = dataclasses.replace(res.steps[k], memo={})
    graph = res.optimized.graph
    node = next(n for n in graph.node if n.name == st.nodes[0])
    as_float_step(st, node, {i.name: i for i in graph.initializer}, res.program.opset, "test: in float")
    steps = [*res.steps[:k], st, *res.steps[k + 1:]]
    last = max(i for i, s in enumerate(steps) if s.op_type in ("Conv", "Gemm"))
    assert last > k

    def build(opts):
        p = res.program
        return build_program(res.optimized, steps, res.stats, opts, p.input_names, p.output_names,
                             channel_means=res.channel_means.get, weight_moments=res.weight_moments)

    base = build(res.options)
    assert base.steps[k].float_step
    variant = build(_override(res, last, bits=16))
    runs = PrefixRuns()
    _check(runs, base, feed, batch=4)
    assert _check(runs, variant, feed, batch=4) > k + 1


def test_threads_sharing_one_store_get_their_own_programs_integers(mnist, monkeypatch):
    """An executor's threads may share one measurement (analysis.executors caches it per process):
    the store's bookkeeping is locked, each run's tensors are its own. numba's parallel kernels are
    not launched from several threads here (NPUFLOW_SIM=numpy): that is numba's threading layer's
    business, not the store's."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    res, feed = mnist
    convs = [k for k, st in enumerate(res.steps) if st.op_type == "Conv"]
    progs = [_build(res, res.options), _build(res, _override(res, convs[-1], bits=16)),
             _build(res, _override(res, convs[0], bits=16)), _build(res, _override(res, convs[-1], abs_max=2.0))]
    want = [p.run(p.quantize_inputs(feed), batch=4) for p in progs]
    runs = PrefixRuns(runs=2)

    def one(i):
        p = progs[i % len(progs)]
        return i % len(progs), runs.run(p, lambda: p.quantize_inputs(feed), batch=4)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(one, range(24)))
    for i, out in got:
        for name in want[i]:
            np.testing.assert_array_equal(out[name], want[i][name], err_msg=name)
    assert runs.ran + runs.skipped > 0 and len(runs._store) <= 2
