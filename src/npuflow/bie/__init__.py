"""The open quantized-model file (npuflow's ".bie"); see docs/bie-format.md."""
from __future__ import annotations

import os

from npuflow.bie.format import BIE_DOMAIN, BIE_FORMAT_VERSION, BieContents, build_bie, read_bie

__all__ = ["BIE_DOMAIN", "BIE_FORMAT_VERSION", "BieContents", "build_bie", "read_bie", "open_bie"]


def open_bie(path: str | os.PathLike, *, platform: int | str | None = None):
    """Open an npuflow BIE as a loaded fixed-point model (``npuflow.model.FixedModel``)."""
    from npuflow.model import FixedModel

    return FixedModel(read_bie(path), platform=platform)
