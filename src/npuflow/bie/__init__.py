"""The open quantized-model file (npuflow's ".bie"); see docs/bie-format.md.

This package reads and writes the file and validates everything it says (:mod:`.validate`, run at
every load); the loaded, runnable model built from it is ``npuflow.model.FixedModel``
(``npuflow.load(path)`` or ``npuflow.model.open_bie(path)``).
"""
from __future__ import annotations

from npuflow.bie.format import (
    BIE_DOMAIN,
    BIE_FORMAT_VERSION,
    BieContents,
    build_bie,
    read_bie,
    seal,
)
from npuflow.bie.validate import summary

__all__ = ["BIE_DOMAIN", "BIE_FORMAT_VERSION", "BieContents", "build_bie", "check_bie", "read_bie", "seal"]


def check_bie(path) -> str:
    """Read and validate a BIE (:func:`read_bie`); return a one-line summary (``npuflow check``)."""
    return summary(read_bie(path))
