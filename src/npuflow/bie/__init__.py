"""The open quantized-model file (npuflow's ".bie").

Until the fixed-point analysis lands, this module only recognises files so that a wrong file
gets a clear message: Kneron's encrypted BIE, a plain ONNX file, or something else.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from npuflow.errors import ModelLoadError, NotAvailableError

BIE_DOMAIN = "ai.npuflow"
BIE_MAGIC_KEY = "npuflow.bie.format_version"


def open_bie(path: str | os.PathLike, *, platform: int | str | None = None):
    """Open an npuflow BIE for fixed-point simulation."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"BIE file not found: {p}")
    if p.is_dir() or p.stat().st_size == 0:
        raise ModelLoadError(f"{p} is not a BIE file (empty or a folder)")
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError):
        raise ModelLoadError(
            f"{p} is not an npuflow BIE: it is not readable as ONNX. Kneron's encrypted .bie files cannot be read "
            "by npuflow; quantize the float ONNX model with npuflow's analysis() to get an open BIE."
        ) from None
    meta = {m.key: m.value for m in model.metadata_props}
    if BIE_MAGIC_KEY not in meta:
        if not model.graph.node:
            raise ModelLoadError(
                f"{p} is not an npuflow BIE (no graph inside: an encrypted Kneron BIE or another format). "
                "Quantize the float ONNX model with npuflow's analysis() to get an open BIE."
            )
        raise ModelLoadError(
            f"{p} is a plain ONNX model, not an npuflow BIE (no '{BIE_MAGIC_KEY}' metadata): pass it as onnx_path/onnx_file"
        )
    raise NotAvailableError(f"{p}: fixed-point BIE simulation is not available in this npuflow version yet")
