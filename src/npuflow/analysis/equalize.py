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
  no other node; no ``node_overrides`` ``abs_max`` on any of the nodes (:func:`range_overrides`: a
  fixed range is of the unscaled tensor; a ``bits`` or ``weight_bits`` override keeps the pair).
* **Gated pairs**: the producer's output ``x`` reaches the depthwise Conv through a gated
  activation ``y = x * g(x)`` (``g`` a short elementwise chain holding a Sigmoid, HardSigmoid or
  Clip: SiLU / Swish and HardSwish as exporters write them, :func:`_gated`), ``x`` read by the gate
  and the Mul only, the gate's tensors by the next node only. ``g`` is not homogeneous, so the
  gate reads the unscaled value through an added Mul by the constant ``1 / s_c`` per channel,
  while the Mul reads the scaled ``x``: ``y`` becomes ``s_c * x * g(x)`` exactly and the
  depthwise weights are divided by ``s_c`` as before. The gate's
  input keeps the wide spread (it is the old ``x``), but a gate reads its input coarsely without
  much harm (a channel inside one step of 0 gates at ``g(0)``, 0.5: a relative error of at most
  ``|g(x) - g(0)| / g(0)``); the Mul's output, which the depthwise Conv multiplies up, keeps its
  steps. yolox_nano (20 such pairs; its stem Conv_41 -> SiLU -> depthwise Conv_44 spreads its
  channels from 0.15 to 93): recall / precision of float detections on the full split 47.5 / 80.0
  -> 78.5 / 84.2 % (docs/fixed-point.md section 3.8, "Gated pairs").
* **Scales**: per-channel abs max ``r_c`` of the depthwise input over the first
  :data:`EQ_SAMPLES` calibration inputs (a float run of the model); ``s_c = min(max(r) / r_c,
  cap)`` (``1`` for a channel that is always 0; the cap :data:`MAX_SCALE` is 4, for gated pairs
  :data:`GATED_MAX_SCALE`).
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
#: the cap for gated pairs (``x * g(x)``): their channels spread far more than the homogeneous
#: pairs' (yolox_nano's stem 0.15 to 93), and a cap of 4 leaves the small ones below a step.
#: Measured (720 int8 defaults, quick scoreboard splits, cap 4 / 16): yolox_nano recall / precision
#: of float detections 84.4 / 86.4 / 88.9 / 93.0 %, PAN skin IoU 0.912 / 0.930, en_PP-OCRv3_det
#: 0.960 / 0.959, en_number rec SNR 16.7 / 17.3 dB; at int16, 16 instead of 4 costs the OCR
#: detector and recogniser 3.1 and 2.6 dB of output SNR (their metrics stay at 0.999 and 2/2) and
#: gains yolox and PAN 8.1 and 1.7 dB (docs/fixed-point.md section 3.8, "Gated pairs")
GATED_MAX_SCALE = 16.0
#: activations with ``f(s x) = s f(x)`` for every ``s > 0``
HOMOGENEOUS = frozenset({"Relu", "LeakyRelu", "PRelu"})
#: a gated activation ``x * g(x)`` (SiLU / Swish, HardSwish): ``g`` holds one of these ...
GATES = frozenset({"Sigmoid", "HardSigmoid", "Clip"})
#: ... among at most GATE_CHAIN elementwise nodes of these (the others with constant operands)
GATE_OPS = frozenset({"Sigmoid", "HardSigmoid", "Clip", "Relu", "Add", "Sub", "Mul", "Div"})
GATE_CHAIN = 4


@dataclass(frozen=True)
class Pair:
    """A producer convolution, its activation (or None) and the depthwise convolution that reads
    ``tensor`` (the activation's output, or the producer's). A gated pair: ``activation`` is the
    Mul of ``x * g(x)`` and ``gate`` the node of ``g``."""

    producer: str
    activation: str | None
    consumer: str
    tensor: str
    gate: str | None = None

    @property
    def max_scale(self) -> float:
        return GATED_MAX_SCALE if self.gate else MAX_SCALE


def range_overrides(overrides: Mapping[str, Any]) -> list[str]:
    """The nodes of ``overrides`` (node name -> :class:`npuflow.analysis.ranges.NodeOverride`) that
    fix their output's range (``abs_max``): such a node takes part in no pair, since the range was
    given for the tensor as the float model computes it, and a pair rescales its channels. A
    ``bits`` or ``weight_bits`` override does not stop equalization: a 16-bit tensor holds the
    rescaled channels as well, weights keep per-channel formats, and the report's suggestions are
    measured on the equalized model, so applying one must not undo the equalization (measured:
    yolox_nano with every Conv output at 16 bits, 60 / 40 images, recall / precision of float
    detections 52.5 / 80.9 % when those Convs also lost their pairs, 87.0 / 88.5 % with them)."""
    return [name for name, ov in overrides.items() if getattr(ov, "abs_max", None) is not None]


def added_node_names(model: onnx.ModelProto, opts: Any) -> set[str]:
    """The names of the nodes the equalization may add to ``model`` under ``opts`` (a
    :class:`npuflow.analysis.ranges.QuantOptions`): ``<gate>_unscale``, the Mul before the gate of
    each gated pair (:func:`apply_scales`). ``node_overrides`` may name them (the report measures and
    suggests them like any node); one that the equalization did not add (every scale 1, or
    ``equalize=False``) is reported as an override without effect. Graph only: no data."""
    return {unscale_name(p.gate) for p in find_pairs(model, range_overrides(getattr(opts, "overrides", {})))
            if p.gate is not None}


def unscale_name(gate: str) -> str:
    """The name of the Mul that gives gate ``gate`` the unscaled value (:func:`apply_scales`; a
    further ``_k`` only where the model already uses the name)."""
    return f"{gate}_unscale"


def find_pairs(model: onnx.ModelProto, skip: Iterable[str] = ()) -> list[Pair]:
    """The equalizable pairs of ``model`` (module docstring), in graph order; nodes named in
    ``skip`` (:func:`range_overrides`) take part in none."""
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
        act = gate = None
        chain: list[onnx.NodeProto] = []
        if x is not None and x.op_type in HOMOGENEOUS and only_reader(t, b):
            if x.op_type == "PRelu" and not (x.input[1] in inits):
                continue
            act, t_a = x, x.input[0]
        elif x is not None and only_reader(t, b) and (chain := _gated(x, prod, readers, outputs, inits)):
            act, gate = x, chain[-1]
            t_a = next(i for i in gate.input if i and i not in inits)
        else:
            t_a = t
        a = prod.get(t_a)
        wa = conv_weights(a)
        if a is None or wa is None or wa[0] != wb[0] or not only_reader(t, b):
            continue
        if gate is None and not only_reader(t_a, act or b):
            continue
        if skip & {a.name, b.name, act.name if act is not None else "", *(g.name for g in chain)}:
            continue
        out.append(Pair(a.name, act.name if act is not None else None, b.name, t,
                        gate.name if gate is not None else None))
    return out


def _gated(mul: onnx.NodeProto, prod: Mapping[str, onnx.NodeProto], readers: Mapping[str, list[onnx.NodeProto]],
           outputs: set[str], inits: Mapping[str, Any]) -> list[onnx.NodeProto]:
    """The gate's nodes, from the Mul back to the one that reads ``x`` (last), when ``mul`` computes
    ``x * g(x)``; else empty. ``g`` is a chain of
    at most :data:`GATE_CHAIN` elementwise nodes with one non-constant input each and a Sigmoid,
    HardSigmoid or Clip among them (HardSwish as paddle2onnx writes it: ``Clip(x + 3) * (1/6)``);
    ``x`` is read by the chain's first node and the Mul only, each tensor of the chain by the next
    node only, none a model output."""
    if mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or len(mul.input) != 2:
        return []
    for k in (0, 1):
        x, t = mul.input[k], mul.input[1 - k]
        chain: list[onnx.NodeProto] = []
        while t != x and len(chain) < GATE_CHAIN:
            g = prod.get(t)
            if g is None or g.domain not in ("", "ai.onnx") or g.op_type not in GATE_OPS or t in outputs:
                break
            data = [i for i in g.input if i and i not in inits]
            if len(data) != 1 or [r.name for r in readers.get(t, [])] != [(chain[-1] if chain else mul).name]:
                break
            chain.append(g)
            t = data[0]
        if t != x or not chain or not any(g.op_type in GATES for g in chain) or x in outputs:
            continue
        if sorted(r.name for r in readers.get(x, [])) != sorted([chain[-1].name, mul.name]):
            return []
        return chain
    return []


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


def scales_for(r: np.ndarray, cap: float = MAX_SCALE) -> np.ndarray:
    """``s_c = min(max(r) / r_c, cap)``; 1 where ``r_c`` is 0 (or everything is)."""
    r = np.asarray(r, dtype=np.float64)
    top = float(r.max()) if r.size else 0.0
    if top <= 0.0:
        return np.ones_like(r)
    with np.errstate(divide="ignore"):
        s = np.where(r > 0.0, top / np.where(r > 0.0, r, 1.0), 1.0)
    return np.minimum(s, cap)


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

    taken = {n.name for n in out.graph.node} | {t for n in out.graph.node for t in (*n.input, *n.output)} | set(inits)

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    for p in pairs:
        s = np.asarray(scales[p.tensor], dtype=np.float64)
        a, b = nodes[p.producer], nodes[p.consumer]
        rescale(a.input[1], lambda w, s=s: w * s.reshape(-1, *([1] * (w.ndim - 1))))
        if len(a.input) > 2 and a.input[2]:
            rescale(a.input[2], lambda v, s=s: v * s)
        rescale(b.input[1], lambda w, s=s: w / s.reshape(-1, *([1] * (w.ndim - 1))))
        if p.gate is not None:
            # the gate reads the unscaled x: x_scaled * (1 / s) per channel, just before it
            g = nodes[p.gate]
            x = a.output[0]
            w = inits[a.input[1]]
            rank = len(w.dims)  # the Conv's weight rank is its output's
            dtype = onnx.helper.tensor_dtype_to_np_dtype(w.data_type)
            inv = fresh(f"{p.gate}_inv_scale")
            unscaled = fresh(f"{x}_unscaled")
            out.graph.initializer.append(numpy_helper.from_array(
                (1.0 / s).reshape(1, -1, *([1] * (rank - 2))).astype(dtype), inv))
            mul = onnx.helper.make_node("Mul", [x, inv], [unscaled], name=fresh(unscale_name(p.gate)))
            for i, name in enumerate(g.input):
                if name == x:
                    g.input[i] = unscaled
            at = list(out.graph.node).index(g)
            out.graph.node.insert(at, mul)
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
    if any(p.gate for p in pairs):
        record["gated_max_scale"] = GATED_MAX_SCALE
    ranges = channel_ranges(model, [p.tensor for p in pairs], feeds, threads=threads)
    scales = {p.tensor: scales_for(ranges[p.tensor], p.max_scale) for p in pairs}
    kept = [p for p in pairs if np.any(scales[p.tensor] != 1.0)]
    for p in kept:
        r, s = ranges[p.tensor], scales[p.tensor]
        nz = r[r > 0]
        after = (r * s)[r > 0]
        record["pairs"].append({
            "producer": p.producer, "activation": p.activation, "consumer": p.consumer, "tensor": p.tensor,
            **({"gate": p.gate} if p.gate else {}),
            "scales": [float(v) for v in s],
            "spread_before": float(nz.max() / nz.min()) if nz.size else 1.0,
            "spread_after": float(after.max() / after.min()) if after.size else 1.0,
        })
    return (apply_scales(model, kept, scales) if kept else model), record
