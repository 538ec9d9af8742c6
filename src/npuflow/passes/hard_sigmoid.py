"""Pass ``hard_sigmoid`` (option ``platform``): HardSigmoid folded into its Conv, or made NPU-friendly.

``HardSigmoid(x) = clip(alpha * x + beta, 0, 1)``. MobileNetV3-style squeeze-excitation blocks
compute ``Conv -> HardSigmoid -> Mul(features, gate)``; paddle2onnx writes the Conv bias as a
separate ``Add``. ``HardSigmoid`` is not in the KL520/KL720 NPU tables (it is on 530/630/730).

Rules (``fuse_hardswish`` runs first: HardSigmoids that are part of a HardSwish are its business):
1. Candidates: ``HardSigmoid`` nodes in the default domain with ``alpha > 0`` and a float input.
2. Fold (every platform): when ``x`` is the output of a ``Conv`` (constant float weight and
   bias, the output read only by this node), optionally followed by an ``Add`` of a constant
   per-channel bias (shape ``[M]``-broadcastable: ``[1, M, 1, 1]``, ``[M, 1, 1]``, one element;
   its output read only by this node), the Conv gets ``W' = alpha * W`` and
   ``b' = alpha * (b + bias) + beta`` (float64, cast once to the weight dtype; new initializers
   ``<W>_hardsigmoid`` / ``<conv name>_bias_hardsigmoid``) and the HardSigmoid becomes
   ``Clip(0, 1)``, which the analysis fuses into the Conv (one step, one [0, 1] output format) and
   every platform runs on the NPU. The bias Add is removed. Float effect: the weights are rounded
   once more (relative 2**-24 per weight).
3. Otherwise, when the platform's NPU table has ``HardSigmoid``: left alone (an exact table step).
4. Otherwise (``platform=None`` or a platform without it, e.g. the KL720):
   ``Mul(Clip(Add(x, beta/alpha), 0, 1/alpha), alpha)``: the Add+Clip is one step of the analysis
   with a [0, 1/alpha] output, the Mul scales to [0, 1]; clipping before scaling keeps the
   quantized intermediate bounded whatever the range of ``x``. Float effect: ``beta/alpha``,
   ``1/alpha`` and ``alpha`` are rounded to the dtype: a few ulps.
5. The HardSigmoid's output tensor keeps its name; the Conv keeps its name; new nodes (the Clip
   of rule 2; the Add, Clip and Mul of rule 4) are named ``<Op>_<HardSigmoid name>``.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.passes._graph import is_default_domain
from npuflow.passes._rewrite import (
    FLOAT_TYPES,
    Index,
    PlatformLike,
    attr,
    npu_has,
    apply_plan,
)


def _per_channel(bias: np.ndarray, m: int, rank: int) -> np.ndarray | None:
    """A constant Add operand as a per-channel vector of length ``m`` (output rank ``rank``), or None."""
    if bias.size == 1:
        return np.full(m, float(bias.reshape(())))
    shape = list(bias.shape)
    while shape and shape[0] == 1 and len(shape) > rank - 1:
        shape.pop(0)
    # what is left must be [m, 1, 1, ...] aligned with the channel axis (axis 1 of the output)
    if len(shape) != rank - 1 or shape[0] != m or any(d != 1 for d in shape[1:]):
        return None
    return bias.reshape(m).astype(np.float64)


def _fold(idx: Index, hs: onnx.NodeProto, alpha: float, beta: float) -> list[tuple] | None:
    """Rule 2: returns the replacement plan entry and the new initializers, or None."""
    x = hs.input[0]
    add = idx.producer(x, "Add")
    extra = np.zeros(0)
    conv_out = x
    if add is not None:
        if not idx.private(x, hs) or len(add.input) != 2:
            return None
        a, b = add.input
        if b in idx.consts and a not in idx.consts:
            conv_out, c = a, idx.const_array(b)
        elif a in idx.consts and b not in idx.consts:
            conv_out, c = b, idx.const_array(a)
        else:
            return None
        if c is None:
            return None
        extra = c
        reader = add
    else:
        reader = hs
    conv = idx.producer(conv_out, "Conv")
    if conv is None or not idx.private(conv_out, reader) or len(conv.output) != 1:
        return None
    if not idx.private(x, hs):
        return None
    w_name = conv.input[1] if len(conv.input) > 1 else ""
    b_name = conv.input[2] if len(conv.input) > 2 else ""
    w = idx.const_array(w_name)
    if w is None or w.ndim < 3:
        return None
    m = w.shape[0]
    b = idx.const_array(b_name) if b_name else np.zeros(m, dtype=w.dtype)
    if b is None or b.shape != (m,):
        return None
    if add is not None:
        pc = _per_channel(np.asarray(extra), m, w.ndim)
        if pc is None:
            return None
        b64 = b.astype(np.float64) + pc
    else:
        b64 = b.astype(np.float64)
    w_new = (w.astype(np.float64) * alpha).astype(w.dtype)
    b_new = (b64 * alpha + beta).astype(b.dtype)
    wn = idx.name(f"{w_name}_hardsigmoid")
    bn = idx.name(f"{conv.name or w_name}_bias_hardsigmoid")
    idx.new_initializers += [numpy_helper.from_array(w_new, wn), numpy_helper.from_array(b_new, bn)]
    new_conv = onnx.NodeProto()
    new_conv.CopyFrom(conv)
    del new_conv.input[:]
    new_conv.input.extend([conv.input[0], wn, bn])
    new_conv.output[0] = conv_out
    et = idx.dtype_of(hs.output[0])
    clip = idx.clip_node(conv_out, 0.0, 1.0, hs.output[0], idx.op_name(hs, "Clip", conv.name or conv_out), et)
    old = [conv] + ([add] if add is not None else []) + [hs]
    return [old, [new_conv, clip]]


def run(model: onnx.ModelProto, platform: PlatformLike | None = None) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    keep_node = npu_has(platform, "HardSigmoid")
    plan = []
    stale: set[str] = set()
    for hs in idx.graph.node:
        if hs.op_type != "HardSigmoid" or not is_default_domain(hs.domain) or len(hs.input) != 1:
            continue
        if idx.dtype_of(hs.input[0]) not in FLOAT_TYPES:
            continue
        alpha, beta = float(attr(hs, "alpha", 0.2)), float(attr(hs, "beta", 0.5))
        if not alpha > 0.0 or not np.isfinite(alpha) or not np.isfinite(beta):
            continue
        entry = _fold(idx, hs, alpha, beta)
        if entry is not None:
            plan.append(entry)
            stale.add(hs.input[0])
            continue
        if keep_node:
            continue
        x, y = hs.input[0], hs.output[0]
        base = hs.name or y
        et = idx.dtype_of(x)
        t, c = idx.name(f"{base}_shifted"), idx.name(f"{base}_clipped")
        add = helper.make_node("Add", [x, idx.const(beta / alpha, et, f"{base}_beta_over_alpha")], [t],
                               name=idx.name(f"Add_{base}"))
        clip = idx.clip_node(t, 0.0, 1.0 / alpha, c, idx.name(f"Clip_{base}"), et)
        mul = helper.make_node("Mul", [c, idx.const(alpha, et, f"{base}_alpha")], [y], name=idx.op_name(hs, "Mul", base))
        plan.append(([hs], [add, clip, mul]))
    return apply_plan(model, plan, idx, stale)
