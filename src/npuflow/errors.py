"""One exception hierarchy for npuflow.

Every message names what is wrong (file, node, op, input) and what to do about it.
The CLI prints ``str(error)`` as a single line and exits non-zero; no traceback.
"""
from __future__ import annotations


class NpuflowError(Exception):
    """Base class of every error npuflow raises on purpose."""


class ModelLoadError(NpuflowError, ValueError):
    """A model file is missing, unreadable, not ONNX, truncated, or a foreign/encrypted BIE."""


class InvalidConfigError(NpuflowError, ValueError):
    """An argument of ModelConfig / analysis / evaluate has a wrong type or value."""


class InputError(NpuflowError, ValueError):
    """An inference or calibration input is missing, unknown, mis-shaped or not finite."""


class UnsupportedOperatorError(NpuflowError):
    """A node whose op neither the NPU nor the CPU fallback can execute."""

    def __init__(self, op_type: str, node_name: str, detail: str = "") -> None:
        msg = f"Invalid program input: undefined CPU op [{op_type}] of node [{node_name}]"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.op_type = op_type
        self.node_name = node_name


class NotAvailableError(NpuflowError, NotImplementedError):
    """A feature of the original toolchain that npuflow does not provide (yet)."""


class OutputError(NpuflowError, OSError):
    """An output folder or file cannot be written."""


class DynamicShapeError(NpuflowError, ValueError):
    """A model input has a dynamic dimension and no value was given for it."""


class NpuflowWarning(UserWarning):
    """Something was accepted but handled differently from what the user may expect."""


class CompatibilityWarning(NpuflowWarning):
    """A parameter of the original ktc API is accepted, but npuflow does something else with it."""
