"""Window geometry shared by Conv and pooling (integer shape arithmetic only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from npuflow.sim.kernels.base import attr


def window_attrs(node_attrs: Mapping[str, Any] | None, nd: int, kernel: Sequence[int] | None = None) -> dict[str, Any]:
    """Normalized window attributes (``kernel_shape``, ``strides``, ``dilations``, ``pads``,
    ``auto_pad``, ``ceil_mode``) for ``nd`` spatial dimensions."""
    k = tuple(int(v) for v in (attr(node_attrs, "kernel_shape") or kernel or ()))
    if len(k) != nd:
        raise ValueError(f"kernel_shape {k} does not match {nd} spatial dimensions")
    strides = tuple(int(v) for v in (attr(node_attrs, "strides") or (1,) * nd))
    dil = tuple(int(v) for v in (attr(node_attrs, "dilations") or (1,) * nd))
    pads = tuple(int(v) for v in (attr(node_attrs, "pads") or (0,) * (2 * nd)))
    if len(strides) != nd or len(dil) != nd or len(pads) != 2 * nd:
        raise ValueError("strides/dilations/pads do not match the kernel rank")
    auto_pad = str(attr(node_attrs, "auto_pad", "NOTSET") or "NOTSET")
    return {
        "kernel_shape": k,
        "strides": strides,
        "dilations": dil,
        "pads": pads,
        "auto_pad": auto_pad,
        "ceil_mode": int(attr(node_attrs, "ceil_mode", 0) or 0),
    }


def window_geometry(in_sp: Sequence[int], w: Mapping[str, Any]) -> tuple[list[int], list[int], list[int], list[int]]:
    """``(pads_begin, pads_end, extra_end, out_sp)`` for input spatial sizes ``in_sp``.

    ``extra_end`` is the additional end padding ceil_mode needs so that the last window fits;
    those positions are not padding in the ONNX sense (they never count for averages).
    """
    nd = len(in_sp)
    k, s, d = w["kernel_shape"], w["strides"], w["dilations"]
    pb, pe, extra, out = [], [], [], []
    for i in range(nd):
        keff = (k[i] - 1) * d[i] + 1
        if w["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-in_sp[i] // s[i])
            total = max(0, (o - 1) * s[i] + keff - in_sp[i])
            b = total // 2 if w["auto_pad"] == "SAME_UPPER" else total - total // 2
            e = total - b
        elif w["auto_pad"] == "VALID":
            b = e = 0
            o = (in_sp[i] - keff) // s[i] + 1
        elif w["auto_pad"] == "NOTSET":
            b, e = w["pads"][i], w["pads"][i + nd]
            span = in_sp[i] + b + e - keff
            if w["ceil_mode"]:
                o = -(-span // s[i]) + 1
                if (o - 1) * s[i] >= in_sp[i] + b:  # last window must start inside input or left pad
                    o -= 1
            else:
                o = span // s[i] + 1
        else:
            raise ValueError(f"unknown auto_pad {w['auto_pad']!r}")
        if o < 1:
            raise ValueError(f"window {k} does not fit input {tuple(in_sp)}")
        ex = max(0, (o - 1) * s[i] + keff - (in_sp[i] + b + e))
        pb.append(b)
        pe.append(e)
        extra.append(ex)
        out.append(o)
    return pb, pe, extra, out


def pad_spatial(x: np.ndarray, pb: Sequence[int], pe: Sequence[int], value: int) -> np.ndarray:
    """Pad the trailing ``len(pb)`` axes of ``x`` with a constant integer."""
    nd = len(pb)
    width = [(0, 0)] * (x.ndim - nd) + [(int(b), int(e)) for b, e in zip(pb, pe)]
    if not any(b or e for b, e in width):
        return x
    return np.pad(x, width, mode="constant", constant_values=value)


def windows(
    xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int], out_sp: Sequence[int]
) -> np.ndarray:
    """Read-only view ``(..., *out_sp, *kernel)`` of the sliding windows over the trailing axes."""
    nd = len(kernel)
    lead = xp.shape[: xp.ndim - nd]
    st = xp.strides
    sp_st = st[xp.ndim - nd :]
    shape = tuple(lead) + tuple(out_sp) + tuple(kernel)
    strides_ = (
        tuple(st[: xp.ndim - nd])
        + tuple(sp_st[i] * strides[i] for i in range(nd))
        + tuple(sp_st[i] * dil[i] for i in range(nd))
    )
    return np.lib.stride_tricks.as_strided(xp, shape=shape, strides=strides_, writeable=False)
