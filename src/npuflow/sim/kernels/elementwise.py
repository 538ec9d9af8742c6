"""Add, Sub, Mul, Div (numpy broadcasting, fused Relu/Clip allowed).

Add/Sub (spec 6.1): each input ``q_i`` is rescaled to the output format with ``P`` extra
fraction bits, ``t_i = RNE(q_i * f_out/f_i * 2**P)`` (its own multiplier/shift), a constant
operand becomes ``RNE(c * f_out * 2**P)``; the terms are summed exactly and rounded once more:
``out = RNE(sum / 2**P)``. ``P = min(20, 31 + shift_i)``. Bound: 0.5 LSB + n * 2**-(P+1).

Mul (6.2): runtime x runtime: exact product ``qa*qb`` requantized once with ``f_out/(fa*fb)``;
runtime x constant: the constant is folded into a per-element multiplier ``c*f_out/f_in`` (no
quantization of the constant). Div (6.2) only by a constant: multiplier ``f_out/(f_in*c)``.
Bound for Mul/Div: 0.5 LSB (+ 2**-31 relative), exact constant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import (
    QFormat,
    format_ratio,
    mul_div_round,
    multiplier_shift_array,
    requantize,
    rounding_right_shift,
)
from npuflow.sim.kernels.base import (
    Activation,
    Kernel,
    KernelStats,
    Weights,
    check_int,
    const,
    finish,
    fmt_at,
    per_tensor,
    single_out,
)

ADD_FRAC_BITS = 20
"""``P``: extra fraction bits of the Add/Sub intermediate (reduced if a multiplier is huge)."""

_NAMES = ("A", "B")


@dataclass(frozen=True, eq=False)
class AddParams:
    in_formats: tuple[QFormat, ...]  # runtime inputs, in order
    mult: tuple[int, ...]  # per runtime input, signed (Sub negates B)
    rshift: tuple[int, ...]  # per runtime input: right shift after multiplying (31 + shift - P >= 0)
    const_term: np.ndarray | None  # int64, constant operand in the intermediate (P fraction bits)
    frac_bits: int
    act: Activation
    out_format: QFormat


class AddKernel(Kernel):
    op_type = "Add"
    sign_b = 1

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> AddParams:
        op = self.op_type
        out = single_out(out_format, op)
        f_out = float(out.factor()[0])
        signs = (1, self.sign_b)
        fmts: list[QFormat] = []
        ms: list[int] = []
        shs: list[int] = []
        consts: list[tuple[int, np.ndarray]] = []
        for i, name in enumerate(_NAMES):
            c = const(weights, name)
            if c is not None:
                consts.append((signs[i], np.asarray(c, dtype=np.float64)))
                continue
            f = fmt_at(in_formats, i)
            if f is None:
                raise ValueError(f"{op}: input {name} needs a QFormat (or a constant in weights)")
            per_tensor(f, op, f"input {name}")
            m, s = format_ratio(out, f, extra=float(signs[i]))
            fmts.append(f)
            ms.append(int(m[0]))
            shs.append(int(s[0]))
        if not fmts:
            raise ValueError(f"{op}: both inputs are constants (fold them first)")
        p = min([ADD_FRAC_BITS] + [31 + s for s in shs])
        const_term = None
        if consts:
            tot = np.zeros((), dtype=np.float64)
            for sg, c in consts:
                tot = tot + sg * c
            v = np.rint(tot * np.ldexp(f_out, p))
            const_term = np.clip(np.nan_to_num(v, posinf=2.0**60, neginf=-(2.0**60)), -(2.0**60), 2.0**60).astype(
                np.int64
            )
        act = Activation.from_attrs(node_attrs, out, op)
        return AddParams(tuple(fmts), tuple(ms), tuple(31 + s - p for s in shs), const_term, p, act, out)

    def eval(self, params: AddParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        if len(inputs) != len(params.in_formats):
            raise ValueError(f"{self.op_type}: expected {len(params.in_formats)} runtime inputs, got {len(inputs)}")
        acc: Any = np.int64(0)
        for q, f, m, s in zip(inputs, params.in_formats, params.mult, params.rshift):
            q = check_int(q, self.op_type, "input", f)
            acc = acc + mul_div_round(q, m, 1, s)
        if params.const_term is not None:
            acc = acc + params.const_term
        out = rounding_right_shift(acc, params.frac_bits)
        return finish(params.act.clamp(out), params.out_format, stats)


class SubKernel(AddKernel):
    op_type = "Sub"
    sign_b = -1


@dataclass(frozen=True, eq=False)
class MulParams:
    in_formats: tuple[QFormat, ...]  # runtime inputs
    mult: np.ndarray  # int64: scalar (two runtime inputs) or per element of the constant
    shift: np.ndarray
    act: Activation
    out_format: QFormat


class MulKernel(Kernel):
    op_type = "Mul"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> MulParams:
        op = self.op_type
        out = single_out(out_format, op)
        ca, cb = const(weights, "A"), const(weights, "B")
        act = Activation.from_attrs(node_attrs, out, op)
        if ca is None and cb is None:
            fa = per_tensor(_need(in_formats, 0, op), op, "input A")
            fb = per_tensor(_need(in_formats, 1, op), op, "input B")
            ratio = out.tensor_scale / (fa.tensor_scale * fb.tensor_scale)
            e = out.tensor_radix - fa.tensor_radix - fb.tensor_radix
            m, s = multiplier_shift_array(ratio, exp2=e)
            return MulParams((fa, fb), m, s, act, out)
        if ca is not None and cb is not None:
            raise ValueError(f"{op}: both inputs are constants (fold them first)")
        i = 1 if ca is not None else 0
        c = np.asarray(ca if ca is not None else cb, dtype=np.float64)
        f = per_tensor(_need(in_formats, i, op), op, f"input {_NAMES[i]}")
        m, s = multiplier_shift_array(c * (out.tensor_scale / f.tensor_scale), exp2=out.tensor_radix - f.tensor_radix)
        return MulParams((f,), m, s, act, out)

    def eval(self, params: MulParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        if len(inputs) != len(params.in_formats):
            raise ValueError(f"{self.op_type}: expected {len(params.in_formats)} runtime inputs, got {len(inputs)}")
        qs = [check_int(q, self.op_type, "input", f).astype(np.int64) for q, f in zip(inputs, params.in_formats)]
        prod = qs[0] * qs[1] if len(qs) == 2 else qs[0]
        out = requantize(prod, params.mult, params.shift, 62)
        return finish(params.act.clamp(out), params.out_format, stats)


def _need(in_formats: Sequence[QFormat | None], i: int, op: str) -> QFormat:
    f = fmt_at(in_formats, i)
    if f is None:
        raise ValueError(f"{op}: input {_NAMES[i]} needs a QFormat (or a constant in weights)")
    return f


class DivKernel(MulKernel):
    """Div by a constant only (a runtime divisor is a CPU node)."""

    op_type = "Div"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> MulParams:
        op = self.op_type
        if const(weights, "B") is None or const(weights, "A") is not None:
            raise ValueError("Div: only a runtime dividend and a constant divisor B are supported")
        c = np.asarray(const(weights, "B"), dtype=np.float64)
        if np.any(c == 0):
            raise ValueError("Div: constant divisor contains zero")
        out = single_out(out_format, op)
        f = per_tensor(_need(in_formats, 0, op), op, "input A")
        ratio = (out.tensor_scale / f.tensor_scale) / c
        e = out.tensor_radix - f.tensor_radix
        m, s = multiplier_shift_array(ratio, exp2=e)
        return MulParams((f,), m, s, Activation.from_attrs(node_attrs, out, op), out)


ADD = AddKernel()
SUB = SubKernel()
MUL = MulKernel()
DIV = DivKernel()
