"""Fixed-point simulation time of every shared model against onnxruntime float, batch 1.

    python benchmarks/sim_models.py                       # all eight models, KL720 int8
    python benchmarks/sim_models.py yolox_nano --inputs 8

For each model: ``analysis()`` on its first ``--calib`` calibration inputs (not timed, in its own
subprocess), then, on its
first ``--inputs`` evaluation inputs, one input per call: ``npuflow.load(bie).run(...)`` and a
default onnxruntime session on the original float model, each warmed up once and timed
``--repeats`` times, npuflow first (a default session's idle workers spin for a while after each
run and would slow whatever runs next); the best pass of each, milliseconds per input, and their
ratio.
``speed.py`` is the fuller benchmark (fresh processes, batches, int16, analysis) on two models;
this one shows where the other models stand.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pass_ms(fn: Callable[[], Any], n: int) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0 / n


def measure(name: str, *, calib: int, inputs: int, repeats: int, out: Path, shared: str | None) -> dict[str, Any]:
    import npuflow
    import onnxruntime as ort

    from benchmarks.accuracy import QuantConfig, quantize_isolated
    from benchmarks.tasks import get_task

    task = get_task(name, shared)
    # the analysis in its own process: its thread pools and sessions would otherwise share the
    # cores with the timed runs (measured: efficientnet_lite0 21.7 instead of 12 ms per input)
    q = quantize_isolated(name, QuantConfig("npuflow int8", "npuflow", {"report": False}), calib, out / name,
                          shared=shared, threads=2)
    if not q.get("ok"):
        raise SystemExit(f"{name}: analysis failed: {q.get('error')}")
    bie = q["artifact"]
    xs = list(task.eval_inputs(inputs))
    model = npuflow.load(bie)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(task.model_path), so, providers=["CPUExecutionProvider"])
    runs = {"fixed": lambda: [model.run(x) for x in xs], "float": lambda: [sess.run(None, x) for x in xs]}
    best = {}
    for k, fn in runs.items():  # one after the other: onnxruntime's idle workers spin after a run
        fn()  # warm-up
        best[k] = min(_pass_ms(fn, len(xs)) for _ in range(repeats))
    return {"model": name, "inputs": len(xs), **best}


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=f"default: all ({', '.join(TASKS)})")
    ap.add_argument("--calib", type=int, default=4, help="calibration inputs of the (untimed) analysis")
    ap.add_argument("--inputs", type=int, default=4, help="evaluation inputs timed, one per call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared", default=None)
    args = ap.parse_args(argv)
    unknown = [m for m in args.models if m not in TASKS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(TASKS)}")
    print(f"{'model':34s}{'npuflow int8 ms':>17s}{'ORT float ms':>14s}{'ratio':>8s}")
    with tempfile.TemporaryDirectory(prefix="npuflow_sim_models_") as tmp:
        for name in args.models or list(TASKS):
            r = measure(name, calib=args.calib, inputs=args.inputs, repeats=args.repeats, out=Path(tmp),
                        shared=args.shared)
            print(f"{name:34s}{r['fixed']:17.2f}{r['float']:14.2f}{r['fixed'] / r['float']:7.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
