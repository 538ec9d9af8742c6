"""Streaming, order-independent histogram of absolute values.

The histogram has ``BINS`` equal bins over ``[0, edge]`` where ``edge`` is always a power of two:
the smallest one >= the running abs max. When a larger value arrives, the edge doubles (k times)
and groups of 2**k bins merge. Because bin boundaries of different power-of-two edges nest and a
division by a power of two is exact in floating point, the final counts depend only on the data,
not on the order or grouping in which it arrived: calibration with 1, 2 or 4 threads, or in any
batch order, gives identical statistics. Memory is constant in the number of inputs.
"""
from __future__ import annotations

import math

import numpy as np

BINS = 4096


class AbsHistogram:
    """Histogram of |x| over all values seen, plus exact abs max and count."""

    __slots__ = ("counts", "edge", "abs_max", "count", "sum_sq")

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.edge: float = 0.0  # 0 until a non-zero value is seen
        self.abs_max: float = 0.0
        self.count: int = 0
        self.sum_sq: float = 0.0

    def _grow(self, new_max: float) -> None:
        target = 2.0 ** math.ceil(math.log2(new_max))
        if target < new_max:  # guard against log2 rounding
            target *= 2.0
        if self.edge == 0.0:
            self.edge = target
            return
        k = int(round(math.log2(target / self.edge)))
        if k <= 0:
            return
        if k >= int(math.log2(BINS)):
            merged = np.zeros(BINS, dtype=np.int64)
            merged[0] = self.counts.sum()
        else:
            g = 1 << k
            merged = np.zeros(BINS, dtype=np.int64)
            merged[: BINS // g] = self.counts.reshape(-1, g).sum(axis=1)
        self.counts = merged
        self.edge = target

    def update(self, x: np.ndarray) -> None:
        a = np.abs(np.asarray(x, dtype=np.float32)).ravel()
        if a.size == 0:
            return
        m = float(a.max())
        self.count += a.size
        self.sum_sq += float(np.dot(a.astype(np.float64), a.astype(np.float64)))
        if m > self.abs_max:
            self.abs_max = m
        if m == 0.0:
            self.counts[0] += a.size
            return
        if m > self.edge:
            self._grow(m)
        width = self.edge / BINS
        idx = np.minimum((a / np.float32(width)).astype(np.int64), BINS - 1)
        self.counts += np.bincount(idx, minlength=BINS)

    def merge(self, other: "AbsHistogram") -> None:
        """Add another histogram's data (order-independent, like update)."""
        if other.count == 0:
            return
        if other.edge > self.edge:
            self._grow(other.edge)
        counts = other.counts
        if other.edge and other.edge < self.edge:
            g = 1 << int(round(math.log2(self.edge / other.edge)))
            counts = np.zeros(BINS, dtype=np.int64)
            if g >= BINS:
                counts[0] = other.counts.sum()
            else:
                counts[: BINS // g] = other.counts.reshape(-1, g).sum(axis=1)
        self.counts += counts
        self.count += other.count
        self.sum_sq += other.sum_sq
        self.abs_max = max(self.abs_max, other.abs_max)

    def percentile(self, q: float) -> float:
        """Smallest bin upper edge below which at least a fraction ``q`` of all |x| lies, capped at
        the exact abs max. ``q >= 1`` returns the exact abs max."""
        if self.count == 0 or self.abs_max == 0.0:
            return 0.0
        if q >= 1.0:
            return self.abs_max
        need = q * self.count
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, need, side="left"))
        upper = (i + 1) * self.edge / BINS
        return min(upper, self.abs_max)

    def bin_centers(self) -> np.ndarray:
        width = self.edge / BINS if self.edge else 0.0
        return (np.arange(BINS) + 0.5) * width

    def quant_mse(self, clip: float, levels: int) -> float:
        """Expected squared error per value of symmetric uniform quantization with ``levels`` steps
        on each side clipping at ``clip``: rounding noise step^2/12 inside, (|x|-clip)^2 outside."""
        if self.count == 0 or clip <= 0:
            return float("inf")
        centers = self.bin_centers()
        step = clip / levels
        inside = centers <= clip
        err = np.where(inside, step * step / 12.0, (centers - clip) ** 2)
        return float(np.dot(self.counts, err) / self.count)
