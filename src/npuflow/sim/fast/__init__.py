"""Fast execution path of the integer simulator: the same integers as the reference kernels.

The reference kernels (:mod:`npuflow.sim.kernels`) are the specification; every function here
returns integers identical to ``KERNELS[op].eval`` for the same ``(params, *inputs)`` (and adds
the same counts to ``stats``), which ``tests/sim_fast`` checks with Hypothesis on every kernel
and bit for bit on the shared models. How they get there:

* MAC ops (Conv, ConvTranspose, Gemm, MatMul) run their multiply-accumulate on onnxruntime
  float32 (or float64) only when a bound proves every partial sum is an exactly
  representable integer (:mod:`npuflow.sim.fast._ort`), splitting operands into limbs where
  needed; pointwise convolutions and constant-B Gemm/MatMul of int8 activations run on
  onnxruntime's int8 MatMulInteger (int32 sums) where a once-per-process check shows it exact;
  depthwise convolutions sum in integers in one compiled kernel (:mod:`.depthwise`) where
  onnxruntime would need limbs or the layer is small; the integer output stage is compiled with
  numba when it is installed (a dependency where numba has wheels), else the reference ``mac_finish``
  runs on the int64 sums.
* Table, elementwise (Add/Sub, Mul, BatchNormalization, Relu/Clip: :mod:`.affine`), AveragePool
  and 2-D MaxPool ops are compiled integer loops (numba) with the reference arithmetic; without
  numba they are not replaced, except MaxPool, which then (and for other ranks) runs on onnxruntime
  (a maximum of integers held in float32 is exact). GlobalAveragePool, and ReduceMean over
  trailing axes, sum each plane in a compiled pass and round the means as the reference.

Selection: :func:`fast_eval` returns the fast function for an op type, or None (use the
reference). ``NPUFLOW_SIM=reference`` forces the reference kernels everywhere;
``NPUFLOW_SIM=numpy`` keeps the fast MAC engines but disables numba (the pure-numpy fallback).

Tuning (environment, read when used): ``NPUFLOW_SIM_THREADS`` intra-op threads of the
onnxruntime sessions (default: onnxruntime's); ``NUMBA_NUM_THREADS`` numba's;
``NPUFLOW_SIM_MICROBATCH`` samples per step in ``FixedModel.run_batch`` (default 4);
``NPUFLOW_SIM_ARENA=1`` onnxruntime memory arenas (faster at large batches, one arena per step);
``NPUFLOW_NUMBA_CACHE=0`` no on-disk cache of compiled kernels; ``NPUFLOW_SIM_INT8=0`` no int8
MatMulInteger engine; ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` how long numba's OpenMP workers
spin between kernels (defaults PASSIVE / 30000, set at import unless already set: see
:mod:`._nb`).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from npuflow.sim.fast._nb import HAVE_NUMBA

FastFn = Callable[..., Any]


def _registry() -> dict[str, FastFn]:
    from npuflow.sim.fast import affine, conv, elementwise, matmul, movement

    fast: dict[str, FastFn] = {
        "Conv": conv.conv,
        "ConvTranspose": conv.conv_transpose,
        "Gemm": matmul.gemm,
        "MatMul": matmul.matmul,
        "Add": elementwise.add,
        "Sub": elementwise.sub,
        "MaxPool": movement.max_pool,
        "AveragePool": movement.avg_pool,
        "GlobalAveragePool": movement.global_avg_pool,
        "ReduceMean": movement.reduce_mean,
        "Concat": movement.concat,
        "Resize": movement.resize,
        "Mul": affine.mul,
        "BatchNormalization": affine.batch_norm,
        "Relu": affine.clamp,
        "Clip": affine.clip,
    }
    for op in ("Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Swish"):
        fast[op] = elementwise.lut_for(op)
    return fast


_FAST: dict[str, FastFn] | None = None


def _fast() -> dict[str, FastFn]:
    """:data:`FAST`, built on first use (importing a kernel module alone, as the install's kernel
    build does, must not need onnx)."""
    global _FAST
    if _FAST is None:
        _FAST = _registry()
    return _FAST


def __getattr__(name: str) -> Any:
    if name == "FAST":  # Op type -> fast function with the reference ``eval`` contract ``(params, *inputs, stats=None)``
        return _fast()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def mode() -> str:
    """``"reference"``, ``"numpy"`` or ``"fast"`` (default), from ``NPUFLOW_SIM``."""
    m = os.environ.get("NPUFLOW_SIM", "").strip().lower()
    if m in ("reference", "ref"):
        return "reference"
    if m == "numpy" or not HAVE_NUMBA:
        return "numpy"
    return "fast"


def fast_eval(op_type: str) -> FastFn | None:
    """The fast function for ``op_type``, or None when the reference kernel should run."""
    if mode() == "reference":
        return None
    return _fast().get(op_type)


def kernel_for(op_type: str) -> FastFn:
    """What runs a step of ``op_type``: its fast function, or the reference kernel's ``eval``."""
    fn = fast_eval(op_type)
    if fn is not None:
        return fn
    from npuflow.sim.kernels import KERNELS

    return KERNELS[op_type].eval


__all__ = ["FAST", "HAVE_NUMBA", "fast_eval", "kernel_for", "mode"]
