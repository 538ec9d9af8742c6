"""Fast Conv and ConvTranspose: onnxruntime's float32 kernels as exact integer engines, then the
integer output stage.

Exactness (see :mod:`npuflow.sim.fast._ort`): every partial sum of output channel ``c`` is
bounded by ``sum |w_q[c]| * max |x|`` (the sum over the input channels of its group and the kernel
positions; for ConvTranspose every output sums a subset of those products); when that is at most
``2**24`` for every channel the float32 result *is* the integer accumulator, whatever order
onnxruntime sums in. Otherwise the operands are split into two balanced limbs
(``x = x_hi * 2**b + x_lo``, the same for the weights) chosen so that each partial product
satisfies the bound; the limbs run in one session call (input limbs stacked on the batch axis,
weight limbs stacked on the output channels of each group) and are recombined exactly in int64
by the output stage. A case that no split makes exact, or a geometry onnxruntime refuses, runs on
the reference kernel. Padding is computed by the reference geometry and passed explicitly (zero
padding is exact).

1x1 convolutions with at most 8-bit weights run on an exact int8 matrix product instead where this
machine has one (:func:`_int8_engine`: uint8 x int8 with VNNI, else uint8 x uint8), depthwise ones
on the compiled kernel of :mod:`npuflow.sim.fast.depthwise`. A batch whose onnxruntime buffers
would exceed :data:`CHUNK_BYTES` runs in chunks of samples.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fast._common import (PlanCache, checked, int8_limbs, limb_bits, limbs_f32, max_abs, split2,
                                      uint8_limbs)
from npuflow.sim.fast._ort import (F32_EXACT, INT8_MAX_K, int8_engine_exact, int8_matmul_session, single_node_session,
                                   uint8_engine_exact)
from npuflow.sim.fast._nb import use_numba
from npuflow.sim.fast._requant import mac_output, static_row_bound, with_bias_offset
from npuflow.sim.fast.depthwise import DepthwisePlan, depthwise
from npuflow.sim.fast.depthwise import applies as depthwise_applies
from npuflow.sim.fast.matmul import F64_EXACT
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels._geometry import window_geometry
from npuflow.sim.kernels.base import KernelStats
from npuflow.sim.kernels.conv import CONV_TRANSPOSE, ConvParams, ConvTransposeParams, out_channel_abs_sums


#: single-pass depthwise layers with at most this many multiply-adds run on the compiled kernel
DW_SMALL_MACS = 1_000_000

#: largest onnxruntime input or output (bytes) of one call: a batch whose buffers would be larger
#: runs in chunks of samples, each written into its slice of the output. Buffers above glibc's
#: largest dynamic mmap threshold (32 MiB) are mapped afresh by every call and their pages faulted
#: in again (measured on 2 cores: efficientnet_lite0 a16w8, the 16 -> 96 1x1 Conv at 112x112 in
#: micro-batches of 4 -- two input limbs, 37 MiB of float32 output -- took ~10x the CPU time of
#: the same samples in two calls, most of it page faults); smaller chunks also stay nearer the cache
CHUNK_BYTES = 16 << 20


def _chunks(n: int, per_sample: int) -> list[tuple[int, int]]:
    """Sample ranges ``[i, j)`` of near-equal sizes covering ``range(n)``, each at most
    :data:`CHUNK_BYTES` at ``per_sample`` bytes a sample (at least one sample each)."""
    per = max(1, CHUNK_BYTES // max(1, per_sample))
    k = -(-n // per)
    bounds = [n * i // k for i in range(k + 1)]
    return list(itertools.pairwise(bounds))


def _out_dtype(params: Any, lut: Any) -> np.dtype:
    """The container of a MAC step's result: its output format's, or a fused table's."""
    return lut.table.dtype if lut is not None else params.out.out_format.dtype


@dataclass
class _WeightLimbs:
    w: np.ndarray  # float32, the op's weight layout with limbs stacked on each group's outputs
    shifts: tuple[int, ...]
    abs_max: int  # max over limbs and output channels of sum |w_limb[c]|
    each: list[np.ndarray]  # float32, one weight tensor per limb (the op's own layout)


class _Plan:
    """Per-params state: weight limbs, sessions per (limbs, geometry), geometry per input shape."""

    def __init__(self, params: Any, transpose: bool) -> None:
        # no reference to ``params`` itself: the plan is the value of a weak dictionary keyed on
        # them (PlanCache), so holding the key would keep plan, sessions and threads alive forever
        self.w_q = params.w_q
        self.group = params.group
        self.x_bits = params.in_format.bits
        self.transpose = transpose
        self.w_bits = params.w_q.dtype.itemsize * 8
        self.limbs: dict[int, _WeightLimbs] = {}
        self.sessions: dict[tuple, Any] = {}
        self.geom: dict[tuple, Any] = {}
        self.failed: set[tuple] = set()
        w1 = self.weight_limbs(1).abs_max
        self.static_ok = w1 << (params.in_format.bits - 1) <= F32_EXACT
        # a 1x1 convolution without padding or stride is a matrix product
        matrix = (not transpose and params.group == 1 and all(k == 1 for k in params.kernel_shape)
                  and all(v == 1 for v in params.strides) and not any(params.pads)
                  and params.auto_pad in ("NOTSET", "VALID"))
        # when float32 needs four limb passes, one exact float64 product (sums below 2**53) is cheaper
        self.pointwise = matrix and w1 << (params.in_format.bits - 1) <= F64_EXACT
        self.f64: Any = None
        # with at most 8-bit weights: exact int8 matrix products (onnxruntime MatMulInteger, int32
        # sums) where the engine is exact; int8 activations in one product, activations of 9 to
        # 16 bits in two (:func:`_pointwise_i8`)
        int8_w = matrix and params.w_q.dtype.itemsize == 1 and 0 < params.w_q.shape[1] <= INT8_MAX_K
        self.int8 = int8_w and params.in_format.bits <= 8
        self.int16x8 = int8_w and 8 < params.in_format.bits <= 16
        self.i8: Any = None
        self.i8_engine: str | None = None  # the engine ``i8`` was built for (:func:`_int8_engine`)
        # the int16 x int8 product's output stage: the bias plus 128 * (sum of each output
        # channel's weights), the low limb's offset (built on first use)
        self.out_lo: Any = None
        self.dw: DepthwisePlan | None = None  # built on first use
        # per output channel: sum |w| * max |x| bounds every accumulator (ConvTranspose: each
        # output sums a subset of those products); lets the output stage skip row maxima
        self.row_bound = static_row_bound(params.out, out_channel_abs_sums(params.w_q, params.group, transpose),
                                          params.in_format.bits)

    # weights ------------------------------------------------------------------------------
    def weight_limbs(self, lw: int) -> _WeightLimbs:
        wl = self.limbs.get(lw)
        if wl is not None:
            return wl
        w = self.w_q.astype(np.int64)
        g = self.group
        if lw == 1:
            parts, shifts = [w], (0,)
        else:
            b = limb_bits(self.w_bits)
            hi, lo = split2(w, b)
            parts, shifts = [hi.astype(np.int64), lo.astype(np.int64)], (b, 0)
        if self.transpose:  # W: (C_in, cog, *k), output channel g*cog + j reads input group g
            c_in, cog = w.shape[:2]
            sums = [np.abs(p).reshape(g, c_in // g, cog, -1).sum(axis=(1, 3)) for p in parts]
            stacked = np.stack(parts, axis=1)  # (C_in, Lw, cog, *k)
            wf = stacked.reshape((c_in, lw * cog) + w.shape[2:])
        else:  # W: (C_out, C_in/g, *k)
            c_out = w.shape[0]
            cog = c_out // g
            sums = [np.abs(p).reshape(c_out, -1).sum(axis=1) for p in parts]
            stacked = np.stack([p.reshape((g, cog) + w.shape[1:]) for p in parts], axis=1)
            wf = stacked.reshape((g * lw * cog,) + w.shape[1:])
        abs_max = max(int(s.max(initial=0)) for s in sums)
        wl = _WeightLimbs(np.ascontiguousarray(wf.astype(np.float32)), shifts, abs_max,
                          [np.ascontiguousarray(p.astype(np.float32)) for p in parts])
        self.limbs[lw] = wl
        return wl

    def choose(self, x: np.ndarray) -> tuple[int, int, int] | None:
        """``(Lx, bx, Lw)``: input limbs, input limb width, weight limbs (cheapest first: fewest
        passes, then no weight split); None if no split makes float32 exact."""
        if self.static_ok:
            return 1, 0, 1
        bits = self.x_bits
        w1 = self.weight_limbs(1).abs_max
        if w1 * max_abs(x) <= F32_EXACT:
            return 1, 0, 1
        w2 = self.weight_limbs(2).abs_max if self.w_bits > 2 else None
        for passes in (2, 3, 4):
            for lx, lw in ((passes, 1), (1, 2), (2, 2)):
                if lx * lw != passes or (lw == 2 and w2 is None) or lx > bits:
                    continue
                wmax = w1 if lw == 1 else w2
                bx = -(-bits // lx) if lx > 1 else bits
                if wmax << (bx - 1) <= F32_EXACT:
                    return lx, (bx if lx > 1 else 0), lw
        return None

    # sessions -----------------------------------------------------------------------------
    def session(self, lw: int, attrs: dict[str, Any], limb: int | None = None) -> Any:
        """Session with the ``lw`` weight limbs stacked, or only limb ``limb``."""
        key = (lw, limb, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(attrs.items())))
        s = self.sessions.get(key)
        if s is None:
            wl = self.weight_limbs(lw)
            op = "ConvTranspose" if self.transpose else "Conv"
            w = wl.w if limb is None else wl.each[limb]
            s = single_node_session(op, {"w": w}, attrs, rank=w.ndim)
            self.sessions[key] = s
        return s


def _pointwise_f64(plan: _Plan, params: ConvParams, x: np.ndarray, stats: KernelStats | None,
                   lut: Any = None, lut_stats: KernelStats | None = None) -> np.ndarray:
    """1x1 Conv as one float64 matrix product on onnxruntime: ``(C_out, C) @ (N, C, P)``."""
    if plan.f64 is None:
        from npuflow.sim.fast.matmul import _matmul_session

        w = params.w_q.reshape(params.w_q.shape[0], -1).astype(np.float64)
        plan.f64 = _matmul_session(np.float64, w, const_first=True)
    n, c = x.shape[:2]
    xs = x.reshape(n, c, -1)
    c_out, npos = params.w_q.shape[0], xs.shape[2]
    out = np.empty((n, c_out, npos), dtype=_out_dtype(params, lut))
    for i, j in _chunks(n, 8 * npos * max(c, c_out)):
        (y,) = plan.f64.run(None, {"x": xs[i:j].astype(np.float64)})
        mac_output(y.reshape((1, j - i, 1, 1) + y.shape[1:]), params.out, stats, lut=lut, lut_stats=lut_stats,
                   row_bound=plan.row_bound, out=out[i:j])
    return out.reshape((n, c_out) + x.shape[2:])


def _int8_engine() -> str | None:
    """The exact int8 matrix product of this machine: ``"s8"`` (uint8 weights x int8 activations:
    where onnxruntime sums them exactly, with VNNI), else ``"u8"`` (uint8 x uint8, both offset by
    128: exact on x86 without VNNI too), else None (the float engines decide)."""
    if int8_engine_exact():
        return "s8"
    if uint8_engine_exact():
        return "u8"
    return None


def _pointwise_i8(plan: _Plan, params: ConvParams, x: np.ndarray, stats: KernelStats | None, engine: str,
                  lut: Any = None, lut_stats: KernelStats | None = None) -> np.ndarray:
    """1x1 Conv with at most 8-bit weights as exact int8 matrix products ``(C_out, C) @ (N, C, P)``:
    the weights as uint8 ``w + 128`` with zero point 128, int32 sums (``|sum| < 2**31``: at most
    :data:`INT8_MAX_K` products of magnitude at most ``2**14`` each); the activations as int8
    (``engine`` "s8") or as uint8 ``x + 128`` with zero point 128 ("u8"), the same products.

    int8 activations: one product. int16 activations: two int8 limbs ``hi = x >> 8`` and
    ``lo = (x & 255) - 128`` (``x = 256 * hi + lo + 128``), stacked on the batch axis of one call;
    ``W @ x = 256 * (W @ hi) + W @ lo + 128 * sum(W)``, the last term a constant per output
    channel that joins the bias (``plan.out_lo``), so the output stage sees the same accumulator.
    A batch runs in chunks (:func:`_chunks`)."""
    unsigned = engine == "u8"
    if plan.i8 is None or plan.i8_engine != engine:
        w = params.w_q.reshape(params.w_q.shape[0], -1).astype(np.int16) + 128
        plan.i8 = int8_matmul_session(w.astype(np.uint8), 128, 128 if unsigned else None)
        plan.i8_engine = engine
    n, c = x.shape[:2]
    xs = np.ascontiguousarray(x).reshape(n, c, -1)
    if x.dtype == np.int8:
        p, shx, row_bound = params.out, (0,), plan.row_bound
    else:
        if plan.out_lo is None:
            plan.out_lo = with_bias_offset(
                params.out, 128 * params.w_q.reshape(params.w_q.shape[0], -1).astype(np.int64).sum(axis=1))
        p, shx, row_bound = plan.out_lo, (8, 0), None
    lx = len(shx)
    c_out, npos = params.w_q.shape[0], xs.shape[2]
    out = np.empty((n, c_out, npos), dtype=_out_dtype(params, lut))
    for i, j in _chunks(n, lx * npos * max(c, 4 * c_out)):
        if lx == 1:
            xc = np.bitwise_xor(xs[i:j].view(np.uint8), np.uint8(128)) if unsigned else xs[i:j]  # x + 128
        else:
            xc = (uint8_limbs if unsigned else int8_limbs)(xs[i:j]).reshape((2 * (j - i), c, -1))
        (y,) = plan.i8.run(None, {"x": xc})  # (limbs * samples, C_out, P) int32
        mac_output(y.reshape((lx, j - i, 1, 1) + y.shape[1:]), p, stats, shx=shx, lut=lut, lut_stats=lut_stats,
                   row_bound=row_bound, out=out[i:j])
    return out.reshape((n, c_out) + x.shape[2:])


def _conv_geometry(params: ConvParams, sp: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...]]:
    win = {"kernel_shape": params.kernel_shape, "strides": params.strides, "dilations": params.dilations,
           "pads": params.pads, "auto_pad": params.auto_pad, "ceil_mode": 0}
    pb, pe, _, out_sp = window_geometry(sp, win)
    attrs = {"kernel_shape": list(params.kernel_shape), "strides": list(params.strides),
             "dilations": list(params.dilations), "pads": [int(v) for v in pb] + [int(v) for v in pe],
             "group": params.group}
    return attrs, tuple(int(v) for v in out_sp)


def _convt_geometry(params: ConvTransposeParams, sp: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...]] | None:
    """Explicit pads and output_padding giving the reference's output window, or None."""
    pb, out_sp = CONV_TRANSPOSE.geometry(params, sp)
    nd = len(sp)
    k, s, d = params.kernel_shape, params.strides, params.dilations
    pads_b, pads_e, op = [], [], []
    for i in range(nd):
        full0 = s[i] * (sp[i] - 1) + (k[i] - 1) * d[i] + 1
        o = max(0, pb[i] + out_sp[i] - full0)
        e = full0 + o - pb[i] - out_sp[i]
        if pb[i] < 0 or e < 0 or o >= max(s[i], d[i]):
            return None
        pads_b.append(int(pb[i]))
        pads_e.append(int(e))
        op.append(int(o))
    attrs = {"kernel_shape": list(k), "strides": list(s), "dilations": list(d), "pads": pads_b + pads_e,
             "output_padding": op, "group": params.group}
    return attrs, tuple(int(v) for v in out_sp)


def _run(plan: _Plan, params: Any, x: np.ndarray, stats: KernelStats | None, ref: Any,
         lut: Any = None, lut_stats: KernelStats | None = None) -> np.ndarray:
    if (plan.int8 and x.dtype == np.int8) or (plan.int16x8 and x.dtype == np.int16):
        engine = _int8_engine()
        if engine is not None:
            return _pointwise_i8(plan, params, x, stats, engine, lut, lut_stats)
    key = x.shape[2:]
    geom = plan.geom.get(key)
    if geom is None:
        geom = (_convt_geometry if plan.transpose else _conv_geometry)(params, tuple(key))
        plan.geom[key] = geom
    if geom is not None and not plan.transpose and use_numba() and depthwise_applies(params, x):
        attrs, out_sp = geom
        # the compiled depthwise kernel where onnxruntime would need limb passes (int16), or where
        # its per-call cost dominates a small layer; large single-pass layers stay on onnxruntime
        # (its channel-blocked kernel is faster there: benchmarks/README.md)
        if not plan.static_ok or x.shape[0] * params.w_q.shape[0] * int(np.prod(out_sp)) * int(
                np.prod(params.kernel_shape)) <= DW_SMALL_MACS:
            if plan.dw is None:
                plan.dw = DepthwisePlan(params)
            return depthwise(plan.dw, params, x, tuple(attrs["pads"][:len(out_sp)]), out_sp, stats, lut, lut_stats)
    choice = plan.choose(x) if geom is not None else None
    if geom is None or choice is None:
        return ref.eval(params, x, stats=stats)
    attrs, out_sp = geom
    lx, _, lw = choice
    if lx * lw > 2 and plan.pointwise:
        return _pointwise_f64(plan, params, x, stats, lut, lut_stats)
    if (lw, key) in plan.failed or min(out_sp, default=1) <= 0:  # empty or negative windows: the reference
        return ref.eval(params, x, stats=stats)
    n = x.shape[0]
    c_out = params.w_q.shape[1] * params.group if plan.transpose else params.w_q.shape[0]
    npos = int(np.prod(out_sp))
    out = np.empty((n, c_out, npos), dtype=_out_dtype(params, lut))
    for i, j in _chunks(n, 4 * lx * max(int(np.prod(x.shape[1:])), lw * c_out * npos)):
        if not _float_pass(plan, params, x[i:j], attrs, out_sp, choice, stats, lut, lut_stats, out[i:j]):
            # a geometry onnxruntime refuses (the first chunk finds out): the reference decides
            plan.failed.add((lw, key))
            if i == 0:
                return ref.eval(params, x, stats=stats)
            out[i:] = ref.eval(params, x[i:], stats=stats).reshape(out[i:].shape)
            break
    return out.reshape((n, c_out) + out_sp)


def _float_pass(plan: _Plan, params: Any, x: np.ndarray, attrs: dict[str, Any], out_sp: tuple[int, ...],
                choice: tuple[int, int, int], stats: KernelStats | None, lut: Any, lut_stats: KernelStats | None,
                out: np.ndarray) -> bool:
    """The samples ``x`` on onnxruntime's float32 kernel in ``choice``'s limbs, their output stage
    written into ``out`` ``(N, C_out, P)``; False (nothing counted or written) when onnxruntime
    refuses the geometry or answers another shape."""
    lx, _, lw = choice
    n = x.shape[0]
    if lx == 1:
        xf = x.astype(np.float32)
        shx: Any = (0,)
    else:
        xl, shx = limbs_f32(x, params.in_format.bits, lx)
        xf = xl.reshape((lx * n,) + x.shape[1:])
    g = params.group
    # grouped convolutions keep one session per weight limb: stacking the limbs on the outputs
    # of each group would turn a depthwise convolution into a (much slower) general grouped one
    separate = lw > 1 and g > 1
    try:
        if separate:
            ys = [plan.session(lw, attrs, j).run(None, {"x": xf})[0] for j in range(lw)]
            y = ys[0]
        else:
            (y,) = plan.session(lw, attrs).run(None, {"x": xf})
    except Exception:  # noqa: BLE001 - a geometry onnxruntime refuses
        return False
    c_out, npos = out.shape[1:]
    if tuple(y.shape[2:]) != out_sp or y.shape[0] != lx * n or y.shape[1] != (1 if separate else lw) * c_out:
        return False
    if separate:
        parts = np.stack([v.reshape(lx, n, g, c_out // g, npos) for v in ys], axis=3)
    else:
        parts = y.reshape(lx, n, g, lw, c_out // g, npos)
    mac_output(parts, params.out, stats, shx=shx, shw=plan.weight_limbs(lw).shifts, lut=lut, lut_stats=lut_stats,
               row_bound=plan.row_bound, out=out)
    return True


_PLANS = PlanCache(lambda p: _Plan(p, False))
_TPLANS = PlanCache(lambda p: _Plan(p, True))
_REF = KERNELS["Conv"]
_REF_T = KERNELS["ConvTranspose"]


class _TwoSteps:
    """Any fallback of :func:`_run` inside :func:`conv_lut`: the two reference steps."""

    __slots__ = ("lut_op", "lut_params", "lut_stats")

    def __init__(self, lut_op: str, lut_params: Any, lut_stats: KernelStats | None) -> None:
        self.lut_op, self.lut_params, self.lut_stats = lut_op, lut_params, lut_stats

    def eval(self, p: Any, x: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        return KERNELS[self.lut_op].eval(self.lut_params, _REF.eval(p, x, stats=stats), stats=self.lut_stats)


def conv_lut(params: ConvParams, lut_op: str, lut_params: Any, x: np.ndarray, *,
             stats: KernelStats | None = None, lut_stats: KernelStats | None = None) -> np.ndarray:
    """A Conv step and the table step reading only its output, in one pass: identical to
    ``KERNELS[lut_op].eval(lut_params, KERNELS["Conv"].eval(params, x))`` (needs numba)."""
    x = checked(x, "Conv", "X", params.in_format)
    w = params.w_q
    g = params.group
    if (x.ndim == w.ndim and x.ndim >= 3 and x.shape[1] == w.shape[1] * g and not w.shape[0] % g and x.size
            and lut_params.in_format.bits == params.out.out_format.bits):
        return _run(_PLANS.get(params), params, x, stats, _TwoSteps(lut_op, lut_params, lut_stats),
                    lut=lut_params, lut_stats=lut_stats)
    y = _REF.eval(params, x, stats=stats)
    return KERNELS[lut_op].eval(lut_params, y, stats=lut_stats)


def conv(params: ConvParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["Conv"].eval``."""
    if len(inputs) != 1:
        return _REF.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "Conv", "X", params.in_format)
    w = params.w_q
    g = params.group
    if x.ndim != w.ndim or x.ndim < 3 or x.shape[1] != w.shape[1] * g or w.shape[0] % g or x.size == 0:
        return _REF.eval(params, x, stats=stats)
    return _run(_PLANS.get(params), params, x, stats, _REF)


def conv_transpose(params: ConvTransposeParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
    """Same contract and integers as ``KERNELS["ConvTranspose"].eval``."""
    if len(inputs) != 1:
        return _REF_T.eval(params, *inputs, stats=stats)
    x = checked(inputs[0], "ConvTranspose", "X", params.in_format)
    w = params.w_q
    g = params.group
    if x.ndim != w.ndim or x.ndim < 3 or x.shape[1] != w.shape[0] or w.shape[0] % g or x.size == 0:
        return _REF_T.eval(params, x, stats=stats)
    return _run(_TPLANS.get(params), params, x, stats, _REF_T)
