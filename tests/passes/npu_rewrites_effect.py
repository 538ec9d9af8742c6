"""Measured effect of the NPU-friendly rewrites (docs/optimizer.md, "NPU-friendly rewrites").

For each model: the optimizer without the rewrites ("before": the pipeline of rounds without
``fuse_hardswish``, ``hard_sigmoid``, ``fuse_silu``, ``fuse_gelu``, ``div_to_mul``,
``split_global_pool``, or without the passes given by ``--passes``) and with them ("after", ``platform=get_platform(P)``), then

* CPU nodes on P (``npuflow.evaluate.placement``: the placement of ``evaluate()``);
* the float outputs of both on the task's first evaluation input (onnxruntime, graph
  optimizations off): max |after - before| / max |before|;
* with ``--snr``: int8 analysis at the defaults of ``ModelConfig(..., P).analysis()`` on the first
  ``--calib`` calibration inputs of ``benchmarks/tasks.py``, then the task's ``compare()`` (output
  SNR vs float and the task metric) on the first ``--eval`` evaluation inputs.

Run from the repository root (slow with ``--snr``: one analysis per model and variant)::

    .venv/bin/python tests/passes/npu_rewrites_effect.py --platform 720 --snr --calib 6 --eval 2 \\
        en_PP-OCRv3_det_infer ch_ppocr_mobile_v2.0_cls_infer pan_mnv3s_skin_clothes_hair
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import npuflow
import npuflow.passes as P
from benchmarks.tasks import get_task
from npuflow.evaluate.placement import place_model
from npuflow.ir import load_model
from npuflow.platforms import get_platform

REWRITES = ("fuse_hardswish", "hard_sigmoid", "fuse_silu", "fuse_gelu", "div_to_mul", "split_global_pool")
_ORIG_OPTIMIZE = P.optimize
#: the passes "before" leaves out (``--passes``; default: the NPU-friendly rewrites)
COMPARED: list[tuple[str, ...]] = [REWRITES]


def before_pipeline() -> tuple:
    setup, rounds, final = P.PIPELINE
    return setup, tuple(p for p in rounds if p not in COMPARED[0]), final


@contextlib.contextmanager
def variant(name: str, platform):
    """Make every ``npuflow.passes.optimize`` call (ModelConfig's included) use this variant."""
    saved = P.PIPELINE
    if name == "before":
        P.PIPELINE = before_pipeline()

    def opt(model, **kw):
        # "before" runs without the platform only when a compared pass reads it (the rewrites)
        if name == "after" or not set(COMPARED[0]) & set(P.PLATFORM_PASSES):
            kw.setdefault("platform", platform)
        return _ORIG_OPTIMIZE(model, **kw)

    P.optimize = opt
    try:
        yield
    finally:
        P.PIPELINE = saved
        P.optimize = _ORIG_OPTIMIZE


def ort_run(model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def cpu_nodes(model, pid: int) -> tuple[int, dict[str, int]]:
    c = collections.Counter(p.op_type for p in place_model(model, pid) if p.placement == "CPU")
    return sum(c.values()), dict(sorted(c.items()))


def snr_run(task, model, pid: int, calib: int | None, evaln: int | None, threads: int) -> dict:
    feeds = list(task.calib_inputs(calib))
    km = npuflow.ModelConfig(40000, "0001", str(pid), onnx_model=model, input_shapes=task.input_shapes)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        bie = km.analysis({n: [f[n] for f in feeds] for n in task.input_shapes}, output_dir=out, threads=threads,
                          progress=False)
        secs = time.perf_counter() - t0
        fixed = npuflow.load(bie)
        ev = list(task.eval_inputs(evaln))
        ref = [ort_run(km.onnx_model, f) for f in ev]
        q = [[np.asarray(o).reshape(np.shape(r)) for o, r in zip(fixed.run(f), rr)] for f, rr in zip(ev, ref)]
    res = task.compare(ref, q, task.eval_meta(evaln))
    res["analysis_s"] = round(secs, 1)
    res["calib_n"], res["eval_n"] = len(feeds), len(ev)
    return res


def measure(name: str, pid: int, *, snr: bool, calib: int | None, evaln: int | None, threads: int,
            shape: list[int] | None = None) -> dict:
    task = get_task(name)
    raw = load_model(str(task.model_path))
    shapes = dict(task.input_shapes)
    if shape is not None:
        shapes = {next(iter(shapes)): shape}
    plat = get_platform(pid)
    out: dict = {"model": name, "platform": pid, "input_shapes": shapes}
    models = {}
    for v in ("before", "after"):
        with variant(v, plat):
            models[v] = P.optimize(raw, input_shapes=shapes)
        out[f"nodes_{v}"] = len(models[v].graph.node)
        out[f"cpu_{v}"] = cpu_nodes(models[v], pid)
    if shape is None:
        feed = next(task.eval_inputs(1))
    else:
        feed = {k: np.random.default_rng(0).standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    a, b = ort_run(models["before"], feed), ort_run(models["after"], feed)
    out["float_max_rel_diff"] = max(float(np.max(np.abs(x - y)) / np.max(np.abs(x))) for x, y in zip(a, b))
    if snr and shape is None:
        for v in ("before", "after"):
            with variant(v, plat):
                out[f"int8_{v}"] = snr_run(task, raw, pid, calib, evaln, threads)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--platform", type=int, default=720)
    ap.add_argument("--snr", action="store_true")
    ap.add_argument("--calib", type=int, default=None)
    ap.add_argument("--eval", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", default=",".join(REWRITES),
                    help="comma list of the passes compared ('before' runs without them), e.g. fold_conv_affine")
    ap.add_argument("--shape", default=None, help="override the first input's shape, e.g. 1,3,960,960 (no --snr)")
    a = ap.parse_args(argv)
    shape = [int(v) for v in a.shape.split(",")] if a.shape else None
    COMPARED[0] = tuple(p for p in a.passes.split(",") if p)
    unknown = [p for p in COMPARED[0] if p not in P.PASSES]
    if unknown:
        ap.error(f"unknown passes {unknown}; known: {', '.join(P.PASSES)}")
    for name in a.models:
        r = measure(name, a.platform, snr=a.snr, calib=a.calib, evaln=a.eval, threads=a.threads, shape=shape)
        print(json.dumps(r, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
