"""Simulation speed: npuflow's fixed-point simulator against onnxruntime, side by side.

    python benchmarks/speed.py                      # efficientnet_lite0 and yolox_nano, KL720
    python benchmarks/speed.py yolox_nano --repeats 5 --calib 8 --out /tmp/speed

For each model (platform 720; int8; int16 = ``datapath_bitwidth_mode`` and ``weight_bitwidth_mode``
"int16"; and a16w8 = ``datapath_bitwidth_mode="int16"`` alone, so int16 activations with the
default int8 weights), time per input, on the same real evaluation inputs:

* ``npuflow fixed b1``: ``ktc.kneron_inference([x], bie_file=..., platform=720)``, one input per
  call with the BIE path given each time (the model cache of kneron_inference keeps it loaded);
* ``npuflow fixed b32``: ``npuflow.load(bie).run_batch(...)`` on batches of 32;
* ``ORT float b1 / b32``: a ready onnxruntime session on the original float model (default session
  options); batch 32 is one call when the graph has a dynamic batch dim, else 32 calls;
* ``ORT int8 QDQ b1``: onnxruntime running its own static int8 quantization of the same optimized
  graph (``benchmarks/ort_quant.py``: QDQ, per-channel, symmetric, MinMax), batch 1.

Every timed configuration runs in its own fresh Python subprocess (as a user's script would:
one model loaded, nothing else in the process), warms up with one pass over the inputs, then times
``--repeats`` passes; its round figure is the median of those passes. The configurations of a
model take turns: ``--rounds`` rounds, each running every configuration once. Each figure is the
best (smallest) round figure, in milliseconds per input, with the range of the round figures in
brackets; ratios divide by ``ORT float`` at the same batch. (The best round, as ``timeit``
advises: on a shared VM whose speed flips between states for tens of seconds, one slow round of
one side would otherwise decide a ratio; the brackets show how far the rounds spread.) The load
average of the machine is printed.

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
import json
import os
import platform
import statistics
import subprocess
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


CONFIGS = ("ort_float_b1", "ort_float_b32", "ort_qdq_b1", "fixed_int8_b1", "fixed_int8_b32",
           "fixed_int16_b1", "fixed_int16_b32", "fixed_a16w8_b1", "fixed_a16w8_b32")
#: analysis() keywords of each simulated configuration
BITWIDTHS: dict[str, dict[str, str]] = {
    "int8": {},
    "int16": {"datapath_bitwidth_mode": "int16", "weight_bitwidth_mode": "int16"},
    "a16w8": {"datapath_bitwidth_mode": "int16"},  # int16 activations, the default int8 weights
}


def _pass_times(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up (sessions, compiled kernels, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


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
    t = time.perf_counter()
    bie = km.analysis({k: [f[k] for f in feeds] for k in feeds[0]}, output_dir=str(out / f"{task.name}_{bits}"),
                      progress=False, **BITWIDTHS[bits])
    return bie, time.perf_counter() - t


def time_config(config: str, files: dict[str, str], input_name: str, repeats: int) -> dict[str, Any]:
    """Time one configuration in this process: ``files`` has "inputs" (an .npy, N on axis 0),
    "float" and "qdq" (ONNX models) and one BIE per :data:`BITWIDTHS` key."""
    xs = np.load(files["inputs"])
    n = len(xs)
    res: dict[str, Any] = {}
    if config.startswith("ort_"):
        sess = _float_session(files["qdq" if config == "ort_qdq_b1" else "float"])
        batch = BATCH if config.endswith("b32") else 1
        res["how"] = "one call" if _dynamic_batch(sess) else f"{BATCH} calls (graph fixes batch 1)"
        fn = _ort_runner(sess, input_name, xs, batch)
    else:
        bie = files[config.split("_")[1]]
        if config.endswith("b1"):
            import ktc

            # batch 1 through the ktc entry point, the BIE path given on every call
            def fn() -> Any:
                return [ktc.kneron_inference([xs[i:i + 1]], input_names=[input_name], bie_file=bie, platform=720)
                        for i in range(n)]
        else:
            import npuflow

            fn = partial(npuflow.load(bie).run_batch, {input_name: xs})
    res["ms"] = [t * 1000.0 / n for t in _pass_times(fn, repeats)]
    return res


def _time_isolated(config: str, files: dict[str, str], input_name: str, repeats: int, work: Path) -> dict[str, Any]:
    """:func:`time_config` in a fresh Python subprocess."""
    req = work / f"{config}.request.json"
    res = work / f"{config}.result.json"
    req.write_text(json.dumps({"config": config, "files": files, "input_name": input_name, "repeats": repeats}),
                   encoding="utf-8")
    res.unlink(missing_ok=True)
    from benchmarks.accuracy import worker_env

    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_time", str(req)],
                          capture_output=True, text=True, env=worker_env())
    if proc.returncode != 0 or not res.is_file():
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-3000:]
        raise SystemExit(f"timing subprocess for {config} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(res.read_text(encoding="utf-8"))


def bench_model(name: str, *, calib: int, repeats: int, rounds: int, out: Path, shared: str | None) -> dict[str, Any]:
    from benchmarks.ort_quant import ort_quantize, optimized_model
    from benchmarks.tasks import get_task

    task = get_task(name, shared)
    k = task.input_name
    xs = np.concatenate([f[k] for f in task.eval_inputs(BATCH)])  # (32, ...): each sample is [1, ...]
    work = out / f"{name}_timing"
    work.mkdir(parents=True, exist_ok=True)
    files = {"inputs": str(work / "inputs.npy"), "float": str(task.model_path), "qdq": str(work / "qdq.onnx")}
    np.save(files["inputs"], xs)
    ort_quantize(task, "MinMax", calib, model=optimized_model(task), output=files["qdq"])  # writes the file
    row: dict[str, Any] = {"model": name, "inputs": len(xs)}
    for bits in BITWIDTHS:
        files[bits], row[f"analysis_{bits}_s"] = _analyse(task, bits, calib, out)
    per_round: dict[str, list[list[float]]] = {c: [] for c in CONFIGS}
    for r in range(rounds):
        for c in CONFIGS:
            res = _time_isolated(c, files, k, repeats, work)
            per_round[c].append(res["ms"])
            if c == "ort_float_b32":
                row["ort_float_b32_how"] = res["how"]
            print(f"  [{name}] round {r + 1}/{rounds} {c}: {statistics.median(res['ms']):.2f} ms per input",
                  file=sys.stderr, flush=True)
    for c, runs in per_round.items():
        figures = [statistics.median(run) for run in runs]
        row[c] = min(figures)
        row[c + "_spread"] = (min(figures), max(figures))
    return row


def _fmt(v: float) -> str:
    return f"{v:8.2f}"


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    lines = []
    head = f"{'ms per input, best round [range]':34s}" + "".join(f"{r['model']:>32s}" for r in rows)
    lines.append(head)
    lines.append("-" * len(head))

    def line(label: str, key: str, ratio_to: str | None = None) -> None:
        cells = []
        for r in rows:
            v = r[key]
            lo, hi = r[key + "_spread"]
            cell = _fmt(v) + f" [{lo:.1f}-{hi:.1f}]"
            if ratio_to:
                cell += f" ({v / r[ratio_to]:5.2f}x)"
            else:
                cell += " " * 9
            cells.append(f"{cell:>32s}")
        lines.append(f"{label:34s}" + "".join(cells))

    line("ORT float, batch 1", "ort_float_b1")
    line("ORT float, batch 32", "ort_float_b32")
    line("ORT int8 QDQ, batch 1", "ort_qdq_b1", "ort_float_b1")
    line("npuflow fixed int8, b1 (ktc)", "fixed_int8_b1", "ort_float_b1")
    line("npuflow fixed int8, b32 (object)", "fixed_int8_b32", "ort_float_b32")
    line("npuflow fixed int16, b1 (ktc)", "fixed_int16_b1", "ort_float_b1")
    line("npuflow fixed int16, b32 (object)", "fixed_int16_b32", "ort_float_b32")
    line("npuflow fixed a16w8, b1 (ktc)", "fixed_a16w8_b1", "ort_float_b1")
    line("npuflow fixed a16w8, b32 (object)", "fixed_a16w8_b32", "ort_float_b32")
    lines.append("")
    for bits in ("int16", "a16w8"):
        for bsz in ("b1", "b32"):
            cells = "".join(f"{r[f'fixed_{bits}_{bsz}'] / r[f'fixed_int8_{bsz}']:30.2f}x " for r in rows)
            lines.append(f"{bits + ' / int8, ' + bsz:34s}{cells}")
    lines.append("")
    for r in rows:
        lines.append(f"{r['model']}: ORT float batch 32 = {r['ort_float_b32_how']}")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    import onnxruntime as ort

    from npuflow.sim.fast import HAVE_NUMBA, mode

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=f"default: {' '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per configuration and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the configurations, each in fresh subprocesses")
    ap.add_argument("--_time", help=argparse.SUPPRESS)
    ap.add_argument("--calib", type=int, default=8, help="calibration inputs for the analysis and ORT's QDQ")
    ap.add_argument("--out", default=None, help="folder for the BIEs (default: a temporary folder)")
    ap.add_argument("--shared", default=None)
    ap.add_argument("--analysis-model", default="efficientnet_lite0", help="model of the analysis-time and memory part")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="analysis(threads=...)")
    ap.add_argument("--no-analysis", action="store_true", help="skip the analysis-time and memory part")
    args = ap.parse_args(argv)
    if args._time:  # a timing subprocess (_time_isolated)
        req = json.loads(Path(args._time).read_text(encoding="utf-8"))
        res = time_config(req["config"], req["files"], req["input_name"], req["repeats"])
        Path(args._time).with_name(f"{req['config']}.result.json").write_text(json.dumps(res), encoding="utf-8")
        return 0
    models = args.models or list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {MODELS}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; onnxruntime {ort.__version__}; "
          f"simulator mode {mode()!r} (numba {'yes' if HAVE_NUMBA else 'no'})")
    with tempfile.TemporaryDirectory(prefix="npuflow_speed_") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        rows = [bench_model(m, calib=args.calib, repeats=args.repeats, rounds=args.rounds, out=out, shared=args.shared)
                for m in models]
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
