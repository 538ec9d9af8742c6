"""Small helpers of the original API that are plain functions: get_radix, channel order."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from npuflow.errors import InputError

#: radix range accepted for an 8-bit model input by get_radix (a non-negative shift that fits a
#: 5-bit hardware field); see docs/compatibility.md.
RADIX_MIN, RADIX_MAX = 0, 31


def get_radix(inputs: Any) -> int:
    """Radix of an int8 model input from the inputs' absolute maximum: ``7 - ceil(log2(abs_max))``
    (the original's documented rule; e.g. RGB/256-0.5 -> abs_max 0.5 -> radix 8).

    Raises ValueError when no radix in [0, 31] represents the values: empty, non-finite or all-zero
    inputs, or abs_max > 128 (it would need a negative radix).
    """
    arrays: Iterable[Any] = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    abs_max = 0.0
    count = 0
    for k, a in enumerate(arrays):
        arr = np.asarray(a)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"get_radix: input {k} is not numeric (dtype {arr.dtype})")
        if arr.size == 0:
            continue
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"get_radix: input {k} contains NaN or Inf; the values are out of range")
        abs_max = max(abs_max, float(np.max(np.abs(arr.astype(np.float64)))))
        count += arr.size
    if count == 0:
        raise ValueError("get_radix: no values given (empty inputs)")
    if abs_max == 0.0:
        raise ValueError("get_radix: every input value is 0, so no radix follows from the range (log2(0)); the values are out of range")
    radix = 7 - math.ceil(math.log2(abs_max))
    if radix < RADIX_MIN:
        raise ValueError(f"get_radix: abs max {abs_max:g} is above 128: it needs radix {radix} < {RADIX_MIN}; "
                         "the values are out of range for an 8-bit input (scale the preprocessing down)")
    if radix > RADIX_MAX:
        raise ValueError(f"get_radix: abs max {abs_max:g} is so small that it needs radix {radix} > {RADIX_MAX}; "
                         "the values are out of range (check the preprocessing)")
    return radix


def convert_channel_last_to_first(image: np.ndarray) -> np.ndarray:
    """(H, W, C) or (N, H, W, C) -> (N, C, H, W)."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"convert_channel_last_to_first expects a numpy array, got {type(image).__name__}")
    if image.ndim == 3:
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    if image.ndim == 4:
        return np.ascontiguousarray(image.transpose(0, 3, 1, 2))
    raise InputError(f"convert_channel_last_to_first expects (H,W,C) or (N,H,W,C), got shape {image.shape}")
