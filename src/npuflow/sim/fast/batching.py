"""Batched simulation: N samples through each step at once where that gives the same integers.

Representation: in a batched run every tensor holds the N per-sample tensors concatenated on
axis 0 (a sample of the model's own shape ``[1, ...]`` makes ``[N, ...]``). A step may take the
whole batch at once when, by the op's definition, it treats axis 0 independently and its
constants do not bind axis 0 (:func:`batch_safe`, a conservative whitelist); any other step runs
once per sample on equal slices of axis 0 and its outputs are concatenated again
(:func:`per_sample`), so results never depend on the whitelist being complete. This is how a
graph that fixes batch 1 (yolox_nano reshapes to ``[1, 85, -1]``) still runs batched: only its
few reshapes go sample by sample.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from npuflow.errors import NpuflowError


class BatchUnsupported(NpuflowError):
    """A step's per-sample outputs cannot be concatenated (0-d); run the samples one by one."""


#: ops that act on every element independently (any layout)
_UNARY = {"Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Swish", "Relu", "Clip", "LeakyRelu",
          "Identity", "Abs", "Neg", "Sqrt", "Log", "Erf", "Floor", "Ceil", "Round", "Softplus", "Softsign",
          "Elu", "Selu", "Celu", "Gelu", "Mish", "Cast", "Reciprocal", "Sin", "Cos", "Sign", "Not",
          "Dropout", "ThresholdedRelu", "Shrink", "IsNaN", "IsInf"}
#: ops whose ONNX definition treats axis 0 as the batch (N, C, ...)
_BATCH_AXIS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool",
               "BatchNormalization", "InstanceNormalization", "LRN", "DepthToSpace", "SpaceToDepth",
               "LpPool", "GlobalLpPool", "MaxRoiPool"}
#: broadcasting elementwise ops (runtime operands and constants checked)
_BINARY = {"Add", "Sub", "Mul", "Div", "PRelu", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less",
           "Greater", "And", "Or", "Xor", "Where", "BitShift", "Mod"}
#: ops with one axis attribute that must not be 0
_AXIS_OP = {"Softmax", "LogSoftmax", "Hardmax", "Concat", "Split", "Gather", "Flatten", "CumSum",
            "ArgMax", "ArgMin"}


def _norm(a: int, nd: int) -> int:
    return a + nd if a < 0 else a


def _axes_ok(axes: Sequence[int] | None, nd: int) -> bool:
    return axes is not None and len(axes) > 0 and all(_norm(int(a), nd) != 0 for a in axes)


def _attr(step: Any, params: Any, name: str, default: Any = None) -> Any:
    """An attribute from the kernel params (field or ``config`` dict) or the ONNX node."""
    if params is not None:
        if dataclasses.is_dataclass(params) and hasattr(params, name):
            return getattr(params, name)
        cfg = getattr(params, "config", None)
        if isinstance(cfg, Mapping) and name in cfg:
            return cfg[name]
    v = step.attrs.get(name, default) if step is not None else default
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return v


def _consts_ok(arrays: Sequence[np.ndarray], rank: int) -> bool:
    """Constants broadcast against rank-``rank`` operands must not bind axis 0."""
    for a in arrays:
        if a.ndim >= rank and a.shape[a.ndim - rank] != 1:
            return False
    return True


def _param_arrays(params: Any) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    if params is not None and dataclasses.is_dataclass(params):
        for f in dataclasses.fields(params):
            v = getattr(params, f.name)
            if isinstance(v, np.ndarray):
                out.append(v)
    return out


def batch_safe(step: Any, params: Any, args: Sequence[np.ndarray], n: int) -> bool:
    """True when ``step`` on the concatenated batch equals the concatenation of its per-sample
    results; False sends it through :func:`per_sample`."""
    if not args or any(a.ndim == 0 or a.shape[0] % n for a in args):
        return False
    op = step.op_type
    nd = args[0].ndim
    lead = [a.shape[0] // n for a in args]
    if op in _UNARY:
        return True
    if op in _BATCH_AXIS:
        return nd >= 2 and all(a.ndim == nd for a in args)
    if op in _BINARY:
        if any(a.ndim != nd for a in args) or any(v != 1 for v in lead):
            return False
        consts = list(step.weights.values()) if step.float_step else _param_arrays(params)
        return _consts_ok([np.asarray(c) for c in consts], nd)
    if op in _AXIS_OP:
        default = {"Softmax": -1, "LogSoftmax": -1, "Hardmax": -1, "Concat": 1, "Split": 0,
                   "Gather": 0, "Flatten": 1, "CumSum": 0, "ArgMax": 0, "ArgMin": 0}[op]
        axis = _attr(step, params, "axis", default)
        if op == "CumSum" or axis is None:
            return False
        if op == "Concat" and (len(set(lead)) != 1 or (step.float_step and step.weights)):
            return False
        if op == "Gather" and len(args) > 1:
            return False
        return _norm(int(axis), nd) != 0
    if op == "Transpose":
        perm = _attr(step, params, "perm")
        return perm is not None and len(perm) > 0 and int(perm[0]) == 0
    if op in ("Slice",):
        if len(args) > 1:
            return False
        return _axes_ok(_attr(step, params, "axes"), nd)
    if op in ("Squeeze", "Unsqueeze", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum"):
        if len(args) > 1:
            return False
        axes = _attr(step, params, "axes")
        if op == "Unsqueeze":  # axes of the output
            return axes is not None and len(axes) > 0 and all(_norm(int(a), nd + len(axes)) != 0 for a in axes)
        return _axes_ok(axes, nd)
    if op == "Reshape":
        shape = _attr(step, params, "shape")
        allowzero = int(_attr(step, params, "allowzero", 0) or 0)
        return shape is not None and len(shape) > 0 and int(shape[0]) == 0 and not allowzero and len(args) == 1
    if op == "Resize" and not step.float_step and len(args) == 1:
        axes = params.axes
        if params.sizes is not None:
            return axes is not None and _axes_ok(axes, nd)
        if axes is None:
            return params.scales is not None and float(params.scales[0]) == 1.0
        return all(_norm(a, nd) != 0 or float(s) == 1.0 for a, s in zip(axes, params.scales))
    if op in ("Gemm",) and not step.float_step:
        return params.b_q is not None and not params.trans_a and len(args) == 1 and nd == 2
    if op == "MatMul" and not step.float_step:
        if params.b_q is not None:
            return len(args) == 1 and nd >= 2
        return len(args) == 2 and nd >= 3 and args[1].ndim == nd and lead == [1, 1]
    return False


def micro_batch() -> int:
    """Samples per kernel call when a batch is cut into micro-batches: ``NPUFLOW_SIM_MICROBATCH``
    (default 4; measured on 2 cores: near the best for efficientnet_lite0 and yolox_nano, while a
    whole batch of 32 at once is slower per input than one by one)."""
    return max(1, int(os.environ.get("NPUFLOW_SIM_MICROBATCH", "4")))


def per_sample(fn: Callable[..., Any], args: Sequence[np.ndarray], n: int, *, per: int = 1, **kw: Any) -> Any:
    """Run ``fn`` on ``per`` samples at a time (equal slices of axis 0; default one) and
    concatenate the outputs."""
    if any(a.ndim == 0 or a.shape[0] % n for a in args):
        raise BatchUnsupported("a runtime input of a step does not carry the batch on axis 0")
    starts = range(0, n, max(1, per))
    chunks = [[a[i * (a.shape[0] // n):min(i + per, n) * (a.shape[0] // n)] for i in starts] if a.shape[0]
              else [a] * len(starts) for a in args]
    results = [fn(*[c[j] for c in chunks], **kw) for j in range(len(starts))]
    if isinstance(results[0], (tuple, list)):
        outs = []
        for j in range(len(results[0])):
            parts = [r[j] for r in results]
            if any(np.ndim(p) == 0 for p in parts):
                raise BatchUnsupported("a step returns a scalar per sample")
            outs.append(np.concatenate(parts, axis=0))
        return type(results[0])(outs) if isinstance(results[0], tuple) else outs
    if any(np.ndim(r) == 0 for r in results):
        raise BatchUnsupported("a step returns a scalar per sample")
    return np.concatenate(results, axis=0)


__all__ = ["BatchUnsupported", "batch_safe", "micro_batch", "per_sample"]
