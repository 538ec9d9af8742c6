"""One-node onnxruntime sessions used as exact integer engines.

A float32 multiply-accumulate of integers is exact, whatever the summation order (blocking,
vectorisation, FMA), when every partial sum is an integer of magnitude at most ``2**24``: all
such integers are float32 numbers, so no addition ever rounds. The fast MAC kernels prove this
bound from the weights (``max_c sum |w_q[c]| * max |x|``) before they use a float32 engine,
and split operands into limbs when it does not hold (:mod:`npuflow.sim.fast.conv`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

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
    from onnx import TensorProto, helper, numpy_helper  # here: the install's kernel build has no onnx

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


#: largest reduction length the int8 engines are used for: every partial sum of ``u8 * s8``
#: products (``< 2**15`` each) stays below 2**31, and so does the exact result; so does every raw
#: sum of ``u8 * u8`` products (``< 2**16`` each: at most ``255 * 255 * 2**15 < 2**31``)
INT8_MAX_K = 1 << 15


def int8_matmul_session(a: np.ndarray, a_zero_point: int, x_zero_point: int | None = None) -> Any:
    """Session computing ``(a - a_zero_point) @ (x - x_zero_point)`` exactly in int32 with
    onnxruntime's MatMulInteger: ``a`` a constant ``(M, K)`` uint8 matrix, ``x`` an ``(N, K, P)``
    input (dynamic ``N``, ``P``): int8 without a zero point (``x_zero_point`` None), else uint8
    with that zero point; ``y`` int32 ``(N, M, P)``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    unsigned = x_zero_point is not None
    node = helper.make_node("MatMulInteger", ["a", "x", "az"] + (["xz"] if unsigned else []), ["y"])
    init = [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.uint8), "a"),
            numpy_helper.from_array(np.array(a_zero_point, dtype=np.uint8), "az")]
    if unsigned:
        init.append(numpy_helper.from_array(np.array(x_zero_point, dtype=np.uint8), "xz"))
    g = helper.make_graph(
        [node], "npuflow_fast_int8",
        [helper.make_tensor_value_info("x", TensorProto.UINT8 if unsigned else TensorProto.INT8,
                                       ["n", int(a.shape[1]), "p"])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        initializer=init,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


#: engine -> whether its once-per-process exactness check passed (:func:`_engine_exact`)
_EXACT: dict[str, bool] = {}


def _engine_exact(engine: str, check: Callable[[], bool]) -> bool:
    """``check()`` once per process for ``engine`` (an onnxruntime failure counts as inexact: the
    float32 engines are used); ``NPUFLOW_SIM_INT8=0`` switches every integer engine off."""
    if os.environ.get("NPUFLOW_SIM_INT8", "1") == "0":
        return False
    if engine not in _EXACT:
        try:
            _EXACT[engine] = bool(check())
        except Exception:  # noqa: BLE001 - any onnxruntime problem: use the float32 engines
            _EXACT[engine] = False
    return _EXACT[engine]


def int8_engine_exact() -> bool:
    """Whether onnxruntime's MatMulInteger (uint8 x int8) is exact on this machine, checked once
    per process against int64 numpy on the products that an implementation summing pairs of
    products in saturating int16 (x86 without VNNI) gets wrong: ``255 * 127 + 255 * 127`` and
    ``255 * -128 + 255 * -128``, plus random values and the longest reduction used.
    ``NPUFLOW_SIM_INT8=0`` switches the int8 engine off."""

    def check() -> bool:
        rng = np.random.default_rng(0)
        k = INT8_MAX_K
        a = rng.integers(0, 256, (8, k)).astype(np.uint8)
        a[:4] = 255
        x = rng.integers(-128, 128, (2, k, 5)).astype(np.int8)
        x[0, :, 0], x[0, :, 1] = 127, -128
        x[1, :, :] = -128
        (y,) = int8_matmul_session(a, 128).run(None, {"x": x})
        ref = np.matmul(a.astype(np.int64) - 128, x.astype(np.int64))
        (y0,) = int8_matmul_session(a, 0).run(None, {"x": x})
        ref0 = np.matmul(a.astype(np.int64), x.astype(np.int64))
        return y.dtype == np.int32 and np.array_equal(y, ref) and np.array_equal(y0, ref0)

    return _engine_exact("s8", check)


def uint8_engine_exact() -> bool:
    """Whether onnxruntime's MatMulInteger on uint8 x uint8, both zero points 128 (how the 1x1
    convolutions use it where :func:`int8_engine_exact` fails), is exact on this machine, checked
    once per process against int64 numpy: the largest raw sums (every product ``255 * 255`` over
    the longest reduction used: ``2.13e9``, just below ``2**31``), the largest zero-point
    corrections (all zeros), alternating extremes and random values. x86 without VNNI widens both
    operands to 16 bits there (exact pair sums). ``NPUFLOW_SIM_INT8=0`` switches it off too."""

    def check() -> bool:
        rng = np.random.default_rng(1)
        k = INT8_MAX_K
        a = rng.integers(0, 256, (8, k)).astype(np.uint8)
        a[0], a[1], a[2, ::2], a[2, 1::2] = 255, 0, 255, 0
        x = rng.integers(0, 256, (2, k, 6)).astype(np.uint8)
        x[0, :, 0], x[0, :, 1], x[0, ::2, 2], x[0, 1::2, 2] = 255, 0, 255, 0
        x[1, :, :3], x[1, :, 3:] = 255, 0
        (y,) = int8_matmul_session(a, 128, 128).run(None, {"x": x})
        ref = np.matmul(a.astype(np.int64) - 128, x.astype(np.int64) - 128)
        return y.dtype == np.int32 and np.array_equal(y, ref)

    return _engine_exact("u8", check)


__all__ = ["F32_EXACT", "INT8_MAX_K", "int8_engine_exact", "int8_matmul_session", "session_options",
           "single_node_session", "uint8_engine_exact"]
