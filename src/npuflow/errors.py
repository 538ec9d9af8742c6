"""One exception hierarchy for npuflow.

Every message names what is wrong (file, node, op, input) and what to do about it.
The CLI prints ``str(error)`` as a single line and exits non-zero; no traceback.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any


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


class OptionEffectWarning(NpuflowWarning):
    """An option changes nothing on this model, or (a 16-bit datapath) leaves some tensors at 8
    bits under another rule; the report lists the same (docs/fixed-point.md section 3.7)."""


class AutoPrecisionWarning(NpuflowWarning):
    """``analysis(auto_precision=True)`` (the default) changed the precision of part of the model on
    its own, where measured to help (float tails: docs/fixed-point.md section 10.1); one warning
    lists every such choice, the report the same; ``auto_precision=False`` turns them off."""


class CalibrationWarning(NpuflowWarning):
    """The calibration data look degenerate, or the BIE they gave is poor: one input's range far
    above the others', tensors whose every calibration value is 0, or a model-output SNR below
    10 dB on the report's inputs (npuflow.calibration.degenerate, docs/report.md "Warnings"); the
    report lists the same under ``warnings``."""


#: npuflow's and ktc's source folders: frames there are not the user's
_PACKAGE_DIRS = tuple(str(d) + os.sep for d in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[1] / "ktc"))


def warn_user(message: str, category: type[Warning] = CompatibilityWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside npuflow and ktc (the user's line)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and _ours(frame.f_code):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _ours(code: Any) -> bool:
    """A frame of npuflow's or ktc's code (a dataclass's generated ``__init__`` included)."""
    if code.co_filename == "<string>" and code.co_name == "__init__":
        return True
    return os.path.realpath(code.co_filename).startswith(_PACKAGE_DIRS)
