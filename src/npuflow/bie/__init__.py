"""The open quantized-model file (npuflow's ".bie"); see docs/bie-format.md.

This package reads and writes the file; the loaded, runnable model built from it is
``npuflow.model.FixedModel`` (``npuflow.load(path)`` or ``npuflow.model.open_bie(path)``).
"""
from __future__ import annotations

from npuflow.bie.format import BIE_DOMAIN, BIE_FORMAT_VERSION, BieContents, build_bie, read_bie

__all__ = ["BIE_DOMAIN", "BIE_FORMAT_VERSION", "BieContents", "build_bie", "read_bie"]
