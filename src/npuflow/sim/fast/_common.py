"""Helpers shared by the fast kernels: input checks, per-params plan cache, limb splitting."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels.base import check_int

T = TypeVar("T")


#: "no clamp" bounds of a fused activation, beyond any value a kernel computes
NO_CLAMP = 1 << 62


def clamp_bounds(act: Any) -> tuple[int, int]:
    """``(lo, hi)`` of a fused Relu/Clip activation in the output domain, else no clamp."""
    return (int(act.lo), int(act.hi)) if act.kind in ("relu", "clip") else (-NO_CLAMP, NO_CLAMP)


def count_out(stats: Any, saturated: int, size: int) -> None:
    """Add a kernel's saturated and total output counts to ``stats`` (when given)."""
    if stats is not None:
        stats.out_saturated += int(saturated)
        stats.out_elements += int(size)


def checked(x: Any, op: str, name: str, fmt: QFormat) -> np.ndarray:
    """The reference input check, skipped where it cannot fail: a signed integer array whose
    container is exactly ``fmt.bits`` wide holds only in-range values."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "i" and x.dtype.itemsize * 8 == fmt.bits:
        return x
    return check_int(x, op, name, fmt)


class PlanCache:
    """Per-params state of a fast kernel (sessions, converted weights), built once on first use.

    Params are frozen dataclasses compared by identity, so a weak dictionary keyed on them frees
    a plan together with its program -- provided the plan holds no reference to its params
    (a value referring to its own key is never freed: tests/sim_fast/test_other.py checks it).
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._plans: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, params: Any) -> Any:
        plan = self._plans.get(params)
        if plan is None:
            plan = self._build(params)
            with self._lock:
                plan = self._plans.setdefault(params, plan)
        return plan


def limb_bits(bits: int) -> int:
    """Width of the low limb when a ``bits``-wide integer is split in two balanced limbs."""
    return (bits + 1) // 2


def split2(a: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """``a = hi * 2**b + lo`` with ``lo`` in ``[-2**(b-1), 2**(b-1))`` (balanced) and
    ``|hi| <= 2**(bits-1-b) `` for a ``bits``-wide ``a``; both int32."""
    a32 = a.astype(np.int32)
    h = 1 << (b - 1)
    lo = ((a32 + h) & ((1 << b) - 1)) - h
    hi = (a32 - lo) >> b
    return hi, lo


def max_abs(x: np.ndarray) -> int:
    if x.size == 0:
        return 0
    return max(-int(x.min()), int(x.max()))


def split_limbs(a: np.ndarray, bits: int, k: int) -> tuple[list[np.ndarray], list[int], int]:
    """``a`` (``bits`` wide) as ``k`` balanced limbs of ``b = ceil(bits / k)`` bits:
    ``a = sum(limbs[i] * 2**shifts[i])`` with every ``|limb| <= 2**(b-1)``; most significant first.
    Returns ``(limbs, shifts, b)`` (int32 limbs)."""
    b = -(-bits // k)
    limbs: list[np.ndarray] = []
    rest = a.astype(np.int32)
    for _ in range(k - 1):
        rest, lo = split2(rest, b)
        limbs.append(lo)
    limbs.append(rest)
    limbs.reverse()
    return limbs, [b * (k - 1 - i) for i in range(k)], b


def limbs_f32(x: np.ndarray, bits: int, k: int) -> tuple[np.ndarray, list[int]]:
    """The ``k`` limbs of :func:`split_limbs` stacked on a new leading axis, as float32 (exact),
    in one compiled pass when numba is available. Returns ``(array (k, *x.shape), shifts)``."""
    from npuflow.sim.fast._nb import use_numba

    b = -(-bits // k)
    shifts = [b * (k - 1 - i) for i in range(k)]
    if use_numba() and x.flags.c_contiguous:
        out = np.empty((k,) + x.shape, dtype=np.float32)
        _limbs_kernel()(x.reshape(-1), b, k, out.reshape(k, -1))
        return out, shifts
    limbs, shifts, _ = split_limbs(x, bits, k)
    return np.stack(limbs).astype(np.float32), shifts


def int8_limbs(x: np.ndarray) -> np.ndarray:
    """Values of at most 16 bits as two int8 limbs on a new leading axis: ``hi = x >> 8`` and
    ``lo = (x & 255) - 128``, so that ``x = 256 * hi + lo + 128`` (both in ``[-128, 127]``); one
    compiled pass when numba is available."""
    from npuflow.sim.fast._nb import use_numba

    out = np.empty((2,) + x.shape, dtype=np.int8)
    if use_numba() and x.flags.c_contiguous:
        _int8_limbs_kernel()(x.reshape(-1), out.reshape(2, -1))
        return out
    np.right_shift(x, 8, out=out[0], casting="unsafe")  # exact: in [-128, 127]
    np.subtract(x & 255, 128, out=out[1], casting="unsafe")
    return out


def uint8_limbs(x: np.ndarray) -> np.ndarray:
    """The limbs of :func:`int8_limbs` plus 128, as uint8 (the operands of the uint8 x uint8
    engine, zero point 128): ``hi + 128 = (x >> 8) + 128`` and ``lo + 128 = x & 255``; one
    compiled pass when numba is available."""
    from npuflow.sim.fast._nb import use_numba

    out = np.empty((2,) + x.shape, dtype=np.uint8)
    if use_numba() and x.flags.c_contiguous:
        _uint8_limbs_kernel()(x.reshape(-1), out.reshape(2, -1))
        return out
    np.add(np.right_shift(x, 8, dtype=np.int32), 128, out=out[0], casting="unsafe")  # in [0, 255]
    np.bitwise_and(x, 255, out=out[1], casting="unsafe")
    return out


def _uint8_limbs_kernel() -> Any:
    global _UINT8_LIMBS_KERNEL
    if _UINT8_LIMBS_KERNEL is None:
        from npuflow.sim.fast._nb import njit, numba

        @njit(parallel=True)
        def kern(x, out):  # pragma: no cover - jitted
            for i in numba.prange(x.size):
                v = np.int32(x[i])
                out[0, i] = (v >> 8) + 128
                out[1, i] = v & 255

        _UINT8_LIMBS_KERNEL = kern
    return _UINT8_LIMBS_KERNEL


_LIMBS_KERNEL: Any = None
_INT8_LIMBS_KERNEL: Any = None
_UINT8_LIMBS_KERNEL: Any = None


def _int8_limbs_kernel() -> Any:
    global _INT8_LIMBS_KERNEL
    if _INT8_LIMBS_KERNEL is None:
        from npuflow.sim.fast._nb import numba, njit

        @njit(parallel=True)
        def kern(x, out):  # pragma: no cover - jitted
            for i in numba.prange(x.size):
                v = np.int32(x[i])
                out[0, i] = v >> 8
                out[1, i] = (v & 255) - 128

        _INT8_LIMBS_KERNEL = kern
    return _INT8_LIMBS_KERNEL


def _limbs_kernel() -> Any:
    global _LIMBS_KERNEL
    if _LIMBS_KERNEL is None:
        from npuflow.sim.fast._nb import numba, njit

        @njit(parallel=True)
        def kern(x, b, k, out):  # pragma: no cover - jitted
            if k == 2 and x.itemsize <= 2:
                # two limbs of a container of at most 16 bits (the common case), in int32 so that
                # it vectorizes (the general loop below converts int64 to float32 one value at a
                # time on AVX2): hi = floor((x + 2**(b-1)) / 2**b) and lo = x - hi * 2**b are the
                # balanced limbs below
                hb = np.int32(1 << (b - 1))
                bb = np.int32(b)
                for i in numba.prange(x.size):
                    v = np.int32(x[i])
                    hi = np.int32(np.int32(v + hb) >> bb)
                    out[1, i] = np.float32(np.int32(v - np.int32(hi << bb)))
                    out[0, i] = np.float32(hi)
                return
            h = 1 << (b - 1)
            mask = (1 << b) - 1
            for i in numba.prange(x.size):
                rest = np.int64(x[i])
                for j in range(k - 1, 0, -1):
                    lo = ((rest + h) & mask) - h
                    out[j, i] = lo
                    rest = (rest - lo) >> b
                out[0, i] = rest

        _LIMBS_KERNEL = kern
    return _LIMBS_KERNEL
