"""Fast MaxPool (onnxruntime on integers held in float32: a maximum is exact), Concat
(a plain concatenation when no input needs requantizing) and nearest Resize (cached indices)."""
from __future__ import annotations

from typing import Any

import numpy as np

from npuflow.sim.fast._common import PlanCache, checked
from npuflow.sim.fast._ort import single_node_session
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels._geometry import window_geometry
from npuflow.sim.kernels.base import KernelStats, finish
from npuflow.sim.kernels.movement import ConcatParams
from npuflow.sim.kernels.pool import PoolParams
from npuflow.sim.kernels.resize import ResizeParams


class _PoolPlan:
    def __init__(self, params: PoolParams) -> None:
        self.sessions: dict[tuple, Any] = {}
        self.failed: set[tuple] = set()


_POOL_PLANS = PlanCache(_PoolPlan)


def _has_empty_window(in_sp: tuple[int, ...], params: PoolParams, pb: list[int], out_sp: list[int]) -> bool:
    """Whether some window (with dilation) covers no input element, only padding: the reference
    defines its maximum as ``qmin - 1`` (docs/fixed-point.md §9), onnxruntime returns 0 or -inf."""
    for n, k, s, d, b, o in zip(in_sp, params.kernel_shape, params.strides, params.dilations, pb, out_sp):
        pos = np.arange(o)[:, None] * s - b + np.arange(k)[None, :] * d
        if not ((pos >= 0) & (pos < n)).any(axis=1).all():
            return True
    return False


def max_pool(params: PoolParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["MaxPool"].eval``."""
    ref = KERNELS["MaxPool"]
    nd = len(params.kernel_shape)
    if len(inputs) != 1 or params.in_format.bits > 24 or nd == 0:
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "MaxPool", "X", params.in_format)
    if x.ndim != nd + 2 or x.size == 0:
        return ref.eval(params, x, stats=stats)
    win = {"kernel_shape": params.kernel_shape, "strides": params.strides, "dilations": params.dilations,
           "pads": params.pads, "auto_pad": params.auto_pad, "ceil_mode": params.ceil_mode}
    pb, pe, ex, out_sp = window_geometry(x.shape[2:], win)
    pads = tuple(int(v) for v in pb) + tuple(int(e + x_) for e, x_ in zip(pe, ex))
    if any(pads[i] >= params.kernel_shape[i % nd] for i in range(2 * nd)):
        return ref.eval(params, x, stats=stats)  # onnxruntime wants pads below the kernel size
    if _has_empty_window(x.shape[2:], params, pb, out_sp):
        return ref.eval(params, x, stats=stats)  # onnxruntime has no defined answer there
    plan: _PoolPlan = _POOL_PLANS.get(params)
    if pads in plan.failed:
        return ref.eval(params, x, stats=stats)
    try:
        sess = plan.sessions.get(pads)
        if sess is None:
            sess = single_node_session("MaxPool", {}, {
                "kernel_shape": list(params.kernel_shape), "strides": list(params.strides),
                "dilations": list(params.dilations), "pads": list(pads)}, rank=x.ndim)
            plan.sessions[pads] = sess
        (y,) = sess.run(None, {"x": x.astype(np.float32)})
    except Exception:  # noqa: BLE001 - any engine refusal: the reference gives the answer
        plan.failed.add(pads)
        return ref.eval(params, x, stats=stats)
    if tuple(y.shape[2:]) != tuple(out_sp):
        return ref.eval(params, x, stats=stats)
    m = y.astype(np.int64)
    if params.rq.identity and params.out_format.bits >= params.in_format.bits:
        if stats is not None:
            stats.out_elements += int(m.size)
        return m.astype(params.out_format.dtype)
    return finish(params.rq.apply(m), params.out_format, stats)


def concat(params: ConcatParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Concat"].eval``: inputs already in the output
    format are copied, the others requantized by the fused reference arithmetic."""
    from npuflow.sim.fast.elementwise import requant_array

    ref = KERNELS["Concat"]
    out = params.out_format
    dt = np.dtype(out.dtype)
    if (len(inputs) != len(params.in_formats) or not inputs
            or any(not isinstance(q, np.ndarray) or q.ndim != inputs[0].ndim or q.ndim == 0 for q in inputs)):
        return ref.eval(params, *inputs, stats=stats)
    nd = inputs[0].ndim
    a = params.axis + nd if params.axis < 0 else params.axis
    if not 0 <= a < nd:
        return ref.eval(params, *inputs, stats=stats)
    parts = []
    local = KernelStats() if stats is not None else None
    for q, f, rq in zip(inputs, params.in_formats, params.rqs):
        q = checked(q, "Concat", "input", f)
        if rq.identity and f.bits <= out.bits and q.dtype == dt:
            parts.append(q)
            continue
        r = requant_array(q, rq, out, local)
        if r is None:
            return ref.eval(params, *inputs, stats=stats)
        parts.append(r)
    try:
        res = np.concatenate(parts, axis=a)
    except ValueError:
        return ref.eval(params, *inputs, stats=stats)
    if stats is not None and local is not None:
        stats.out_saturated += local.out_saturated
        stats.out_elements += int(res.size)
    return res


_RESIZE_PLANS = PlanCache(lambda p: {})  # params -> {input shape: per-axis steps}


def resize(params: ResizeParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Resize"].eval``: the per-axis source indices
    (exact rational coordinates) are computed once per input shape; nearest mode gathers the
    integers in their own container and requantizes once (fused, with numba)."""
    from npuflow.sim.fast.elementwise import requant_array

    ref = KERNELS["Resize"]
    if len(inputs) != 1 or params.mode != "nearest" or not isinstance(inputs[0], np.ndarray):
        return ref.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "Resize", "X", params.in_format)
    by_shape = _RESIZE_PLANS.get(params)
    steps = by_shape.get(x.shape)
    if steps is None:
        steps = by_shape.setdefault(x.shape, ref.plan(params, x.shape))
    v = x
    for a, idx in steps:
        v = np.take(v, idx, axis=a)
    r = requant_array(v, params.rq, params.out_format, stats)
    if r is None:
        return finish(params.rq.apply(v.astype(np.int64)), params.out_format, stats)
    return r
