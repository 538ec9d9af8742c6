"""npuflow: an open toolchain for Kneron-class edge NPUs (KL520, KL720, KL530, KL630, KL730).

Primary API::

    import npuflow
    m = npuflow.load("model.onnx")                  # loaded model: build once, run many times
    outputs = m.run({"input": x})
    km = npuflow.ModelConfig(32769, "0001", 720, onnx_path="model.onnx")
    print(km.evaluate())                            # IP evaluator + model_fx_report.html

``import ktc`` offers the original toolchain's names over the same objects.
"""
from npuflow._version import __version__  # noqa: E402
from npuflow.api import clear_cache, kneron_inference  # noqa: E402
from npuflow.config import ModelConfig  # noqa: E402
from npuflow.errors import (  # noqa: E402
    CompatibilityWarning,
    InputError,
    InvalidConfigError,
    ModelLoadError,
    NotAvailableError,
    NpuflowError,
    UnsupportedOperatorError,
)
from npuflow.helpers import get_radix  # noqa: E402
from npuflow.model import FloatModel, load  # noqa: E402

__all__ = [
    "__version__", "load", "FloatModel", "ModelConfig", "kneron_inference", "clear_cache", "get_radix",
    "NpuflowError", "ModelLoadError", "InvalidConfigError", "InputError", "NotAvailableError",
    "UnsupportedOperatorError", "CompatibilityWarning",
]
