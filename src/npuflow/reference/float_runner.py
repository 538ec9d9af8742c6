"""Float execution on onnxruntime (the right engine for float inference).

onnxruntime is imported here and in an optional fast-path backend of ``npuflow.sim`` only.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import onnx

from npuflow.errors import DynamicShapeError, InvalidConfigError, ModelLoadError
from npuflow.inputs import InputSpec
from npuflow.ir.load import dims_of, model_inputs
from npuflow.ir.validate import check_windows, needs_window_check

log = logging.getLogger(__name__)

_ONNX_TO_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def input_specs(model: onnx.ModelProto, *, allow_dynamic: bool = False) -> list[InputSpec]:
    """InputSpec of every real (non-initializer) graph input.

    A dynamic dim raises DynamicShapeError unless ``allow_dynamic`` (then it is kept as -1). A model
    without inputs, a non-numeric (e.g. STRING) input and a zero-size input dim raise ModelLoadError:
    every caller iterates over these inputs and feeds them numeric arrays.
    """
    label = f"model '{model.graph.name}'" if model.graph.name else "the model"
    vis = model_inputs(model)
    if not vis:
        raise ModelLoadError(
            f"{label} has no inputs (every graph input is a weight, or there is none): npuflow runs and calibrates "
            "models that take at least one input tensor; export the model with its real input"
        )
    specs = []
    for vi in vis:
        dims = dims_of(vi)
        elem = vi.type.tensor_type.elem_type
        if not vi.type.HasField("tensor_type") or elem not in _ONNX_TO_NP and elem != onnx.TensorProto.UNDEFINED:
            kind = ((onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values()
                     else f"unknown element type {elem}")
                    if vi.type.HasField("tensor_type") else vi.type.WhichOneof("value"))
            raise ModelLoadError(
                f"{label}: input '{vi.name}' has type {kind}; npuflow feeds tensors of numpy's numeric types only (float16/32/64, "
                "int8..int64, uint8..uint64, bool): export the model with a numeric input (do string/sequence handling outside the model)"
            )
        shape = []
        for k, d in enumerate(dims):
            if d == 0:
                raise ModelLoadError(
                    f"{label}: input '{vi.name}' has a zero-size dim {k} ({dims}), so it holds no data; export the "
                    "model with the real size (or a named dynamic dim and input_shapes=...)"
                )
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif allow_dynamic:
                shape.append(-1)
            else:
                raise DynamicShapeError(
                    f"model input '{vi.name}' has a dynamic dim {k} ({d!r}); fix it with "
                    f"input_shapes={{'{vi.name}': [...]}} (CLI: --input-shape {vi.name}=1,3,H,W)"
                )
        specs.append(InputSpec(vi.name, tuple(shape), np.dtype(_ONNX_TO_NP.get(elem, np.float32))))
    return specs


class FloatRunner:
    """A ready onnxruntime session for one model. Build once, run many times."""

    def __init__(self, model: onnx.ModelProto, *, label: str = "model", threads: int | None = None,
                 spin: bool = True) -> None:
        """``spin=False``: onnxruntime's idle intra-op threads wait passively instead of spinning
        (for sessions that share the cores with other work, e.g. calibration's statistics)."""
        import onnxruntime as ort

        check_threads(threads)
        so = ort.SessionOptions()
        so.log_severity_level = 3  # old exporters' "initializer in graph inputs" warnings are expected
        if threads:
            so.intra_op_num_threads = threads
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {label}: {str(exc).splitlines()[0]}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.label = label
        # a dynamic H, W: the Conv/pool windows are checked once per input shape before onnxruntime
        # runs it (a window larger than its input kills the process with SIGFPE; npuflow.ir.validate)
        self._windows: onnx.ModelProto | None = model if needs_window_check(model) else None
        self._fits: set[tuple] = set()

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        if self._windows is not None:
            key = tuple(sorted((k, np.shape(v)) for k, v in feeds.items()))
            if key not in self._fits:
                check_windows(self._windows, self.label, {k: tuple(np.shape(v)) for k, v in feeds.items()})
                self._fits.add(key)
        try:
            return self.session.run(output_names or self.output_names, feeds)
        except Exception as exc:  # onnxruntime's own types: a model whose nodes disagree (shapes, values)
            if type(exc).__module__.startswith("onnxruntime"):
                raise ModelLoadError(f"onnxruntime cannot run {self.label}: {str(exc).splitlines()[0][:500]} (the "
                                     "model's nodes disagree with each other or with the inputs: check or re-export "
                                     "the model)") from exc
            raise


def check_threads(threads: object) -> None:
    """Refuse a ``threads=`` that is not None or a positive int (a bool, a str such as "2", -3)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidConfigError(f"threads must be a positive int (or None for onnxruntime's default), got {threads!r}")


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)
