"""Simulation speed: npuflow's fixed-point simulator against onnxruntime, side by side.

    python benchmarks/speed.py                      # efficientnet_lite0 and yolox_nano, KL720
    python benchmarks/speed.py yolox_nano --repeats 5 --calib 8 --out /tmp/speed

For each model (platform 720; int8, then int16 = ``datapath_bitwidth_mode`` and
``weight_bitwidth_mode`` "int16"), time per input, on the same real evaluation inputs:

* ``npuflow fixed b1``: ``ktc.kneron_inference([x], bie_file=..., platform=720)``, one input per
  call with the BIE path given each time (the model cache of kneron_inference keeps it loaded);
* ``npuflow fixed b32``: ``npuflow.load(bie).run_batch(...)`` on batches of 32;
* ``ORT float b1 / b32``: a ready onnxruntime session on the original float model (default session
  options); batch 32 is one call when the graph has a dynamic batch dim, else 32 calls;
* ``ORT int8 QDQ b1``: onnxruntime running its own static int8 quantization of the same optimized
  graph (``benchmarks/ort_quant.py``: QDQ, per-channel, symmetric, MinMax), batch 1.

Each figure is the median over ``--repeats`` passes over the inputs (after one warm-up pass), in
milliseconds per input; ratios divide by ``ORT float`` at the same batch. The float, QDQ and
fixed measurements run one after the other (never interleaved) so that no idle onnxruntime pool
of one competes with the next. The load average of the machine is printed: on a shared machine
the figures move with it.

Then (``--analysis-model``, default efficientnet_lite0, skipped with ``--no-analysis``), on the
model's whole calibration split (200 images for efficientnet), each step in its own subprocess
(``benchmarks/accuracy.py``'s ``quantize_isolated``; numba's on-disk cache is warm from the runs
above): the whole ``analysis()`` call without and with the report, against onnxruntime
``quantize_static`` (the call alone; MinMax and Percentile), with ratios to MinMax; and the peak
resident set of ``analysis()`` fed by a generator that yields the calibration split once and five
times (``benchmarks/analysis_memory.py``), with their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("efficientnet_lite0", "yolox_nano")
BATCH = 32


def _median_ms(fn: Callable[[], Any], n_inputs: int, repeats: int) -> float:
    fn()  # warm-up (sessions, compiled kernels, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000.0 / n_inputs


def _float_session(model: Any) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if isinstance(model, (str, Path)):
        model = str(model)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _dynamic_batch(sess: Any) -> bool:
    return all(isinstance(i.shape[0], str) or i.shape[0] is None for i in sess.get_inputs() if i.shape)


def _ort_runner(sess: Any, name: str, xs: np.ndarray, batch: int) -> Callable[[], Any]:
    """Run ``xs`` (N on axis 0, each sample [1, ...]) through ``sess`` in batches of ``batch``."""
    if batch > 1 and _dynamic_batch(sess):
        chunks = [xs[i:i + batch] for i in range(0, len(xs), batch)]
        return lambda: [sess.run(None, {name: c}) for c in chunks]
    return lambda: [sess.run(None, {name: xs[i:i + 1]}) for i in range(len(xs))]


def _analyse(task: Any, bits: str, calib: int, out: Path) -> tuple[str, float]:
    import ktc

    feeds = list(task.calib_inputs(calib))
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path), input_shapes=task.input_shapes)
    kw = {} if bits == "int8" else {"datapath_bitwidth_mode": "int16", "weight_bitwidth_mode": "int16"}
    t = time.perf_counter()
    bie = km.analysis({k: [f[k] for f in feeds] for k in feeds[0]}, output_dir=str(out / f"{task.name}_{bits}"),
                      progress=False, **kw)
    return bie, time.perf_counter() - t


def bench_model(name: str, *, calib: int, repeats: int, out: Path, shared: str | None) -> dict[str, Any]:
    import ktc
    import npuflow
    from benchmarks.ort_quant import ort_quantize, optimized_model
    from benchmarks.tasks import get_task

    task = get_task(name, shared)
    inputs = list(task.eval_inputs(BATCH))
    k = task.input_name
    xs = np.concatenate([f[k] for f in inputs])  # (32, ...): each sample is [1, ...]
    n = len(xs)
    row: dict[str, Any] = {"model": name, "inputs": n}

    # onnxruntime float, then its own int8 QDQ model
    sess = _float_session(task.model_path)
    row["ort_float_b1"] = _median_ms(_ort_runner(sess, k, xs, 1), n, repeats)
    row["ort_float_b32"] = _median_ms(_ort_runner(sess, k, xs, BATCH), n, repeats)
    row["ort_float_b32_how"] = "one call" if _dynamic_batch(sess) else "32 calls (graph fixes batch 1)"
    del sess
    qdq, _ = ort_quantize(task, "MinMax", calib, model=optimized_model(task))
    qsess = _float_session(qdq)
    row["ort_qdq_b1"] = _median_ms(_ort_runner(qsess, k, xs, 1), n, repeats)
    del qsess

    for bits in ("int8", "int16"):
        bie, analysis_s = _analyse(task, bits, calib, out)
        row[f"analysis_{bits}_s"] = analysis_s
        # batch 1 through the ktc entry point, the BIE path given on every call
        row[f"fixed_{bits}_b1"] = _median_ms(
            lambda: [ktc.kneron_inference([xs[i:i + 1]], input_names=[k], bie_file=bie, platform=720)
                     for i in range(n)], n, repeats)
        row[f"fixed_{bits}_b32"] = _median_ms(partial(npuflow.load(bie).run_batch, {k: xs}), n, repeats)
    return row


def _fmt(v: float) -> str:
    return f"{v:8.2f}"


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    lines = []
    head = f"{'ms per input':34s}" + "".join(f"{r['model']:>22s}" for r in rows)
    lines.append(head)
    lines.append("-" * len(head))

    def line(label: str, key: str, ratio_to: str | None = None) -> None:
        cells = []
        for r in rows:
            v = r[key]
            cell = _fmt(v)
            if ratio_to:
                cell += f" ({v / r[ratio_to]:5.2f}x)"
            else:
                cell += " " * 9
            cells.append(f"{cell:>22s}")
        lines.append(f"{label:34s}" + "".join(cells))

    line("ORT float, batch 1", "ort_float_b1")
    line("ORT float, batch 32", "ort_float_b32")
    line("ORT int8 QDQ, batch 1", "ort_qdq_b1", "ort_float_b1")
    line("npuflow fixed int8, b1 (ktc)", "fixed_int8_b1", "ort_float_b1")
    line("npuflow fixed int8, b32 (object)", "fixed_int8_b32", "ort_float_b32")
    line("npuflow fixed int16, b1 (ktc)", "fixed_int16_b1", "ort_float_b1")
    line("npuflow fixed int16, b32 (object)", "fixed_int16_b32", "ort_float_b32")
    lines.append("")
    for bsz in ("b1", "b32"):
        cells = "".join(f"{r[f'fixed_int16_{bsz}'] / r[f'fixed_int8_{bsz}']:20.2f}x " for r in rows)
        lines.append(f"{'int16 / int8, ' + bsz:34s}{cells}")
    lines.append("")
    for r in rows:
        lines.append(f"{r['model']}: ORT float batch 32 = {r['ort_float_b32_how']}")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    import onnxruntime as ort

    from npuflow.sim.fast import HAVE_NUMBA, mode

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=f"default: {' '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calib", type=int, default=8, help="calibration inputs for the analysis and ORT's QDQ")
    ap.add_argument("--out", default=None, help="folder for the BIEs (default: a temporary folder)")
    ap.add_argument("--shared", default=None)
    ap.add_argument("--analysis-model", default="efficientnet_lite0", help="model of the analysis-time and memory part")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="analysis(threads=...)")
    ap.add_argument("--no-analysis", action="store_true", help="skip the analysis-time and memory part")
    args = ap.parse_args(argv)
    models = args.models or list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {MODELS}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; onnxruntime {ort.__version__}; "
          f"simulator mode {mode()!r} (numba {'yes' if HAVE_NUMBA else 'no'})")
    with tempfile.TemporaryDirectory(prefix="npuflow_speed_") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        rows = [bench_model(m, calib=args.calib, repeats=args.repeats, out=out, shared=args.shared) for m in models]
    print(f"load average at the end {os.getloadavg()[0]:.2f}\n")
    print_table(rows)
    if not args.no_analysis:
        print()
        analysis_part(args.analysis_model, threads=args.threads, shared=args.shared)
    return 0


def analysis_part(model: str, *, threads: int, shared: str | None) -> None:
    """analysis() wall time vs onnxruntime quantize_static, and peak RSS with 1x / 5x the split."""
    from benchmarks.accuracy import QuantConfig, quantize_isolated
    from benchmarks.analysis_memory import measure

    configs = [QuantConfig("npuflow analysis(), no report", "npuflow", {"report": False}),
               QuantConfig("npuflow analysis(), with report", "npuflow", {}),
               QuantConfig("ORT quantize_static MinMax", "ort", {"method": "MinMax"}),
               QuantConfig("ORT quantize_static Percentile", "ort", {"method": "Percentile"})]
    res = {}
    with tempfile.TemporaryDirectory(prefix="npuflow_speed_analysis_") as tmp:
        for i, c in enumerate(configs):
            r = quantize_isolated(model, c, None, Path(tmp) / str(i), shared=shared, threads=threads)
            if not r.get("ok"):
                raise SystemExit(f"{c.label} failed: {r.get('error')}")
            res[c.label] = r
    base = res[configs[2].label]["seconds"]
    n = res[configs[0].label].get("calib_n")
    print(f"{model}, 720 int8, {n} calibration inputs, threads={threads}: seconds (ratio to ORT MinMax)")
    for c in configs:
        sec = res[c.label]["seconds"]
        print(f"  {c.label:34s}{sec:8.2f} s ({sec / base:5.2f}x)")
    rows = [measure(model, k) for k in (1, 5)]
    print(f"peak RSS of analysis() fed by a generator: {rows[0]['inputs']} inputs {rows[0]['peak_rss_mb']:.0f} MB, "
          f"{rows[1]['inputs']} inputs {rows[1]['peak_rss_mb']:.0f} MB, ratio {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f} "
          "(target <= 1.10)")


if __name__ == "__main__":
    sys.exit(main())
