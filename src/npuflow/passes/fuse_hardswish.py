"""Pass ``fuse_hardswish`` (option ``platform``): decomposed HardSwish becomes one NPU-friendly form.

``hardswish(x) = x * clip(x + 3, 0, 6) / 6``. Exporters write it in pieces (paddle2onnx:
``Mul(x, Clip(Add(x, 3), 0, 6)) / 6``; PyTorch/timm graphs: ``x * (Clip(x + 3, 0, 6) / 6)``; or
``x * HardSigmoid(x, 1/6, 0.5)``) and the paddle2onnx order quantizes the product
``x * relu6(x + 3)``, six times the activation's range (up to ~430 in a real text detector), before
the division; ``Div`` and ``HardSigmoid`` are CPU nodes on the KL720.

Rules:
1. Patterns (``x`` any tensor; constants are one-element float initializers, compared with a
   relative tolerance of 1e-6; ``Div(t, c)`` and ``Mul(t, 1/c)`` are interchangeable; either
   operand order of Add/Mul):
   a. ``Mul(x, Clip(Add(x, 3), 0, 6))`` then ``/ 6`` (paddle2onnx);
   b. ``Mul(x, Clip(Add(x, 3), 0, 6) / 6)``;
   c. ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))``;
   d. a ``HardSwish`` node.
   Every intermediate tensor of the pattern is read only inside it (not a graph output, not read
   by another node or a subgraph); otherwise the pattern is left alone. Clip bounds are constant
   inputs (opset >= 11) or attributes (before).
2. Target, by the platform's NPU operator table (``platform=None``: the portable form c):
   a. the table has ``HardSwish`` and the model's opset is >= 14: one ``HardSwish`` node;
   b. the table has ``HardSigmoid``: ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))`` (the analysis
      runs HardSigmoid as one exact table step);
   c. otherwise: ``Mul(x, Mul(Clip(Add(x, 3), 0, 6), 1/6))``: Add+Clip is one step of the
      analysis with a [0, 6] output, then [0, 1], then the product. No intermediate exceeds the
      activation's range (max(6, max x)); every op runs on the KL720/530/630/730 NPU.
   A pattern already in its target form is left alone (so the pass reaches a fixed point).
3. The output tensor keeps its name; nodes that keep their role keep their name (the Add, the
   Clip), the other new nodes are named ``<Op>_<name of the pattern's last node>``.
4. Float effect: the same function, reassociated: within a few float32 ulps of the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from npuflow.passes._graph import is_default_domain
from npuflow.passes._rewrite import (
    Index,
    PlatformLike,
    attr,
    close,
    npu_has,
    apply_plan,
)

SIXTH = 1.0 / 6.0


@dataclass
class _Match:
    kind: str  # "a", "b", "c", "d" (rule 1)
    x: str
    out: str
    nodes: list[onnx.NodeProto]  # in graph order
    add: onnx.NodeProto | None = None
    clip: onnx.NodeProto | None = None
    scale: onnx.NodeProto | None = None  # the "/ 6" node
    product: onnx.NodeProto | None = None  # the Mul(x, ...) node


def _relu6_of_x_plus_3(idx: Index, clip: onnx.NodeProto) -> tuple[str, onnx.NodeProto] | None:
    """``clip = Clip(Add(x, 3), 0, 6)`` with the Add read by the Clip only -> (x, add)."""
    b = idx.clip_bounds(clip)
    if b is None or b[0] != 0.0 or not close(b[1], 6.0):
        return None
    add = idx.producer(clip.input[0], "Add")
    if add is None or not idx.private(add.output[0], clip):
        return None
    sc = idx.split_const(add)
    if sc is None or not close(sc[1], 3.0):
        return None
    return sc[0], add


def _find(idx: Index) -> list[_Match]:
    found: list[_Match] = []
    for n in idx.graph.node:
        if not is_default_domain(n.domain):
            continue
        if n.op_type == "Clip":
            r = _relu6_of_x_plus_3(idx, n)
            if r is None:
                continue
            x, add = r
            nxt = idx.sole_reader(n.output[0])
            if nxt is None:
                continue
            if nxt.op_type == "Mul" and idx.other_input(nxt, n.output[0]) == x:  # a
                last = idx.sole_reader(nxt.output[0])
                s = idx.scale_of(last) if last is not None else None
                if s is not None and s[0] == nxt.output[0] and close(s[1], SIXTH):
                    found.append(_Match("a", x, last.output[0], [add, n, nxt, last], add, n, last, nxt))
                continue
            s = idx.scale_of(nxt)
            if s is not None and s[0] == n.output[0] and close(s[1], SIXTH):  # b
                prod = idx.sole_reader(nxt.output[0])
                if prod is not None and prod.op_type == "Mul" and idx.other_input(prod, nxt.output[0]) == x:
                    found.append(_Match("b", x, prod.output[0], [add, n, nxt, prod], add, n, nxt, prod))
        elif n.op_type == "HardSigmoid":
            if not close(float(attr(n, "alpha", 0.2)), SIXTH) or not close(float(attr(n, "beta", 0.5)), 0.5):
                continue
            x = n.input[0]
            prod = idx.sole_reader(n.output[0])
            if prod is not None and prod.op_type == "Mul" and idx.other_input(prod, n.output[0]) == x:
                found.append(_Match("c", x, prod.output[0], [n, prod], product=prod))
        elif n.op_type == "HardSwish":
            found.append(_Match("d", n.input[0], n.output[0], [n]))
    # a node belongs to one match at most (first come, first served)
    seen: set[int] = set()
    out = []
    for m in found:
        ids = {id(n) for n in m.nodes}
        if ids & seen:
            continue
        seen |= ids
        out.append(m)
    return out


def _target(idx: Index, platform: PlatformLike | None) -> str:
    if npu_has(platform, "HardSwish") and idx.opset >= 14:
        return "node"
    if npu_has(platform, "HardSigmoid"):
        return "hardsigmoid"
    return "bounded"


def _is_target(m: _Match, target: str, idx: Index) -> bool:
    if target == "node":
        return m.kind == "d"
    if target == "hardsigmoid":
        return m.kind == "c"
    return m.kind == "b" and m.scale is not None and m.scale.op_type == "Mul"


def _copy(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c


def _rewrite(idx: Index, m: _Match, target: str) -> list[onnx.NodeProto]:
    last = m.nodes[-1]
    anchor = last.name or m.out
    et = idx.dtype_of(m.x)

    def nm(op: str, keep: onnx.NodeProto | None) -> str:
        if keep is not None and keep.name and keep.op_type == op:
            return keep.name
        return idx.name(f"{op}_{anchor}")

    if target == "node":
        return [helper.make_node("HardSwish", [m.x], [m.out], name=nm("HardSwish", last if m.kind == "d" else None))]
    if target == "hardsigmoid":
        h = idx.name(f"{anchor}_hardsigmoid")
        return [helper.make_node("HardSigmoid", [m.x], [h], name=idx.name(f"HardSigmoid_{anchor}"),
                                 alpha=SIXTH, beta=0.5),
                helper.make_node("Mul", [m.x, h], [m.out], name=nm("Mul", m.product))]
    if m.add is not None and m.clip is not None:  # the Add and the Clip stay as they are
        add, clip = _copy(m.add), _copy(m.clip)
    else:
        t, c = idx.name(f"{anchor}_plus3"), idx.name(f"{anchor}_relu6")
        add = helper.make_node("Add", [m.x, idx.const(3.0, et, "hardswish_3")], [t], name=nm("Add", None))
        clip = idx.clip_node(t, 0.0, 6.0, c, nm("Clip", None), et)
    h = idx.name(f"{anchor}_hardsigmoid")
    scale = helper.make_node("Mul", [clip.output[0], idx.const(SIXTH, et, "hardswish_sixth")], [h],
                             name=nm("Mul", m.scale))
    prod = helper.make_node("Mul", [m.x, h], [m.out], name=nm("Mul", m.product))
    return [add, clip, scale, prod]


def run(model: onnx.ModelProto, platform: PlatformLike | None = None) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    target = _target(idx, platform)
    plan = []
    stale: set[str] = set()
    for m in _find(idx):
        if _is_target(m, target, idx):
            continue
        plan.append((m.nodes, _rewrite(idx, m, target)))
        stale.update(o for n in m.nodes for o in n.output if o != m.out)
    return apply_plan(model, plan, idx, stale)
