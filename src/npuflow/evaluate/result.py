"""Result data of the IP evaluator (placement + per-layer cost estimate).

These frozen dataclasses are the contract between ``npuflow.evaluate`` (which fills them) and
``npuflow.report`` (which renders them to text, JSON and HTML).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeEval:
    """One ONNX node of the optimized graph as the evaluator sees it."""

    name: str
    op_type: str
    placement: str  # "NPU" or "CPU"
    reason: str  # "" on the NPU; otherwise why the node falls back to the CPU
    macs: int
    weight_bytes: int  # bytes of constant weights at the weight bit width
    input_bytes: int  # activation bytes read (non-weight inputs) at the datapath bit width
    output_bytes: int  # activation bytes written
    compute_ms: float  # time at the platform's effective MAC rate
    memory_ms: float  # time to move input+output+weights through DDR
    time_ms: float  # estimate used for the total (NPU only; CPU nodes are 0: only NPU time is estimated)
    bound: str  # "compute", "memory" or "cpu"
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalResult:
    platform: int
    model_name: str
    nodes: tuple[NodeEval, ...]
    total_ms: float
    fps: float
    ddr_read_bytes: int  # activations read + weights read, per inference
    ddr_write_bytes: int
    weight_bytes: int
    total_macs: int
    bitwidths: dict[str, str]  # datapath/weight/model_in/model_out/cpu_node -> "int8" ...
    cost_model: dict[str, Any] = field(default_factory=dict)  # name, version, constants used

    @property
    def cpu_nodes(self) -> tuple[NodeEval, ...]:
        return tuple(n for n in self.nodes if n.placement == "CPU")

    @property
    def npu_nodes(self) -> tuple[NodeEval, ...]:
        return tuple(n for n in self.nodes if n.placement == "NPU")
