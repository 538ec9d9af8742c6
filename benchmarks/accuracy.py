#!/usr/bin/env python
"""Accuracy of npuflow's fixed-point analysis against float and against onnxruntime's int8 quantization.

    python benchmarks/accuracy.py --quick                     # a few minutes: small counts everywhere
    python benchmarks/accuracy.py                             # full splits (efficientnet: 200 calib / 800 eval)
    python benchmarks/accuracy.py --parts efficientnet        # only part 1
    python benchmarks/accuracy.py --parts models --models yolox_nano,mnist_cntk_opt
    python benchmarks/accuracy.py --calib-count 20 --eval-count 40   # cap every model's counts

Prints markdown tables:

1. **efficientnet_lite0 on platform 720**: calibration on imagenet_samples/calib.txt, evaluation on
   eval.txt (never the other way). Rows: npuflow int8 (default options), npuflow int16 (datapath,
   weights, model input and output int16), ORT MinMax and ORT Percentile (benchmarks/ort_quant.py:
   QDQ, per-channel, symmetric int8). Columns: float and fixed top-1, drop with Newcombe's paired 95 %
   interval, top-1 agreement with float, pooled logits SNR, analysis wall time, its ratio to ORT
   MinMax's, peak RSS of the quantization step. Then the targets, each with its measured value.
2. **The scoreboard**: every model (``benchmarks.tasks.TASKS``: the shared models and zoo, then the
   extra models of benchmarks/assets/ in their own table) quantized four ways (npuflow int8, npuflow
   int16, ORT MinMax, ORT Percentile), each with its task's metric against float
   (``benchmarks.tasks.Task.compare``) and the SNR of every output; a details table; then every
   failure (stage, node, op, message) and every refusal (an npuflow error naming node and op). The
   run goes on after any failure.

Method
------
* Float reference: the original model file (the starting point of both tools) at the task's input
  shapes, run by onnxruntime on the CPU. ORT starts from the same file after its own
  ``quant_pre_process`` (benchmarks/ort_quant.py ``ort_start``), and its QDQ models run their own
  arithmetic (graph optimization BASIC; see ort_quant.py for why).
* Calibration inputs are read and preprocessed into memory before the timed step, for both tools.
* Each quantization step runs in its own Python subprocess (this script with ``--_worker``), so the
  steps cannot share caches or memory. Timed: the whole ``ModelConfig.analysis()`` call for npuflow
  (it includes npuflow's own graph optimization); the ``quantize_static`` call alone for ORT
  (``ort_quantize``'s timing). Peak memory: the process's peak resident set (``VmHWM`` of
  /proc/self/status) during the step, after resetting it (``echo 5 > /proc/self/clear_refs``) just
  before the step; "start" is the resident set at that moment (libraries, the model and the
  calibration inputs), so peak - start is what the step itself added.
* npuflow's fixed models run through ``npuflow.load(bie).run_batch`` (dequantized float outputs;
  ``--batch`` inputs per call, default 1); ORT's QDQ models through onnxruntime's CPU provider.
  Each model's evaluation runs in its own spawned process, so memory the simulator keeps is released
  before the next model.
* SNR: pooled over all evaluation inputs, ``10*log10(sum(ref^2) / sum((ref-x)^2))`` per output.

``--quick`` and ``--calib-count``/``--eval-count`` take the first N items of each split; the counts
used are printed with every table. ``--quick`` also skips the warm-up and cold-start analyses and
runs each quantization inside the model's evaluation process (no subprocess per step).
``--out DIR`` writes the printed report (Markdown) and every number (JSON) into DIR. Both files are
written after part 1 and after each model of part 2 (through a rename, never half-written), so a run
that dies keeps every finished row: until the run ends the JSON has ``"complete": false`` and the
Markdown ends with an "(incomplete: ...)" line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform as _platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLATFORM = 720
EFFICIENTNET = "efficientnet_lite0"

#: --quick counts (calibration, evaluation); None = the whole split.
QUICK_COUNTS: dict[str, tuple[int | None, int | None]] = {
    "efficientnet_lite0": (32, 64),
    "mnist_cntk_opt": (200, 1000),
    "yolox_nano": (20, 10),
    "ultraface_rfb_320": (None, None),  # 16 / 8: the whole split
    "pan_mnv3s_skin_clothes_hair": (None, None),  # 4 / 3
    "ch_ppocr_mobile_v2.0_cls_infer": (None, None),  # 6 / 2
    "en_PP-OCRv3_det_infer": (None, None),  # 6 / 2
    "en_number_mobile_v2.0_rec_infer": (None, None),  # 6 / 2
    "open_nsfw": (8, 8),  # of 200 / 800 (ResNet-50 "thin": ~2 s per input in the simulator, int8)
    "ddddocr_common_det": (None, None),  # 5 / 3
    "dlib_age_v1": (None, None),  # 92 / 27 face crops
    "dlib_gender_v1": (None, None),  # 92 / 27
    "basic_pitch_nmp": (6, 6),  # windows of 2 s, of 19 / 19
    "gtcrn_simple": (100, 100),  # STFT frames (16 ms hop), of 1876 / 1876
    "waifu2x_upconv7_photo_2x": (10, 8),  # of 60 / 40 COCO crops
    "waifu2x_cunet_art_2x": (10, 8),
    "u2netp_salient_320": (4, 4),  # of 200 / 100 ImageNet images (U^2-Net at 320x320: int8 analysis ~2 min)
    "retinaface_mnet025_5pt": (None, None),  # 16 / 8 faces photos
    "ch_PP-OCRv4_det_infer": (None, None),  # 6 / 2
}
SMALL_CALIB = 100  # below this many calibration items a note says the set is small

INT16 = {"datapath_bitwidth_mode": "int16", "weight_bitwidth_mode": "int16",
         "model_in_bitwidth_mode": "int16", "model_out_bitwidth_mode": "int16"}

TARGETS = {"int8_snr_db": 20.0, "int8_snr_over_best_ort_db": 1.0, "int8_agreement": 0.985,
           "int8_drop_points": 0.5, "int16_snr_db": 50.0, "time_ratio": 2.0}


@dataclass(frozen=True)
class QuantConfig:
    """One quantization to compare: ``tool`` "npuflow" (``options`` are analysis() keywords) or
    "ort" (``options = {"method": "MinMax" | "Percentile"}``)."""

    label: str
    tool: str
    options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.tool, self.options], sort_keys=True)


NPUFLOW_INT8 = QuantConfig("npuflow int8", "npuflow", {})
NPUFLOW_INT16 = QuantConfig("npuflow int16", "npuflow", dict(INT16))
ORT_MINMAX = QuantConfig("ORT MinMax", "ort", {"method": "MinMax"})
ORT_PERCENTILE = QuantConfig("ORT Percentile", "ort", {"method": "Percentile"})


# ============================================================================ failures
def describe_exception(exc: BaseException, stage: str) -> dict[str, Any]:
    """Type, message, and where it happened: the innermost traceback frame holding a graph step or
    node (a local ``st``/``step``/``node`` with ``name`` and ``op_type``), plus the last frames."""
    node = op = None
    refusal = False
    tb = exc.__traceback__
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:  # the cause's traceback knows the node too
        chain.append(e)
        e = e.__cause__ or e.__context__
    for ex in chain:  # npuflow's own refusal names the node and op (UnsupportedOperatorError)
        name, typ = getattr(ex, "node_name", None), getattr(ex, "op_type", None)
        if isinstance(name, str) and isinstance(typ, str):
            node, op, refusal = name, typ, type(ex).__module__.startswith("npuflow")
            break
    for ex in chain if node is None else []:
        tb = ex.__traceback__
        while tb is not None:
            for var in ("st", "step", "node", "n"):
                obj = tb.tb_frame.f_locals.get(var)
                name, typ = getattr(obj, "name", None), getattr(obj, "op_type", None)
                if isinstance(name, str) and isinstance(typ, str):
                    node, op = name, typ
            tb = tb.tb_next
        if node is not None:
            break
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"stage": stage, "type": type(exc).__name__, "message": str(exc), "node": node, "op": op,
            "refusal": refusal, "traceback_tail": "".join(frames)[-3000:]}


def _short_error(err: dict[str, Any], width: int = 160) -> str:
    where = f" at node {err['node']} ({err['op']})" if err.get("node") else ""
    msg = " ".join(str(err.get("message", "")).split())
    if len(msg) > width:
        msg = msg[: width - 3] + "..."
    if err.get("refusal"):
        return f"REFUSED: {err['op']} at node {err['node']}: {msg}".replace("|", "\\|")
    return f"FAILED {err.get('stage', '?')}{where}: {err.get('type', '?')}: {msg}".replace("|", "\\|")


# ============================================================================ quantization step
def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Preloaded:
    """A task whose calibration inputs are already in memory (so that ORT's step does not decode)."""

    def __init__(self, task: Any, feeds: list[dict[str, np.ndarray]]) -> None:
        self._task, self._feeds = task, feeds
        self.name, self.model_path, self.input_shapes = task.name, task.model_path, task.input_shapes

    def calib_inputs(self, count: int | None = None):
        return iter(self._feeds if count is None else self._feeds[:count])


def quantize_step(task_name: str, config: QuantConfig, calib_count: int | None, out_dir: str | Path, *,
                  shared: str | None = None, threads: int = 4) -> dict[str, Any]:
    """Quantize in *this* process (the worker's body). Returns {"ok", "artifact", "seconds",
    "rss_start_kib", "rss_peak_kib", "calib_n"} or {"ok": False, "error": {...}}."""
    from benchmarks.tasks import get_task

    task = get_task(task_name, shared)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = "calibration data"
    notes: list[str] = []
    try:
        feeds = list(task.calib_inputs(calib_count))
        if config.tool == "npuflow":
            import npuflow

            stage = "analysis"
            km = npuflow.ModelConfig(40000, "0001", PLATFORM, onnx_path=str(task.model_path),
                                     input_shapes=task.input_shapes)
            mapping = {name: [f[name] for f in feeds] for name in task.input_shapes}
            reset = _reset_peak_rss()
            start = _proc_status_kib("VmRSS")
            t0 = time.perf_counter()
            artifact = km.analysis(mapping, output_dir=str(out_dir), threads=threads, progress=False, **config.options)
            seconds = time.perf_counter() - t0
            timing = getattr(km, "analysis_timing", None)  # npuflow's own split: {"analysis": s, "report": s}
        elif config.tool == "ort":
            from benchmarks.ort_quant import ort_quantize, ort_start

            stage = "ORT prepare (opset upgrade, quant_pre_process)"
            start_model = ort_start(task, notes=notes)  # the original file + ORT's quant_pre_process (untimed)
            stage = "ORT quantize_static"
            reset = _reset_peak_rss()
            start = _proc_status_kib("VmRSS")
            timing = None
            artifact, seconds = ort_quantize(_Preloaded(task, feeds), config.options.get("method", "MinMax"), None,
                                             model=start_model, output=out_dir / f"{task.name}.qdq.onnx",
                                             notes=notes)
        else:
            raise ValueError(f"unknown tool {config.tool!r}")
        peak = _proc_status_kib("VmHWM")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": describe_exception(exc, stage), "calib_n": None, "notes": notes}
    return {"ok": True, "artifact": str(artifact), "seconds": seconds, "rss_start_kib": start, "notes": notes,
            "rss_peak_kib": peak, "peak_is_step_only": reset, "calib_n": len(feeds),
            "timing": {k: float(v) for k, v in timing.items()} if isinstance(timing, dict) else None}


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (plus ``extra``) with the repository on ``PYTHONPATH``: for a
    benchmark script re-run as a worker subprocess."""
    env = dict(os.environ, **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def quantize_isolated(task_name: str, config: QuantConfig, calib_count: int | None, out_dir: str | Path, *,
                      shared: str | None = None, threads: int = 4, timeout: float | None = None,
                      env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`quantize_step` in a fresh Python subprocess (its own memory); a crash, a kill or a
    timeout of the subprocess comes back as an error dict. ``env_extra``: more environment
    variables for the subprocess (e.g. ``NUMBA_CACHE_DIR``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    req = {"task": task_name, "config": {"label": config.label, "tool": config.tool, "options": config.options},
           "calib_count": calib_count, "out_dir": str(out_dir), "shared": shared, "threads": threads}
    req_path, res_path = out_dir / "request.json", out_dir / "result.json"
    req_path.write_text(json.dumps(req), encoding="utf-8")
    res_path.unlink(missing_ok=True)
    env = worker_env(env_extra)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", str(req_path)]
    stage = "analysis" if config.tool == "npuflow" else "ORT quantize_static"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watch = _RssWatch(proc.pid)  # the largest RSS seen: named if the kernel's OOM killer ends the step
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"ok": False, "calib_n": None, "error": {"stage": stage, "type": "Timeout", "node": None, "op": None,
                                                        "message": f"quantization subprocess killed after {timeout:.0f} s",
                                                        "traceback_tail": ""}}
    except BaseException:  # Ctrl-C or any error here: do not leave the step running (as subprocess.run)
        proc.kill()
        proc.wait()
        raise
    finally:
        watch.stop()
    if res_path.is_file():
        return json.loads(res_path.read_text(encoding="utf-8"))
    return {"ok": False, "calib_n": None, "error": _exit_error(stage, proc.returncode, stdout or "", stderr or "", watch.peak_kib)}


def _total_memory_kib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class _RssWatch:
    """The largest resident set of process ``pid`` seen while it runs (polled from /proc every
    ``interval`` s): what a subprocess used before the kernel's out-of-memory killer ended it."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        import threading

        self.pid, self.interval, self.peak_kib = pid, interval, None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            kib = int(line.split()[1])
                            self.peak_kib = max(self.peak_kib or 0, kib)
                            break
            except (OSError, ValueError):
                pass
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _exit_error(stage: str, code: int, stdout: str, stderr: str, peak_kib: int | None) -> dict[str, Any]:
    """The error of a worker subprocess that ended without its result: a signal by name, and for
    SIGKILL (what the kernel's out-of-memory killer sends) the largest RSS seen and the machine's RAM."""
    import signal

    tail = (stdout + stderr)[-3000:]
    last = (stderr or stdout).strip().splitlines()
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        typ = f"killed by {sig}"
        total = _total_memory_kib()
        seen = (f"; largest RSS seen {peak_kib / 1024:.0f} MiB" if peak_kib else "") + (
            f" of {total / 1024:.0f} MiB RAM" if (peak_kib and total) else "")
        if -code == signal.SIGKILL:
            msg = ("the quantization subprocess was killed (SIGKILL, no result written): most likely out of memory "
                   f"(the kernel's OOM killer){seen}")
        else:
            msg = f"the quantization subprocess was killed by {sig} (no result written){seen}"
        if last:
            msg += f"; its last output: {last[-1][:200]}"
        return {"stage": stage, "type": typ, "node": None, "op": None, "message": msg,
                "rss_peak_seen_kib": peak_kib, "traceback_tail": tail}
    return {"stage": stage, "type": f"subprocess exit {code}", "node": None, "op": None,
            "message": last[-1] if last else "(no output)", "rss_peak_seen_kib": peak_kib, "traceback_tail": tail}


def _worker(req_path: str) -> int:
    req = json.loads(Path(req_path).read_text(encoding="utf-8"))
    c = req["config"]
    res = quantize_step(req["task"], QuantConfig(c["label"], c["tool"], c["options"]), req["calib_count"], req["out_dir"],
                        shared=req["shared"], threads=req["threads"])
    Path(req_path).with_name("result.json").write_text(json.dumps(res), encoding="utf-8")
    return 0


# ============================================================================ evaluation
class _Runner:
    """Runs one quantized artifact on chunks of evaluation inputs, one output list per input."""

    def __init__(self, config: QuantConfig, artifact: str, input_names: Sequence[str]) -> None:
        self.config, self.input_names = config, list(input_names)
        if config.tool == "npuflow":
            import npuflow

            self.model = npuflow.load(artifact)
        else:
            from benchmarks.ort_quant import session

            self.model = session(artifact, qdq=True)  # the QDQ arithmetic, not ORT's fused int8 kernels

    def run_one(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One input, outputs in model order (for stateful tasks: no batching of the feeds)."""
        if self.config.tool == "ort":
            return list(self.model.run(None, feed))
        return [np.asarray(o) for o in self.model.run(feed)]

    def run(self, chunk: list[dict[str, np.ndarray]], ref: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        if self.config.tool == "ort":
            return [list(self.model.run(None, feed)) for feed in chunk]
        stacked = {n: np.concatenate([f[n] for f in chunk], axis=0) for n in self.input_names}
        outs = self.model.run_batch(stacked)
        per: list[list[np.ndarray]] = [[] for _ in chunk]
        for k, o in enumerate(outs):
            for i, part in enumerate(np.split(np.asarray(o), len(chunk), axis=0)):
                want = np.shape(ref[i][k])
                per[i].append(part.reshape(want) if part.shape != want and part.size == int(np.prod(want)) else part)
        return per


def evaluate_task(task_name: str, configs: Sequence[QuantConfig], *, calib_count: int | None = None,
                  eval_count: int | None = None, work_dir: str | Path | None = None, shared: str | None = None,
                  threads: int = 4, isolate: bool = True, step_timeout: float | None = None,
                  warmup: bool = True, chunk: int = 1, log: Any = None) -> dict[str, Any]:
    """Quantize ``task_name``'s model with each config (on the first ``calib_count`` calibration
    items), run float and every quantized model on the first ``eval_count`` evaluation items and
    compare with ``Task.compare`` and per-output SNR.

    Returns {"task", "calib_n", "eval_n", "calib_split", "eval_split", "float_s_per_input",
    "results": {label: {"ok", "quantize": {...}, "compare": {...}, "snr_db": [per output],
    "eval_s_per_input", "error": {...} (when not ok)}}}. Failures never raise: each config carries
    its error (stage "analysis"/"ORT quantize_static", "load", "simulation" or "compare").

    ``warmup`` (with ``isolate``): before the timed step of each npuflow config, one untimed
    analysis on 1 calibration item in its own subprocess, so that the timed step does not include
    the one-off compilation of the simulator's numba kernels (cached on disk by numba); its time is
    returned as ``warmup_s``.

    ``chunk``: evaluation inputs per ``run_batch`` call of npuflow's models. 1 by default: measured on
    efficientnet_lite0 int8 (24 images), chunks of 1/4/8 took 0.048/0.053/0.113 s per image and left
    the process at 460/818/1243 MiB."""
    from benchmarks.ort_quant import session
    from benchmarks.tasks import get_task, snr_db

    log = log or (lambda *a: None)
    task = get_task(task_name, shared)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="npuflow_accuracy_")
        work_dir = tmp.name
    work = Path(work_dir) / task_name
    try:
        results: dict[str, dict[str, Any]] = {}
        runners: dict[str, _Runner] = {}
        for i, cfg in enumerate(configs):
            out_dir = work / f"{i}_{cfg.label.replace(' ', '_')}"
            log(f"[{task_name}] quantize: {cfg.label} (calib {calib_count if calib_count is not None else 'all'})")
            fn = quantize_isolated if isolate else quantize_step
            kw = {"timeout": step_timeout} if isolate else {}
            warm_s = None
            if isolate and warmup and cfg.tool == "npuflow":
                w = quantize_isolated(task_name, cfg, 1, work / f"warmup_{i}", shared=shared, threads=threads, **kw)
                warm_s = w.get("seconds")
                log(f"[{task_name}] {cfg.label}: warm-up analysis (1 calibration item) "
                    + (f"{warm_s:.1f} s" if w["ok"] else _short_error(w["error"])))
            q = fn(task_name, cfg, calib_count, out_dir, shared=shared, threads=threads, **kw)
            r: dict[str, Any] = {"ok": q["ok"], "quantize": {k: v for k, v in q.items() if k not in ("ok", "error")},
                                 "warmup_s": warm_s}
            if not q["ok"]:
                r["error"] = q["error"]
                log(f"[{task_name}] {cfg.label}: {_short_error(q['error'])}")
            else:
                log(f"[{task_name}] {cfg.label}: quantized in {q['seconds']:.1f} s")
                try:
                    runners[cfg.label] = _Runner(cfg, q["artifact"], list(task.input_shapes))
                except Exception as exc:  # noqa: BLE001
                    r.update(ok=False, error=describe_exception(exc, "load" if cfg.tool == "npuflow" else "ORT load of the QDQ model"))
            results[cfg.label] = r

        float_sess = session(str(task.model_path))  # the original file, as both tools start from it
        meta = task.eval_meta(eval_count)
        ref: list[list[np.ndarray]] = []
        outs: dict[str, list[list[np.ndarray]]] = {label: [] for label in runners}
        secs: dict[str, float] = {label: 0.0 for label in runners}
        float_s = 0.0
        buf: list[dict[str, np.ndarray]] = []
        n_done = 0
        t_log = time.perf_counter()

        def flush() -> None:
            nonlocal float_s, n_done, t_log
            t0 = time.perf_counter()
            r_chunk = [list(float_sess.run(None, f)) for f in buf]
            float_s += time.perf_counter() - t0
            ref.extend(r_chunk)
            for label in list(runners):
                t0 = time.perf_counter()
                try:
                    o = runners[label].run(buf, r_chunk)
                except Exception as exc:  # noqa: BLE001
                    err = describe_exception(exc, "simulation" if runners[label].config.tool == "npuflow" else "ORT run")
                    err["message"] = f"{err['message']} (evaluation input {n_done}..{n_done + len(buf) - 1})"
                    results[label].update(ok=False, error=err)
                    log(f"[{task_name}] {label}: {_short_error(err)}")
                    del runners[label]
                    continue
                secs[label] += time.perf_counter() - t0
                outs[label].extend(o)
            n_done += len(buf)
            buf.clear()
            if time.perf_counter() - t_log > 60:
                log(f"[{task_name}] evaluated {n_done}/{len(meta)}")
                t_log = time.perf_counter()

        if getattr(task, "stateful", False):
            # each model runs the sequence on its own, fed its own state outputs (Task.rollout)
            t0 = time.perf_counter()
            ref.extend(task.rollout(lambda f: float_sess.run(None, f), "eval", eval_count)[0])
            float_s = time.perf_counter() - t0
            for label in list(runners):
                t0 = time.perf_counter()
                try:
                    outs[label] = task.rollout(runners[label].run_one, "eval", eval_count)[0]
                except Exception as exc:  # noqa: BLE001
                    err = describe_exception(exc, "simulation" if runners[label].config.tool == "npuflow" else "ORT run")
                    results[label].update(ok=False, error=err)
                    log(f"[{task_name}] {label}: {_short_error(err)}")
                    del runners[label]
                    continue
                secs[label] = time.perf_counter() - t0
                log(f"[{task_name}] {label}: {len(outs[label])} steps in {secs[label]:.1f} s")
        else:
            for feed in task.eval_inputs(eval_count):
                buf.append(feed)
                if len(buf) >= chunk:
                    flush()
            if buf:
                flush()
        n = len(ref)
        for label in runners:
            r = results[label]
            r["eval_s_per_input"] = secs[label] / n if n else math.nan
            try:
                r["compare"] = task.compare(ref, outs[label], meta)
                r["snr_db"] = [snr_db([o[k] for o in ref], [o[k] for o in outs[label]]) for k in range(len(ref[0]))]
            except Exception as exc:  # noqa: BLE001
                r.update(ok=False, error=describe_exception(exc, "compare"))
        calib_split, eval_split = len(task.calib_items()), len(task.eval_items())
        calib_n = min(calib_split, calib_count) if calib_count is not None else calib_split
        names = [o.name for o in float_sess.get_outputs()]
        if getattr(task, "stateful", False):
            names = names[:1]  # rollout keeps the task output; the states are fed back, not compared
        return {"task": task_name, "calib_n": calib_n, "eval_n": n, "calib_split": calib_split,
                "eval_split": eval_split, "float_s_per_input": float_s / n if n else math.nan,
                "extra": bool(getattr(task, "extra", False)), "output_names": names, "results": results}
    finally:
        if tmp is not None:
            tmp.cleanup()


# ============================================================================ formatting
def _f(x: Any, fmt: str = "{:.2f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return fmt.format(x)


def _secs(x: Any) -> str:
    return _f(x, "{:.2f}" if (x is not None and x < 10) else "{:.1f}")


def _time_cell(q: dict[str, Any]) -> str:
    """Seconds of the timed step, with npuflow's report share when analysis() reports it."""
    t = q.get("seconds")
    rep_s = (q.get("timing") or {}).get("report")
    return _secs(t) + (f" (report {_secs(rep_s)})" if rep_s is not None and t is not None else "")


def _pct(x: Any) -> str:
    return _f(None if x is None else 100.0 * x, "{:.2f} %")


def _mib(kib: Any) -> str:
    return _f(None if kib is None else kib / 1024.0, "{:.0f}")


def _mem(q: dict[str, Any]) -> str:
    if q.get("rss_peak_kib") is None:
        return "n/a"
    s = f"{_mib(q['rss_peak_kib'])} ({_mib(q.get('rss_start_kib'))} at start)"
    return s if q.get("peak_is_step_only", True) else s + " (process peak)"


def _snrs(r: dict[str, Any]) -> str:
    return " / ".join(_f(x, "{:.1f}") for x in r.get("snr_db", [])) or "n/a"


def efficientnet_table(res: dict[str, Any]) -> list[str]:
    rows = res["results"]
    ort_t = rows.get(ORT_MINMAX.label, {}).get("quantize", {}).get("seconds")
    lines = [f"efficientnet_lite0, platform {PLATFORM}: calibration {res['calib_n']} of {res['calib_split']} "
             f"(imagenet_samples/calib.txt), evaluation {res['eval_n']} of {res['eval_split']} (eval.txt). "
             "Float = the original model file run by onnxruntime.", "",
             "analysis s: the whole analysis() call (npuflow; in brackets the part spent writing its fixed-point "
             "report, as analysis_timing gives it) or the quantize_static call (ORT). Peak RSS MiB: during that step, "
             "in brackets the RSS when it started. sim s/img: running the quantized model on one evaluation input.", "",
             "| quantization | float top-1 | fixed top-1 | drop, points [95 % CI] | top-1 agreement | logits SNR dB "
             "| analysis s | time / ORT MinMax | peak RSS MiB | sim s/img |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        q = r.get("quantize", {})
        t = q.get("seconds")
        ratio = _f(t / ort_t, "{:.2f}x") if (t and ort_t) else "n/a"
        if not r["ok"]:
            lines.append(f"| {label} | | {_short_error(r['error'])} | | | | {_time_cell(q)} | {ratio} | {_mem(q)} | |")
            continue
        c = r["compare"]
        lo, hi = c["top1_drop_ci95"]
        lines.append(
            f"| {label} | {_pct(c['float_top1'])} | {_pct(c['quant_top1'])} | {100 * c['top1_drop']:+.2f} "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}] | {_pct(c['top1_agreement'])} | {_f(c['logits_snr_db'])} "
            f"| {_time_cell(q)} | {ratio} | {_mem(q)} | {_f(r.get('eval_s_per_input'), '{:.3f}')} |")
    return lines


def warmup_note(res: dict[str, Any], cold: dict[str, Any] | None) -> str:
    """One paragraph: the one-off numba compilation cost and what the timed analyses included."""
    rows = res["results"]
    warm = {k: rows[k].get("warmup_s") for k in (NPUFLOW_INT8.label, NPUFLOW_INT16.label) if k in rows}
    parts = []
    if cold is not None:
        parts.append("Cold start: npuflow int8 analysis on 1 calibration image with an empty numba cache "
                     "(NUMBA_CACHE_DIR = a new folder: any numba kernel the analysis uses compiles inside the call): "
                     + (_secs(cold["seconds"]) + " s." if cold["ok"] else _short_error(cold["error"]) + "."))
    if any(v is not None for v in warm.values()):
        parts.append("Before each timed npuflow analysis, an untimed warm-up analysis on 1 calibration image ran in "
                     "its own subprocess (filling numba's on-disk cache): "
                     + ", ".join(f"{k} {_secs(v)} s" for k, v in warm.items()) + ". The analysis times above exclude "
                     "any such compilation; a first run after installing npuflow (or after its kernels change) pays it once.")
    else:
        parts.append("No warm-up: the timed npuflow analyses include any numba kernel compilation.")
    return " ".join(parts)


def efficientnet_targets(res: dict[str, Any]) -> list[str]:
    rows = res["results"]

    def cmp(label: str) -> dict[str, Any] | None:
        r = rows.get(label)
        return r["compare"] if r and r["ok"] else None

    i8, i16 = cmp(NPUFLOW_INT8.label), cmp(NPUFLOW_INT16.label)
    orts = [c for c in (cmp(ORT_MINMAX.label), cmp(ORT_PERCENTILE.label)) if c is not None]
    best_ort = max((c["logits_snr_db"] for c in orts), default=None)
    ort_t = rows.get(ORT_MINMAX.label, {}).get("quantize", {}).get("seconds")

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    out = ["| target | measured | verdict |", "|---|---|---|"]
    T = TARGETS
    if i8:
        out.append(f"| npuflow int8 logits SNR >= {T['int8_snr_db']:.0f} dB | {_f(i8['logits_snr_db'])} dB | "
                   f"{verdict(i8['logits_snr_db'] >= T['int8_snr_db'])} |")
        d = None if best_ort is None else i8["logits_snr_db"] - best_ort
        out.append(f"| npuflow int8 SNR >= best ORT + {T['int8_snr_over_best_ort_db']:.0f} dB | "
                   f"{_f(i8['logits_snr_db'])} vs best ORT {_f(best_ort)} dB ({_f(d, '{:+.2f}')} dB) | "
                   f"{verdict(None if d is None else d >= T['int8_snr_over_best_ort_db'])} |")
        out.append(f"| npuflow int8 top-1 agreement >= {100 * T['int8_agreement']:.1f} % | {_pct(i8['top1_agreement'])} | "
                   f"{verdict(i8['top1_agreement'] >= T['int8_agreement'])} |")
        lo, hi = i8["top1_drop_ci95"]
        out.append(f"| npuflow int8 top-1 drop <= {T['int8_drop_points']} points (point estimate) | "
                   f"{100 * i8['top1_drop']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] | "
                   f"{verdict(100 * i8['top1_drop'] <= T['int8_drop_points'] + 1e-9)} |")
    else:
        out.append("| npuflow int8 targets | npuflow int8 failed | FAIL |")
    if i16:
        out.append(f"| npuflow int16 logits SNR >= {T['int16_snr_db']:.0f} dB | {_f(i16['logits_snr_db'])} dB | "
                   f"{verdict(i16['logits_snr_db'] >= T['int16_snr_db'])} |")
    else:
        out.append("| npuflow int16 SNR | npuflow int16 failed | FAIL |")
    for cfg in (NPUFLOW_INT8, NPUFLOW_INT16):
        q = rows.get(cfg.label, {}).get("quantize", {})
        t = q.get("seconds")
        ratio = t / ort_t if (t and ort_t) else None
        rep_s = (q.get("timing") or {}).get("report")
        extra = ""
        if rep_s is not None and t and ort_t:
            extra = f" (without the report: {_secs(t - rep_s)} s = {(t - rep_s) / ort_t:.2f}x)"
        out.append(f"| {cfg.label} analysis time <= {T['time_ratio']:.0f}x ORT MinMax (whole analysis() call) | "
                   f"{_secs(t)} s vs {_secs(ort_t)} s = {_f(ratio, '{:.2f}x')}{extra} | "
                   f"{verdict(None if ratio is None else ratio <= T['time_ratio'])} |")
    return out


def task_summary(task_name: str, c: dict[str, Any]) -> str:
    """One cell: the task metric of ``Task.compare``'s result."""
    if task_name == EFFICIENTNET:
        return (f"top-1 {_pct(c['float_top1'])} -> {_pct(c['quant_top1'])}, agreement {_pct(c['top1_agreement'])}, "
                f"drop {100 * c['top1_drop']:+.2f} [{100 * c['top1_drop_ci95'][0]:+.2f}, {100 * c['top1_drop_ci95'][1]:+.2f}]")
    if task_name == "mnist_cntk_opt":
        lo, hi = c["accuracy_drop_ci95"]
        return (f"accuracy {_pct(c['float_accuracy'])} -> {_pct(c['quant_accuracy'])}, agreement {_pct(c['agreement'])}, "
                f"drop {100 * c['accuracy_drop']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    if task_name in ("yolox_nano", "ultraface_rfb_320", "ddddocr_common_det"):
        return (f"recall {_pct(c['recall_vs_float'])}, precision {_pct(c['precision_vs_float'])} vs float "
                f"(IoU 0.5; {c['matched']} matched, {c['float_detections']} float / {c['quant_detections']} quant dets)")
    if task_name == "pan_mnv3s_skin_clothes_hair":
        iq, fg, qg = c["iou_q_vs_float"], c["iou_float_vs_gt"], c["iou_q_vs_gt"]
        return ("mask IoU vs float " + ", ".join(f"{k} {_f(v, '{:.3f}')}" for k, v in iq.items())
                + "; vs GT float/quant " + ", ".join(f"{k} {_f(fg[k], '{:.3f}')}/{_f(qg[k], '{:.3f}')}" for k in iq))
    if task_name == "ch_ppocr_mobile_v2.0_cls_infer":
        per = "; ".join(f"{k}: label {v['label']}, float {v['float']}, quant {v['quant']}" for k, v in c["per_image"].items())
        return f"angle agreement {_pct(c['agreement'])}, correct float {c['float_correct']}/quant {c['quant_correct']} of {c['n']} ({per})"
    if task_name == "en_number_mobile_v2.0_rec_infer":
        per = "; ".join(f"{k}: float '{v['float']}', quant '{v['quant']}' (edit {v['edit_quant_vs_float']})"
                        for k, v in c["per_image"].items())
        return f"text = float {c['quant_equals_float']}/{c['n']}, exact vs label float {c['float_exact']}/quant {c['quant_exact']} ({per})"
    if task_name in ("en_PP-OCRv3_det_infer", "ch_PP-OCRv4_det_infer"):
        per = "; ".join(f"{k}: {_f(v['mask_iou_q_vs_float'], '{:.3f}')}" for k, v in c["per_image"].items())
        return f"text-mask IoU vs float {_f(c['mask_iou_q_vs_float'], '{:.3f}')} ({per})"
    if task_name == "open_nsfw":
        return (f"argmax agreement {_pct(c['agreement'])}, mean \u0394p(nsfw) {_f(c['mean_abs_dp_nsfw'], '{:.4f}')} "
                f"(max {_f(c['max_abs_dp_nsfw'], '{:.4f}')}); nsfw float {c['float_nsfw']} / quant {c['quant_nsfw']}")
    if task_name == "dlib_age_v1":
        return (f"mean |\u0394 expected age| {_f(c['mean_abs_age_diff_years'])} years (max {_f(c['max_abs_age_diff_years'])}; "
                f"float mean age {_f(c['float_mean_age'], '{:.1f}')}), argmax agreement {_pct(c['agreement'])}")
    if task_name == "dlib_gender_v1":
        return f"argmax agreement {_pct(c['agreement'])} (male: float {c['float_male']}, quant {c['quant_male']})"
    if task_name == "basic_pitch_nmp":
        k = c["note_counts"]
        return (f"note F1 {_f(c['note_f1'], '{:.3f}')} (frame x pitch cells > 0.5; TP {k['tp']}, FP {k['fp']}, FN {k['fn']} "
                f"over {c['frames']} frames), active-frame F1 {_f(c['active_frame_f1'], '{:.3f}')}")
    if task_name == "gtcrn_simple":
        return (f"enhanced waveform SNR vs float {_f(c['waveform_snr_vs_float_db'])} dB ({c['n']} frames, {c['seconds']:.1f} s); "
                f"vs clean: float {_f(c['float_snr_vs_clean_db'])}, quant {_f(c['quant_snr_vs_clean_db'])}, "
                f"noisy input {_f(c['noisy_snr_vs_clean_db'])} dB")
    if task_name.startswith("waifu2x_"):
        return (f"PSNR vs float {_f(c['psnr_vs_float_db'])} dB (images clipped to [0, 1]); vs the ground-truth crop: "
                f"float {_f(c['float_psnr_vs_gt_db'])}, quant {_f(c['quant_psnr_vs_gt_db'])} dB")
    if task_name == "u2netp_salient_320":
        return (f"mask IoU vs float {_f(c['mask_iou_vs_float'], '{:.3f}')} (per image {_f(c['mean_image_iou_vs_float'], '{:.3f}')}), "
                f"mean |\u0394 alpha| {_f(c['mean_abs_alpha_diff'], '{:.4f}')} (max {_f(c['max_abs_alpha_diff'], '{:.3f}')}); "
                f"d0 SNR {_f(c['d0_snr_db'])} dB")
    if task_name == "retinaface_mnet025_5pt":
        return (f"recall {_pct(c['recall_vs_float'])}, precision {_pct(c['precision_vs_float'])} vs float "
                f"({c['matched']} matched of {c['float_detections']} float / {c['quant_detections']} quant faces); "
                f"landmarks: NME {_f(c['landmark_nme'], '{:.4f}')}, PCK@0.05 {_pct(c['landmark_pck@0.05'])}, "
                f"mean {_f(c['landmark_mean_px'])} px (max {_f(c['landmark_max_px'])})")
    return json.dumps(c, default=str)[:200]


#: task name -> (headline metric name, function of Task.compare's result -> short cell)
HEADLINES: dict[str, tuple[str, Any]] = {
    "efficientnet_lite0": ("top-1 agreement", lambda c: _pct(c["top1_agreement"])),
    "mnist_cntk_opt": ("argmax agreement", lambda c: _pct(c["agreement"])),
    "yolox_nano": ("recall / precision of float dets", lambda c: f"{_pct(c['recall_vs_float'])} / {_pct(c['precision_vs_float'])}"),
    "ultraface_rfb_320": ("recall / precision of float faces", lambda c: f"{_pct(c['recall_vs_float'])} / {_pct(c['precision_vs_float'])}"),
    "pan_mnv3s_skin_clothes_hair": ("mask IoU vs float: skin, clothes, hair",
                                    lambda c: ", ".join(_f(v, "{:.3f}") for v in c["iou_q_vs_float"].values())),
    "ch_ppocr_mobile_v2.0_cls_infer": ("angle = float", lambda c: f"{round(c['agreement'] * c['n'])}/{c['n']}"),
    "en_PP-OCRv3_det_infer": ("text-mask IoU vs float", lambda c: _f(c["mask_iou_q_vs_float"], "{:.3f}")),
    "en_number_mobile_v2.0_rec_infer": ("text = float (exact)", lambda c: f"{c['quant_equals_float']}/{c['n']}"),
    "open_nsfw": ("argmax agreement", lambda c: _pct(c["agreement"])),
    "ddddocr_common_det": ("recall / precision of float boxes", lambda c: f"{_pct(c['recall_vs_float'])} / {_pct(c['precision_vs_float'])}"),
    "dlib_age_v1": ("mean abs diff of expected age", lambda c: _f(c["mean_abs_age_diff_years"]) + " y"),
    "dlib_gender_v1": ("argmax agreement", lambda c: _pct(c["agreement"])),
    "basic_pitch_nmp": ("frame-level note F1 at 0.5", lambda c: _f(c["note_f1"], "{:.3f}")),
    "gtcrn_simple": ("enhanced waveform SNR vs float", lambda c: _f(c["waveform_snr_vs_float_db"]) + " dB"),
    "waifu2x_upconv7_photo_2x": ("PSNR of the 2x image vs float", lambda c: _f(c["psnr_vs_float_db"]) + " dB"),
    "waifu2x_cunet_art_2x": ("PSNR of the 2x image vs float", lambda c: _f(c["psnr_vs_float_db"]) + " dB"),
    "u2netp_salient_320": ("foreground-mask IoU vs float; mean abs alpha diff",
                           lambda c: f"{_f(c['mask_iou_vs_float'], '{:.3f}')}; {_f(c['mean_abs_alpha_diff'], '{:.4f}')}"),
    "retinaface_mnet025_5pt": ("faces recall / precision; landmark NME, PCK@0.05",
                               lambda c: f"{_pct(c['recall_vs_float'])} / {_pct(c['precision_vs_float'])}; "
                                         f"{_f(c['landmark_nme'], '{:.4f}')}, {_pct(c['landmark_pck@0.05'])}"),
}

HEADLINES["ch_PP-OCRv4_det_infer"] = HEADLINES["en_PP-OCRv3_det_infer"]  # the same metric (PpocrDet.compare)

SCOREBOARD_CONFIGS = (NPUFLOW_INT8, NPUFLOW_INT16, ORT_MINMAX, ORT_PERCENTILE)


def _cell(name: str, r: dict[str, Any] | None, width: int = 90) -> str:
    if r is None:
        return "not run"
    if not r["ok"]:
        return _short_error(r["error"], width)
    head = HEADLINES.get(name)
    metric = head[1](r["compare"]) if head else "see details"
    star = " (*)" if r.get("quantize", {}).get("notes") else ""
    return f"{metric}; SNR {_snrs(r)}{star}".replace("|", "\\|")


def scoreboard_table(all_res: list[dict[str, Any]], configs: Sequence[QuantConfig] = SCOREBOARD_CONFIGS) -> list[str]:
    """The scoreboard: one row per model, per quantization its headline task metric against float
    and its output SNR (dB; one per model output, in the order of the details table)."""
    lines = ["| model | calib / eval | metric (vs float) | " + " | ".join(c.label for c in configs) + " |",
             "|---|---|---|" + "---|" * len(configs)]
    for res in all_res:
        name = res["task"]
        if "fatal" in res:
            lines.append(f"| {name} | | | {_short_error(res['fatal'])} |" + " |" * (len(configs) - 1))
            continue
        head = HEADLINES.get(name, ("task metric",))[0]
        cells = [_cell(name, res["results"].get(c.label)) for c in configs]
        lines.append(f"| {name} | {res['calib_n']} / {res['eval_n']} | {head} | " + " | ".join(cells) + " |")
    return lines


def _notes(res: dict[str, Any]) -> list[str]:
    notes = []
    if res["calib_split"] < SMALL_CALIB:
        notes.append(f"small calibration set: the split has {res['calib_split']} items")
    if res["calib_n"] < res["calib_split"]:
        notes.append(f"calibrated on the first {res['calib_n']} only")
    if res["eval_n"] < res.get("eval_split", res["eval_n"]):
        notes.append(f"evaluated on the first {res['eval_n']} of {res['eval_split']}")
    if res["eval_n"] < 20:
        notes.append(f"{res['eval_n']} evaluation inputs only")
    if len(res.get("output_names", [])) > 1:
        notes.append("SNR per output: " + " / ".join(res["output_names"]))
    return notes


def models_table(all_res: list[dict[str, Any]], configs: Sequence[QuantConfig] = SCOREBOARD_CONFIGS) -> list[str]:
    """Details: one row per model and quantization, the whole task metric, every output's SNR, the
    quantization time and the simulation time per input."""
    lines = ["| model | quantization | task metric vs float | output SNR dB | quantize s | s/input | notes |",
             "|---|---|---|---|---|---|---|"]
    for res in all_res:
        name = res["task"]
        if "fatal" in res:
            lines.append(f"| {name} | | {_short_error(res['fatal'])} | | | | |")
            continue
        notes = "; ".join(_notes(res)).replace("|", "\\|")
        for k, cfg in enumerate(configs):
            r = res["results"].get(cfg.label)
            first = f"{name} ({res['calib_n']} / {res['eval_n']})" if k == 0 else ""
            if r is None:
                lines.append(f"| {first} | {cfg.label} | not run | | | | |")
                continue
            q = r.get("quantize", {})
            metric = task_summary(name, r["compare"]).replace("|", "\\|") if r["ok"] else _short_error(r["error"])
            if q.get("notes"):
                metric += " (*) " + "; ".join(q["notes"]).replace("|", "\\|")
            lines.append(f"| {first} | {cfg.label} | {metric} | {_snrs(r) if r['ok'] else ''} | {_time_cell(q)} "
                         f"| {_f(r.get('eval_s_per_input'), '{:.3f}')} | {notes if k == 0 else ''} |")
    return lines


def failure_details(all_res: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for res in all_res:
        errs = [("(task)", res["fatal"])] if "fatal" in res else []
        errs += [(label, r["error"]) for label, r in res.get("results", {}).items() if not r["ok"]]
        for label, e in errs:
            what = "refused by npuflow" if e.get("refusal") else f"{e['stage']} failed"
            out += [f"#### {res['task']} / {label}: {what}", "",
                    f"* node: {e.get('node') or 'n/a'}; op: {e.get('op') or 'n/a'}",
                    f"* {e['type']}: {e['message']}", "", "```", e.get("traceback_tail", "").rstrip(), "```", ""]
    return out


def models_section(all_res: list[dict[str, Any]], configs: Sequence[QuantConfig], seconds: float) -> list[str]:
    """Part 2 as printed: the scoreboard (core models, then the extra ones), the details table and
    the part's time; one string per printed block."""
    core = [r for r in all_res if not r.get("extra")]
    more = [r for r in all_res if r.get("extra")]
    lines = [f"## 2. Scoreboard: every model, platform {PLATFORM}\n", SCOREBOARD_INTRO + "\n"]
    if core:
        lines.append("\n".join(scoreboard_table(core, configs)) + "\n")
    if more:
        lines.append("More real models (benchmarks/assets/; reported, not counted in the targets of the accuracy issues):\n")
        lines.append("\n".join(scoreboard_table(more, configs)) + "\n")
    lines += ["### Details\n", "\n".join(models_table(all_res, configs)) + "\n", f"(part 2: {seconds:.0f} s)\n"]
    return lines


def failures_section(report: dict[str, Any]) -> list[str]:
    """Every failure once (part 2 reuses part 1's efficientnet results)."""
    seen = [report["efficientnet"]] if "efficientnet" in report else []
    seen += [r for r in report.get("models", []) if not r.get("reused_from_part1")]
    fails = failure_details(seen)
    return ["### Failures and refusals\n", "\n".join(fails) if fails else "none\n"]


def _write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a run killed while writing
    leaves the previous complete file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ============================================================================ main
def stderr_log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def evaluate_task_isolated(task_name: str, configs: Sequence[QuantConfig], **kw: Any) -> dict[str, Any]:
    """:func:`evaluate_task` in a fresh spawned process, so that whatever the simulator keeps in
    memory (per-node onnxruntime sessions and their arenas) is released before the next task."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks import accuracy as this  # importable by name in the child

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(this.evaluate_task, task_name, list(configs), **kw).result()


def _counts(task_name: str, quick: bool, calib: int | None, evaln: int | None) -> tuple[int | None, int | None]:
    qc, qe = QUICK_COUNTS.get(task_name, (None, None)) if quick else (None, None)
    return (calib if calib is not None else qc), (evaln if evaln is not None else qe)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if k != "chars"}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


SCOREBOARD_INTRO = (
    "Float = the original model file at the task's input shapes, run by onnxruntime. npuflow int8: analysis() "
    "defaults; npuflow int16: datapath, weights, model input and output int16. ORT: quantize_static (QDQ, "
    "per-channel, symmetric int8) after its own quant_pre_process, both starting from the original file; its QDQ "
    "models run their own arithmetic (graph optimization BASIC: ORT's fused int8 kernels saturate on this CPU, "
    "see benchmarks/ort_quant.py). Each cell: the task metric against float (benchmarks/README.md defines each), then "
    "the output SNR in dB, pooled over the evaluation inputs, one value per model output. REFUSED: npuflow "
    "declined the model, naming the node and op; FAILED: an error (details below the tables). (*): ORT's "
    "quant_pre_process failed and the model was quantized with less or no pre-processing, or ORT's Percentile "
    "histogram was collected in chunks to bound its memory (details table).")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"]:
        return _worker(argv[1])
    from benchmarks.tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: " + ", ".join(
        f"{k} {'all' if c is None else c}/{'all' if e is None else e}" for k, (c, e) in QUICK_COUNTS.items()))
    ap.add_argument("--parts", default="efficientnet,models", help="comma list of: efficientnet, models")
    ap.add_argument("--models", default=",".join(TASKS), help="part 2's models (comma list); default all")
    ap.add_argument("--calib-count", type=int, default=None, help="first N calibration items of every model (overrides --quick)")
    ap.add_argument("--eval-count", type=int, default=None, help="first N evaluation items of every model (overrides --quick)")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="analysis(threads=...)")
    ap.add_argument("--step-timeout", type=float, default=3600.0, help="seconds before a quantization subprocess is killed")
    ap.add_argument("--no-warmup", action="store_true",
                    help="time npuflow's first analysis as it comes (numba kernels may compile inside it)")
    ap.add_argument("--no-cold-start", action="store_true",
                    help="skip part 1's extra analysis with an empty numba cache")
    ap.add_argument("--batch", type=int, default=1, help="evaluation inputs per run_batch call of npuflow's models")
    ap.add_argument("--work-dir", default=None, help="keep the BIEs / QDQ models here (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write every result to this JSON file")
    ap.add_argument("--markdown", default=None, help="also write the printed report to this Markdown file")
    ap.add_argument("--out", default=None, help="write accuracy-<quick|full>.md and .json into this folder "
                                                 "(e.g. benchmarks/results)")
    ap.add_argument("--shared", default=None, help="shared assets folder (default $NPUFLOW_SHARED or ../shared)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra analysis() keyword for every npuflow row (VALUE read as JSON, else a string), "
                         "e.g. --option datapath_range_method=mmse; repeatable")
    args = ap.parse_args(argv)
    extra: dict[str, Any] = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            ap.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            extra[key] = json.loads(raw)
        except json.JSONDecodeError:
            extra[key] = raw
    if args.quick:  # the fixed-point report only measures (same BIE numerics); it is most of a small analysis
        extra.setdefault("report", False)
    n8 = QuantConfig(NPUFLOW_INT8.label, "npuflow", {**NPUFLOW_INT8.options, **extra})
    n16 = QuantConfig(NPUFLOW_INT16.label, "npuflow", {**NPUFLOW_INT16.options, **extra})
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= {"efficientnet", "models"}:
        ap.error(f"--parts: unknown {sorted(parts - {'efficientnet', 'models'})}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in TASKS]
    if unknown:
        ap.error(f"--models: unknown {unknown}; known: {', '.join(TASKS)}")

    log = stderr_log

    import npuflow
    import onnxruntime

    from benchmarks.ort_quant import PRE_PROCESS_NOTE

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    md: list[str] = []

    def out(text: str = "") -> None:  # stdout and the Markdown file
        print(text, flush=True)
        md.append(text)

    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    json_path, md_path = args.json, args.markdown
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        json_path = json_path or str(Path(args.out, f"accuracy-{mode}.json"))
        md_path = md_path or str(Path(args.out, f"accuracy-{mode}.md"))
    out(f"npuflow {npuflow.__version__}, onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, "
        f"Python {_platform.python_version()}; {os.cpu_count()} CPUs, load average at start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; analysis threads={args.threads}; "
        f"mode: {mode}; extra npuflow options: {extra or 'none'}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{PRE_PROCESS_NOTE}\n")
    # --quick: no warm-up or cold-start analyses, and each quantization runs inside the model's own
    # evaluation process (no subprocess start per step; timings then include one-off costs such as
    # numba's cache loading, and the peak RSS is the process's)
    common = dict(work_dir=args.work_dir, shared=args.shared, threads=args.threads, step_timeout=args.step_timeout,
                  warmup=not (args.no_warmup or args.quick), isolate=not args.quick, chunk=args.batch, log=stderr_log)
    done: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    report: dict[str, Any] = {"mode": mode, "argv": argv, "complete": False}
    configs = [n8, n16, ORT_MINMAX, ORT_PERCENTILE]

    def write_files(more_md: Sequence[str]) -> None:
        """The JSON and Markdown files as they stand (after each model, and at the end)."""
        if json_path:
            _write_atomic(json_path, json.dumps(_jsonable(report), indent=1))
        if md_path:
            _write_atomic(md_path, "# benchmarks/accuracy.py " + " ".join(argv) + "\n\n" + "\n".join([*md, *more_md]) + "\n")

    def write_partial(models_md: Sequence[str], n_done: int) -> None:
        """The files with what is finished, ending with a line that says the run is incomplete."""
        what = (["part 1"] if "efficientnet" in report else []) + (
            [f"{n_done} of {len(models)} models of part 2"] if "models" in parts else [])
        write_files([*models_md, *failures_section(report),
                     f"(incomplete: written at {time.strftime('%H:%M UTC', time.gmtime())} after {' and '.join(what)}, "
                     f"{time.perf_counter() - t_start:.0f} s into the run; the run was still going or was stopped)"])

    if "efficientnet" in parts:
        c, e = _counts(EFFICIENTNET, args.quick, args.calib_count, args.eval_count)
        t0 = time.perf_counter()
        cold = None
        if not (args.no_cold_start or args.quick):  # before anything else: the cost of compiling the simulator's kernels
            with tempfile.TemporaryDirectory(prefix="npuflow_numba_cold_") as nb:
                log("[efficientnet_lite0] cold start: npuflow int8 analysis, 1 calibration item, empty NUMBA_CACHE_DIR")
                cold = quantize_isolated(EFFICIENTNET, n8, 1, Path(nb) / "out", shared=args.shared,
                                         threads=args.threads, timeout=args.step_timeout,
                                         env_extra={"NUMBA_CACHE_DIR": str(Path(nb) / "cache")})
        try:
            res = evaluate_task_isolated(EFFICIENTNET, configs, calib_count=c, eval_count=e, **common)
        except Exception as exc:  # noqa: BLE001
            res = {"task": EFFICIENTNET, "fatal": describe_exception(exc, "evaluation"), "results": {}}
        report["efficientnet"] = res
        out(f"## 1. efficientnet_lite0, platform {PLATFORM}\n")
        if "fatal" in res:
            out(_short_error(res["fatal"]) + "\n")
        else:
            done[(EFFICIENTNET, c, e)] = res
            out("\n".join(efficientnet_table(res)) + "\n")
            out(warmup_note(res, cold) + "\n")
            out("Targets:\n")
            out("\n".join(efficientnet_targets(res)) + "\n")
        out(f"(part 1: {time.perf_counter() - t0:.0f} s)\n")
        write_partial([], 0)

    if "models" in parts:
        t0 = time.perf_counter()
        all_res = []
        for name in models:
            c, e = _counts(name, args.quick, args.calib_count, args.eval_count)
            prev = done.get((name, c, e))
            if prev is not None:  # part 1 already ran every configuration with these counts
                res = dict(prev, reused_from_part1=True)
            else:
                try:
                    res = evaluate_task_isolated(name, configs, calib_count=c, eval_count=e, **common)
                except Exception as exc:  # noqa: BLE001
                    res = {"task": name, "fatal": describe_exception(exc, "evaluation"), "results": {}}
            all_res.append(res)
            report["models"] = all_res
            log(f"[{name}] done ({len(all_res)} of {len(models)} models, {time.perf_counter() - t0:.0f} s into part 2)")
            write_partial(models_section(all_res, configs, time.perf_counter() - t0), len(all_res))
        report["models"] = all_res
        for text in models_section(all_res, configs, time.perf_counter() - t0):
            out(text)
    for text in failures_section(report):
        out(text)
    out(f"total {time.perf_counter() - t_start:.0f} s; load average at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report["complete"] = True
    write_files([])
    return 0

if __name__ == "__main__":
    sys.exit(main())
