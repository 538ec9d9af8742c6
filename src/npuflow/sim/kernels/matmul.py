"""Gemm and MatMul: exact int64 matrix products, per-output-column requantization.

Constant second operand: weights quantized per output column (the ``N`` axis: axis 1 of ``B``
for Gemm without ``transB``, axis 0 with it; the last axis for MatMul). Runtime second operand
(activation x activation): both per tensor. Gemm's ``alpha`` is folded into the multipliers
(sign included) and ``beta * C / alpha`` is the bias in the accumulator format.
LSB bound: 0.5 LSB (+ 2**-31 relative), unless the accumulator saturated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels._mac import (
    MacOutput,
    build_mac_output,
    mac_finish,
    quantize_weight,
    weight_channel_format,
)
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Weights,
    attr,
    check_int,
    const,
    need_format,
    per_tensor,
    single_out,
)


@dataclass(frozen=True, eq=False)
class MatMulParams:
    a_format: QFormat
    b_format: QFormat
    b_q: np.ndarray | None  # constant second operand (already transposed to (.., K, N)), or None
    trans_a: bool
    trans_b: bool  # only for a runtime B
    out: MacOutput


def _mac_for_b(
    op: str,
    node_attrs: Mapping[str, Any] | None,
    a_fmt: QFormat,
    b_fmt: QFormat,
    b_q: np.ndarray | None,
    out: QFormat,
    bias: np.ndarray | None,
    alpha: float,
) -> MacOutput:
    if b_q is not None:
        n = b_q.shape[-1] if b_q.ndim >= 2 else 1
        wr, ws = (
            weight_channel_format(b_fmt, n, op)
            if b_q.ndim >= 2
            else weight_channel_format(per_tensor(b_fmt, op, "1-D B"), 1, op)
        )
        a = np.abs(b_q.astype(np.int64))
        abs_sum = (
            a.reshape(-1, a.shape[-2], a.shape[-1]).sum(axis=1).max(axis=0) if a.ndim >= 2 else np.array([a.sum()])
        )
        return build_mac_output(op, node_attrs, a_fmt, wr, ws, b_fmt.bits, out, bias, abs_sum, alpha=alpha)
    b_fmt = per_tensor(b_fmt, op, "runtime input B")
    wr, ws = weight_channel_format(b_fmt, 1, op)
    return build_mac_output(op, node_attrs, a_fmt, wr, ws, b_fmt.bits, out, bias, None, alpha=alpha)


class GemmKernel(Kernel):
    op_type = "Gemm"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> MatMulParams:
        op = self.op_type
        a_fmt = per_tensor(need_format(in_formats, 0, op), op, "input A")
        b_fmt = need_format(in_formats, 1, op, "input B")
        out = single_out(out_format, op)
        alpha = float(attr(node_attrs, "alpha", 1.0))
        beta = float(attr(node_attrs, "beta", 1.0))
        if alpha == 0.0:
            raise ValueError("Gemm: alpha == 0 is not supported (the output is the constant beta*C)")
        trans_a = bool(attr(node_attrs, "transA", 0))
        trans_b = bool(attr(node_attrs, "transB", 0))
        B = const(weights, "B")
        C = const(weights, "C")
        bias = None
        if C is not None:
            per_column = C.ndim == 1 or (C.ndim == 2 and C.shape[0] == 1)
            n_out = None if B is None else (B.shape[0] if trans_b else B.shape[1])
            if C.size != 1 and (not per_column or (n_out is not None and C.shape[-1] != n_out)):
                raise ValueError(
                    f"Gemm: bias C of shape {C.shape} is not supported (scalar or one value per output column)"
                )
            bias = np.asarray(C, dtype=np.float64).reshape(-1) * (beta / alpha)
        b_q = None
        if B is not None:
            if b_fmt.axis is not None and (b_fmt.axis % 2) != (0 if trans_b else 1):
                raise ValueError("Gemm: per-channel weight format must be along the output (N) axis of B")
            b_q = quantize_weight(B, b_fmt, op)
            if trans_b:
                b_q = np.ascontiguousarray(b_q.T)
            if bias is not None and bias.size == 1:
                bias = np.full(b_q.shape[1], bias[0])
            if b_fmt.per_channel:
                b_fmt = QFormat(b_fmt.bits, b_fmt.radix, b_fmt.scale, 1)
        mac = _mac_for_b(op, node_attrs, a_fmt, b_fmt, b_q, out, bias, alpha)
        return MatMulParams(a_fmt, b_fmt, b_q, trans_a, trans_b, mac)

    def eval(self, params: MatMulParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        a = check_int(inputs[0], self.op_type, "A", params.a_format).astype(np.int64)
        if params.trans_a:
            a = a.T
        if params.b_q is not None:
            if len(inputs) != 1:
                raise ValueError("Gemm: B is a constant; eval takes only A")
            b = params.b_q.astype(np.int64)
        else:
            b = check_int(inputs[1], self.op_type, "B", params.b_format).astype(np.int64)
            if params.trans_b:
                b = b.T
        acc = a @ b
        return mac_finish(acc, acc.ndim - 1, params.out, stats)


class MatMulKernel(Kernel):
    op_type = "MatMul"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> MatMulParams:
        op = self.op_type
        if const(weights, "A") is not None:
            raise ValueError("MatMul: a constant first operand is not supported (transpose the product)")
        a_fmt = per_tensor(need_format(in_formats, 0, op), op, "input A")
        b_fmt = need_format(in_formats, 1, op, "input B")
        out = single_out(out_format, op)
        B = const(weights, "B")
        b_q = None
        if B is not None:
            if b_fmt.axis is not None and B.ndim >= 2 and (b_fmt.axis % B.ndim) != B.ndim - 1:
                raise ValueError("MatMul: per-channel weight format must be along the last axis of B")
            b_q = quantize_weight(B, b_fmt, op)
        mac = _mac_for_b(op, node_attrs, a_fmt, b_fmt, b_q, out, None, 1.0)
        return MatMulParams(a_fmt, b_fmt, b_q, False, False, mac)

    def eval(self, params: MatMulParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        a = check_int(inputs[0], self.op_type, "A", params.a_format).astype(np.int64)
        if params.b_q is not None:
            if len(inputs) != 1:
                raise ValueError("MatMul: B is a constant; eval takes only A")
            b = params.b_q.astype(np.int64)
        else:
            b = check_int(inputs[1], self.op_type, "B", params.b_format).astype(np.int64)
        acc = np.matmul(a, b)
        if acc.ndim == 0:
            acc = acc.reshape(())
            return mac_finish(acc.reshape(1), 0, params.out, stats).reshape(())
        return mac_finish(acc, acc.ndim - 1, params.out, stats)


GEMM = GemmKernel()
MATMUL = MatMulKernel()
