"""Per-layer NPU cost model (see docs/cost-model.md for the equations and every constant).

Two steps, so that ``benchmarks/cost_model_fit.py`` can refit constants without re-walking graphs:

* :func:`node_terms` walks the placed graph once and returns, per node, the platform-independent
  work (MACs, MAC-equivalent work at the MAC array's channel-lane utilisation, channel-wise work,
  bytes moved);
* :func:`node_times` turns those terms into seconds with a :class:`CostConstants`.

Per NPU layer: ``t = max(t_compute, t_memory) + t_overhead`` where ``t_compute = work / (peak_MAC/s x
mac_efficiency)`` and ``t_memory = max(in/B_rdma, out/B_wdma, weights/B_getw)`` (three DMA engines
running concurrently, as the ktc report's RDMA/WDMA/GETW bandwidths suggest). CPU nodes cost 0: like
the original IP evaluator, only NPU time is estimated.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from npuflow.evaluate.graph import GraphView
from npuflow.evaluate.placement import CPU, NPU, Placement
from npuflow.platforms import CostModelSpec, Platform, cost_model_spec

_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


@dataclass(frozen=True)
class CostConstants:
    """Every number the time equations use (SI units)."""

    peak_macs_per_s: float
    mac_efficiency: float
    channel_lanes: int
    channelwise_utilisation: float
    layer_overhead_s: float
    onchip_bytes: float
    rdma_bytes_per_s: float
    wdma_bytes_per_s: float
    weight_bytes_per_s: float
    int16_operand_cost: float = 2.0
    int4_weight_speedup: float = 1.0

    @classmethod
    def for_platform(
        cls,
        platform: Platform,
        *,
        weight_bandwidth: float | None = None,
        dma_bandwidth: float | None = None,
        spec: CostModelSpec | None = None,
    ) -> "CostConstants":
        """Constants of ``platform``; bandwidth overrides are in GB/s (1e9 bytes/s)."""
        spec = spec or cost_model_spec()
        dma_r = platform.figure("rdma_bandwidth") if dma_bandwidth is None else dma_bandwidth
        dma_w = platform.figure("wdma_bandwidth") if dma_bandwidth is None else dma_bandwidth
        wbw = platform.figure("weight_bandwidth") if weight_bandwidth is None else weight_bandwidth
        return cls(
            peak_macs_per_s=platform.peak_macs_per_s,
            mac_efficiency=platform.figure("mac_efficiency"),
            channel_lanes=int(platform.figure("channel_lanes")),
            channelwise_utilisation=spec.constant("channelwise_utilisation"),
            layer_overhead_s=spec.constant("layer_overhead_us") * 1e-6,
            onchip_bytes=platform.figure("onchip_buffer_kib") * 1024.0,
            rdma_bytes_per_s=dma_r * 1e9,
            wdma_bytes_per_s=dma_w * 1e9,
            weight_bytes_per_s=wbw * 1e9,
            int16_operand_cost=spec.constant("int16_operand_cost"),
            int4_weight_speedup=platform.figure("int4_weight_speedup") if "int4_weight_speedup" in platform.hardware else 1.0,
        )

    def with_(self, **changes: float) -> "CostConstants":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class NodeTerms:
    """Platform-constant-free description of one node's work and traffic."""

    name: str
    op_type: str
    placement: str
    reason: str
    role: str  # "layer" (costed NPU layer), "fused" (folded into a layer / no-op / constant), "cpu"
    macs: int  # MACs of MAC ops; op count of vector ops (pooling window, elementwise)
    lane_work: float  # MAC-equivalents on the MAC array at its channel-lane utilisation (inf if n/a)
    channel_work: float  # work of the channel-wise path (divided by channelwise_utilisation); 0 if n/a
    bit_factor: float  # MAC-array passes per MAC from the bit widths
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    inputs: tuple[str, ...] = field(default=())
    outputs: tuple[str, ...] = field(default=())
    # activation tensors read / written, as (bytes, is a graph input/output): a tensor larger than the
    # on-chip buffer, or a graph input/output, goes through DDR
    input_tensors: tuple[tuple[int, bool], ...] = field(default=())
    output_tensors: tuple[tuple[int, bool], ...] = field(default=())

    def ddr_bytes(self, onchip_bytes: float) -> tuple[int, int]:
        """(activation bytes read from DDR, bytes written to DDR) with an on-chip buffer of that size."""
        rd = sum(b for b, io in self.input_tensors if io or b > onchip_bytes)
        wr = sum(b for b, io in self.output_tensors if io or b > onchip_bytes)
        return rd, wr

    def work(self, channelwise_utilisation: float) -> float:
        """MAC-array cycles' worth of int8 MAC-equivalents (before efficiency and bit widths)."""
        alt = self.channel_work / channelwise_utilisation if self.channel_work else math.inf
        w = min(self.lane_work, alt)
        return 0.0 if math.isinf(w) else w


def lane_utilisation(depth: int, lanes: int) -> float:
    """Share of the MAC array's input-channel lanes busy for a reduction over ``depth`` channels."""
    if depth <= 0:
        return 1.0
    return depth / (math.ceil(depth / lanes) * lanes)


def _prod(shape: tuple[int, ...] | None) -> int:
    return int(np.prod(shape)) if shape else (1 if shape == () else 0)


def _mac_terms(view: GraphView, node: onnx.NodeProto, lanes: int) -> tuple[int, int, bool]:
    """(MACs, reduction depth, channel-wise) of a MAC op; (0, 0, False) when shapes are unknown."""
    op = node.op_type
    attrs = view.attr(node)
    ins = list(node.input)
    if op in ("Conv", "ConvTranspose"):
        w = view.shape(ins[1]) if len(ins) > 1 else None
        x = view.shape(ins[0])
        y = view.shape(node.output[0])
        group = int(attrs.get("group", 1))
        if w is None or len(w) < 2:
            return 0, 0, False
        ksize = _prod(tuple(w[2:])) if len(w) > 2 else 1
        if op == "Conv":
            if y is None:
                return 0, 0, False
            cin_g = int(w[1])
            macs = _prod(y) * cin_g * ksize
        else:
            if x is None:
                return 0, 0, False
            cin_g = max(int(w[0]) // group, 1)
            cout_g = int(w[1])
            macs = _prod(x) * cout_g * ksize
        return macs, cin_g, group > 1 and cin_g < lanes
    if op == "Gemm":
        a = view.shape(ins[0])
        y = view.shape(node.output[0])
        if a is None or y is None or len(a) != 2:
            return 0, 0, False
        k = a[0] if int(attrs.get("transA", 0)) else a[1]
        return _prod(y) * int(k), int(k), False
    if op == "MatMul":
        a = view.shape(ins[0])
        y = view.shape(node.output[0])
        if a is None or y is None or not a:
            return 0, 0, False
        k = int(a[-1])
        return _prod(y) * k, k, False
    return 0, 0, False


def _rnn_macs(view: GraphView, node: onnx.NodeProto) -> int:
    x = view.shape(node.input[0])
    w = view.shape(node.input[1]) if len(node.input) > 1 else None
    r = view.shape(node.input[2]) if len(node.input) > 2 else None
    if x is None or w is None or r is None or len(x) < 3:
        return 0
    seq, batch = x[0], x[1]
    dirs, gh, inp = w
    hidden = r[2]
    return int(seq * batch * dirs * gh * (inp + hidden))


def _vector_ops(view: GraphView, node: onnx.NodeProto, spec: CostModelSpec) -> int:
    op = node.op_type
    out_n = sum(view.numel(o) for o in node.output if o)
    if op in spec.data_movement:
        return 0
    if op in spec.window:
        k = view.attr(node).get("kernel_shape") or [1]
        return out_n * int(np.prod(k))
    if op in spec.reduce_input:
        return view.numel(node.input[0])
    return out_n  # elementwise and anything else: one op per output element


def _fused_heads(view: GraphView, placements: list[Placement], spec: CostModelSpec) -> dict[int, int]:
    """Map node index -> index of the NPU layer it is fused into (activation/BN/pool after a conv)."""
    nodes = view.model.graph.node
    head: dict[int, int] = {}
    for i, node in enumerate(nodes):
        pl = placements[i]
        if pl.placement != NPU or pl.folded or node.op_type not in spec.fuse_ops:
            continue
        acts = [n for n in node.input if n and not view.is_const(n)]
        if len(acts) != 1 or acts[0] in view.graph_outputs:
            continue
        x = acts[0]
        p = view.producers.get(x)
        if p is None or len(view.consumers.get(x, [])) != 1:
            continue
        ppl = placements[p]
        if ppl.placement != NPU or ppl.folded:
            continue
        if p in head:
            head[i] = head[p]
        elif nodes[p].op_type in spec.fuse_producers:
            head[i] = p
    return head


def node_terms(
    view: GraphView,
    placements: list[Placement],
    platform: Platform,
    *,
    datapath_bits: int = 8,
    weight_bits: int = 8,
    spec: CostModelSpec | None = None,
    tensor_bits: Mapping[str, int] | None = None,
    node_weight_bits: Mapping[str, int] | None = None,
) -> list[NodeTerms]:
    """The cost terms of every node. ``datapath_bits`` / ``weight_bits`` apply to every tensor and
    every weight unless ``tensor_bits`` (activation tensor name -> bits) / ``node_weight_bits`` (ONNX
    node name -> bits of its constant weights) say otherwise: a quantized model's mixed widths
    (16-bit promotions, ``node_overrides``). A node's operand factor is the 16-bit one when any of
    its activation inputs or outputs is wider than 8 bits (the same figures as a 16-bit datapath)."""
    spec = spec or cost_model_spec()
    tbits = tensor_bits or {}
    wbits = node_weight_bits or {}
    lanes = int(platform.figure("channel_lanes"))
    i16 = spec.constant("int16_operand_cost")
    int4 = platform.figure("int4_weight_speedup") if "int4_weight_speedup" in platform.hardware else 1.0

    def w_factor(bits: int) -> float:
        return i16 if bits > 8 else (1.0 / int4 if bits < 8 else 1.0)

    def nbytes(name: str) -> int:
        return int(round(view.numel(name) * tbits.get(name, datapath_bits) / 8.0))

    nodes = list(view.model.graph.node)
    heads = _fused_heads(view, placements, spec)
    tail_outputs: dict[int, list[str]] = {}
    for member, h in heads.items():
        tail_outputs[h] = [o for o in nodes[member].output if o]  # graph order: the last member wins

    terms: list[NodeTerms] = []
    for i, node in enumerate(nodes):
        pl = placements[i]
        op = node.op_type
        ins = tuple(n for n in node.input if n)
        outs = tuple(o for o in node.output if o)
        if pl.folded or i in heads:
            terms.append(NodeTerms(pl.name, op, pl.placement, pl.reason, "fused", 0, math.inf, 0.0, 1.0, 0, 0, 0, ins, outs))
            continue
        role = "cpu" if pl.placement == CPU else "layer"
        act_in = [n for n in ins if not view.is_const(n)]
        const_in = [(k, n) for k, n in enumerate(node.input) if n and view.is_const(n)]
        in_t = tuple((nbytes(n), n in view.graph_inputs) for n in act_in)
        out_names = tail_outputs.get(i, list(outs))
        out_t = tuple((nbytes(o), o in view.graph_outputs) for o in out_names)
        act_f = i16 if max((tbits.get(n, datapath_bits) for n in (*act_in, *out_names, *outs)),
                           default=datapath_bits) > 8 else 1.0
        node_wb = wbits.get(node.name, weight_bits)
        w_f = w_factor(node_wb)
        in_bytes = sum(b for b, _ in in_t)
        out_bytes = sum(b for b, _ in out_t)
        w_bytes = 0
        if op not in spec.data_movement:
            for k, n in const_in:
                if _BIAS_INPUT.get(op) == k:
                    w_bytes += view.numel(n) * 4
                else:
                    w_bytes += int(math.ceil(view.numel(n) * node_wb / 8))
        if op in _MAC_OPS:
            macs, depth, channelwise = _mac_terms(view, node, lanes)
            lane_work = macs / lane_utilisation(depth, lanes) if macs else 0.0
            channel_work = float(macs) if channelwise else 0.0
            factor = act_f * w_f
        elif op in _RNN_GATES:
            macs = _rnn_macs(view, node)
            lane_work, channel_work, factor = float(macs), 0.0, act_f * w_f
        else:
            macs = _vector_ops(view, node, spec)
            lane_work, channel_work, factor = math.inf, float(macs), act_f
            if macs == 0:
                lane_work = 0.0
        terms.append(
            NodeTerms(pl.name, op, pl.placement, pl.reason, role, int(macs), lane_work, channel_work, factor,
                      w_bytes, in_bytes, out_bytes, ins, tuple(out_names), in_t, out_t)
        )
    return terms


@dataclass(frozen=True)
class NodeTime:
    compute_s: float
    memory_s: float
    time_s: float
    bound: str


def node_time(t: NodeTerms, c: CostConstants) -> NodeTime:
    if t.role == "cpu":
        return NodeTime(0.0, 0.0, 0.0, "cpu")
    if t.role == "fused":
        return NodeTime(0.0, 0.0, 0.0, "fused")
    compute = t.work(c.channelwise_utilisation) * t.bit_factor / (c.peak_macs_per_s * c.mac_efficiency)
    rd, wr = t.ddr_bytes(c.onchip_bytes)
    memory = max(rd / c.rdma_bytes_per_s, wr / c.wdma_bytes_per_s, t.weight_bytes / c.weight_bytes_per_s)
    return NodeTime(compute, memory, max(compute, memory) + c.layer_overhead_s, "compute" if compute >= memory else "memory")


def total_seconds(terms: list[NodeTerms], c: CostConstants) -> float:
    """Estimated NPU time of one inference (what the fit script minimises against)."""
    return sum(node_time(t, c).time_s for t in terms)
