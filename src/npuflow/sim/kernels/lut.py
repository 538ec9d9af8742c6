"""Table-driven nonlinearities: Sigmoid, Tanh, Exp, HardSigmoid, HardSwish, Swish (fused SiLU).

Spec 7: *prepare* evaluates the float function once at every representable input value
(256 entries for int8, 65536 for int16: the whole input domain, so there is no interpolation)
and stores ``table[q - qmin] = saturate(RNE(f(q / f_in) * f_out))``. *eval* is one integer
gather. Every output is the correctly rounded value of ``f`` at the dequantized input:
bound 0.5 LSB (up to the float64 accuracy of ``f`` in prepare; the table itself, stored in the
BIE, is what makes results identical across machines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat, qrange
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Weights,
    attr,
    check_int,
    need_format,
    per_tensor,
    single_out,
)

LUT_MAX_BITS = 16
"""Widest input a table covers (65536 entries)."""

FloatFn = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _hard_sigmoid(x: np.ndarray, a: Mapping[str, Any]) -> np.ndarray:
    alpha = float(attr(a, "alpha", 0.2))
    beta = float(attr(a, "beta", 0.5))
    return np.clip(alpha * x + beta, 0.0, 1.0)


def _exp(x: np.ndarray, a: Mapping[str, Any]) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(x)


FUNCTIONS: dict[str, FloatFn] = {
    "Sigmoid": lambda x, a: _sigmoid(x),
    "Tanh": lambda x, a: np.tanh(x),
    "Exp": _exp,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": lambda x, a: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "Swish": lambda x, a: x * _sigmoid(float(attr(a, "alpha", 1.0)) * x),
}
"""Float definitions (float64) the tables are built from, per ONNX op type."""


@dataclass(frozen=True, eq=False)
class LutParams:
    in_format: QFormat
    table: np.ndarray  # output container dtype, 2**in_bits entries, index q - qmin
    saturated: np.ndarray  # bool per entry: the float value was outside the output range
    out_format: QFormat


def build_table(
    fn: Callable[[np.ndarray], np.ndarray], in_fmt: QFormat, out_fmt: QFormat
) -> tuple[np.ndarray, np.ndarray]:
    """``(table, saturated)`` over the whole input domain of ``in_fmt`` (prepare only)."""
    if in_fmt.bits > LUT_MAX_BITS:
        raise ValueError(f"table nonlinearity needs an input of at most {LUT_MAX_BITS} bits, got {in_fmt.bits}")
    lo, hi = qrange(in_fmt.bits)
    x = in_fmt.dequantize(np.arange(lo, hi + 1, dtype=np.int64))
    with np.errstate(over="ignore"):  # a huge input may overflow to +-inf: it saturates below
        y = np.asarray(fn(x), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.rint(y * float(out_fmt.factor()[0]))
    if np.isnan(v).any():
        raise ValueError("table function returned NaN")
    sat = (v < out_fmt.qmin) | (v > out_fmt.qmax)
    return np.clip(v, out_fmt.qmin, out_fmt.qmax).astype(out_fmt.dtype), sat


class LutKernel(Kernel):
    """Elementwise function by full-domain lookup table."""

    def __init__(self, op_type: str) -> None:
        self.op_type = op_type
        self.fn = FUNCTIONS[op_type]

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> LutParams:
        f = per_tensor(need_format(in_formats, 0, self.op_type), self.op_type, "input")
        out = single_out(out_format, self.op_type)
        attrs = dict(node_attrs or {})
        table, sat = build_table(lambda x: self.fn(x, attrs), f, out)
        return LutParams(f, table, sat, out)

    def eval(self, params: LutParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        (x,) = inputs
        q = check_int(x, self.op_type, "X", params.in_format)
        idx = q.astype(np.int64) - params.in_format.qmin
        if stats is not None:
            stats.out_saturated += int(np.count_nonzero(params.saturated[idx]))
            stats.out_elements += int(q.size)
        return params.table[idx]


SIGMOID = LutKernel("Sigmoid")
TANH = LutKernel("Tanh")
EXP = LutKernel("Exp")
HARD_SIGMOID = LutKernel("HardSigmoid")
HARD_SWISH = LutKernel("HardSwish")
SWISH = LutKernel("Swish")
