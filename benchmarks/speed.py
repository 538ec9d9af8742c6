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

Then (on by default; ``--no-cold`` skips it, ``--only-cold`` runs it alone) the cold start, each
case in a fresh subprocess: README step 2 (``examples/mnist/quickstart.py``, the process's wall
time, run in a temporary folder), the first efficientnet_lite0 ``analysis()`` (100 calibration
inputs, report on: the call) and the first ``kneron_inference`` call on its BIE (batch 1: the call,
and the whole process), three ways: **JIT** (an empty ``NUMBA_CACHE_DIR``: every kernel compiles
in the process), **installed** (a copy of the package whose kernels were compiled as ``pip
install`` compiles them, ``npuflow/sim/fast/precompile.py`` into its ``_kernel_cache``, timed as
"kernel build at install"; ``NUMBA_CACHE_DIR`` unset) and **warm** (the same case again in a new
process after the JIT one: numba's cache filled). Targets printed beside them: README step 2 <=
15 s, first analysis <= 2x the warm rerun.

The int16 rows are checked against the decided bounds (benchmarks/README.md, issue 17): a16w8
(16-bit activations, 8-bit weights) within 2x of int8 at batch 1 and 32; int16 (16-bit weights
too) within 2.2x at batch 1 and 3.5x at batch 32.
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


#: decided bounds of the int16 rows (ratio to int8 at the same batch; issue 17, benchmarks/README.md)
INT16_BOUNDS = {("a16w8", "b1"): 2.0, ("a16w8", "b32"): 2.0, ("int16", "b1"): 2.2, ("int16", "b32"): 3.5}


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
            bound = INT16_BOUNDS[(bits, bsz)]
            cells = ""
            for r in rows:
                q = r[f"fixed_{bits}_{bsz}"] / r[f"fixed_int8_{bsz}"]
                cells += f"{q:13.2f}x (<= {bound}x: {'PASS' if q <= bound else 'FAIL'})"
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
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start part")
    ap.add_argument("--only-cold", action="store_true", help="only the cold-start part")
    ap.add_argument("--_first_call", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._time:  # a timing subprocess (_time_isolated)
        req = json.loads(Path(args._time).read_text(encoding="utf-8"))
        res = time_config(req["config"], req["files"], req["input_name"], req["repeats"])
        Path(args._time).with_name(f"{req['config']}.result.json").write_text(json.dumps(res), encoding="utf-8")
        return 0
    if args._first_call:  # a cold-start subprocess (_first_call_isolated)
        _first_call(Path(args._first_call))
        return 0
    if args.only_cold:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}; onnxruntime {ort.__version__}")
        cold_part(threads=args.threads, shared=args.shared)
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
    if not args.no_cold:
        print()
        cold_part(threads=args.threads, shared=args.shared)
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


REPO = Path(__file__).resolve().parents[1]
COLD_ANALYSIS_INPUTS = 100


def installed_copy(dest: Path) -> float:
    """A copy of the package (``npuflow`` and ``ktc``, no caches) under ``dest`` with its kernels
    compiled as the install compiles them (setup.py runs the same script); returns the seconds
    of that kernel build."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "_kernel_cache", "*.pyc")
    for pkg in ("npuflow", "ktc"):
        shutil.copytree(REPO / "src" / pkg, dest / pkg, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NPUFLOW_KERNEL_CACHE")}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(dest / "npuflow" / "sim" / "fast" / "precompile.py")], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kernel build failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"  [cold] {proc.stdout.strip().splitlines()[-1]}", file=sys.stderr, flush=True)
    return time.perf_counter() - t


def _cold_env(how: str, nb_cache: Path, pkg: Path) -> dict[str, str]:
    """Environment of a cold-start subprocess: "jit"/"warm" use ``nb_cache`` as NUMBA_CACHE_DIR
    (the repository's package), "installed" the package copy ``pkg`` and no NUMBA_CACHE_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NPUFLOW_KERNEL_CACHE", "PYTHONPATH")}
    if how == "installed":
        env["PYTHONPATH"] = str(pkg)
    else:
        env["NUMBA_CACHE_DIR"] = str(nb_cache)
    env["NPUFLOW_QUIET"] = "1"
    return env


def _readme_step2(env: dict[str, str], work: Path) -> float:
    """Wall seconds of ``examples/mnist/quickstart.py`` in a fresh process (cwd: a new folder)."""
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "mnist" / "quickstart.py")], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"quickstart failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wall


def _first_call(req_path: Path) -> None:
    """Subprocess body: one ``kneron_inference`` call (batch 1) on a BIE, timed from the call."""
    req = json.loads(req_path.read_text(encoding="utf-8"))
    x = np.load(req["inputs"])[:1]
    import ktc

    t = time.perf_counter()
    ktc.kneron_inference([x], input_names=[req["input_name"]], bie_file=req["bie"], platform=720)
    req_path.with_name("first_call.result.json").write_text(json.dumps({"seconds": time.perf_counter() - t}),
                                                            encoding="utf-8")


def _first_call_isolated(env: dict[str, str], bie: str, inputs: str, input_name: str,
                         work: Path) -> tuple[float, float]:
    """(the first kneron_inference call, the whole process) in seconds."""
    work.mkdir(parents=True, exist_ok=True)
    req = work / "first_call.json"
    req.write_text(json.dumps({"bie": bie, "inputs": inputs, "input_name": input_name}), encoding="utf-8")
    env = dict(env, PYTHONPATH=os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_first_call", str(req)], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    res = work / "first_call.result.json"
    if proc.returncode != 0 or not res.is_file():
        raise SystemExit(f"first-call subprocess failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads(res.read_text(encoding="utf-8"))["seconds"], wall


def cold_part(*, threads: int, shared: str | None) -> dict[Any, Any]:
    """The cold-start rows (module docstring); prints them and returns the figures."""
    from benchmarks.accuracy import QuantConfig, quantize_isolated
    from benchmarks.tasks import get_task

    task = get_task("efficientnet_lite0", shared)
    k = task.input_name
    res: dict[Any, Any] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="npuflow_speed_cold_") as tmp:
        root = Path(tmp)
        inputs = root / "inputs.npy"
        np.save(inputs, next(iter(task.eval_inputs(1)))[k])
        print("  [cold] kernel build (as pip install runs it)", file=sys.stderr, flush=True)
        res["build_s"] = installed_copy(root / "pkg")
        config = QuantConfig("npuflow analysis(), with report", "npuflow", {})
        for how in ("jit", "warm", "installed"):  # warm: the JIT case again (its NUMBA_CACHE_DIR filled)
            for case in ("step2", "analysis", "first_call"):  # each case its own NUMBA_CACHE_DIR
                env = _cold_env(how, root / f"numba_{case}", root / "pkg")
                print(f"  [cold] {case} {how}", file=sys.stderr, flush=True)
                if case == "step2":
                    res[(case, how)] = _readme_step2(env, root / f"step2_{how}")
                elif case == "analysis":
                    extra = {"NUMBA_CACHE_DIR": env.get("NUMBA_CACHE_DIR", ""), "NPUFLOW_QUIET": "1"}
                    if how == "installed":
                        extra["PYTHONPATH"] = env["PYTHONPATH"]
                    r = quantize_isolated(task.name, config, COLD_ANALYSIS_INPUTS, root / f"analysis_{how}",
                                          shared=shared, threads=threads, env_extra=extra)
                    if not r.get("ok"):
                        raise SystemExit(f"cold analysis ({how}) failed: {r.get('error')}")
                    res[(case, how)] = r["seconds"]
                    res.setdefault("bie", r["artifact"])
                else:
                    res[(case, how)] = _first_call_isolated(env, res["bie"], str(inputs), k, root / f"call_{how}")
                load.append(os.getloadavg()[0])
    print(f"cold start, seconds, each in a fresh process (load average {min(load):.2f}-{max(load):.2f}); "
          f"kernel build at install (precompile.py): {res['build_s']:.1f} s")
    print(f"{'':60s}{'JIT, empty cache':>18s}{'installed':>12s}{'warm rerun':>12s}")

    def row(label: str, case: str, pick: Callable[[Any], float] = float) -> None:
        print(f"{label:60s}" + "".join(f"{pick(res[(case, h)]):{w}.2f}" for h, w in (("jit", 18), ("installed", 12),
                                                                                    ("warm", 12))))

    row("README step 2 (examples/mnist/quickstart.py), process", "step2")
    row(f"first efficientnet_lite0 analysis() ({COLD_ANALYSIS_INPUTS} inputs, report), call", "analysis")
    row("first kneron_inference (efficientnet_lite0 int8, b1), call", "first_call", lambda v: v[0])
    row("  ... its whole process (imports, BIE load, call)", "first_call", lambda v: v[1])
    s2 = res[("step2", "installed")]
    an = res[("analysis", "installed")] / res[("analysis", "warm")]
    print(f"targets: README step 2 installed {s2:.1f} s (<= 15 s: {'PASS' if s2 <= 15 else 'FAIL'}); first analysis / "
          f"warm rerun installed {an:.2f}x (<= 2x: {'PASS' if an <= 2 else 'FAIL'}), JIT "
          f"{res[('analysis', 'jit')] / res[('analysis', 'warm')]:.2f}x")
    return res


if __name__ == "__main__":
    sys.exit(main())
