"""Channel equalization into depthwise convolutions (docs/fixed-point.md section 3.8).

A tensor has one activation format for all its channels (spec section 3), so a channel whose range
is a small fraction of the tensor's largest keeps few steps: retinaface_mnet025's stem has output
channels of abs max 0.07 in a tensor whose range is about 3, two to three int8 steps, and the
depthwise convolution after it multiplies them by about 25: its output channels 1 and 7 are at
-2 and 3.5 dB SNR. The largest channel sets the step; the others waste it.

When a convolution's output reaches a depthwise convolution through at most a positively
homogeneous activation (Relu, LeakyRelu, PRelu: ``f(s x) = s f(x)`` for ``s > 0``), the channels of
that tensor can be rescaled without changing what the model computes: output channel ``c`` of the
producer (its weights and bias) times ``s_c``, channel ``c`` of the depthwise weights divided by
``s_c``. Weights have per-channel formats (spec section 3) along exactly those axes, so the rescaled
weights lose nothing; the activation tensor's channels now share its range. This is the data-aware
form of cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019; AIMET, PPQ, Vitis AI
and Hailo's tools have such a pass), restricted to the pairs where it costs no weight precision.

* **Pairs** (:func:`find_pairs`): producer Conv (constant weights) -> optional Relu / LeakyRelu /
  PRelu -> depthwise Conv (``group`` = input channels = output channels, constant weights); every
  tensor between them read by the next node only, none a model output; weights and biases used by
  no other node; no ``node_overrides`` on any of the nodes.
* **Scales**: per-channel abs max ``r_c`` of the depthwise input over the first
  :data:`EQ_SAMPLES` calibration inputs (a float run of the model); ``s_c = min(max(r) / r_c,
  MAX_SCALE)`` (``1`` for a channel that is always 0; :data:`MAX_SCALE` is 4).
* The equalized model (a copy; the float outputs are the same up to float32 rounding) is what the
  analysis calibrates, quantizes and writes into the BIE; the BIE's options record every pair and
  its scales (``equalized``), so a tensor of the BIE's float graph maps back to the original's:
  divide channel ``c`` by its scale. ``analysis(equalize=False)`` (CLI ``--no-equalize``) turns it off.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.passes._rewrite import attr

#: calibration inputs whose per-channel ranges set the scales (the first ones)
EQ_SAMPLES = 16
#: the largest factor a channel is scaled up by. A channel's range comes from a few calibration
#: inputs; one that was quiet there and fires on other inputs overshoots the tensor's range by its
#: factor and saturates. Measured (720, quick scoreboard splits, equalize off / cap 16 / 8 / 4):
#: en_PP-OCRv3_det's text-mask IoU 0.953 / 0.933 / 0.950 / 0.957 (int16 SNR 45.5 / 21.4 / 23.9 /
#: 45.9 dB: 25 719 values of one tensor saturate on an evaluation image at 16); ultraface's scores
#: SNR 36.9 / 38.1 / 40.7 / 41.3 dB; en_number rec 12.4 / 15.1 / 13.0 / 15.3 dB; PAN 9.96 / 10.73 /
#: 10.47 / 10.59 dB; retinaface's boxes 10.2 / 16.0 / 15.9 / 15.3 dB
MAX_SCALE = 4.0
#: activations with ``f(s x) = s f(x)`` for every ``s > 0``
HOMOGENEOUS = frozenset({"Relu", "LeakyRelu", "PRelu"})


@dataclass(frozen=True)
class Pair:
    """A producer convolution, its activation (or None) and the depthwise convolution that reads
    ``tensor`` (the activation's output, or the producer's)."""

    producer: str
    activation: str | None
    consumer: str
    tensor: str


def find_pairs(model: onnx.ModelProto, skip: Iterable[str] = ()) -> list[Pair]:
    """The equalizable pairs of ``model`` (module docstring), in graph order; nodes named in
    ``skip`` (those with ``node_overrides``) take part in none."""
    g = model.graph
    skip = set(skip)
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    uses: dict[str, int] = {}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            if x:
                uses[x] = uses.get(x, 0) + 1
                readers.setdefault(x, []).append(n)
    prod = {y: n for n in g.node for y in n.output if y}

    def conv_weights(n: onnx.NodeProto | None) -> list[int] | None:
        """The weight shape of a Conv with constant, unshared weights and bias, else None."""
        if n is None or n.op_type != "Conv" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            return None
        consts = [x for x in n.input[1:] if x]
        if not all(x in inits and uses.get(x) == 1 for x in consts):
            return None
        return list(inits[n.input[1]].dims)

    def only_reader(t: str, n: onnx.NodeProto) -> bool:
        return t not in outputs and [r.name for r in readers.get(t, [])] == [n.name]

    out: list[Pair] = []
    for b in g.node:
        wb = conv_weights(b)
        if wb is None or len(wb) < 3 or wb[1] != 1 or attr(b, "group", 1) != wb[0] or b.name in skip:
            continue
        t = b.input[0]
        x = prod.get(t)
        act = None
        if x is not None and x.op_type in HOMOGENEOUS and only_reader(t, b):
            if x.op_type == "PRelu" and not (x.input[1] in inits):
                continue
            act, t_a = x, x.input[0]
        else:
            t_a = t
        a = prod.get(t_a)
        wa = conv_weights(a)
        if a is None or wa is None or wa[0] != wb[0] or not only_reader(t_a, act or b) or not only_reader(t, b):
            continue
        if skip & {a.name, b.name, act.name if act is not None else ""}:
            continue
        out.append(Pair(a.name, act.name if act is not None else None, b.name, t))
    return out


def channel_ranges(model: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]],
                   *, threads: int | None = None) -> dict[str, np.ndarray]:
    """Per-channel (axis 1) abs max of ``tensors`` over the float runs of ``feeds``."""
    from npuflow.calibration.collector import expose_tensors
    from npuflow.reference.float_runner import FloatRunner

    runner = FloatRunner(expose_tensors(model, list(tensors)), label="float model (channel equalization)",
                         threads=threads)
    r: dict[str, np.ndarray] = {}
    for f in feeds:
        for t, v in zip(tensors, runner.run(dict(f), list(tensors))):
            v = np.abs(np.asarray(v, dtype=np.float64))
            m = v.max(axis=tuple(i for i in range(v.ndim) if i != 1)) if v.ndim > 1 else v
            r[t] = m if t not in r else np.maximum(r[t], m)
    return r


def scales_for(r: np.ndarray) -> np.ndarray:
    """``s_c = min(max(r) / r_c, MAX_SCALE)``; 1 where ``r_c`` is 0 (or everything is)."""
    r = np.asarray(r, dtype=np.float64)
    top = float(r.max()) if r.size else 0.0
    if top <= 0.0:
        return np.ones_like(r)
    with np.errstate(divide="ignore"):
        s = np.where(r > 0.0, top / np.where(r > 0.0, r, 1.0), 1.0)
    return np.minimum(s, MAX_SCALE)


def apply_scales(model: onnx.ModelProto, pairs: Sequence[Pair], scales: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with each pair's channels scaled by ``scales[pair.tensor]``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    nodes = {n.name: n for n in out.graph.node}

    def rescale(name: str, f: Any) -> None:
        t = inits[name]
        v = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array(f(v.astype(np.float64)).astype(v.dtype), name))

    for p in pairs:
        s = np.asarray(scales[p.tensor], dtype=np.float64)
        a, b = nodes[p.producer], nodes[p.consumer]
        rescale(a.input[1], lambda w, s=s: w * s.reshape(-1, *([1] * (w.ndim - 1))))
        if len(a.input) > 2 and a.input[2]:
            rescale(a.input[2], lambda v, s=s: v * s)
        rescale(b.input[1], lambda w, s=s: w / s.reshape(-1, *([1] * (w.ndim - 1))))
    return out


def equalize(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], *, skip: Iterable[str] = (),
             threads: int | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """``model`` equalized on ``feeds`` (the first calibration inputs) and the record: ``samples``,
    ``max_scale`` and ``pairs`` (``producer``, ``activation``, ``consumer``, ``tensor``, ``scales``,
    ``spread_before`` / ``spread_after``: the largest over the smallest non-zero channel range).
    ``model`` itself when there is no pair (record with no pairs)."""
    pairs = find_pairs(model, skip)
    record: dict[str, Any] = {"samples": len(feeds), "max_scale": MAX_SCALE, "pairs": []}
    if not pairs or not feeds:
        return model, record
    ranges = channel_ranges(model, [p.tensor for p in pairs], feeds, threads=threads)
    scales = {p.tensor: scales_for(ranges[p.tensor]) for p in pairs}
    kept = [p for p in pairs if np.any(scales[p.tensor] != 1.0)]
    for p in kept:
        r, s = ranges[p.tensor], scales[p.tensor]
        nz = r[r > 0]
        after = (r * s)[r > 0]
        record["pairs"].append({
            "producer": p.producer, "activation": p.activation, "consumer": p.consumer, "tensor": p.tensor,
            "scales": [float(v) for v in s],
            "spread_before": float(nz.max() / nz.min()) if nz.size else 1.0,
            "spread_after": float(after.max() / after.min()) if after.size else 1.0,
        })
    return (apply_scales(model, kept, scales) if kept else model), record
