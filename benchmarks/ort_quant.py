"""The peer baseline: onnxruntime's static int8 quantization (QDQ) of a benchmark task's model.

    from benchmarks.tasks import get_task
    from benchmarks.ort_quant import ort_quantize, run_session
    task = get_task("mnist_cntk_opt")
    qdq, seconds = ort_quantize(task, "MinMax", calib_count=100)
    outs = run_session(qdq, task.eval_inputs(200))

    python benchmarks/ort_quant.py efficientnet_lite0 [--method MinMax|Percentile] [--calib N] [--eval N]

Settings (fixed, so that runs compare): ``quantize_static`` with ``QuantFormat.QDQ``,
``per_channel=True``, ``activation_type = weight_type = QInt8``,
``extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}``, calibration on the CPU
execution provider. ``Percentile`` uses ORT's own default percentile 99.999 (``CalibPercentile``;
ORT's percentile calibrator builds a 2048-bin histogram of |x| when symmetric, which it is by
default). Everything else is ORT's default.

Starting graph: npuflow's optimized model, ``npuflow.passes.optimize(model, input_shapes=task.input_shapes)``
(BatchNorm folded, Constant weights turned into initializers, shapes fixed), not ORT's
``quant_pre_process``; so npuflow and ORT quantize the same graph. ORT logs a warning that the model
was not pre-processed with ``quant_pre_process``; that is expected. Two changes are made to that
graph before ORT sees it (:func:`prepare_for_ort`), neither changes its outputs (checked on every
task: max abs difference 0 on one eval input): Gemm biases of shape [1, N] become [N]
(:func:`gemm_bias_1d`, for onnxruntime issue #24815: a crash of ORT 1.32's per-channel bias check on
mnist_cntk_opt), and models below opset 13 are converted to opset 13 (per-channel DequantizeLinear
needs its ``axis`` attribute; ORT alone upgrades opset 8 only to 11 and writes an invalid model).

The float reference of :func:`main` is the same optimized graph, run by onnxruntime.

Timing: only the ``quantize_static`` call is timed (``time.perf_counter``). The calibration inputs
are read and preprocessed into memory before it, so image decoding is not counted; the model
optimization is not counted either.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("MinMax", "Percentile")
DEFAULT_PERCENTILE = 99.999


def optimized_model(task: Any) -> onnx.ModelProto:
    """The starting graph of both tools: npuflow's optimizer at the task's fixed input shapes."""
    from npuflow.passes import optimize

    return optimize(onnx.load(str(task.model_path)), input_shapes=task.input_shapes)


def gemm_bias_1d(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` whose Gemm biases of shape [1, N] are stored as [N] (same result: C is
    broadcast either way); returns (model, number changed). Works around onnxruntime issue #24815
    (``_adjust_weight_scale_for_int32_bias`` raises "truth value of an array ... is ambiguous" on a
    2-D Gemm bias with per_channel=True; fix proposed in PR #29747), which stops ORT 1.32 on
    mnist_cntk_opt. Only initializers that feed nothing else are changed."""
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    uses: dict[str, int] = {}
    for n in m.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    inits = {t.name: t for t in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}
    changed: set[str] = set()
    for n in m.graph.node:
        if n.op_type != "Gemm" or len(n.input) < 3:
            continue
        c = n.input[2]
        t = inits.get(c)
        if t is None or uses.get(c) != 1 or c in outputs or len(t.dims) != 2 or t.dims[0] != 1:
            continue
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).reshape(-1), c))
        changed.add(c)
    for vi in [*m.graph.value_info, *m.graph.input]:
        if vi.name in changed:  # keep any declared shape of the bias consistent
            vi.type.tensor_type.shape.ClearField("dim")
            vi.type.tensor_type.shape.dim.add().dim_value = int(inits[vi.name].dims[0])
    return m, len(changed)


class _ListReader:
    """A CalibrationDataReader over feed dicts already in memory."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:  # some ORT calibrators (and SmoothQuant) read the data twice
        self.i = 0

    def __len__(self) -> int:
        return len(self.feeds)


ORT_OPSET = 13


def prepare_for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """The two changes made to the starting graph before ORT quantizes it, neither changing what it
    computes: :func:`gemm_bias_1d`, and an opset upgrade to 13 (``onnx.version_converter``) for
    models below it, because per-channel QDQ needs DequantizeLinear's ``axis`` attribute (opset 13);
    ORT 1.32 itself only upgrades to opset 11 and then writes an ``axis`` that opset 11 rejects."""
    from onnx import version_converter

    m, _ = gemm_bias_1d(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), ORT_OPSET)
    if opset < ORT_OPSET:
        m = version_converter.convert_version(m, ORT_OPSET)
    return m


def ort_quantize(
    task: Any,
    method: str = "MinMax",
    calib_count: int | None = None,
    *,
    percentile: float = DEFAULT_PERCENTILE,
    output: str | Path | None = None,
    model: onnx.ModelProto | None = None,
) -> tuple[bytes | Path, float]:
    """Quantize ``task``'s model with onnxruntime: returns (QDQ model, seconds of ``quantize_static``).

    ``method``: "MinMax" or "Percentile" (``percentile``, default ORT's 99.999). ``calib_count``:
    the first N items of ``task.calib_inputs()`` (None: all). The model is returned as bytes, or
    written to ``output`` and its Path returned. ``model``: an already optimized starting graph (to
    skip optimizing it again); default :func:`optimized_model`.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    feeds = list(task.calib_inputs(calib_count))
    if not feeds:
        raise ValueError(f"{task.name}: no calibration inputs")
    start = prepare_for_ort(model if model is not None else optimized_model(task))

    class Reader(_ListReader, CalibrationDataReader):
        pass

    extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if method == "Percentile":
        extra["CalibPercentile"] = float(percentile)
    with tempfile.TemporaryDirectory(prefix="ort_quant_") as tmp:
        src = Path(tmp, "float.onnx")
        dst = Path(output) if output is not None else Path(tmp, "qdq.onnx")
        onnx.save(start, str(src))
        reader = Reader(feeds)
        sink = io.StringIO()  # ORT's percentile calibrator prints its settings to stdout
        with contextlib.redirect_stdout(sink):
            t0 = time.perf_counter()
            quantize_static(
                str(src), str(dst), reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                calibration_providers=["CPUExecutionProvider"],
                extra_options=extra,
            )
            seconds = time.perf_counter() - t0
        if output is not None:
            return dst, seconds
        return dst.read_bytes(), seconds


def run_session(model: bytes | str | Path | onnx.ModelProto, inputs: Iterable[Mapping[str, np.ndarray]],
                *, threads: int | None = None) -> list[list[np.ndarray]]:
    """Run ``model`` (bytes, path or ModelProto) with onnxruntime (CPU) on each feed dict of
    ``inputs``: one list of outputs (graph output order) per input."""
    import onnxruntime as ort

    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return [list(sess.run(None, dict(feed))) for feed in inputs]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if k != "chars"}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.tasks import TASKS, get_task

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--method", choices=METHODS, action="append", help="repeatable; default both")
    ap.add_argument("--calib", type=int, default=None, help="calibration items (default: the whole split)")
    ap.add_argument("--eval", type=int, default=None, help="evaluation items (default: the whole split)")
    ap.add_argument("--shared", default=None)
    args = ap.parse_args(argv)
    task = get_task(args.task, args.shared)
    start = optimized_model(task)
    meta = task.eval_meta(args.eval)
    ref = run_session(start, task.eval_inputs(args.eval))
    for method in args.method or list(METHODS):
        qdq, seconds = ort_quantize(task, method, args.calib, model=start)
        q = run_session(qdq, task.eval_inputs(args.eval))
        result = task.compare(ref, q, meta)
        print(json.dumps({"task": task.name, "method": method, "quantize_static_s": round(seconds, 3),
                          **_jsonable(result)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
