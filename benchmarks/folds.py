#!/usr/bin/env python
"""A task's metric pooled over folds of all its images (benchmarks/README.md, "Folds").

    python benchmarks/folds.py retinaface_mnet025_5pt                    # 3 folds of 8 of its 24 images
    python benchmarks/folds.py pan_mnv3s_skin_clothes_hair --fold-size 1 --option auto_precision=false
    python benchmarks/folds.py ddddocr_common_det --fold-size 2 --ort    # and ONNX Runtime MinMax / Percentile

The task's calibration and evaluation items are put together (calibration first, in order) and cut
into consecutive folds of ``--fold-size``; each fold is evaluated by a model calibrated on all the
other items (npuflow: ``analysis()`` at its defaults on 720, plus the ``--option``s; with ``--ort``
also ONNX Runtime ``quantize_static`` MinMax and Percentile, as the scoreboard runs them). Every
fold's outputs are then compared with float's by the task's own ``compare()`` at once (pooled), and
each fold alone. A single split of a few images can flatter or wrong one tool (ddddocr's 3 images);
the folds use every image once for evaluation.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _scalars(res: dict[str, Any]) -> dict[str, Any]:
    """Scalars of a compare() result, and one level of scalar dicts ("iou_q_vs_float.skin")."""
    out: dict[str, Any] = {}
    for k, v in res.items():
        if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
            out.update({f"{k}.{c}": x for c, x in v.items()})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
    return out


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}" for k, v in d.items())


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a task name of benchmarks/tasks.py")
    ap.add_argument("--fold-size", type=int, default=8, help="images evaluated per fold (default 8; 1: leave-one-out)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="an analysis() option for npuflow (repeatable), e.g. auto_precision=false")
    ap.add_argument("--ort", action="store_true", help="also ONNX Runtime quantize_static MinMax and Percentile")
    ap.add_argument("--platform", default="720")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared", default=None)
    ap.add_argument("--json", default=None, help="also write the pooled and per-fold figures here")
    args = ap.parse_args(argv)
    if args.fold_size < 1:
        ap.error("--fold-size must be at least 1")
    options = {}
    for o in args.option:
        if "=" not in o:
            ap.error(f"--option takes KEY=VALUE, got {o!r}")
        k, v = o.split("=", 1)
        options[k] = _value(v)

    import numpy as np
    import onnxruntime as ort

    import npuflow
    from benchmarks.ort_quant import ort_quantize, ort_start, run_session
    from benchmarks.tasks import get_task

    task = get_task(args.model, args.shared)
    items = list(dict.fromkeys(list(task.calib_items()) + list(task.eval_items())))
    if len(items) <= args.fold_size:
        ap.error(f"{task.name} has {len(items)} items: a fold of {args.fold_size} leaves none to calibrate on")
    folds = [items[i:i + args.fold_size] for i in range(0, len(items), args.fold_size)]
    print(f"# {task.name}: {len(items)} items, {len(folds)} folds of {args.fold_size}; npuflow options {options or 'defaults'}"
          f"{'; with ONNX Runtime' if args.ort else ''}", flush=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    float_session = ort.InferenceSession(str(task.model_path), so, providers=["CPUExecutionProvider"])
    start = ort_start(task) if args.ort else None
    methods = ["npuflow"] + (["ORT MinMax", "ORT Percentile"] if args.ort else [])
    pooled: dict[str, list[Any]] = {m: [] for m in methods}
    refs_all: list[Any] = []
    metas: list[Any] = []
    per_fold: list[dict[str, Any]] = []
    for k, ev_items in enumerate(folds):
        cal_items = [i for i in items if i not in ev_items]
        fold_task = type(f"{type(task).__name__}Fold", (type(task),),
                         {"calib_items": lambda self, c=cal_items: list(c),
                          "eval_items": lambda self, e=ev_items: list(e)})(task.shared)
        ev = list(fold_task.eval_inputs())
        meta = fold_task.eval_meta()
        refs = [list(float_session.run(None, f)) for f in ev]
        outs: dict[str, Any] = {}
        t0 = time.perf_counter()
        km = npuflow.ModelConfig(32769, "0001", args.platform, onnx_path=str(task.model_path),
                                 input_shapes=task.input_shapes)
        with tempfile.TemporaryDirectory(prefix="folds_") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = {n: [f[n] for f in fold_task.calib_inputs()] for n in task.input_shapes}
            bie = km.analysis(cal, output_dir=tmp, threads=args.threads, progress=False, **{"report": False, **options})
            fixed = npuflow.load(bie)
            outs["npuflow"] = [[np.asarray(o).reshape(np.shape(r)) for o, r in zip(fixed.run(f), rr)]
                               for f, rr in zip(ev, refs)]
        seconds = time.perf_counter() - t0
        if args.ort:
            for m in ("MinMax", "Percentile"):
                qdq, _ = ort_quantize(fold_task, m, model=start)
                outs[f"ORT {m}"] = run_session(qdq, ev, threads=args.threads, qdq=True)
        row = {"fold": k, "eval": [str(i) for i in ev_items], "npuflow_s": round(seconds, 1)}
        for m in methods:
            pooled[m] += outs[m]
            row[m] = _scalars(task.compare(refs, outs[m], meta))
        refs_all += refs
        metas += meta
        per_fold.append(row)
        print(f"fold {k} ({', '.join(row['eval'])}; npuflow analysis {seconds:.1f} s)", flush=True)
        for m in methods:
            print(f"    {m:15s} {_fmt(row[m])}", flush=True)
    result = {m: _scalars(task.compare(refs_all, pooled[m], metas)) for m in methods}
    print("pooled over the folds:")
    for m in methods:
        print(f"    {m:15s} {_fmt(result[m])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": task.name, "fold_size": args.fold_size, "options": options,
                                               "pooled": result, "folds": per_fold}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
