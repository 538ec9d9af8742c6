"""Validation of user inputs for inference: names, shapes, dtypes, finiteness.

One place for the checks that ``kneron_inference``, the loaded-model objects and (later) the
calibration path share, so every entry point gives the same messages.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from npuflow.errors import CompatibilityWarning, InputError


@dataclass(frozen=True)
class InputSpec:
    """A model input: its name, its fixed shape and its numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def _channel_last(expected: tuple[int, ...], given: tuple[int, ...], batched: bool) -> bool:
    """Whether ``given`` is an NCHW model input ``expected`` = (N, C, H, W), C 1 or 3, laid out channel
    last: (H, W, C), (N, H, W, C), or with a batch axis in front of those when ``batched``."""
    if len(expected) != 4 or expected[1] not in (1, 3):
        return False
    c, hw = expected[1], expected[2:]
    tail = given[-3:]
    fits = len(tail) == 3 and tail[2] == c and all(e in (-1, g) for e, g in zip(hw, tail[:2]))
    return fits and len(given) in ((3, 4, 5) if batched else (3, 4)) and given[-3:] != tuple(expected[1:])


def check_array(spec: InputSpec, value: Any, *, where: str = "", batched: bool = False) -> np.ndarray:
    """Return ``value`` as a contiguous array of ``spec.dtype`` or raise InputError.

    float64 (a common result of user preprocessing) is cast to the model's float32 with a warning.
    With ``batched``, the first axis is a batch of any size N and the rest must equal ``spec.shape``
    (with the model's own batch dim of 1 dropped when the array has the same rank as the model input).
    """
    label = f"input '{spec.name}'" + (f" {where}" if where else "")
    if not isinstance(value, np.ndarray):
        if isinstance(value, (list, tuple)) or np.isscalar(value):
            raise InputError(f"{label}: expected a numpy.ndarray, got {type(value).__name__}; wrap it with numpy.asarray(..., dtype=numpy.float32)")
        raise InputError(f"{label}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype.kind not in "fiub":
        raise InputError(f"{label}: dtype {value.dtype} is not numeric")
    expected = tuple(spec.shape)
    if batched and not (value.ndim == len(expected) and len(expected) > 0 and expected[0] in (1, -1)):
        expected = (-1,) + expected  # a batch axis in front of a model input that has none
    elif batched:
        expected = (-1,) + expected[1:]
    ok = value.ndim == len(expected) and all(e in (-1, g) for e, g in zip(expected, value.shape))
    shown = "(" + ", ".join("N" if (batched and k == 0) else ("?" if e == -1 else str(e)) for k, e in enumerate(expected)) + ")"
    if not ok:
        hint = ("; it looks channel-last (the channel axis last): convert it with ktc.convert_channel_last_to_first(x)"
                if _channel_last(tuple(spec.shape), tuple(value.shape), batched) else "")
        raise InputError(
            f"{label} has shape {tuple(value.shape)}, but the model expects {shown}. "
            f"Inputs must be in ONNX shape (channel first, NCHW){hint}."
        )
    if value.dtype != spec.dtype:
        if value.dtype == np.float64 and spec.dtype == np.float32:
            warnings.warn(
                f"{label} is float64; cast to the model's float32",
                CompatibilityWarning,
                stacklevel=4,
            )
        elif value.dtype.kind == "f" and spec.dtype.kind == "f":
            pass
        elif spec.dtype.kind == "f":
            warnings.warn(f"{label} is {value.dtype}; cast to the model's {spec.dtype}", CompatibilityWarning, stacklevel=4)
        else:
            raise InputError(f"{label} has dtype {value.dtype}, the model expects {spec.dtype}")
        value = value.astype(spec.dtype)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))[0]
        kind = "NaN" if np.isnan(value[tuple(bad)]) else "Inf"
        raise InputError(f"{label} contains {kind} (first at index {tuple(int(i) for i in bad)}); inputs must be finite")
    return np.ascontiguousarray(value)


def shape_error(spec: InputSpec, shape: Sequence[int], *, where: str = "", batched: bool = False) -> InputError | None:
    """The InputError :func:`check_array` raises for an array of ``shape`` (None when the shape
    fits), without the array: for checking a file's header before its data is read."""
    expected = tuple(spec.shape)
    if batched and not (len(shape) == len(expected) and len(expected) > 0 and expected[0] in (1, -1)):
        expected = (-1,) + expected
    elif batched:
        expected = (-1,) + expected[1:]
    if len(shape) == len(expected) and all(e in (-1, g) for e, g in zip(expected, shape)):
        return None
    shown = "(" + ", ".join("N" if (batched and k == 0) else ("?" if e == -1 else str(e)) for k, e in enumerate(expected)) + ")"
    label = f"input '{spec.name}'" + (f" {where}" if where else "")
    hint = ("; it looks channel-last (the channel axis last): convert it with ktc.convert_channel_last_to_first(x)"
            if _channel_last(tuple(spec.shape), tuple(shape), batched) else "")
    return InputError(f"{label} has shape {tuple(shape)}, but the model expects {shown}. "
                      f"Inputs must be in ONNX shape (channel first, NCHW){hint}.")


def bind_inputs(
    specs: Sequence[InputSpec],
    pre_results: Sequence[Any] | Mapping[str, Any],
    input_names: Sequence[str] | None = None,
    *,
    batched: bool = False,
) -> dict[str, np.ndarray]:
    """Match user arrays to model inputs and validate them.

    ``pre_results`` is either a mapping name -> array, or a list of arrays matched to
    ``input_names`` (the ktc calling convention). Every model input must be given exactly once.
    """
    by_name = {s.name: s for s in specs}
    if isinstance(pre_results, Mapping):
        if input_names is not None:
            raise InputError("pass either a dict of inputs or a list with input_names, not both")
        pairs = list(pre_results.items())
    else:
        if isinstance(pre_results, np.ndarray):
            raise InputError(
                "pre_results must be a list of arrays (one per model input), got a single numpy array; wrap it: [array]"
            )
        if not isinstance(pre_results, (list, tuple)):
            raise InputError(f"pre_results must be a list of numpy arrays, got {type(pre_results).__name__}")
        if input_names is None:
            if len(specs) == 1:
                input_names = [specs[0].name]
            else:
                raise InputError(f"input_names is required; the model's inputs are {[s.name for s in specs]}")
        if isinstance(input_names, str):
            input_names = [input_names]
        if len(input_names) != len(pre_results):
            raise InputError(
                f"got {len(pre_results)} arrays but {len(input_names)} input_names {list(input_names)}; give one name per array"
            )
        pairs = list(zip(input_names, pre_results))
    feeds: dict[str, np.ndarray] = {}
    for name, value in pairs:
        if name not in by_name:
            raise InputError(f"unknown input name '{name}'; the model's inputs are {list(by_name)}")
        if name in feeds:
            raise InputError(f"input '{name}' given twice")
        feeds[name] = check_array(by_name[name], value, batched=batched)
    missing = [s.name for s in specs if s.name not in feeds]
    if missing:
        raise InputError(f"missing model input(s) {missing}; input_names must list every model input {list(by_name)}")
    if batched:
        sizes = {n: int(v.shape[0]) for n, v in feeds.items()}
        empty = [n for n, k in sizes.items() if k == 0]
        if empty:
            raise InputError(f"input '{empty[0]}' is an empty batch (N = 0 on its first axis): give at least one input")
        if len(set(sizes.values())) > 1:
            raise InputError(f"batched inputs have different batch sizes: {sizes}")
    return feeds
