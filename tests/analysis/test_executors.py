"""The mixbw search's candidates on an executor (docs/fixed-point.md section 10.3, "Executors";
issue 16 part 4).

* The speculative batches (``width`` candidates measured at once, read in order up to the first
  accepted one) decide exactly as the one-at-a-time search, on a search whose gains depend on what
  was accepted before (every width from 1 to 5).
* MNIST with mixbw: the BIE is byte for byte the same in this process, on a process pool and on a
  Dask ``LocalCluster``; the Ray adapter likewise (slow case; needs ``pip install .[ray]``).
* An object without ``submit`` is refused, naming what is expected.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import onnx
import pytest

import ktc
from npuflow.analysis.precision import Candidate, mixbw_search
from npuflow.analysis.ranges import QuantOptions
from npuflow.errors import InvalidConfigError
from npuflow.reference.float_runner import input_specs
from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


# ------------------------------------------------------------------------------------------------ the search
def _fake_search(width: int):
    """A search over 7 candidates whose SNR gain depends on what is already accepted (candidate k
    gains 0.5 dB, or 0.05 dB once candidate k - 1 was accepted; candidate 3 is over the time bound)."""
    cands = [Candidate(f"c{k}", "activations", ((f"s{k}", (("bits", 16),)),), -float(k)) for k in range(7)]

    def moved(o: QuantOptions) -> set[int]:
        return {int(n[1:]) for n in o.overrides}

    def snr_of(o: QuantOptions) -> dict[str, float]:
        ks = sorted(moved(o))
        total = 10.0
        for k in ks:
            total += 0.05 if (k - 1) in ks else 0.5
        return {"y": total}

    def fps_of(o: QuantOptions) -> float:
        return 50.0 if 3 in moved(o) else 100.0

    built = []

    def build(o: QuantOptions):
        built.append(o)
        return o  # the "program" is its options here

    opts = QuantOptions(mix_datapath="mixbw", flops_ratio=0.2)
    evaluate = None
    if width > 1:
        def evaluate(trials):
            return [(fps_of(t), None if fps_of(t) < 100.0 / 1.2 else snr_of(t)) for t in trials]
    _program, final, record = mixbw_search(opts, opts, cands, build, snr_of, lambda p, o: fps_of(o), 100.0,
                                          evaluate=evaluate, width=width)
    return sorted(final.overrides), record


@pytest.mark.parametrize("width", [2, 3, 4, 5])
def test_speculative_batches_decide_as_one_at_a_time(width):
    serial, rec1 = _fake_search(1)
    got, rec = _fake_search(width)
    assert got == serial == ["s0", "s2", "s4", "s6"]
    assert rec["measured"] == rec1["measured"] and rec["front"] == rec1["front"]
    assert [r["accepted"] for r in rec["measured"]] == [True, False, True, False, True, False, True]
    assert "over the time bound" in rec["measured"][3]["why"]


class _HalvesMeasure:
    """A measure whose two halves of the inputs are known: candidate k moves the even half by
    even[k] dB and the odd half by odd[k] dB (the whole: their mean)."""

    def __init__(self, even, odd):
        self.even, self.odd = even, odd

    def _halves(self, o):
        ks = [int(n[1:]) for n in o.overrides]
        return ({"y": 10.0 + sum(self.even[k] for k in ks)}, {"y": 10.0 + sum(self.odd[k] for k in ks)})

    def __call__(self, o):
        a, b = self._halves(o)
        return {"y": (a["y"] + b["y"]) / 2}

    def halves(self, o):
        return self._halves(o)


@pytest.mark.parametrize("width", [1, 3])
def test_mixbw_refuses_a_gain_of_one_half_of_the_inputs(width):
    """c0 gains on both halves (accepted); c1 gains 0.5 dB overall from one half alone while the
    other loses 0.2 dB (refused: a few inputs' gain); c2 gains a little on both (accepted)."""
    cands = [Candidate(f"c{k}", "activations", ((f"s{k}", (("bits", 16),)),), -float(k)) for k in range(3)]
    measure = _HalvesMeasure(even=[0.4, 1.2, 0.2], odd=[0.6, -0.2, 0.1])
    opts = QuantOptions(mix_datapath="mixbw", flops_ratio=0.2)
    evaluate = None
    if width > 1:
        def evaluate(trials):
            return [(100.0, measure(t), measure.halves(t)) for t in trials]
    _p, final, record = mixbw_search(opts, opts, cands, lambda o: o, measure, lambda p, o: 100.0, 100.0,
                                     evaluate=evaluate, width=width)
    assert sorted(final.overrides) == ["s0", "s2"]
    rows = record["measured"]
    assert [r["accepted"] for r in rows] == [True, False, True]
    assert rows[1]["gain_db"] == 0.5 and rows[1]["halves_gain_db"] == [1.2, -0.2]
    assert "lowers one half of the inputs by 0.20 dB" in rows[1]["why"]


# ------------------------------------------------------------------------------------------------ real executors
def _mnist_mixbw(tmp_path, digits, executor=None):
    """mixbw on the shipped MNIST digits (16 of them; the search accepts Gemm_7's 16-bit weights, on
    both halves of its inputs, and finds the two convolutions over the time bound)."""
    spec = input_specs(onnx.load(MNIST))[0]
    calib = [digits["calib_x"][i].reshape(spec.shape).astype(np.float32) for i in range(16)]
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bie = km.analysis({spec.name: calib}, output_dir=tmp_path, threads=2, progress=False, report=False,
                          datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw", executor=executor)
    with open(bie, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), km.analysis_result.mixed


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory, mnist_digits):
    return _mnist_mixbw(tmp_path_factory.mktemp("serial"), mnist_digits)


def test_process_pool_gives_the_same_bie(serial_run, tmp_path, mnist_digits):
    digest, mixed = serial_run
    assert len(mixed["measured"]) >= 2 and any(r["accepted"] for r in mixed["measured"])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        got, mixed_pool = _mnist_mixbw(tmp_path, mnist_digits, pool)
    assert got == digest and mixed_pool["measured"] == mixed["measured"]


def test_dask_local_cluster_gives_the_same_bie(serial_run, tmp_path, mnist_digits):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is in the test extra: "
                                                                 "pip install -e '.[test]'")
    digest, mixed = serial_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got, mixed_dask = _mnist_mixbw(tmp_path, mnist_digits, client.get_executor())
    assert got == digest and mixed_dask["measured"] == mixed["measured"]


@pytest.mark.slow
def test_ray_tasks_give_the_same_bie(serial_run, tmp_path, mnist_digits):
    ray = pytest.importorskip("ray", reason="the Ray executor test needs pip install -e '.[ray]'")
    from npuflow.analysis.executors import RayTasks

    digest, mixed = serial_run
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        got, mixed_ray = _mnist_mixbw(tmp_path, mnist_digits, RayTasks())
    finally:
        ray.shutdown()
    assert got == digest and mixed_ray["measured"] == mixed["measured"]


def test_an_executor_must_have_submit(tmp_path, mnist_digits):
    with pytest.raises(InvalidConfigError, match="concurrent.futures.Executor"):
        _mnist_mixbw(tmp_path, mnist_digits, executor=object())

