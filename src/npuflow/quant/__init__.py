"""Pure functions from ranges to fixed-point formats (see ``docs/fixed-point.md``)."""

from __future__ import annotations

from npuflow.quant.formats import (
    accumulator_bits,
    activation_format,
    bias_format,
    channel_abs_max,
    input_format,
    quantize_bias,
    quantize_weights,
    shared_format,
    weight_format,
)
from npuflow.quant.percentile import abs_percentile

__all__ = [
    "abs_percentile",
    "accumulator_bits",
    "activation_format",
    "bias_format",
    "channel_abs_max",
    "input_format",
    "quantize_bias",
    "quantize_weights",
    "shared_format",
    "weight_format",
]
