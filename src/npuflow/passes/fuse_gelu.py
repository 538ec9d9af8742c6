"""Pass ``fuse_gelu`` (option ``platform``): GELU written as ``x * (1 + f) * 0.5`` keeps a bounded
gate.

PyTorch exports ``gelu(x)`` (erf form) as ``Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5``
and the tanh approximation as ``... Tanh -> Add 1 -> Mul x -> Mul 0.5``: the product
``x * (1 + f)`` reaches twice the activation's range and is quantized before the halving.

Rules:
1. Pattern: ``Mul(Mul(x, Add(f, 1)), 0.5)`` (or ``Div(..., 2)``; either operand order) where
   ``f`` is ``Erf(g)`` or ``Tanh(g)``, ``g`` is computed from ``x`` (``x`` is among the inputs of
   the at most 8 nodes that lead from ``x`` to ``g``), and the product and ``1 + f`` are read
   inside the pattern only.
2. When the platform's NPU table has ``Gelu``, the model's opset is >= 20 and ``f`` is
   ``Erf(x / sqrt 2)`` (``Div(x, 1.41421...)`` or ``Mul(x, 0.70710...)``): one ``Gelu`` node
   (``approximate="none"``). No platform table has it today.
3. Otherwise the multiplications are reassociated: ``Mul(x, Mul(Add(f, 1), 0.5))``: the gate
   ``(1 + f) / 2`` is in [0, 1] and the only other quantized tensor is the output. Float effect:
   none (scaling by 0.5 is exact in binary floating point, barring underflow to subnormals), so
   the result is bit-identical. The tanh form keeps its own function: it is never swapped for the
   erf form or back (its largest deviation from the erf GELU, for reference, is 4.73e-4, at
   x = -2.70, float64 on a 5e-5 grid over [-10, 10]).
4. The output keeps its name; the halving Mul keeps the name of the product node; the node that
   writes the output keeps the last node's name when that was a Mul, else it is ``Mul_<its name>``.
On the KL720 ``Erf`` itself is a CPU node (it is on the 530/630/730 tables); no exact NPU form of
the erf GELU exists there, and the tanh form's ``x^3`` is unbounded, so this pass does not
substitute one for the other.
"""
from __future__ import annotations

import math

import onnx
from onnx import helper

from npuflow.passes._rewrite import (
    Index,
    PlatformLike,
    close,
    npu_has,
    apply_plan,
)

MAX_DEPTH = 8


def _derived_from(idx: Index, t: str, x: str, depth: int = MAX_DEPTH) -> bool:
    if t == x:
        return True
    if depth == 0:
        return False
    n = idx.prod.get(t)
    return n is not None and any(_derived_from(idx, i, x, depth - 1) for i in n.input if i)


def _is_erf_gelu_arg(idx: Index, g: str, x: str) -> bool:
    n = idx.prod.get(g)
    if n is None:
        return False
    s = idx.scale_of(n)
    return s is not None and s[0] == x and close(s[1], 1.0 / math.sqrt(2.0))


def run(model: onnx.ModelProto, platform: PlatformLike | None = None) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    gelu_node = npu_has(platform, "Gelu") and idx.opset >= 20
    plan = []
    stale: set[str] = set()
    for last in idx.graph.node:
        s = idx.scale_of(last) if len(last.output) == 1 else None
        if s is None or not close(s[1], 0.5):
            continue
        prod = idx.producer(s[0], "Mul")
        if prod is None or not idx.private(s[0], last) or len(prod.input) != 2:
            continue
        for k in (0, 1):
            x, a = prod.input[k], prod.input[1 - k]
            add = idx.producer(a, "Add")
            if add is None or not idx.private(a, prod):
                continue
            sc = idx.split_const(add)
            if sc is None or not close(sc[1], 1.0):
                continue
            f = idx.producer(sc[0], ("Erf", "Tanh"))
            if f is None or not _derived_from(idx, f.input[0], x):
                continue
            y = last.output[0]
            if gelu_node and f.op_type == "Erf" and _is_erf_gelu_arg(idx, f.input[0], x) and idx.private(sc[0], add):
                g = idx.prod[f.input[0]]
                if idx.private(f.input[0], f):
                    old = [g, f, add, prod, last]
                    plan.append((old, [helper.make_node("Gelu", [x], [y], name=idx.name(f"Gelu_{last.name or y}"))]))
                    stale.update(o for n in old for o in n.output if o != y)
                    break
            et = idx.dtype_of(x)
            h = idx.name(f"{last.name or y}_gate")
            half = helper.make_node("Mul", [a, idx.const(0.5, et, "gelu_half")], [h], name=idx.op_name(prod, "Mul", y))
            out = helper.make_node("Mul", [x, h], [y], name=idx.op_name(last, "Mul", y))
            plan.append(([prod, last], [half, out]))
            stale.add(prod.output[0])
            break
    return apply_plan(model, plan, idx, stale)
