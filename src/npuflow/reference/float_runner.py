"""Float execution on onnxruntime (the right engine for float inference).

onnxruntime is imported here and in an optional fast-path backend of ``npuflow.sim`` only.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import onnx

from npuflow.errors import DynamicShapeError, ModelLoadError
from npuflow.inputs import InputSpec
from npuflow.ir.load import dims_of, model_inputs

log = logging.getLogger(__name__)

_ONNX_TO_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def input_specs(model: onnx.ModelProto, *, allow_dynamic: bool = False) -> list[InputSpec]:
    """InputSpec of every real (non-initializer) graph input.

    A dynamic dim raises DynamicShapeError unless ``allow_dynamic`` (then it is kept as -1).
    """
    specs = []
    for vi in model_inputs(model):
        dims = dims_of(vi)
        shape = []
        for k, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif allow_dynamic:
                shape.append(-1)
            else:
                raise DynamicShapeError(
                    f"model input '{vi.name}' has a dynamic dim {k} ({d!r}); fix it with "
                    f"input_shapes={{'{vi.name}': [...]}} (CLI: --input-shape {vi.name}=1,3,H,W)"
                )
        elem = vi.type.tensor_type.elem_type
        specs.append(InputSpec(vi.name, tuple(shape), np.dtype(_ONNX_TO_NP.get(elem, np.float32))))
    return specs


class FloatRunner:
    """A ready onnxruntime session for one model. Build once, run many times."""

    def __init__(self, model: onnx.ModelProto, *, label: str = "model", threads: int | None = None,
                 spin: bool = True) -> None:
        """``spin=False``: onnxruntime's idle intra-op threads wait passively instead of spinning
        (for sessions that share the cores with other work, e.g. calibration's statistics)."""
        import onnxruntime as ort

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

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(output_names or self.output_names, feeds)


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)
