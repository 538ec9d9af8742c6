"""What the platform condition checker knows about one node (``NodeInfo``): built by
``npuflow.evaluate`` for the nodes of a model, and by the optimizer's rewrites for a node that does
not exist yet (to ask whether the NPU would run it). In ``ir`` so that both layers share it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class NodeInfo:
    """One node as the checker sees it: its name, op, attributes, input/output shapes, constant inputs
    and the indices of the inputs given (optional inputs may be empty)."""

    name: str
    op_type: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    input_shapes: Sequence[tuple[int, ...] | None] = ()
    output_shapes: Sequence[tuple[int, ...] | None] = ()
    const_inputs: Mapping[int, np.ndarray] = field(default_factory=dict)
    present_inputs: frozenset[int] = frozenset()
