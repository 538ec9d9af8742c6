"""The parts of a model output that its graph joins along the last axis (docs/fixed-point.md
section 3.1, "Outputs read part by part").

A detector that writes its whole head into one output (YOLOX: ``[N, anchors, 4 + 1 + classes]``)
concatenates quantities of different kinds along the last axis: box offsets of every anchor, an
objectness probability that is near 0 on all anchors but a few, class probabilities. Measured pooled,
the output's SNR is decided by the part with the most energy (the boxes of thousands of background
anchors), and a range choice that shrinks every object's score by a third costs it almost nothing.
Each part is therefore measured on its own and the output counts as its lowest part
(:class:`PartsSnr`). The parts are read from the graph, not from values: the inputs of a Concat along
the tensor axis that becomes the output's last axis, followed through the steps that only move values
(Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Identity, Cast) and through Concats along other axes
whose inputs all have the same parts (YOLOX's three levels).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from npuflow.analysis.tails import _Snr
from npuflow.passes._graph import known_static_shapes, producers

#: ops whose output holds the input's values with the axes only renamed or regrouped
_SAME_VALUES = {"Identity", "Cast"}
_REGROUP = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
#: how far back a part is followed (a guard against pathological graphs, not a limit seen in models)
MAX_DEPTH = 256


def output_parts(model: onnx.ModelProto, outputs: Sequence[str]) -> dict[str, list[int]]:
    """Output -> the boundaries of its parts along its last axis (``[0, b1, ..., size]``, at least
    two parts) for the outputs whose graph joins parts there; outputs without static shapes or
    without such a Concat are left out."""
    shapes = known_static_shapes(model.graph)
    prod = producers(model.graph)
    #: (tensor, axis) -> its segments: a tensor read by several Concats is followed once
    memo: dict[tuple[str, int], list[int] | None] = {}

    def segments(t: str, axis: int, depth: int) -> list[int] | None:
        key = (t, axis)
        if key not in memo:
            memo[key] = _segments(t, axis, depth)
        return memo[key]

    def _segments(t: str, axis: int, depth: int) -> list[int] | None:
        shape = shapes.get(t)
        if shape is None or not 0 <= axis < len(shape):
            return None
        whole = [shape[axis]]
        node = prod.get(t)
        if node is None or depth > MAX_DEPTH or not node.input or not node.input[0]:
            return whole
        op = node.op_type
        if op in _SAME_VALUES:
            return segments(node.input[0], axis, depth + 1) or whole
        if op == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is None:
                perm = list(range(len(shape)))[::-1]
            if len(perm) != len(shape):
                return whole
            return segments(node.input[0], perm[axis], depth + 1) or whole
        if op in _REGROUP:
            src = shapes.get(node.input[0])
            if src is None:
                return whole
            before = math.prod(shape[:axis])
            j = next((j for j in range(len(src)) if math.prod(src[:j]) == before and src[j] == shape[axis]), None)
            return whole if j is None else (segments(node.input[0], j, depth + 1) or whole)
        if op == "Concat":
            c = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if not -len(shape) <= c < len(shape):
                return whole
            subs = [segments(x, axis, depth + 1) for x in node.input if x]
            if any(s is None for s in subs):
                return whole
            if c % len(shape) == axis:
                return [k for s in subs for k in s if k > 0]
            return subs[0] if all(s == subs[0] for s in subs) else whole
        return whole

    out: dict[str, list[int]] = {}
    for o in outputs:
        shape = shapes.get(o)
        if not shape:
            continue
        seg = segments(o, len(shape) - 1, 0)
        if seg and len(seg) > 1 and sum(seg) == shape[-1]:
            out[o] = [0] + [int(x) for x in np.cumsum(seg)]
    return out


class PartsSnr:
    """An SNR accumulated per part of the last axis (``bounds`` from :func:`output_parts`); its
    :meth:`db` is the lowest part's. Values are added flattened, whole rows at a time."""

    __slots__ = ("bounds", "parts")

    def __init__(self, bounds: Sequence[int]) -> None:
        self.bounds = list(bounds)
        self.parts = [_Snr() for _ in self.bounds[1:]]

    def add(self, ref: np.ndarray, x: np.ndarray) -> None:
        width = self.bounds[-1]
        r = np.asarray(ref, dtype=np.float64).reshape(-1, width)
        v = np.asarray(x, dtype=np.float64).reshape(-1, width)
        for k, acc in enumerate(self.parts):
            lo, hi = self.bounds[k], self.bounds[k + 1]
            acc.add(r[:, lo:hi], v[:, lo:hi])

    def db(self) -> float:
        """The lowest part's SNR in dB; a part whose float values are all zero has no SNR of its
        own and is left out (every part all zero: the pooled SNR)."""
        live = [acc.db() for acc in self.parts if acc.sig > 0.0]
        if live:
            return min(live)
        pooled = _Snr()
        pooled.sig, pooled.noise = (sum(a.sig for a in self.parts), sum(a.noise for a in self.parts))
        return pooled.db()

    def each_db(self) -> list[float]:
        return [acc.db() for acc in self.parts]


def snr_accumulator(parts: Mapping[str, Sequence[int]], output: str) -> _Snr | PartsSnr:
    """The accumulator of ``output``'s SNR: per part where it has parts."""
    bounds = parts.get(output)
    return PartsSnr(bounds) if bounds else _Snr()
