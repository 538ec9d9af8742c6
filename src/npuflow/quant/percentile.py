"""Percentile of absolute values (the original's ``percentage`` range method)."""

from __future__ import annotations

import math

import numpy as np


def abs_percentile(x: np.ndarray, percentage: float = 1.0, *, axis: int | None = None) -> np.ndarray | float:
    """Smallest ``v`` such that a fraction ``percentage`` of ``|x|`` is ``<= v``.

    Order statistic without interpolation: with the ``n`` values of ``|x|`` sorted ascending,
    the result is element ``ceil(percentage * n) - 1`` (at least 0). ``percentage = 1`` is the
    absolute maximum; ``0.999`` drops the top 0.1 % ("0.1% of absolute maximum value will be
    removed"). ``axis`` given: one value per index of that axis (per-channel ranges).
    NaNs raise; an empty input gives 0.
    """
    if not 0.0 < percentage <= 1.0:
        raise ValueError(f"percentage must be in (0, 1], got {percentage}")
    a = np.abs(np.asarray(x, dtype=np.float64))
    if np.isnan(a).any():
        raise ValueError("abs_percentile: input contains NaN")
    if axis is not None:
        a = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
        return np.array([_one(row, percentage) for row in a])
    return _one(a.ravel(), percentage)


def _one(a: np.ndarray, p: float) -> float:
    n = a.size
    if n == 0:
        return 0.0
    k = max(0, min(n - 1, math.ceil(p * n) - 1))
    return float(np.partition(a, k)[k])


__all__ = ["abs_percentile"]
