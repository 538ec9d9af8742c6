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

    __slots__ = ("counts", "edge", "abs_max", "count", "sum_sq", "track", "qmax")

    def __init__(self, track: tuple[float, ...] = ()) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.edge: float = 0.0  # 0 until a non-zero value is seen
        self.abs_max: float = 0.0
        self.count: int = 0
        self.sum_sq: float = 0.0
        #: quantiles q of |x| computed exactly within each update (one calibration input), and the
        #: maximum of each over all updates ("per-input percentile"): order-independent.
        self.track = tuple(q for q in track if q < 1.0)
        self.qmax: dict[float, float] = {q: 0.0 for q in self.track}

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
        if self.track:
            # exact per-input quantiles; partition once at the lowest q, then only the tail above it
            ks = sorted({min(a.size - 1, max(0, int(np.ceil(q * a.size)) - 1)): q for q in self.track}.items())
            base = ks[0][0]
            part = np.partition(a, base)
            tail = part[base:]
            for k, q in ks:
                t = np.partition(tail, k - base) if k != base else tail
                v = float(t[k - base] if k != base else part[base])
                for qq in self.track:
                    if min(a.size - 1, max(0, int(np.ceil(qq * a.size)) - 1)) == k and v > self.qmax[qq]:
                        self.qmax[qq] = v
        if m == 0.0:
            self.counts[0] += a.size
            return
        if m > self.edge:
            self._grow(m)
        width = self.edge / BINS
        idx = np.minimum(a / np.float64(width), BINS - 1).astype(np.int64)
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
        for q in self.track:
            self.qmax[q] = max(self.qmax[q], other.qmax.get(q, 0.0))

    def per_input_percentile(self, q: float) -> float:
        """Max over calibration inputs of each input's own ``q`` quantile of |x| (exact)."""
        if q >= 1.0:
            return self.abs_max
        if q not in self.qmax:
            raise KeyError(f"quantile {q} was not tracked during calibration")
        return self.qmax[q]

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
