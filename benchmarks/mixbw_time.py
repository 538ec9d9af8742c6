#!/usr/bin/env python
"""Time and result of the mixbw search (docs/fixed-point.md §10.3; issue 16), one table per model.

    python benchmarks/mixbw_time.py                                   # efficientnet_lite0, yolox_nano on 720
    python benchmarks/mixbw_time.py --models efficientnet_lite0 --platform 730 --no-pool
    python benchmarks/mixbw_time.py --models yolox_nano --calib 60 --single   # each candidate alone

For each model, with its benchmarks/tasks.py calibration split (first ``--calib`` inputs):

1. ``analysis()`` int8 at its defaults (``report=False``): the reference time;
2. ``analysis(datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw")`` (default
   ``flops_ratio``) in this process: its time over the int8 time (issue 16's bound: <= 5x), the
   front (estimated FPS, lowest model-output SNR on the search's inputs), the chosen point, the
   int8 and mix light references, and how many candidates were measured;
3. the same with ``executor=ProcessPoolExecutor(threads, spawn)`` (skipped with ``--no-pool``): its
   time, and whether the BIE is byte for byte the serial one (it must be).

Then the fixed-point models are run on the task's first ``--eval`` evaluation inputs and compared
with float by the task's own metric (``compare()``), int8 and mixbw side by side. With
``--report`` the mixbw run writes its HTML report (front chart) under ``--out``.

Timings are wall-clock seconds in one process on this machine (numba kernels compiled by a
warm-up analysis on one input first); the pool's workers start cold (spawn), which is part of
what it costs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _analyse(task: Any, platform: int, feeds: list[dict], out: Path, threads: int, **kw: Any) -> tuple[Any, Path, float]:
    import npuflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = npuflow.ModelConfig(32769, "0001", str(platform), onnx_path=str(task.model_path),
                                 input_shapes=task.input_shapes)
        t0 = time.perf_counter()
        bie = km.analysis({n: [f[n] for f in feeds] for n in task.input_shapes}, output_dir=str(out),
                          threads=threads, progress=False, **{"report": False, **kw})
        return km, Path(bie), time.perf_counter() - t0


def _metric(task: Any, bie: Path, ev: list[dict], refs: list[list], n: int) -> dict[str, Any]:
    import numpy as np

    import npuflow

    fixed = npuflow.load(str(bie))
    q = [[np.asarray(o).reshape(np.shape(r)) for o, r in zip(fixed.run(f), rr)] for f, rr in zip(ev, refs)]
    res = task.compare(refs, q, task.eval_meta(n))
    out: dict[str, Any] = {}
    for k, v in res.items():  # scalars, and one level of scalar dicts (PAN's per-class IoU: "iou_q_vs_float.skin")
        if isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            out.update({f"{k}.{c}": x for c, x in v.items()})
        elif not isinstance(v, (list, dict)):
            out[k] = v
    return out


def run_model(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import onnxruntime as ort

    from benchmarks.tasks import get_task

    task = get_task(name, args.shared)
    feeds = list(task.calib_inputs(args.calib))
    ev = list(task.eval_inputs(args.eval))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(task.model_path), so, providers=["CPUExecutionProvider"])
    refs = [list(sess.run(None, f)) for f in ev]
    row: dict[str, Any] = {"model": name, "platform": args.platform, "calib": len(feeds), "eval": len(ev)}
    _analyse(task, args.platform, feeds[:1], out / f"{name}_warm", args.threads)  # numba kernels, caches
    _, bie8, t8 = _analyse(task, args.platform, feeds, out / f"{name}_int8", args.threads)
    mix = {"datapath_bitwidth_mode": "mixbw", "weight_bitwidth_mode": "mixbw"}
    km, bie, tm = _analyse(task, args.platform, feeds, out / f"{name}_mixbw", args.threads,
                           **{**mix, "report": bool(args.report)})
    mx = km.analysis_result.mixed
    row.update(int8_s=round(t8, 1), mixbw_s=round(tm, 1), mixbw_over_int8=round(tm / t8, 2),
               front=mx["front"], chosen=mx["chosen"], references=mx["references"], fps_bound=mx["fps_bound"],
               measured=len(mx["measured"]), accepted=[r["label"] for r in mx["measured"] if r["accepted"]],
               int4=mx.get("int4"), int4_rows=[{k: r[k] for k in ("label", "fps", "snr_db", "accepted", "why")}
                                                for r in mx["measured"] if r.get("phase") != "promote"])
    if not args.no_pool:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.threads, mp_context=ctx) as pool:
            _, bie_p, tp = _analyse(task, args.platform, feeds, out / f"{name}_mixbw_pool", args.threads,
                                    executor=pool, **mix)
        same = hashlib.sha256(bie_p.read_bytes()).digest() == hashlib.sha256(bie.read_bytes()).digest()
        row.update(pool_s=round(tp, 1), pool_speedup=round(tm / tp, 2), pool_bie_identical=same)
    row["int8_metric"] = _metric(task, bie8, ev, refs, args.eval)
    row["mixbw_metric"] = _metric(task, bie, ev, refs, args.eval)
    return row


def single_candidates(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every mixbw candidate measured alone on the search's start (``--single``): the lowest
    model-output SNR gain on the search's inputs and the extra estimated time, best gain first.
    The start is the mixbw one without automatic promotions (datapath and weights int8, model
    input, output and CPU nodes 16-bit, ``auto_precision=False``)."""
    from dataclasses import replace

    import npuflow
    from benchmarks.tasks import get_task
    from npuflow.analysis.precision import (
        MIXBW_SAMPLES,
        FpsModel,
        OutputSnr,
        mixbw_candidates,
    )
    from npuflow.analysis.program import build_program
    from npuflow.analysis.ranges import QuantOptions
    from npuflow.analysis.run import analyse
    from npuflow.platforms import get_platform

    task = get_task(name, args.shared)
    feeds = list(task.calib_inputs(args.calib))
    km = npuflow.ModelConfig(32769, "0001", str(args.platform), onnx_path=str(task.model_path),
                             input_shapes=task.input_shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(km.optimized_model(), get_platform(args.platform), {n: [f[n] for f in feeds] for n in task.input_shapes},
                      QuantOptions(model_in_bits=16, model_out_bits=16, cpu_bits=16, auto_precision=False),
                      threads=args.threads, progress=False, keep_inputs=MIXBW_SAMPLES)
    o = res.options
    ins, outs = res.program.input_names, res.program.output_names
    cands = mixbw_candidates(res.steps, res.program, replace(o, mix_datapath="mixbw", mix_weight="mixbw"), lambda t: None)
    measure = OutputSnr(res.optimized, res.kept_inputs[:MIXBW_SAMPLES], outs, threads=args.threads)
    fps = FpsModel(res.optimized, get_platform(args.platform), o)
    base, f0 = min(measure(res.program).values()), fps.fps(res.program, o)
    rows = []
    for c in cands:
        trial = replace(o, overrides=c.apply(o.overrides))
        p = build_program(res.optimized, res.steps, res.stats, trial, ins, outs, channel_means=res.channel_means.get,
                          weight_moments=res.weight_moments, bias_deltas=res.bias_deltas or None)
        rows.append({"label": c.label, "kind": c.kind, "gain_db": round(min(measure(p).values()) - base, 3),
                     "extra_time_pct": round(100 * (f0 / fps.fps(p, trial) - 1), 2)})
    rows.sort(key=lambda r: -r["gain_db"])
    print(f"\n## {name}: {len(rows)} of {len(cands)} mixbw candidates alone on the start "
          f"({base:.2f} dB, est. FPS {f0:.1f}), best first\n\n| candidate | kind | gain dB | extra est. time % |\n|---|---|---|---|")
    for r in rows[:20]:
        print(f"| {r['label']} | {r['kind']} | {r['gain_db']} | {r['extra_time_pct']} |")
    return rows


def _print(row: dict[str, Any]) -> None:
    print(f"\n## {row['model']}, platform {row['platform']} ({row['calib']} calibration / {row['eval']} evaluation inputs)")
    print(f"analysis int8 {row['int8_s']} s; mixbw {row['mixbw_s']} s = {row['mixbw_over_int8']}x int8 (bound 5x)"
          + (f"; mixbw on a process pool {row['pool_s']} s (x{row['pool_speedup']} "
             f"vs serial), BIE identical: {row['pool_bie_identical']}" if "pool_s" in row else ""))
    print(f"candidates measured {row['measured']}, accepted {row['accepted']}; FPS bound {row['fps_bound']}"
          + (f"; int4 phase: {row['int4']}" if row.get("int4") is not None else ""))
    print("\n| point | moved to 16 bits (or int4) | est. FPS | lowest output SNR (dB) |\n|---|---|---|---|")
    for p in row["front"]:
        mark = " (chosen)" if p == row["chosen"] else ""
        print(f"| {p['label']}{mark} | {', '.join(p['moved']) or '-'} | {p['fps']} | {p['snr_db']} |")
    for r in row["references"]:
        print(f"| reference: {r['label']} | | {r['fps']} | {r['snr_db']} |")
    if row.get("int4_rows"):
        print("\n| int4 phase: candidate | est. FPS | lowest output SNR (dB) | decision |\n|---|---|---|---|")
        for r in row["int4_rows"]:
            print(f"| {r['label']} | {r['fps']} | {r['snr_db']} | {r['why']} |")
    print(f"\ntask metric vs float, int8: {json.dumps(row['int8_metric'])}")
    print(f"task metric vs float, mixbw: {json.dumps(row['mixbw_metric'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0,yolox_nano")
    ap.add_argument("--platform", type=int, default=720)
    ap.add_argument("--calib", type=int, default=None, help="first N calibration inputs (default: the whole split)")
    ap.add_argument("--eval", type=int, default=None, help="first N evaluation inputs (default: the whole split)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-pool", action="store_true", help="skip the process-pool run")
    ap.add_argument("--report", action="store_true", help="write the mixbw run's HTML report (front chart)")
    ap.add_argument("--shared", default=None)
    ap.add_argument("--out", default=None, help="keep the BIEs and reports here (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--single", action="store_true",
                    help="instead: measure every mixbw candidate alone on the search's start (minutes)")
    args = ap.parse_args(argv)
    if args.single:
        rows = {name: single_candidates(name, args) for name in args.models.split(",") if name}
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in [m for m in args.models.split(",") if m]:
            row = run_model(name, args, out)
            rows.append(row)
            _print(row)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
