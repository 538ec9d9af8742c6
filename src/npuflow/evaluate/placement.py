"""NPU / CPU placement of every node, with the reason a node falls back to the CPU.

Rules, in order (documented in docs/platforms.md):

1. A node outside the plain ONNX domain raises UnsupportedOperatorError.
2. Inference no-ops (Identity, Dropout) and nodes whose outputs are compile-time constants
   (Constant, Shape of a static tensor, anything computed only from constants) are folded: NPU, no cost.
3. An op in the platform's NPU table runs on the NPU when all its conditions hold; otherwise it falls
   back to the CPU with the first failed condition as reason.
4. A reshape-like op (Flatten, Reshape, Squeeze, Unsqueeze) feeding only fully-connected NPU layers is a
   view folded into them: NPU, no cost.
5. Any other op runs on the CPU if the CPU fallback can execute it (reason "op X not supported on
   KLxxx NPU"), else UnsupportedOperatorError
   ("Invalid program input: undefined CPU op [Op] of node [Name]").
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from npuflow.errors import UnsupportedOperatorError
from npuflow.evaluate.graph import GraphView, ensure_shapes, node_name
from npuflow.platforms import Platform, cost_model_spec, get_platform

NPU = "NPU"
CPU = "CPU"


@dataclass(frozen=True)
class Placement:
    name: str
    op_type: str
    placement: str  # "NPU" or "CPU"
    reason: str  # "" on the NPU
    folded: bool = False  # NPU node with no cost of its own (no-op, constant, view)


def _default_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def place_nodes(view: GraphView, platform: Platform) -> list[Placement]:
    spec = cost_model_spec()
    nodes = list(view.model.graph.node)
    out: list[Placement | None] = [None] * len(nodes)
    # Pass 1: everything except the views that depend on their consumers' placement.
    deferred: list[int] = []
    for i, node in enumerate(nodes):
        name = node_name(node)
        op = node.op_type
        if not _default_domain(node):
            raise UnsupportedOperatorError(op, name)  # custom domains have no CPU implementation
        if op in spec.no_op:
            out[i] = Placement(name, op, NPU, "", folded=True)
            continue
        if op == "Constant" or view.is_compile_time(node):
            if not (platform.cpu_supports(op) or platform.npu_supports(op)):
                raise UnsupportedOperatorError(op, name)
            out[i] = Placement(name, op, NPU, "", folded=True)
            continue
        if op in spec.fold_ops:
            deferred.append(i)
            continue
        out[i] = _place_by_table(view, node, platform)
    # Pass 2: reshape-like ops feeding only NPU fully-connected layers are views (walk backwards so that
    # chains Flatten -> Reshape -> Gemm resolve).
    for i in reversed(deferred):
        node = nodes[i]
        op, name = node.op_type, node_name(node)
        users = [c for o in node.output if o for c in view.consumers.get(o, [])]
        graph_out = any(o in view.graph_outputs for o in node.output)

        def _is_npu_fc(c: int) -> bool:
            pl = out[c]
            return pl is not None and pl.placement == NPU and (
                nodes[c].op_type in spec.fold_consumers or (pl.folded and nodes[c].op_type in spec.fold_ops)
            )

        if users and not graph_out and all(_is_npu_fc(c) for c in users):
            out[i] = Placement(name, op, NPU, "", folded=True)
        else:
            out[i] = _place_by_table(view, node, platform)
    return [p for p in out if p is not None]


def _place_by_table(view: GraphView, node: onnx.NodeProto, platform: Platform) -> Placement:
    op, name = node.op_type, node_name(node)
    if platform.npu_supports(op):
        reason = platform.npu_reason(view.node_info(node))
        return Placement(name, op, NPU, "") if reason is None else Placement(name, op, CPU, reason)
    if platform.cpu_supports(op):
        return Placement(name, op, CPU, f"op {op} not supported on {platform.name} NPU")
    raise UnsupportedOperatorError(op, name)


def place_model(model: onnx.ModelProto, platform: int | str | Platform) -> list[Placement]:
    """Placement of every node of ``model`` (one entry per node, graph order)."""
    plat = get_platform(platform)
    return place_nodes(GraphView.build(ensure_shapes(model)), plat)
