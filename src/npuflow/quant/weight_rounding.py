"""Error-compensating weight rounding (spec ``docs/fixed-point.md`` §3.6).

Rounding each weight to the nearest grid point ignores how the errors of one output channel add
up on real inputs: for a convolution whose input is smooth (images, early feature maps) the
errors of neighbouring taps add coherently. This module rounds the weights of one layer the way
GPTQ / Optimal Brain Quantization do (Frantar et al. 2022, "GPTQ"; Frantar & Alistarh 2022,
"Optimal Brain Compression"): the taps of each output channel are rounded one after the other,
and the rounding error of each is compensated on the taps not yet rounded, weighted by the
inverse of the second moment of the layer's float inputs ``H = E[x x^T]`` (over the taps a
channel reads). It minimises ``E[((W_q - W) x)^2]`` greedily; the grid (the per-channel weight
format) is the one nearest rounding uses, so formats, kernels and the simulator do not change:
only which integer each weight gets.

Applied to NPU Conv steps with a spatial kernel (more than one tap) whose taps per output channel
are few: depthwise convolutions (one ``H`` per channel) and ordinary ones with at most
:data:`MAX_TAPS` taps (one ``H`` shared by every output channel). ``H`` is accumulated during
calibration over the first inputs (at most :data:`SAMPLES`; fewer once the layer has
:data:`POSITIONS_PER_TAP` positions per tap) at up to :data:`POSITIONS` output positions each (a
fixed sub-grid of the positions: deterministic).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels._geometry import window_attrs, window_geometry

SAMPLES = 32
"""Calibration inputs whose layer inputs build ``H``."""
POSITIONS = 256
"""Output positions per input and layer, at most (every ``r``-th along each spatial axis)."""
MAX_TAPS = 288
"""Largest taps per output channel (``C_in/group * kh * kw``) of a non-depthwise convolution."""
POSITIONS_PER_TAP = 64
"""A layer stops accumulating once it has this many positions per tap of a channel (``64 * k``,
``k`` = taps per output channel) from whole inputs, even before :data:`SAMPLES` inputs."""
DAMP = 0.01
"""Dampening added to ``H``'s diagonal, relative to its mean diagonal (GPTQ's ``percdamp``)."""


def eligible(op_type: str, attrs: Mapping[str, Any], w_shape: Sequence[int]) -> bool:
    """Whether a Conv with these attributes and weight shape gets compensated rounding."""
    if op_type != "Conv" or len(w_shape) < 3:
        return False
    taps = int(np.prod(w_shape[2:]))
    if taps < 2:
        return False
    g = int(attrs.get("group", 1) or 1)
    depthwise = g > 1 and w_shape[1] == 1 and w_shape[0] == g
    return depthwise or (g == 1 and w_shape[1] * taps <= MAX_TAPS)


class SecondMoment:
    """``sum x x^T`` over the patches of one convolution's input (float32, deterministic).

    Depthwise: ``(C, k, k)`` with ``k`` the spatial taps; otherwise ``(1, K, K)`` with
    ``K = C_in * taps`` (channel-major, tap-minor: the weight's own flattening)."""

    def __init__(self, attrs: Mapping[str, Any], w_shape: Sequence[int]) -> None:
        self.nd = len(w_shape) - 2
        self.win = window_attrs(attrs, self.nd, tuple(int(v) for v in w_shape[2:]))
        g = int(attrs.get("group", 1) or 1)
        self.depthwise = g > 1
        self.c_in = int(w_shape[1]) * g
        self.taps = int(np.prod(w_shape[2:]))
        k = self.taps if self.depthwise else self.c_in * self.taps
        self.sum = np.zeros((self.c_in if self.depthwise else 1, k, k), dtype=np.float32)
        self.count = 0
        self.samples = 0

    def update(self, x: np.ndarray) -> None:
        """Add the patches of ``x`` (``(N, C, *spatial)`` float) at up to about
        :data:`POSITIONS` output positions per sample: every ``r``-th position along each
        spatial axis, the same ``r`` for all axes."""
        if x.ndim != self.nd + 2 or x.shape[1] != self.c_in:
            return
        pb, pe, _, out_sp = window_geometry(x.shape[2:], self.win)
        if min(out_sp, default=0) <= 0:
            return
        npos = int(np.prod(out_sp))
        r = 1
        while npos > POSITIONS * r**self.nd:
            r += 1
        cnt = [-(-int(o) // r) for o in out_sp]
        xp = np.pad(np.asarray(x, dtype=np.float32), [(0, 0), (0, 0)] + [(int(b), int(e)) for b, e in zip(pb, pe)])
        k, s, d = self.win["kernel_shape"], self.win["strides"], self.win["dilations"]
        n, c = x.shape[:2]
        p = int(np.prod(cnt))
        # float32 products and sums (BLAS): H only weighs the rounding decisions, and every run
        # computes it the same way
        patches = np.empty((c, self.taps, n, p), dtype=np.float32)
        for t, off in enumerate(np.ndindex(*k)):
            idx = tuple(slice(off[i] * d[i], off[i] * d[i] + s[i] * r * (cnt[i] - 1) + 1, s[i] * r)
                        for i in range(self.nd))
            patches[:, t] = xp[(slice(None), slice(None)) + idx].reshape(n, c, p).transpose(1, 0, 2)
        # inputs near float32's limit (a calibration input scaled x1e20) overflow the products: the
        # moment is then not finite and moment() gives None (nearest rounding, no warning from here;
        # the CalibrationWarning names such an input)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.depthwise:
                pc = patches.reshape(c, self.taps, n * p)
                self.sum += np.matmul(pc, pc.transpose(0, 2, 1))
            else:
                pm = patches.reshape(c * self.taps, n * p)
                self.sum[0] += pm @ pm.T
        self.count += n * p
        self.samples += n

    @property
    def full(self) -> bool:
        """No more updates wanted: :data:`SAMPLES` inputs, or enough positions per tap."""
        return self.samples >= SAMPLES or self.count >= POSITIONS_PER_TAP * self.sum.shape[-1]

    def moment(self) -> np.ndarray | None:
        """``E[x x^T]``, or None before any update or when it overflowed (not finite)."""
        if not self.count or not np.all(np.isfinite(self.sum)):
            return None
        return self.sum.astype(np.float64) / self.count


def compensated_round(w: np.ndarray, w_fmt: QFormat, h: np.ndarray) -> np.ndarray:
    """Integer weights in ``w_fmt`` (the container dtype of its width), each output channel's
    taps rounded in order with the error compensated through ``h`` (``(1, K, K)`` shared or
    ``(C_out, K, K)`` per channel; ``K`` = the weight's elements per output channel)."""
    c_out = w.shape[0]
    k = int(np.prod(w.shape[1:]))
    f = np.asarray(w_fmt.factor(), dtype=np.float64).reshape(-1)
    f = np.broadcast_to(f, (c_out,)) if f.size in (1, c_out) else None
    if f is None or h.shape[-1] != k:
        raise ValueError(f"second moment {h.shape} does not match weights {w.shape}")
    if h.shape[0] not in (1, c_out):
        raise ValueError(f"second moment {h.shape} does not match weights {w.shape}")
    # a shared H stays (1, K, K): one factorisation, broadcast over the output channels below
    hh = np.array(h, dtype=np.float64)
    diag = np.einsum("ckk->ck", hh)
    dead = diag <= 0.0
    hh[:, np.arange(k), np.arange(k)] += np.where(dead, 1.0, 0.0) + DAMP * np.maximum(diag.mean(axis=1, keepdims=True), 1e-30)
    # U: upper Cholesky factor of H^-1 (GPTQ): row i holds the update of taps i+1.. for tap i
    try:
        u = np.linalg.cholesky(np.linalg.inv(hh)).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        return w_fmt.quantize(w)
    lo, hi = w_fmt.qmin, w_fmt.qmax
    wf = w.reshape(c_out, k).astype(np.float64).copy()
    q = np.zeros((c_out, k), dtype=np.int64)
    for i in range(k):
        qi = np.clip(np.rint(wf[:, i] * f), lo, hi)
        q[:, i] = qi
        err = (wf[:, i] - qi / f) / u[:, i, i]
        wf[:, i + 1:] -= err[:, None] * u[:, i, i + 1:]
    return q.reshape(w.shape).astype(w_fmt.dtype)
