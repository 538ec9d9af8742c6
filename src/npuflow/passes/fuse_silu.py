"""Pass ``fuse_silu``: SiLU/Swish and sigmoid written with Exp become the form the analysis fuses.

The analysis (docs/fixed-point.md; ``analysis/graph.py``) runs ``Mul(x, Sigmoid(x))`` as one
Swish table step when the Sigmoid output is read by that Mul only: one rounding, a bounded
output. yolox_nano's 104 SiLUs are already written that way, so this pass leaves them alone.
It rewrites the other ways the same function is written:

Rules (every intermediate of a pattern is read inside it only; ``Neg(x)`` may be ``Mul(x, -1)``):
1. ``Reciprocal(Add(Exp(Neg(x)), 1))`` or ``Div(1, Add(Exp(Neg(x)), 1))`` becomes ``Sigmoid(x)``:
   ``exp(-x)`` is unbounded and would be quantized (on the KL720, ``Reciprocal`` and ``Div`` are
   CPU nodes too).
2. ``Div(x, Add(Exp(Neg(x)), 1))`` becomes ``Mul(x, Sigmoid(x))``.
3. ``Mul(x, Sigmoid(x))`` whose Sigmoid output is also read elsewhere (or is a graph output): the Mul gets a Sigmoid of
   its own (``Sigmoid_<mul name>``, right before it), so that the pair becomes one Swish step;
   the other readers keep the original Sigmoid.
4. Swish with a factor (``x * Sigmoid(beta * x)``, beta != 1) is left alone: the analysis' Swish
   step has no factor for it.
5. The output tensor keeps its name; a node keeps its name while its op type stays, new nodes
   are named ``<Op>_<name of the node they replace>``. Float effect: onnxruntime's Sigmoid vs ``1/(1+exp(-x))``: a few float32 ulps.
"""
from __future__ import annotations

import onnx
from onnx import helper

from npuflow.passes._graph import is_default_domain
from npuflow.passes._rewrite import Index, apply_plan, close


def _neg_of(idx: Index, t: str, reader: onnx.NodeProto) -> tuple[str, onnx.NodeProto] | None:
    n = idx.producer(t, ("Neg", "Mul"))
    if n is None or not idx.private(t, reader):
        return None
    if n.op_type == "Neg":
        return n.input[0], n
    sc = idx.split_const(n)
    if sc is not None and close(sc[1], -1.0):
        return sc[0], n
    return None


def _one_plus_exp_neg(idx: Index, t: str, reader: onnx.NodeProto) -> tuple[str, list[onnx.NodeProto]] | None:
    """``t = Add(Exp(Neg(x)), 1)`` read by ``reader`` only -> (x, [neg, exp, add])."""
    add = idx.producer(t, "Add")
    if add is None or not idx.private(t, reader):
        return None
    sc = idx.split_const(add)
    if sc is None or not close(sc[1], 1.0):
        return None
    exp = idx.producer(sc[0], "Exp")
    if exp is None or not idx.private(sc[0], add):
        return None
    neg = _neg_of(idx, exp.input[0], exp)
    if neg is None:
        return None
    return neg[0], [neg[1], exp, add]


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    plan = []
    used: set[int] = set()
    stale: set[str] = set()

    def take(old: list[onnx.NodeProto], new: list[onnx.NodeProto]) -> None:
        ids = {id(n) for n in old}
        if ids & used:
            return
        used.update(ids)
        plan.append((old, new))
        stale.update(o for n in old for o in n.output)
        stale.difference_update(o for n in new for o in n.output)

    for n in idx.graph.node:
        if not is_default_domain(n.domain) or len(n.output) != 1:
            continue
        y = n.output[0]
        if n.op_type == "Reciprocal" or (n.op_type == "Div" and len(n.input) == 2 and close(idx.scalar(n.input[0]), 1.0)):
            r = _one_plus_exp_neg(idx, n.input[-1], n)
            if r is not None:
                take(r[1] + [n], [helper.make_node("Sigmoid", [r[0]], [y], name=idx.op_name(n, "Sigmoid", y))])
        elif n.op_type == "Div" and len(n.input) == 2:
            r = _one_plus_exp_neg(idx, n.input[1], n)
            if r is not None and r[0] == n.input[0]:
                x = r[0]
                s = idx.name(f"{n.name or y}_sigmoid")
                take(r[1] + [n], [helper.make_node("Sigmoid", [x], [s], name=idx.name(f"Sigmoid_{n.name or y}")),
                                  helper.make_node("Mul", [x, s], [y], name=idx.op_name(n, "Mul", y))])
        elif n.op_type == "Mul" and len(n.input) == 2:
            for k in (0, 1):
                sig = idx.producer(n.input[k], "Sigmoid")
                if sig is None or n.input[1 - k] != sig.input[0] or n.input[0] == n.input[1]:
                    continue
                if idx.sole_reader(sig.output[0]) is n:
                    break  # already the form the analysis fuses
                base = n.name or y
                s = idx.name(f"{base}_sigmoid")
                mul = onnx.NodeProto()
                mul.CopyFrom(n)
                mul.input[k] = s
                take([n], [helper.make_node("Sigmoid", [sig.input[0]], [s], name=idx.name(f"Sigmoid_{base}")), mul])
                break
    return apply_plan(model, plan, stale=stale)
