"""One-node onnxruntime sessions used as exact integer engines.

A float32 multiply-accumulate of integers is exact, whatever the summation order (blocking,
vectorisation, FMA), when every partial sum is an integer of magnitude at most ``2**24``: all
such integers are float32 numbers, so no addition ever rounds. The fast MAC kernels prove this
bound from the weights (``max_c sum |w_q[c]| * max |x|``) before they use a float32 engine,
and split operands into limbs when it does not hold (:mod:`npuflow.sim.fast.conv`).
"""

from __future__ import annotations

import os
from typing import Any

import onnx
from onnx import TensorProto, helper, numpy_helper

F32_EXACT = 1 << 24
"""Largest magnitude below which every integer is a float32 (inclusive)."""


def session_options() -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    threads = os.environ.get("NPUFLOW_SIM_THREADS")
    if threads:
        so.intra_op_num_threads = int(threads)
    # many small sessions share the cores with numba: do not let idle ORT workers spin
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # one arena per session would keep the largest batch's buffers of every step alive
    # (measured: 14 GB for yolox_nano at batch 32); plain allocations keep memory bounded
    so.enable_cpu_mem_arena = os.environ.get("NPUFLOW_SIM_ARENA", "0") == "1"
    return so


def single_node_session(
    op_type: str, inputs: dict[str, Any], attrs: dict[str, Any], *, opset: int = 17, rank: int | None = None
) -> Any:
    """Session running one ONNX node ``op_type`` on float32 input ``x`` (dynamic dims) with
    constant inputs ``inputs`` (name -> float32 array, in input order after ``x``)."""
    import onnxruntime as ort

    names = ["x"] + list(inputs)
    node = helper.make_node(op_type, names, ["y"], **attrs)
    shape = [f"d{i}" for i in range(rank)] if rank is not None else None
    g = helper.make_graph(
        [node],
        f"npuflow_fast_{op_type}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inputs.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


__all__ = ["F32_EXACT", "onnx", "session_options", "single_node_session"]
