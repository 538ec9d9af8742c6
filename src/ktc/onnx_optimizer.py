"""``ktc.onnx_optimizer``: the original optimizer entry points over ``npuflow.passes.optimize``."""
from __future__ import annotations

import warnings
from typing import Any

import onnx

from npuflow.errors import CompatibilityWarning, InvalidConfigError, NotAvailableError

# legacy flags that would change the model's meaning or interface: refused rather than ignored
_REFUSED = {
    "bgr": "channel swap in the model", "norm": "input normalisation in the model",
    "rgba2yynn": "RGBA to YYNN conversion", "eliminate_tail": "removal of trailing NPU-unsupported nodes",
}
# legacy flags that only tuned the old optimizer: accepted, with a warning saying what npuflow does
_WARNED = {
    "bn_on_skip": "npuflow folds only BatchNormalization that follows a Conv; others stay as they are",
    "bn_before_add": "npuflow folds only BatchNormalization that follows a Conv; others stay as they are",
    "opt_matmul": "npuflow has no MatMul splitting pass; MatMul is kept as it is",
    "opt_720": "npuflow's optimizer is the same for every platform",
    "duplicate_shared_weights": "npuflow keeps shared weights shared; the estimate counts them once per use",
}


def onnx2onnx_flow(m: onnx.ModelProto, disable_fuse_bn: bool = False, *, input_shapes: dict | None = None,
                   **legacy: Any) -> onnx.ModelProto:
    """Optimize an ONNX model (shape inference, Constant folding, Identity/Dropout removal, BN folding
    unless ``disable_fuse_bn``). Returns a new ModelProto; the argument is not modified."""
    from npuflow.passes import optimize

    if not isinstance(m, onnx.ModelProto):
        raise InvalidConfigError(f"onnx2onnx_flow expects an onnx.ModelProto (load it with onnx.load), got {type(m).__name__}")
    for name, value in legacy.items():
        if name in _REFUSED:
            if value:
                raise NotAvailableError(f"onnx2onnx_flow({name}=True): {_REFUSED[name]} is not available in npuflow; do it in your preprocessing/postprocessing")
        elif name in _WARNED:
            if value:
                warnings.warn(f"onnx2onnx_flow({name}=True): {_WARNED[name]}", CompatibilityWarning, stacklevel=2)
        else:
            raise InvalidConfigError(f"onnx2onnx_flow got unknown parameter {name!r}")
    return optimize(m, keep_bn=bool(disable_fuse_bn), input_shapes=input_shapes)


def _legacy_converter(name: str):
    def fn(*args: Any, **kwargs: Any) -> onnx.ModelProto:
        raise NotAvailableError(f"ktc.onnx_optimizer.{name} (framework converter of the legacy base env) is not available in npuflow; "
                                "export your model to ONNX with its framework's own exporter")
    fn.__name__ = name
    return fn


keras2onnx_flow = _legacy_converter("keras2onnx_flow")
caffe2onnx_flow = _legacy_converter("caffe2onnx_flow")
tflite2onnx_flow = _legacy_converter("tflite2onnx_flow")


def torch_exported_onnx_flow(m: onnx.ModelProto, disable_fuse_bn: bool = False) -> onnx.ModelProto:
    """Legacy name: the same as onnx2onnx_flow for an ONNX model exported by PyTorch."""
    return onnx2onnx_flow(m, disable_fuse_bn=disable_fuse_bn)
