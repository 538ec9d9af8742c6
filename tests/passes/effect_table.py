"""Measure what each optimizer pass does to each shared model and print it as markdown.

Usage: ``python tests/passes/effect_table.py [SHARED_DIR]`` (default ``$NPUFLOW_SHARED`` or
``../shared`` next to the repository, like tests/conftest.py). Prints the tables pasted into
docs/optimizer.md: per-pass effect, and the agreement of onnxruntime outputs before/after
optimization on one real input per model (tests/passes/real_inputs.py).

The tests import the helpers below (``trace_model``, ``ort_run``, ``max_rel_diff``,
``optimize_options``).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_inputs  # noqa: E402

from npuflow.passes import PASSES, PassStat, optimize_report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: Models whose inputs have dynamic non-batch dims: they are compiled at their real input's shape.
INPUT_SHAPE_MODELS = (
    "ch_ppocr_mobile_v2.0_cls_infer",
    "en_PP-OCRv3_det_infer",
    "en_number_mobile_v2.0_rec_infer",
)

SHORT = {
    "efficientnet_lite0": "effnet_lite0",
    "mnist_cntk_opt": "mnist",
    "yolox_nano": "yolox_nano",
    "ultraface_rfb_320": "ultraface",
    "pan_mnv3s_skin_clothes_hair": "pan_seg",
    "ch_ppocr_mobile_v2.0_cls_infer": "ocr_cls",
    "en_PP-OCRv3_det_infer": "ocr_det",
    "en_number_mobile_v2.0_rec_infer": "ocr_rec",
}


def shared_root() -> Path:
    return Path(os.environ.get("NPUFLOW_SHARED", REPO.parent / "shared")).resolve()


def ort_run(model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` once in onnxruntime (CPU, default graph optimizations, 2 threads)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def max_rel_diff(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """max over outputs of ``max|ref - got| / max|ref|`` (the tests require <= 1e-4)."""
    worst = 0.0
    for r, g in zip(ref, got, strict=True):
        if r.shape != g.shape:
            return float("inf")
        scale = float(np.max(np.abs(r))) or 1.0
        worst = max(worst, float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) / scale)
    return worst


def optimize_options(name: str, feeds: dict[str, np.ndarray]) -> dict:
    return {"input_shapes": real_inputs.input_shapes(feeds)} if name in INPUT_SHAPE_MODELS else {}


@dataclass
class PassRun:
    """One pass run and how the model as it stood after it agreed with the original."""

    stat: PassStat
    rel_diff: float | None  # max rel diff vs the original on the real input; None: did not run
    error: str = ""


@dataclass
class Trace:
    """One shared model optimized once, with onnxruntime checked after every pass run."""

    name: str
    original: onnx.ModelProto
    original_bytes: bytes
    feeds: dict[str, np.ndarray]
    reference: list[np.ndarray]
    optimized: onnx.ModelProto
    stats: list[PassStat]
    runs: list[PassRun]
    seconds: float  # optimize_report wall time, the per-pass checks excluded

    def runs_of(self, pass_name: str) -> list[PassRun]:
        return [r for r in self.runs if r.stat.name == pass_name]


def trace_model(shared: Path, name: str) -> Trace:
    """Optimize shared model ``name`` (at its real input's shape for INPUT_SHAPE_MODELS) and run
    onnxruntime on the model after every pass run, on the real input of real_inputs.py."""
    original = onnx.load(str(real_inputs.model_path(shared, name)))
    original_bytes = original.SerializeToString()
    feeds = real_inputs.real_input(shared, name)
    reference = ort_run(original_bytes, feeds)
    runs: list[PassRun] = []
    cache: dict[bytes, tuple[float | None, str]] = {}
    checking = 0.0

    def on_pass(stat: PassStat, model: onnx.ModelProto) -> None:
        nonlocal checking
        t0 = time.perf_counter()
        data = model.SerializeToString()
        key = hashlib.sha256(data).digest()
        if key not in cache:
            try:
                cache[key] = (max_rel_diff(reference, ort_run(data, feeds)), "")
            except Exception as exc:  # noqa: BLE001 - reported by the test that reads it
                cache[key] = (None, f"{type(exc).__name__}: {exc}")
        runs.append(PassRun(stat, *cache[key]))
        checking += time.perf_counter() - t0

    t0 = time.perf_counter()
    optimized, stats = optimize_report(original, on_pass=on_pass, **optimize_options(name, feeds))
    seconds = time.perf_counter() - t0 - checking
    return Trace(name, original, original_bytes, feeds, reference, optimized, stats, runs, seconds)


@dataclass
class ModelResult:
    name: str
    nodes_before: int
    nodes_after: int
    stats: list[PassStat]
    seconds: float
    input_shapes: dict[str, list[int]]
    rel_diff: float
    worst_pass_rel_diff: float
    max_abs_ref: float
    outputs: list[tuple[str, tuple[int, ...]]]


def measure(shared: Path) -> list[ModelResult]:
    results = []
    for name in real_inputs.MODELS:
        t = trace_model(shared, name)
        got = ort_run(t.optimized, t.feeds)
        results.append(ModelResult(
            name=name, nodes_before=len(t.original.graph.node), nodes_after=len(t.optimized.graph.node),
            stats=t.stats, seconds=t.seconds, input_shapes=real_inputs.input_shapes(t.feeds),
            rel_diff=max_rel_diff(t.reference, got),
            worst_pass_rel_diff=max(float("inf") if r.rel_diff is None else r.rel_diff for r in t.runs),
            max_abs_ref=max(float(np.max(np.abs(r))) for r in t.reference),
            outputs=[(o.name, g.shape) for o, g in zip(t.optimized.graph.output, got)],
        ))
    return results


def _delta_text(delta: dict[str, int]) -> str:
    return ", ".join(f"{op} {d:+d}" for op, d in sorted(delta.items(), key=lambda kv: (kv[1], kv[0])))


def _dims(dims: tuple) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def pass_cell(name: str, runs: list[PassStat]) -> str:
    """Short description of what all runs of pass ``name`` did to one model."""
    if not runs:
        return ""
    if all(r.skipped for r in runs):
        return "skipped"
    first, last = runs[0], runs[-1]
    delta: dict[str, int] = {}
    for r in runs:
        for op, d in r.op_delta().items():
            delta[op] = delta.get(op, 0) + d
    delta = {op: d for op, d in delta.items() if d}
    n = sum(delta.values())
    if name == "name_nodes":
        return f"named {first.unnamed_before}" if first.unnamed_before else "–"
    if name == "initializers_as_inputs":
        if first.graph_inputs_before == last.graph_inputs_after:
            return "–"
        return f"inputs {first.graph_inputs_before}→{last.graph_inputs_after}"
    if name == "fix_input_shapes":
        if first.input_dims_before == last.input_dims_after:
            return "–"
        return "; ".join(
            f"{_dims(b)}→{_dims(a)}" for (_, b), (_, a) in zip(first.input_dims_before, last.input_dims_after)
        )
    if name == "shape_inference":
        (s0, t0), (s1, t1) = first.static_before, last.static_after
        return f"static {s0}/{t0}→{s1}/{t1}"
    if name == "fold_batchnorm":
        bn0 = first.ops_before.get("BatchNormalization", 0)
        bn1 = last.ops_after.get("BatchNormalization", 0)
        return f"BN {bn0}→{bn1}" if bn0 else "–"
    if name == "remove_unused":
        inits = sum(r.initializers_after - r.initializers_before for r in runs)
        parts = [f"{n:+d} nodes"] if n else []
        if inits:
            parts.append(f"{inits:+d} initializers")
        return ", ".join(parts) or "–"
    return f"{n:+d} ({_delta_text(delta)})" if delta else "–"  # op changes at a constant node count too (Div -> Mul)


def markdown(results: list[ModelResult]) -> str:
    passes = list(PASSES)
    lines = ["| model | nodes before → after | " + " | ".join(f"`{p}`" for p in passes) + " |",
             "|---|---|" + "---|" * len(passes)]
    for r in results:
        cells = [pass_cell(p, [s for s in r.stats if s.name == p]) for p in passes]
        lines.append(f"| {SHORT[r.name]} | {r.nodes_before} → {r.nodes_after} | " + " | ".join(cells) + " |")
    lines += ["", "| model | input shape compiled | outputs | max abs(reference) | max rel diff, optimized | "
              "max rel diff, after any pass | optimize time (s) |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        shapes = ", ".join(f"{k} {v}" for k, v in r.input_shapes.items())
        outs = ", ".join(f"{n} {list(s)}" for n, s in r.outputs)
        lines.append(f"| {SHORT[r.name]} | {shapes} | {outs} | {r.max_abs_ref:.4g} | {r.rel_diff:.2e} | "
                     f"{r.worst_pass_rel_diff:.2e} | {r.seconds:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    shared = Path(argv[1]) if len(argv) > 1 else shared_root()
    if not (shared / "models").is_dir():
        print(f"shared assets not found at {shared} (pass the folder or set NPUFLOW_SHARED)", file=sys.stderr)
        return 2
    print(markdown(measure(shared)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
