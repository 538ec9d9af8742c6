"""IP evaluator entry point: placement + per-layer cost estimate of an optimized ONNX model."""
from __future__ import annotations

import logging
import math
from typing import Mapping

import onnx

from npuflow.errors import InvalidConfigError
from npuflow.evaluate.cost import CostConstants, node_terms, node_time
from npuflow.evaluate.graph import GraphView, ensure_shapes
from npuflow.evaluate.placement import CPU, Placement, place_nodes
from npuflow.evaluate.result import EvalResult, NodeEval
from npuflow.platforms import Platform, cost_model_spec, get_platform

log = logging.getLogger(__name__)


def _bits(value: int | str, what: str) -> int:
    if isinstance(value, str):
        s = value.strip().lower()
        if s.startswith("int") and s[3:].isdigit():
            return int(s[3:])
        if s.isdigit():
            return int(s)
        raise InvalidConfigError(f"{what} must be 4, 8 or 16 (or 'int4', 'int8', 'int16'); got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigError(f"{what} must be an int bit width (8 or 16); got {value!r}")
    return value


def _bandwidth(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidConfigError(f"{what} must be a positive number of GB/s or None; got {value!r}")
    return float(value)


def evaluate_model(
    model: onnx.ModelProto,
    platform: int | str | Platform,
    *,
    model_name: str = "model",
    datapath_bits: int | str = 8,
    weight_bits: int | str = 8,
    weight_bandwidth: float | None = None,
    dma_bandwidth: float | None = None,
    host_nodes: Mapping[str, str] | None = None,
    tensor_bits: Mapping[str, int] | None = None,
    node_weight_bits: Mapping[str, int] | None = None,
) -> EvalResult:
    """Estimate where each node runs and how long the NPU takes for one inference.

    ``model`` should be optimized and shape-inferred (static shapes); shape inference is run here
    when intermediate shapes are missing. ``weight_bandwidth`` / ``dma_bandwidth`` override the
    platform's weight-fetch and activation DMA bandwidths, in GB/s. Only NPU time is estimated:
    CPU nodes get time 0 (as in the original toolchain). Raises UnsupportedOperatorError for an op that
    neither the NPU nor the CPU fallback can run, InvalidConfigError for bad arguments.

    ``host_nodes``: ONNX node name -> reason for the nodes a fixed-point analysis runs as host
    post-processing (float tails, docs/fixed-point.md section 10.1): they are CPU nodes with that
    reason (no NPU time, like every CPU node), whatever the platform's table says.

    ``tensor_bits`` (tensor name -> bits) / ``node_weight_bits`` (node name -> bits): the widths of
    a quantized model where they differ from ``datapath_bits`` / ``weight_bits`` (16-bit
    promotions, ``node_overrides``; :func:`npuflow.evaluate.cost.node_terms`).
    """
    if not isinstance(model, onnx.ModelProto):
        raise InvalidConfigError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    plat = get_platform(platform)
    dp = _bits(datapath_bits, "datapath_bits")
    wb = _bits(weight_bits, "weight_bits")
    plat.check_bits("datapath", dp)
    plat.check_bits("weight", wb)
    wbw = _bandwidth(weight_bandwidth, "weight_bandwidth")
    dbw = _bandwidth(dma_bandwidth, "dma_bandwidth")

    spec = cost_model_spec()
    view = GraphView.build(ensure_shapes(model))
    placements = place_nodes(view, plat)
    if host_nodes:
        placements = [Placement(p.name, p.op_type, CPU, host_nodes[p.name]) if p.name in host_nodes else p
                      for p in placements]
    terms = node_terms(view, placements, plat, datapath_bits=dp, weight_bits=wb, spec=spec,
                       tensor_bits=tensor_bits, node_weight_bits=node_weight_bits)
    consts = CostConstants.for_platform(plat, weight_bandwidth=wbw, dma_bandwidth=dbw, spec=spec)

    nodes: list[NodeEval] = []
    total_s = 0.0
    rd = wr = wbytes = macs = 0
    for t in terms:
        nt = node_time(t, consts)
        total_s += nt.time_s
        if t.role == "layer":
            act_rd, act_wr = t.ddr_bytes(consts.onchip_bytes)
            rd += act_rd + t.weight_bytes
            wr += act_wr
            wbytes += t.weight_bytes
            macs += t.macs
        nodes.append(
            NodeEval(
                name=t.name,
                op_type=t.op_type,
                placement=t.placement,
                reason=t.reason,
                macs=t.macs,
                weight_bytes=t.weight_bytes,
                input_bytes=t.input_bytes,
                output_bytes=t.output_bytes,
                compute_ms=nt.compute_s * 1e3,
                memory_ms=nt.memory_s * 1e3,
                time_ms=nt.time_s * 1e3,
                bound=nt.bound,
                inputs=t.inputs,
                outputs=t.outputs,
            )
        )
    total_ms = total_s * 1e3
    fps = 1000.0 / total_ms if total_ms > 0 else math.inf
    if total_ms == 0:
        log.warning("%s: no NPU work on %s; FPS is infinite (only NPU time is estimated)", model_name, plat.name)
    names = {4: "int4", 8: "int8", 16: "int16"}
    cost_model = {
        "name": spec.name,
        "version": spec.version,
        "platform": plat.name,
        "constants": consts.as_dict(),
        "sources": {k: f.source for k, f in plat.hardware.items()} | {k: f.source for k, f in spec.constants.items()},
        "note": "NPU time only; CPU nodes are not timed (as in the original IP evaluator). See docs/cost-model.md.",
    }
    return EvalResult(
        platform=plat.id,
        model_name=model_name,
        nodes=tuple(nodes),
        total_ms=total_ms,
        fps=fps,
        ddr_read_bytes=int(rd),
        ddr_write_bytes=int(wr),
        weight_bytes=int(wbytes),
        total_macs=int(macs),
        bitwidths={
            "datapath": names[dp],
            "weight": names[wb],
            "model_in": names[dp],
            "model_out": names[dp],
            "cpu_node": names[dp],
        },
        cost_model=cost_model,
    )
