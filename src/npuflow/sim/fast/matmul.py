"""Fast Gemm and MatMul: onnxruntime MatMul on integers held in float32 (or float64) when a bound
proves every partial sum exact, then the integer output stage (:mod:`npuflow.sim.fast._requant`).
(onnxruntime rather than numpy's BLAS keeps one thread pool kind in the hot loop.)

Bound: ``max_c sum_k |b[k, c]| * max |a|`` for a constant B (``K * max|a| * max|b|`` for a
runtime B); at most ``2**24`` -> float32, at most ``2**53`` -> float64, else the reference.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._common import PlanCache, checked, int8_limbs, max_abs
from npuflow.sim.fast._ort import F32_EXACT, INT8_MAX_K, int8_engine_exact, int8_matmul_session
from npuflow.sim.fast._requant import mac_output, with_bias_offset
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels.base import KernelStats
from npuflow.sim.kernels.matmul import MatMulParams

F64_EXACT = 1 << 53


class _Plan:
    def __init__(self, params: MatMulParams) -> None:
        self.b_abs = 0
        self.b = params.b_q
        self.sessions: dict[Any, Any] = {}
        self.out_lo: Any = None  # the int16 x int8 product's output stage (see _int8_product)
        if params.b_q is not None:
            b = params.b_q.astype(np.int64)
            if b.ndim >= 2:
                self.b_abs = int(np.abs(b).sum(axis=-2).max(initial=0))
            else:
                self.b_abs = int(np.abs(b).sum())

    def int8_session(self) -> Any:
        """``b^T @ a^T`` on the int8 engine: ``b^T`` as uint8 ``b + 128`` with zero point 128."""
        s = self.sessions.get("int8")
        if s is None:
            assert self.b is not None
            bt = np.ascontiguousarray(self.b.T).astype(np.int16) + 128
            s = self.sessions["int8"] = int8_matmul_session(bt.astype(np.uint8), 128)
        return s

    def session(self, dt: Any) -> Any:
        s = self.sessions.get(dt)
        if s is None:
            assert self.b is not None
            s = _matmul_session(dt, self.b.astype(dt))
            self.sessions[dt] = s
        return s


_PLANS = PlanCache(_Plan)
_RUNTIME: dict[Any, Any] = {}


def _matmul_session(dt: Any, b: np.ndarray | None, *, const_first: bool = False) -> Any:
    """MatMul session ``x @ b`` (``b`` constant, or a second input when None); with
    ``const_first`` the constant is the left operand: ``b @ x``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from npuflow.sim.fast._ort import session_options

    et = TensorProto.FLOAT if dt is np.float32 else TensorProto.DOUBLE
    ins = [helper.make_tensor_value_info("x", et, None)]
    inits = []
    if b is None:
        ins.append(helper.make_tensor_value_info("b", et, None))
    else:
        inits.append(numpy_helper.from_array(b, "b"))
    operands = ["b", "x"] if const_first else ["x", "b"]
    g = helper.make_graph([helper.make_node("MatMul", operands, ["y"])], "npuflow_fast_MatMul", ins,
                          [helper.make_tensor_value_info("y", et, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _engine(bound: int) -> Any:
    if bound <= F32_EXACT:
        return np.float32
    if bound <= F64_EXACT:
        return np.float64
    return None


def _finish(acc: np.ndarray, params: MatMulParams, stats: KernelStats | None) -> np.ndarray:
    shape = acc.shape
    nc = shape[-1]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    parts = np.ascontiguousarray(acc).reshape(1, rows, 1, 1, nc, 1)
    return mac_output(parts, params.out, stats).reshape(shape)


def _int8_product(plan: _Plan, params: MatMulParams, a: np.ndarray, stats: KernelStats | None) -> np.ndarray:
    """``a @ b`` for int8 ``a`` and a constant int8 ``b`` ``(K, N)`` as the exact int32 product
    ``(b^T @ a^T)^T`` (the engine wants the constant on the left), output stage per column.
    int16 ``a``: two int8 limbs in one call, the low limb's offset ``128 * sum_k b[k, n]`` added
    to the bias, as :func:`npuflow.sim.fast.conv._pointwise_i8` does."""
    k, nc = plan.b.shape
    lead = a.shape[:-1]
    rows = int(np.prod(lead))
    if a.dtype == np.int8:
        at = np.ascontiguousarray(a.reshape(rows, k).T).reshape(1, k, rows)
        p, shx = params.out, (0,)
    else:
        at = np.ascontiguousarray(int8_limbs(np.ascontiguousarray(a).reshape(rows, k)).transpose(0, 2, 1))
        if plan.out_lo is None:
            plan.out_lo = with_bias_offset(params.out, 128 * plan.b.astype(np.int64).sum(axis=0))
        p, shx = plan.out_lo, (8, 0)
    (acc,) = plan.int8_session().run(None, {"x": at})  # (limbs, N, rows) int32
    out = mac_output(acc.reshape(len(shx), 1, 1, 1, nc, rows), p, stats, shx=shx)  # (1, N, rows)
    return np.ascontiguousarray(out.reshape(nc, rows).T).reshape(lead + (nc,))


def _run(op: str, params: MatMulParams, inputs: tuple[np.ndarray, ...], stats: KernelStats | None) -> np.ndarray:
    ref = KERNELS[op]
    if not inputs or len(inputs) != (1 if params.b_q is not None else 2):
        return ref.eval(params, *inputs, stats=stats)
    a = checked(inputs[0], op, "A", params.a_format)
    if op == "Gemm":
        if a.ndim != 2:
            return ref.eval(params, *inputs, stats=stats)
        if params.trans_a:
            a = a.T
    plan: _Plan = _PLANS.get(params)
    if params.b_q is not None:
        b = params.b_q
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2] or a.size == 0:
            return ref.eval(params, *inputs, stats=stats)
        if (a.dtype in (np.int8, np.int16) and b.dtype == np.int8 and b.ndim == 2 and b.shape[0] <= INT8_MAX_K
                and int8_engine_exact()):
            return _int8_product(plan, params, a, stats)
        dt = _engine(plan.b_abs << (params.a_format.bits - 1)) or _engine(plan.b_abs * max_abs(a))
        if dt is None:
            return ref.eval(params, *inputs, stats=stats)
        sess = plan.session(dt)
        feeds = {"x": a.astype(dt)}
    else:
        b = checked(inputs[1], op, "B", params.b_format)
        if op == "Gemm":
            if b.ndim != 2:
                return ref.eval(params, *inputs, stats=stats)
            if params.trans_b:
                b = b.T
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2] or a.size == 0 or b.size == 0:
            return ref.eval(params, *inputs, stats=stats)
        k = a.shape[-1]
        dt = _engine(k * max_abs(a) * max_abs(b))
        if dt is None:
            return ref.eval(params, *inputs, stats=stats)
        sess = _RUNTIME.get(dt)
        if sess is None:
            sess = _RUNTIME.setdefault(dt, _matmul_session(dt, None))
        feeds = {"x": a.astype(dt), "b": b.astype(dt)}
    try:
        (acc,) = sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - shapes onnxruntime refuses: the reference decides
        return ref.eval(params, *inputs, stats=stats)
    return _finish(acc, params, stats)


def gemm(params: MatMulParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Gemm"].eval``."""
    return _run("Gemm", params, inputs, stats)


def matmul(params: MatMulParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["MatMul"].eval``."""
    return _run("MatMul", params, inputs, stats)
