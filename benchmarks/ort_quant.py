"""The peer baseline: onnxruntime's static int8 quantization (QDQ) of a benchmark task's model.

    from benchmarks.tasks import get_task
    from benchmarks.ort_quant import ort_quantize, run_session
    task = get_task("mnist_cntk_opt")
    qdq, seconds = ort_quantize(task, "MinMax", calib_count=100)      # original file + quant_pre_process
    outs = run_session(qdq, task.eval_inputs(200), qdq=True)

    python benchmarks/ort_quant.py efficientnet_lite0 [--method MinMax|Percentile] [--calib N] [--eval N]

Settings (fixed, so that runs compare): ``quantize_static`` with ``QuantFormat.QDQ``,
``per_channel=True``, ``activation_type = weight_type = QInt8``,
``extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}``, calibration on the CPU
execution provider. ``Percentile`` uses ORT's own default percentile 99.999 (``CalibPercentile``;
ORT's percentile calibrator builds a 2048-bin histogram of |x| when symmetric, which it is by
default). Everything else is ORT's default, except one memory guard: ORT's histogram (Percentile)
calibrator keeps every calibrated tensor of every calibration input in memory before it builds its
histograms (open_nsfw, 200 inputs: ~123 MiB each, 24 GiB in all on a 24 GiB machine: killed by the
kernel's out-of-memory killer). When that would exceed :data:`HISTOGRAM_BUDGET` (12 GiB; of the full
splits only open_nsfw's does, in chunks of 100; efficientnet_lite0's 200 inputs need ~10 GiB and ran
in one go in the stored full run) (:func:`histogram_stride`), the calibration runs in
chunks through ORT's own ``CalibStridedMinMax`` extra option (``quantize_static`` then calls
``collect_data`` once per chunk and the collector merges the histograms; despite its name it applies
to every calibrator). The result differs only in the histogram's bins (the first chunk's maximum sets
their width, later chunks add bins of that width, so the bins can be finer: open_nsfw with 8 inputs,
chunks of 4 against one go, measured 44.8 vs 38.6 dB output SNR); the run's notes say so. MinMax needs no guard (its
calibrator reduces each tensor to its min and max inside the graph).

Starting graph (:func:`ort_start`): the model's **original file**, as npuflow also starts from it,
with its graph input dims set to the task's fixed input shapes (the information npuflow gets as
``input_shapes``), then two fixes for ORT bugs (:func:`prepare_for_ort`; neither changes the
outputs beyond float rounding, checked on MNIST in the tests): Gemm biases of shape [1, N] become
[N] (:func:`gemm_bias_1d`, onnxruntime issue #24815: a crash of ORT 1.32's per-channel bias check
on mnist_cntk_opt), and models below opset 13 are converted to opset 13 (per-channel
DequantizeLinear needs its ``axis`` attribute; ORT alone upgrades opset 8 only to 11 and writes an
invalid model); then ORT's own ``quant_pre_process`` (symbolic shape inference, ORT graph
optimization, ONNX shape inference), as ORT's documentation asks before ``quantize_static``.
``quant_pre_process`` needs sympy; without it the symbolic step is skipped (and
:data:`PRE_PROCESS_NOTE` says so). Until issue 14 the starting graph was npuflow's optimized graph;
``model=`` still accepts any starting graph (benchmarks/speed.py passes npuflow's).

Running the QDQ models (:func:`run_session` with ``qdq=True``): graph optimization level BASIC, so
that onnxruntime runs the QDQ model's own arithmetic (DequantizeLinear -> float op ->
QuantizeLinear) and does not fuse it into its QLinear* int8 kernels. On this machine's CPU (x86-64
AVX2 without VNNI) those kernels compute u8 x s8 products with ``vpmaddubsw``, whose int16 pair sums
saturate: mnist_cntk_opt (per-channel MinMax, symmetric) measured 7.06 dB logits SNR through them
and 22.03 dB through the QDQ arithmetic (per-tensor 13.10 vs 21.96 dB), i.e. the kernels, not
ORT's quantization, lost 15 dB. The harness measures the quantization, so it runs the arithmetic.
(ORT documents the saturation and suggests ``reduce_range`` or U8U8 on such CPUs.)

The float reference of :func:`main` is the original model at the task's input shapes, run by
onnxruntime with its default optimizations.

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
#: bytes of intermediate tensors ORT's histogram calibrator may hold at once; above it the calibration
#: runs in chunks (``CalibStridedMinMax``, :func:`histogram_stride`)
HISTOGRAM_BUDGET = 12 * 2**30


def _has_sympy() -> bool:
    import importlib.util

    return importlib.util.find_spec("sympy") is not None


#: how quant_pre_process ran in this environment (printed with the tables).
PRE_PROCESS_NOTE = ("quant_pre_process: full (symbolic shape inference, optimization, ONNX shape inference)"
                    if _has_sympy() else
                    "quant_pre_process: sympy missing, symbolic shape inference skipped (pip install sympy)")


def optimized_model(task: Any) -> onnx.ModelProto:
    """npuflow's optimizer at the task's fixed input shapes (no longer the ORT starting graph:
    benchmarks/speed.py still times ORT on it)."""
    from npuflow.passes import optimize

    return optimize(onnx.load(str(task.model_path)), input_shapes=task.input_shapes)


def original_model(task: Any) -> onnx.ModelProto:
    """The task's original model file with its graph input dims set to ``task.input_shapes``
    (every other tensor untouched)."""
    m = onnx.load(str(task.model_path))
    shapes = getattr(task, "input_shapes", {}) or {}
    for vi in m.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            want = shapes[vi.name]
            if len(dims) != len(want):
                raise ValueError(f"{task.name}: input {vi.name} has rank {len(dims)}, task shape {want}")
            for d, v in zip(dims, want):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    return m


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}{': ' + msg[:150] if msg else ''}"


def ort_start(task: Any, model: onnx.ModelProto | None = None, *, notes: list[str] | None = None,
              fallback: bool = True) -> onnx.ModelProto:
    """ORT's starting graph: :func:`original_model` (or ``model``), :func:`prepare_for_ort`, then
    ``onnxruntime.quantization.shape_inference.quant_pre_process``.

    When ``quant_pre_process`` itself raises (its symbolic shape inference fails on some exported
    graphs) and ``fallback``: it is retried without the symbolic step, then skipped altogether (ORT
    calls it optional); each fallback appends a line to ``notes``. Without ``fallback`` it raises."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    m = prepare_for_ort(model if model is not None else original_model(task))
    notes = notes if notes is not None else []
    with tempfile.TemporaryDirectory(prefix="ort_pre_") as tmp:
        src, dst = Path(tmp, "in.onnx"), Path(tmp, "pre.onnx")
        onnx.save(m, str(src))
        tries = [not _has_sympy()] + ([True] if fallback and _has_sympy() else [])
        for skip_symbolic in tries:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic)
                return onnx.load(str(dst))
            except Exception as exc:  # noqa: BLE001 - reported in notes, or raised below
                if not fallback:
                    raise
                what = "quant_pre_process" + (" without symbolic shape inference" if skip_symbolic else "")
                notes.append(f"{what} failed ({_short(exc)})")
        notes.append("quantized without quant_pre_process")
        return m


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
    """A CalibrationDataReader over feed dicts already in memory (``set_range``: the chunks of
    ``CalibStridedMinMax``)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.i, self.end = 0, len(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= min(self.end, len(self.feeds)):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:  # some ORT calibrators (and SmoothQuant) read the data twice
        self.i, self.end = 0, len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.i, self.end = start_index, end_index

    def __len__(self) -> int:
        return len(self.feeds)


ORT_OPSET = 13


def activation_bytes(model: onnx.ModelProto) -> int:
    """Bytes per calibration input of the tensors ORT's calibrators keep: as ORT's own
    ``select_tensors_to_calibrate`` with ``quantize_static``'s default op types (the QLinear and
    QDQ registries): the float inputs and outputs, not initializers, of those nodes, with shapes
    from ONNX shape inference (tensors of unknown shape are not counted)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    try:
        m = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the declared shapes are then all there is
        m = model
    ops = set(QLinearOpsRegistry) | set(QDQRegistry)
    infos = {v.name: v for v in [*m.graph.value_info, *m.graph.output, *m.graph.input]}
    inits = {t.name for t in m.graph.initializer}
    size = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2}
    names = {x for n in m.graph.node if n.op_type in ops for x in [*n.input, *n.output]
             if x in infos and x not in inits}
    total = 0
    for name in names:
        tt = infos[name].type.tensor_type
        dims = [d.dim_value for d in tt.shape.dim]
        if tt.elem_type in size and all(d > 0 for d in dims):
            total += int(np.prod(dims, dtype=np.int64)) * size[tt.elem_type]
    return total


def histogram_stride(model: onnx.ModelProto, n: int, budget: int = HISTOGRAM_BUDGET) -> int | None:
    """Calibration inputs per chunk for ORT's histogram calibrators (``CalibStridedMinMax``): None
    when all ``n`` inputs' tensors fit in ``budget`` bytes, else the largest divisor of ``n`` (ORT
    requires one) whose chunk fits, at least 1."""
    per = activation_bytes(model)
    if n <= 1 or per * n <= budget:
        return None
    k = max(1, min(n, budget // max(per, 1)))
    while n % k:
        k -= 1
    return k


def prepare_for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """The two changes made to the starting graph before ORT quantizes it, neither changing what it
    computes: :func:`gemm_bias_1d`, and an opset upgrade to 13 (``onnx.version_converter``) for
    models below it, because per-channel QDQ needs DequantizeLinear's ``axis`` attribute (opset 13);
    ORT 1.32 itself only upgrades to opset 11 and then writes an ``axis`` that opset 11 rejects.
    Models of IR version 3 are marked IR 7 first: the converter otherwise rejects initializers that
    are not also graph inputs (waifu2x_upconv7_photo_2x; outputs identical, max abs difference 0)."""
    from onnx import version_converter

    m, _ = gemm_bias_1d(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), ORT_OPSET)
    if opset < ORT_OPSET:
        if m.ir_version < 4:  # IR 3 (e.g. the waifu2x UpConv7 export): the converter does not see
            m.ir_version = 7  # initializers that are not graph inputs ("Input convolution_W is undefined!")
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
    notes: list[str] | None = None,
    histogram_budget: int = HISTOGRAM_BUDGET,
) -> tuple[bytes | Path, float]:
    """Quantize ``task``'s model with onnxruntime: returns (QDQ model, seconds of ``quantize_static``).

    ``method``: "MinMax" or "Percentile" (``percentile``, default ORT's 99.999). ``calib_count``:
    the first N items of ``task.calib_inputs()`` (None: all). The model is returned as bytes, or
    written to ``output`` and its Path returned. ``model``: the starting graph, used as given
    except for :func:`prepare_for_ort` (pass :func:`ort_start`'s result to skip pre-processing
    again); default :func:`ort_start` of the task. ``notes``: a line is appended when the Percentile
    calibration runs in chunks (``histogram_budget``, :func:`histogram_stride`).
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
    start = prepare_for_ort(model) if model is not None else ort_start(task)

    class Reader(_ListReader, CalibrationDataReader):
        pass

    extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if method == "Percentile":
        extra["CalibPercentile"] = float(percentile)
        stride = histogram_stride(start, len(feeds), histogram_budget)
        if stride is not None:
            extra["CalibStridedMinMax"] = stride
            if notes is not None:
                notes.append(f"Percentile histogram collected in chunks of {stride} of the {len(feeds)} inputs "
                             f"(ORT's CalibStridedMinMax; all at once would hold "
                             f"{activation_bytes(start) * len(feeds) / 2**30:.1f} GiB of tensors); bins from the "
                             "first chunk")
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


def session(model: bytes | str | Path | onnx.ModelProto, *, threads: int | None = None, qdq: bool = False) -> Any:
    """An onnxruntime CPU session of ``model``. ``qdq=True``: graph optimization level BASIC, so
    that a QDQ model runs its own arithmetic, not ORT's fused int8 kernels (see the module docstring)."""
    import onnxruntime as ort

    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if qdq:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def run_session(model: bytes | str | Path | onnx.ModelProto, inputs: Iterable[Mapping[str, np.ndarray]],
                *, threads: int | None = None, qdq: bool = False) -> list[list[np.ndarray]]:
    """Run ``model`` (bytes, path or ModelProto) with onnxruntime (CPU) on each feed dict of
    ``inputs``: one list of outputs (graph output order) per input. ``qdq``: as :func:`session`."""
    sess = session(model, threads=threads, qdq=qdq)
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
    if getattr(task, "stateful", False):
        ap.error(f"{task.name} is stateful: use benchmarks/accuracy.py --models {task.name}")
    start = ort_start(task)
    meta = task.eval_meta(args.eval)
    ref = run_session(str(task.model_path), task.eval_inputs(args.eval))
    for method in args.method or list(METHODS):
        qdq, seconds = ort_quantize(task, method, args.calib, model=start)
        q = run_session(qdq, task.eval_inputs(args.eval), qdq=True)
        result = task.compare(ref, q, meta)
        print(json.dumps({"task": task.name, "method": method, "quantize_static_s": round(seconds, 3),
                          **_jsonable(result)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
