"""Calibration inputs: ``{input_name: iterable of arrays}``, consumed once, validated as they come.

Values may be lists or any iterable/generator; nothing is materialised, so a large calibration set
never sits in memory. Every model input must have an entry, each array must have the model's
shape (expected vs given) and be finite; errors name the input and the index of the bad array.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Sequence

import numpy as np

from npuflow.errors import InputError
from npuflow.inputs import InputSpec, check_array


def iter_calibration_inputs(specs: Sequence[InputSpec], input_mapping: Any) -> Iterator[dict[str, np.ndarray]]:
    """Yield one validated feed dict per calibration sample, in order."""
    if not isinstance(input_mapping, Mapping):
        raise InputError(
            f"input_mapping must be a dict {{input_name: [arrays...]}}, got {type(input_mapping).__name__}"
        )
    names = [s.name for s in specs]
    if not names:  # nothing would ever end the loop below
        raise InputError("the model has no inputs, so there is nothing to calibrate: export the model with its real input")
    for key in input_mapping:
        if key not in names:
            raise InputError(f"input_mapping has key '{key}' which is not a model input; the model's inputs are {names}")
    for s in specs:
        if s.name not in input_mapping:
            raise InputError(f"Cannot find the corresponding input data of model input {s.name}: "
                             f"add input_mapping['{s.name}'] = [arrays...]")
    iterators: dict[str, Iterator[Any]] = {}
    for s in specs:
        value = input_mapping[s.name]
        if isinstance(value, np.ndarray):
            raise InputError(f"input_mapping['{s.name}'] is a single numpy array; give a list (or iterable) of arrays, "
                             f"each of shape {s.shape}")
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise InputError(f"input_mapping['{s.name}'] must be a list or iterable of numpy arrays, got {type(value).__name__}")
        iterators[s.name] = iter(value)
    index = 0
    while True:
        feed: dict[str, np.ndarray] = {}
        ended = []
        for s in specs:
            try:
                item = next(iterators[s.name])
            except StopIteration:
                ended.append(s.name)
                continue
            feed[s.name] = check_array(s, item, where=f"(calibration array #{index})")
        if ended:
            if len(ended) != len(specs):
                raise InputError(f"calibration inputs have different lengths: {ended} ended after {index} arrays, "
                                 f"{[n for n in names if n not in ended]} have more")
            if index == 0:
                raise InputError(f"input_mapping['{ended[0]}'] is empty: give at least one calibration array")
            return
        yield feed
        index += 1


def length_hint(input_mapping: Mapping[str, Any]) -> int | None:
    """Number of samples if every value knows its length (lists), else None (generators)."""
    lengths = []
    for v in input_mapping.values():
        try:
            lengths.append(len(v))
        except TypeError:
            return None
    return min(lengths) if lengths else None
