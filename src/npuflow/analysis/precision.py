"""16-bit promotions of ill-conditioned tensors, chosen by measurement (docs/fixed-point.md
section 10.2), and the measuring tools a precision choice needs: the model-output SNR of a program
on calibration inputs and the estimated FPS of a program with mixed widths.

An activation tensor is *ill-conditioned* when its channels' ranges spread so far that some
channels vanish below a few steps of the tensor's (per-tensor) format while the convolution that
reads it weighs them strongly. yolox_nano's stem is the measured case: the 16 channels of Conv_41's
SiLU output range from 0.16 to 127; four are under two int8 steps, and the depthwise convolution
reading them weighs them so that they carry 10 % of its input (weights x range).

* **Units** (:func:`promotion_units`): what moves to 16 bits together: the input tensor of a MAC
  step and, back through the single-input steps that produce it (activations, BN-like scalings),
  every tensor up to and including the output of the MAC or multi-input step that starts the
  chain. Promoting the SiLU output alone leaves its input's small channels rounded away before the
  SiLU: measured on yolox_nano, +0.2 dB for the SiLU output alone, +2.8 dB for the unit. For the
  ill-conditioned tensors' promotions, the Mul of a gated activation ``x * g(x)`` (a SiLU or
  HardSwish as separate steps, e.g. after the gated channel equalization of spec 3.8) continues the
  chain through ``x`` (its gate stays as it is): where the spread is too wide for equalization's
  cap, the small channels vanish in ``x`` already (the stem of tests/analysis/test_promotions.py,
  3000x: 5.3 dB with the Mul's output alone, 31.0 dB through ``x``). The search's candidates
  (section 10.2) stop at that Mul: the move that costs less (yolox_nano, quick split: with the
  search's units through ``x`` too, the search moved nothing, where it otherwise moves the stem's
  SiLU output 687, and recall / precision fell from 88.9 / 93.0 to 84.4 / 95.0 %).
* **Detection** (:func:`ill_conditioned`), from the calibration statistics (per-channel abs max of
  every MAC input, collected in the same pass): a channel *vanishes* when its abs max is below
  :data:`VANISH_STEPS` steps of the tensor's format; the unit is a candidate when the vanishing
  channels carry at least :data:`MIN_SHARE` of the consumer's input, measured as
  ``sum over output channels |W| x channel abs max``.
* **Measurement** (:func:`choose_promotions`): on the first calibration inputs (the same ones as the
  float tails; a Softmax output at its logits, as the range search), each candidate in turn
  (largest share first, at most :data:`MAX_CANDIDATES`) is kept when it raises the lowest
  model-output SNR by at least :data:`MIN_GAIN_DB`, lowers no output by more than
  :data:`MAX_LOSS_DB`, and the model's estimated FPS stays at least :data:`MIN_FPS_RATIO` of the
  FPS without any automatic choice; the next is measured on top of
  the ones kept. User ``node_overrides`` win: a unit touching a step the user overrides is not a
  candidate.
"""
from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from npuflow.analysis.effects import Logits
from npuflow.analysis.equalize import GATE_CHAIN
from npuflow.analysis.graph import MAC_OPS, PASS_THROUGH, Step
from npuflow.analysis.parts import output_parts, snr_accumulator
from npuflow.analysis.program import (
    Program,
    _weight_input,
    step_override,
    weight_axis,
    weight_bits,
)
from npuflow.analysis.ranges import NodeOverride, QuantOptions
from npuflow.analysis.tails import _r, _value, batch_groups
from npuflow.sim.fast.runner import PrefixRuns

#: a channel whose calibrated abs max is below this many steps of its tensor's format vanishes
VANISH_STEPS = 2.0
#: a unit is a candidate when its vanishing channels carry at least this share of the consumer's input
MIN_SHARE = 0.05
#: a promotion is kept when it raises the lowest model-output SNR by at least this much (dB) ...
MIN_GAIN_DB = 1.0
#: ... lowers no model output by more than this (dB) ...
MAX_LOSS_DB = 0.1
#: ... and the estimated FPS stays at least this share of the FPS without automatic choices
MIN_FPS_RATIO = 0.9
#: candidates measured at most (largest share first)
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class Unit:
    """Tensors that move to 16 bits together: ``tensor`` (read by the MAC steps ``consumers``) and
    the tensors of the steps ``steps`` that produce it (their names: the override keys)."""

    tensor: str
    consumers: tuple[str, ...]
    steps: tuple[str, ...]
    tensors: tuple[str, ...]


#: the steps a gate may take between ``x`` and the Mul of ``x * g(x)`` (see :func:`promotion_units`):
#: the nodes the equalization accepts in a gate, and the Mul it adds before them (spec 3.8)
GATE_STEPS = GATE_CHAIN + 1


def promotion_units(steps: Sequence[Step], through_gates: bool = False) -> list[Unit]:
    """One unit per distinct runtime input of the integer MAC steps (see the module docstring);
    ``through_gates``: the chain continues through the Mul of a gated activation to its ``x`` (the
    ill-conditioned tensors' promotions; the search's candidates stop there, the cheaper move)."""
    prod = {y: st for st in steps for y in st.outputs if y}
    readers: dict[str, list[str]] = {}
    for st in steps:
        if st.op_type in MAC_OPS and not st.float_step and st.runtime_inputs:
            readers.setdefault(st.runtime_inputs[0], []).append(st.name)
    def gated_operand(p: Step) -> str | None:
        """``x`` when ``p`` is the Mul of a gated activation ``x * g(x)`` (the gate a chain of
        single-input steps back to ``x``: SiLU, HardSwish, and their equalized form, spec 3.8)."""
        if p.op_type != "Mul" or len(p.runtime_inputs) != 2:
            return None
        for k in (0, 1):
            x, t = p.runtime_inputs[k], p.runtime_inputs[1 - k]
            for _ in range(GATE_STEPS):
                g = prod.get(t)
                if g is None or g.float_step or g.op_type in MAC_OPS or len(g.runtime_inputs) != 1:
                    break
                t = g.runtime_inputs[0]
                if t == x:
                    return x
        return None

    units = []
    for x, cons in readers.items():
        chain: list[Step] = []
        t = x
        while t in prod:
            p = prod[t]
            if p.float_step or p.op_type in PASS_THROUGH:
                break
            chain.append(p)
            if p.op_type in MAC_OPS:
                break
            if len(p.runtime_inputs) != 1:
                nxt = gated_operand(p) if through_gates else None
                if nxt is None:
                    break
                t = nxt
                continue
            t = p.runtime_inputs[0]
        if chain:
            units.append(Unit(x, tuple(cons), tuple(p.name for p in chain),
                              tuple(y for p in chain for y in p.outputs if y)))
    return units


def _input_weight(st: Step, channels: int) -> np.ndarray | None:
    """sum over output channels of |W| per input channel of a Conv step (None: not a Conv with a
    constant weight of that many input channels)."""
    w = st.weights.get("W")
    if st.op_type != "Conv" or w is None or w.ndim < 3:
        return None
    group = int(st.attrs.get("group", 1))
    a = np.abs(w.astype(np.float64)).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (O, I/g)
    per_group = w.shape[0] // max(group, 1)
    if w.shape[1] * group != channels or per_group * group != w.shape[0]:
        return None
    return a.reshape(group, per_group, w.shape[1]).sum(axis=1).reshape(-1)


def ill_conditioned(steps: Sequence[Step], program: Program, channel_max: Callable[[str], np.ndarray | None],
                    units: Sequence[Unit] | None = None) -> list[tuple[Unit, dict[str, Any]]]:
    """The units whose tensor is ill-conditioned (module docstring), largest share first, each
    with its finding: ``channels``, ``vanishing`` (count), ``share`` of the consumers' input they
    carry, ``step`` (the tensor's quantization step), ``range`` (smallest and largest channel abs
    max)."""
    by_name = {st.name: st for st in steps}
    found = []
    for u in promotion_units(steps) if units is None else units:
        r = channel_max(u.tensor)
        fmt = program.formats.get(u.tensor)
        if r is None or fmt is None or fmt.axis is not None or fmt.bits > 8 or r.size < 2:
            continue
        step = 1.0 / (float(fmt.scale) * 2.0 ** int(fmt.radix))
        vanish = r < VANISH_STEPS * step
        if not vanish.any():
            continue
        carried = total = 0.0
        for c in u.consumers:
            a = _input_weight(by_name[c], r.size)
            if a is None:
                continue
            contrib = a * r
            carried += float(contrib[vanish].sum())
            total += float(contrib.sum())
        if total <= 0.0 or carried / total < MIN_SHARE:
            continue
        found.append((u, {"channels": int(r.size), "vanishing": int(vanish.sum()), "share": carried / total,
                          "step": step, "range": [float(r.min()), float(r.max())]}))
    found.sort(key=lambda uf: -uf[1]["share"])
    return found


def program_bits(program: Program, opts: QuantOptions) -> tuple[dict[str, int], dict[str, int]]:
    """(tensor name -> bits, ONNX node name -> weight bits) of ``program`` built with ``opts``: the
    widths the cost model needs (:func:`npuflow.evaluate.cost.node_terms`)."""
    tensor_bits = {t: f.bits for t, f in program.formats.items()}
    node_wbits = {}
    for st in program.steps:
        if st.op_type in MAC_OPS and not st.float_step and st.weights:
            b = weight_bits(step_override(st, opts), opts)
            for n in st.nodes:
                node_wbits[n] = b
    return tensor_bits, node_wbits


class FpsModel:
    """The IP evaluator's estimated FPS of programs of one optimized model on one platform, with
    each program's own widths (the placement and shapes are computed once)."""

    def __init__(self, model: onnx.ModelProto, platform: Any, opts: QuantOptions) -> None:
        from npuflow.evaluate.cost import CostConstants
        from npuflow.evaluate.graph import GraphView, ensure_shapes
        from npuflow.evaluate.placement import place_nodes
        from npuflow.platforms import cost_model_spec, get_platform

        self.platform = get_platform(platform)
        self.spec = cost_model_spec()
        self.view = GraphView.build(ensure_shapes(model))
        self.placements = place_nodes(self.view, self.platform)
        self.consts = CostConstants.for_platform(self.platform, spec=self.spec)
        self.opts = opts
        from npuflow.evaluate.cost import node_terms

        #: ONNX node name -> MACs (the cost model's count)
        self.macs = {t.name: t.macs for t in node_terms(self.view, self.placements, self.platform, spec=self.spec)
                     if t.op_type in MAC_OPS}

    def fps(self, program: Program, opts: QuantOptions | None = None) -> float:
        from npuflow.evaluate.cost import node_terms, total_seconds
        from npuflow.evaluate.placement import CPU, Placement

        o = self.opts if opts is None else opts
        tensor_bits, node_wbits = program_bits(program, o)
        host = {n for st in program.steps if st.host for n in st.nodes}
        placements = [Placement(p.name, p.op_type, CPU, "host") if p.name in host else p for p in self.placements]
        terms = node_terms(self.view, placements, self.platform, datapath_bits=o.datapath_bits,
                           weight_bits=o.weight_bits, spec=self.spec, tensor_bits=tensor_bits,
                           node_weight_bits=node_wbits)
        s = total_seconds(terms, self.consts)
        return 1.0 / s if s > 0 else math.inf


class OutputSnr:
    """The SNR of each model output of a program against the float model on fixed ``feeds``
    (the float references are computed once; a program measured again is not re-run).

    ``logits`` (output -> :class:`npuflow.analysis.effects.Logits`): those outputs are measured at
    their Softmax's input, centred along its axis, instead of at the probabilities
    (docs/fixed-point.md section 3.1: an 8-bit softmax of confident inputs hides every upstream
    error below its own rounding)."""

    def __init__(self, model: onnx.ModelProto | None, feeds: Sequence[Mapping[str, np.ndarray]],
                 outputs: Sequence[str], *, threads: int | None = None,
                 refs: Sequence[Mapping[str, np.ndarray]] | None = None,
                 logits: Mapping[str, Logits] | None = None, scores: Sequence[str] = (),
                 weights: Sequence[Mapping[str, np.ndarray]] | None = None,
                 parts: Mapping[str, Sequence[int]] | None = None) -> None:
        """``refs``: the float references of ``feeds`` when they are known (another process's
        measurement, with the same ``logits``, its ``weights`` and its ``parts``: the same references
        give the same SNRs); ``model`` may then be None (and without ``parts``, nothing is measured
        part by part). ``scores``: the model outputs a Softmax produces (the keys
        of :func:`npuflow.analysis.effects.softmax_logits`): the outputs that share their rows are
        measured with :func:`row_weights`. ``parts``: output -> the boundaries of the parts its
        graph joins along its last axis (:func:`npuflow.analysis.parts.output_parts`, found from
        ``model`` when not given): each part is measured alone and the output counts as its lowest."""
        self.outputs = list(outputs)
        self.feeds = list(feeds)
        self.logits = {o: lg for o, lg in (logits or {}).items() if o in self.outputs}
        self.weights: list[dict[str, np.ndarray]] = [dict(w) for w in weights] if weights is not None else []
        #: output -> the score output whose rows weight it (see :func:`row_weights`)
        self.weighted_by: dict[str, str] = {}
        if refs is None:
            from npuflow.calibration.collector import expose_tensors
            from npuflow.reference.float_runner import FloatRunner

            extra = list(dict.fromkeys(lg.tensor for lg in self.logits.values()))
            runner = FloatRunner(expose_tensors(model, extra) if extra else model,
                                 label="float model (precision measurement)", threads=threads)
            names = list(dict.fromkeys(self.outputs + extra))
            got = [dict(zip(names, runner.run(dict(f), names))) for f in self.feeds]
            # a Softmax over the batch axis cannot be told apart per input: measured at its output
            self.logits = {o: lg for o, lg in self.logits.items()
                           if all(lg.usable(np.ndim(g[lg.tensor])) for g in got)}
            self.weights, self.weighted_by = row_weights(got, self.outputs, [s for s in scores if s in self.outputs])
            refs = [{o: (self.logits[o].centre(g[self.logits[o].tensor]) if o in self.logits else g[o])
                     for o in self.outputs} for g in got]
        self.refs = [dict(r) for r in refs]
        if parts is None:
            parts = output_parts(model, self.outputs) if model is not None else {}
        #: output -> the boundaries of its parts along the last axis (measured part by part); not for
        #: an output measured at its Softmax's logits (other rows), and only where the references'
        #: rows are as wide as the graph said
        self.parts: dict[str, list[int]] = {
            o: list(b) for o, b in parts.items()
            if o in self.outputs and o not in self.logits
            and all(np.ndim(r[o]) >= 1 and np.shape(r[o])[-1] == b[-1] for r in self.refs)}
        # a weight only where its rows are the reference's (a Softmax output measured at logits of
        # another shape keeps the plain measure)
        drop = {o for i, w in enumerate(self.weights) for o in w
                if np.shape(w[o])[:-1] != np.shape(self.refs[i][o])[:-1]}
        if drop:
            self.weights = [{o: x for o, x in w.items() if o not in drop} for w in self.weights]
            self.weighted_by = {o: s for o, s in self.weighted_by.items() if o not in drop}
        # square roots of the row weights, flattened as the references are: a weighted SNR is the
        # plain one of the reference and the value both multiplied by them
        self._root = [{o: np.sqrt(np.broadcast_to(w[o], np.shape(self.refs[i][o]))).reshape(-1) for o in w}
                      for i, w in enumerate(self.weights)]
        # id -> (weak reference, result, the two halves' results) of the programs measured (a program
        # that is gone frees its id: the weak reference then no longer points to the program asked about)
        self._done: dict[int, tuple[weakref.ref, dict[str, float], tuple[dict[str, float], dict[str, float]] | None]] = {}
        #: (group index, its feeds) -> the runs later programs resume from (a program that differs from
        #: an earlier one in a few steps runs only from the first step that differs)
        self._prefix: dict[tuple[int, tuple[int, ...]], PrefixRuns] = {}

    def measured_at(self) -> dict[str, str]:
        """Output -> the tensor measured in its place (the Softmax outputs measured at their logits)."""
        return {o: lg.tensor for o, lg in self.logits.items()}

    def __call__(self, program: Program) -> dict[str, float]:
        return dict(self._measure(program)[1])

    def halves(self, program: Program) -> tuple[dict[str, float], dict[str, float]] | None:
        """Each output's SNR on the even-numbered and on the odd-numbered feeds separately (from the
        same run as ``self(program)``); None with fewer than 2 feeds, or when an output's values
        cannot be told apart per feed (its leading axis is not the batch)."""
        return self._measure(program)[2]

    def _measure(self, program: Program) -> tuple[Any, dict[str, float], Any]:
        done = self._done.get(id(program))
        if done is not None and done[0]() is program:
            return done
        acc = {o: snr_accumulator(self.parts, o) for o in self.outputs}
        half: list[dict[str, Any]] | None = [{o: snr_accumulator(self.parts, o) for o in self.outputs}
                                             for _ in range(2)]
        groups = batch_groups(self.feeds, program.input_names)
        for gi, g in enumerate(groups):
            feed = {k: np.concatenate([np.asarray(self.feeds[i][k]) for i in g]) for k in self.feeds[g[0]]}
            # one snapshot budget for all the groups (one input each where the model has no batch axis)
            runs = self._prefix.setdefault((gi, tuple(g)), PrefixRuns(share=len(groups)))
            env = runs.run(program, lambda feed=feed: program.quantize_inputs(feed), batch=len(g),
                           keep=tuple(lg.tensor for lg in self.logits.values()))
            for o in self.outputs:
                lg = self.logits.get(o)
                value = _value(program, o, env[o]) if lg is None else lg.centre(_value(program, lg.tensor, env[lg.tensor]))
                ref = np.concatenate([np.asarray(self.refs[i][o]).reshape(-1) for i in g])
                batch_major = np.shape(value)[:1] == (len(g),)
                if self._root and o in self._root[g[0]]:
                    root = np.concatenate([self._root[i][o] for i in g])
                    ref, value = ref * root, np.asarray(value, dtype=np.float64).reshape(-1) * root
                acc[o].add(ref, value)
                if half is None:
                    continue
                if len(g) == 1:
                    half[g[0] % 2][o].add(ref, value)
                elif batch_major and all(np.shape(self.refs[i][o])[:1] == (1,) for i in g):
                    n = np.size(ref) // len(g)
                    flat_ref, flat_value = ref.reshape(-1), np.asarray(value).reshape(-1)
                    for j, i in enumerate(g):
                        half[i % 2][o].add(flat_ref[j * n:(j + 1) * n], flat_value[j * n:(j + 1) * n])
                else:
                    half = None
        result = {o: a.db() for o, a in acc.items()}
        halves = None if (half is None or len(self.feeds) < 2) else ({o: a.db() for o, a in half[0].items()},
                                                                      {o: a.db() for o, a in half[1].items()})
        entry = (weakref.ref(program), result, halves)
        self._done[id(program)] = entry
        return entry


#: a score output weights the outputs that share its rows only with at least this many rows per input
#: (a detector's anchors; a classifier's probabilities are one row)
MIN_SCORE_ROWS = 2
#: a score output's rows sum to 1 along its last axis within this (else its Softmax axis is another one)
SCORE_SUM_TOL = 1e-3


def row_weights(values: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[str], scores: Sequence[str]
                ) -> tuple[list[dict[str, np.ndarray]], dict[str, str]]:
    """Row weights of the outputs that share a score output's rows (docs/fixed-point.md section 3.1,
    "Outputs read per detection"): ``values`` are the float model's outputs on each measurement
    input, ``scores`` the outputs a Softmax produces. A score output ``P`` qualifies when its last axis
    is the Softmax's (every row sums to 1) and it has at least :data:`MIN_SCORE_ROWS` rows per input;
    its *background* class is the one most rows predict, and row ``r``'s weight is
    ``1 - P[r, background]``, the probability that the row holds something. Every other output whose
    shape but the last axis equals ``P``'s (a detector's boxes and landmarks per anchor) is weighted by
    it (by the largest of several). A score output whose rows hold less than one object in all is not
    used. Returns (per input: output -> weights of shape ``[..., 1]``, output -> its score output);
    both empty when nothing qualifies."""
    if len(outputs) < 2 or not scores or not values:
        return [], {}
    per_score: dict[str, list[np.ndarray]] = {}
    for sc in scores:
        ps = [np.asarray(v[sc], dtype=np.float64) for v in values]
        if any(p.ndim < 2 or p.shape[-1] < 2 or p.size // p.shape[-1] < MIN_SCORE_ROWS for p in ps):
            continue
        if any(not np.all(np.abs(p.sum(axis=-1) - 1.0) <= SCORE_SUM_TOL) for p in ps):
            continue
        counts = np.bincount(np.concatenate([p.argmax(axis=-1).ravel() for p in ps]), minlength=ps[0].shape[-1])
        b = int(np.argmax(counts))
        w = [np.clip(1.0 - p[..., b:b + 1], 0.0, 1.0) for p in ps]
        if sum(float(x.sum()) for x in w) >= 1.0:
            per_score[sc] = w
    weights: list[dict[str, np.ndarray]] = [{} for _ in values]
    by: dict[str, list[str]] = {}
    for o in outputs:
        if o in scores:
            continue
        for sc, w in per_score.items():
            if not all(np.shape(v[o])[:-1] == np.shape(v[sc])[:-1] for v in values):
                continue
            for i, x in enumerate(w):
                weights[i][o] = np.maximum(weights[i][o], x) if o in weights[i] else x
            by.setdefault(o, []).append(sc)
    if not by:
        return [], {}
    # a score output that weights others is read per row too (the decode keeps the rows over its
    # threshold): its own rows are weighted the same way
    for sc in {s for used in by.values() for s in used}:
        for i, x in enumerate(per_score[sc]):
            weights[i][sc] = x
        by[sc] = [sc]
    return weights, {o: ", ".join(used) for o, used in by.items()}


def _gain(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[float, float]:
    """(gain of the lowest output, worst change of any output) in dB; an output without error
    counts as infinitely good."""
    lo_b, lo_a = min(before.values()), min(after.values())
    gain = math.inf if (lo_a == math.inf and lo_b != math.inf) else (0.0 if lo_a == lo_b else lo_a - lo_b)
    worst = min((0.0 if after[o] == before[o] else after[o] - before[o]) for o in before)
    return gain, worst


def choose_promotions(
    found: Sequence[tuple[Unit, dict[str, Any]]],
    program: Program,
    opts: QuantOptions,
    build: Callable[[QuantOptions], Program],
    measure: Callable[[Program], dict[str, float]],
    fps: Callable[[Program, QuantOptions], float],
    fps_reference: float,
) -> tuple[Program, QuantOptions, list[dict[str, Any]]]:
    """Measure the candidates ``found`` (:func:`ill_conditioned`) one after another on top of the
    ones kept (module docstring). ``build(opts)`` builds a program with the analysis' statistics;
    ``measure(program)`` gives each output's SNR; ``fps(program, opts)`` the estimated FPS;
    ``fps_reference`` the FPS without automatic choices. Returns the final program, the options it
    was built with (the promotions as ``overrides``) and one record per candidate."""
    by_step = {st.name: st for st in program.steps}
    user_keys = set(opts.overrides)
    base_snr = measure(program) if found else {}
    records: list[dict[str, Any]] = []
    for k, (u, finding) in enumerate(found):
        rec = {"tensor": u.tensor, "tensors": list(u.tensors), "steps": list(u.steps), "consumers": list(u.consumers),
               "channels": finding["channels"], "vanishing_channels": finding["vanishing"],
               "share": round(finding["share"], 4), "channel_range": [round(v, 6) for v in finding["range"]],
               "snr_before_db": None, "snr_after_db": None, "gain_db": None, "fps_ratio": None, "kept": False}
        records.append(rec)
        if k >= MAX_CANDIDATES:
            rec["why"] = f"not measured: at most {MAX_CANDIDATES} candidates are"
            continue
        if any(n in user_keys for s in u.steps if s in by_step for n in by_step[s].nodes):
            rec["why"] = "not measured: node_overrides set a step of this unit (the user's choice wins)"
            continue
        trial = replace(opts, overrides={**{s: NodeOverride(bits=16, auto=True) for s in u.steps}, **opts.overrides})
        variant = build(trial)
        snr = measure(variant)
        ratio = fps(variant, trial) / fps_reference if fps_reference > 0 and math.isfinite(fps_reference) else 1.0
        gain, worst = _gain(base_snr, snr)
        rec.update(snr_before_db=_r(min(base_snr.values())), snr_after_db=_r(min(snr.values())),
                   gain_db=_r(gain) if math.isfinite(gain) else None, fps_ratio=round(ratio, 4))
        if gain < MIN_GAIN_DB:
            rec["why"] = f"not kept: raises the lowest output SNR by less than {MIN_GAIN_DB:g} dB"
        elif worst < -MAX_LOSS_DB:
            rec["why"] = f"not kept: lowers an output's SNR by more than {MAX_LOSS_DB:g} dB"
        elif ratio < MIN_FPS_RATIO:
            rec["why"] = (f"not kept: the estimated FPS would fall to {ratio:.1%} of the analysis without "
                          f"automatic choices (at least {MIN_FPS_RATIO:.0%})")
        else:
            rec.update(kept=True, why=f"kept: raises the lowest output SNR by {MIN_GAIN_DB:g} dB or more")
            program, opts, base_snr = variant, trial, snr
    return program, opts, records


def search_message(record: Mapping[str, Any] | None) -> str | None:
    """The warning line part of the budgeted search at defaults (section 10.2; None: nothing moved)."""
    if not record or not record.get("overrides"):
        return None
    first, last = record["front"][0], record["front"][-1]
    ratio = last["fps"] / record["fps_int8"] if record.get("fps_int8") else 1.0
    return (f"the budgeted precision search moved {', '.join(last['moved'])} to 16 bits (lowest output SNR "
            f"{first['snr_db']} -> {last['snr_db']} dB on the first {record['samples']} calibration inputs, "
            f"estimated FPS x{ratio:.3f} of the analysis without automatic choices)")


def promotion_message(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The warning line part listing the kept promotions (None: none kept)."""
    kept = [r for r in records if r.get("kept")]
    if not kept:
        return None
    parts = [f"{r['tensor']} and the tensors before it ({len(r['tensors'])} in all) to 16 bits "
             f"({r['vanishing_channels']} of {r['channels']} channels under {VANISH_STEPS:g} int8 steps carry "
             f"{r['share']:.0%} of {', '.join(r['consumers'])}'s input; lowest output SNR "
             f"{r['snr_before_db']} -> {r['snr_after_db']} dB, estimated FPS x{r['fps_ratio']:.3f})" for r in kept]
    return "promoted ill-conditioned tensors: " + "; ".join(parts)


# ------------------------------------------------------------------------------------------------
# Mixed modes (docs/fixed-point.md section 10.3): "mix light" and "mix balance" are fixed rules,
# "mixbw" a measured search under an estimated-time bound.

#: mix light: a MAC step is *small-channel* when its output channels are at most this many
SMALL_CHANNELS = 16
#: mix balance: the largest MAC steps that together hold at least this share of the MACs stay 8-bit
BALANCE_MAC_SHARE = 0.5
#: mixbw: calibration inputs the search measures on (the first ones; the same every run)
MIXBW_SAMPLES = 8
#: mixbw: candidates measured at most (in the order of their estimated SQNR, lowest first)
MIXBW_CANDIDATES = 16
#: mixbw: a candidate is accepted when it raises the lowest model-output SNR by at least this (dB) ...
MIXBW_MIN_GAIN_DB = 0.1
#: ... and lowers it on neither half of the search's inputs (even- and odd-numbered) by more than
#: this (dB; None: the halves are recorded, not used)
MIXBW_HALF_LOSS_DB: float | None = 0.0
#: mixbw with int4 weights (platforms whose weights include int4: the 730): demotions measured at most
MIXBW_INT4_CANDIDATES = 16
#: ... each accepted while the lowest model-output SNR stays within this of the promotions' (dB) ...
MIXBW_INT4_TRIAL_LOSS_DB = 1.0
#: ... and the int4 phase (demotions, then the promotions over the bound again) is kept when it
#: ends at most this below the promotions' SNR (dB); otherwise it is undone
MIXBW_INT4_MAX_LOSS_DB = 0.1


def _out_channels(st: Step) -> int | None:
    w = st.weights.get(_weight_input(st) or "")
    ax = weight_axis(st)
    return None if w is None or ax is None else int(w.shape[ax])


def _mac_steps(steps: Sequence[Step]) -> list[Step]:
    return [st for st in steps if st.op_type in MAC_OPS and not st.float_step and _out_channels(st) is not None]


def merge_overrides(auto: Mapping[str, NodeOverride], user: Mapping[str, NodeOverride]) -> dict[str, NodeOverride]:
    """``auto`` under ``user``: a user's override replaces the automatic one of the same node."""
    return {**auto, **user}


def mix_rule_overrides(steps: Sequence[Step], opts: QuantOptions, macs: Mapping[str, int]) -> dict[str, NodeOverride]:
    """The per-step widths of "mix light" / "mix balance" (section 10.3) as automatic overrides.

    mix light (base 8 bits): the small-channel MAC steps (at most :data:`SMALL_CHANNELS` output
    channels) get 16-bit outputs (datapath) / 16-bit weights (weight). mix balance (base 16 bits):
    the largest MAC steps by MACs, together at least :data:`BALANCE_MAC_SHARE` of the model's
    MACs, get 8-bit outputs / weights; everything else stays 16-bit."""
    macsteps = _mac_steps(steps)
    small = {st.name for st in macsteps if (_out_channels(st) or 0) <= SMALL_CHANNELS}
    order = sorted(macsteps, key=lambda st: -sum(macs.get(n, 0) for n in st.nodes))
    total = sum(macs.get(n, 0) for st in macsteps for n in st.nodes)
    big: set[str] = set()
    acc = 0
    for st in order:
        if total and acc >= BALANCE_MAC_SHARE * total:
            break
        big.add(st.name)
        acc += sum(macs.get(n, 0) for n in st.nodes)
    spec: dict[str, dict[str, int]] = {}
    for role, mode, field_ in (("datapath", opts.mix_datapath, "bits"), ("weight", opts.mix_weight, "weight_bits")):
        if mode == "mix light":
            for name in small:
                spec.setdefault(name, {})[field_] = 16
        elif mode == "mix balance":
            for name in big:
                spec.setdefault(name, {})[field_] = 8
    return {n: NodeOverride(**v, auto=True) for n, v in spec.items()}


def _weight_sqnr_db(st: Step, bits: int = 8) -> float:
    """SQNR (dB) of a MAC step's weights on a symmetric per-output-channel grid of ``bits`` bits
    (rounding noise step^2 / 12): the estimate that orders the weight candidates."""
    w = st.weights[_weight_input(st)].astype(np.float64)
    ax = weight_axis(st)
    wc = np.moveaxis(w, ax, 0).reshape(w.shape[ax], -1)
    step = np.abs(wc).max(axis=1) / (2 ** (bits - 1) - 1)
    noise = float((step ** 2 / 12.0 * wc.shape[1]).sum())
    sig = float((wc ** 2).sum())
    return 10 * math.log10(sig / noise) if noise > 0 and sig > 0 else math.inf


def _act_sqnr_db(u: Unit, program: Program, by_name: Mapping[str, Step],
                 channel_max: Callable[[str], np.ndarray | None]) -> float:
    """SQNR (dB) of a unit's tensor as its consumers read it: per channel, signal ~ (a_c r_c)^2 / 3
    (uniform on +-r_c), noise ~ a_c^2 step^2 / 12, with a_c the consumers' |W| on the channel
    (1 without a Conv consumer): the estimate that orders the activation candidates."""
    fmt = program.formats.get(u.tensor)
    if fmt is None or fmt.axis is not None:
        return math.inf
    step = 1.0 / (float(fmt.scale) * 2.0 ** int(fmt.radix))
    r = channel_max(u.tensor)
    if r is None:
        return math.inf
    a = np.zeros(r.size)
    for c in u.consumers:
        w = _input_weight(by_name[c], r.size)
        a += w if w is not None else 1.0
    sig = float(((a * r) ** 2).sum()) / 3.0
    noise = float((a ** 2).sum()) * step ** 2 / 12.0
    return 10 * math.log10(sig / noise) if noise > 0 and sig > 0 else math.inf


@dataclass(frozen=True)
class Candidate:
    """One change the mixbw search measures: the overrides it adds (step name -> fields)."""

    label: str
    kind: str  # "activations", "weights", "both"
    overrides: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    estimate_db: float

    def apply(self, ov: Mapping[str, NodeOverride]) -> dict[str, NodeOverride]:
        out = dict(ov)
        for name, fields_ in self.overrides:
            cur = out.get(name, NodeOverride(auto=True))
            out[name] = replace(cur, **dict(fields_))
        return out


def mixbw_candidates(steps: Sequence[Step], program: Program, opts: QuantOptions,
                     channel_max: Callable[[str], np.ndarray | None]) -> list[Candidate]:
    """The mixbw candidates, lowest estimated SQNR first: per unit (:func:`promotion_units`) its
    activations to 16 bits (datapath mixbw), per MAC step its weights (weight mixbw), and with both
    in mixbw a unit together with the weights of the MAC steps that read and start it. Steps the
    user overrides are left out; so are tensors already 16-bit."""
    by_name = {st.name: st for st in steps}
    user = {k for k, v in opts.overrides.items() if not v.auto}
    user_steps = {st.name for st in steps if any(n in user for n in st.nodes)}
    out: list[Candidate] = []
    act = opts.mix_datapath == "mixbw"
    wgt = opts.mix_weight == "mixbw"
    wdb = {st.name: _weight_sqnr_db(st) for st in _mac_steps(steps)} if wgt else {}
    if act:
        for u in promotion_units(steps):
            fmt = program.formats.get(u.tensor)
            if fmt is None or fmt.bits > 8 or user_steps.intersection(u.steps):
                continue
            est = _act_sqnr_db(u, program, by_name, channel_max)
            out.append(Candidate(u.tensor, "activations", tuple((s, (("bits", 16),)) for s in u.steps), est))
            macs = [s for s in (*u.steps, *u.consumers) if s in wdb and s not in user_steps]
            if wgt and macs:
                both = {s: (("bits", 16),) for s in u.steps}
                for s in macs:
                    both[s] = tuple(sorted({**dict(both.get(s, ())), "weight_bits": 16}.items()))
                out.append(Candidate(u.tensor + " + weights", "both", tuple(both.items()),
                                     min(est, *(wdb[s] for s in macs))))
    for name, db in wdb.items():
        if name in user_steps or weight_bits(step_override(by_name[name], opts), opts) > 8:
            continue
        out.append(Candidate(name + " weights", "weights", ((name, (("weight_bits", 16),)),), db))
    out.sort(key=lambda c: (c.estimate_db, c.label))
    return out


def int4_candidates(steps: Sequence[Step], opts: QuantOptions) -> list[Candidate]:
    """Weight mixbw on a platform with int4 weights (section 10.3): each MAC step whose weights are
    8-bit (not set by the user) to int4, highest estimated int4 SQNR first (the least damage)."""
    by_name = {st.name: st for st in steps}
    user = {k for k, v in opts.overrides.items() if not v.auto}
    out = []
    for st in _mac_steps(steps):
        if any(n in user for n in st.nodes) or weight_bits(step_override(by_name[st.name], opts), opts) != 8:
            continue
        out.append(Candidate(st.name + " weights int4", "weights int4", ((st.name, (("weight_bits", 4),)),),
                             _weight_sqnr_db(st, 4)))
    out.sort(key=lambda c: (-c.estimate_db, c.label))
    return out


def mixbw_search(
    program: Program,
    opts: QuantOptions,
    candidates: Sequence[Candidate],
    build: Callable[[QuantOptions], Program],
    measure: Callable[[Program], dict[str, float]],
    fps: Callable[[Program, QuantOptions], float],
    fps_int8: float,
    *,
    references: Mapping[str, tuple[Program, QuantOptions]] | None = None,
    progress: bool = False,
    evaluate: Callable[[list[QuantOptions]], list[tuple[Any, ...]]] | None = None,
    width: int = 1,
    demotions: Callable[[QuantOptions], Sequence[Candidate]] | None = None,
    desc: str = "mixbw search",
) -> tuple[Program, QuantOptions, dict[str, Any]]:
    """The mixbw search (section 10.3): from ``program`` (the mixbw start: base widths, model input,
    output and CPU nodes 16-bit, the automatic promotions), the first :data:`MIXBW_CANDIDATES`
    ``candidates`` in order, each measured on top of the ones accepted; one is accepted when it
    keeps the estimated FPS at least ``fps_int8 / (1 + flops_ratio)`` and raises the lowest
    model-output SNR by :data:`MIXBW_MIN_GAIN_DB` or more, lowering it on neither half of the inputs
    (even- and odd-numbered, when ``measure`` gives them: :data:`MIXBW_HALF_LOSS_DB`). Each
    acceptance is a point of the front
    (estimated FPS, SNR); the last one is chosen. ``references``: label -> (program, its options)
    of fixed points measured for the chart (e.g. int8, mix light). Returns the final program, its
    options and the record.

    ``demotions(opts)``: with int4 weights (the 730), the int4 candidates of the state ``opts``
    (:func:`int4_candidates`). After the promotions, the first :data:`MIXBW_INT4_CANDIDATES` are
    measured in order, each accepted while the lowest output SNR stays within
    :data:`MIXBW_INT4_TRIAL_LOSS_DB` of the SNR the promotions reached; then the promotions that
    were over the time bound (and do not touch a demoted step) are measured again on the faster
    state, same rule as before. The int4 phase is kept when it ends at most
    :data:`MIXBW_INT4_MAX_LOSS_DB` below the promotions' SNR (int4 nearly free, or the time it
    freed bought more than it cost), else undone (its rows say so).

    ``evaluate(trials)``: (estimated FPS, SNRs or None when over the bound) of each trial's program,
    computed elsewhere (e.g. on an executor, :mod:`npuflow.analysis.executors`), ``width`` trials at
    a time: the next ``width`` candidates are measured together on top of the current state and
    read in order up to the first accepted one; the ones after it are measured again on the new
    state. The decisions, and so the program, are those of the one-at-a-time search."""
    bound = fps_int8 / (1.0 + opts.flops_ratio)
    snr = measure(program)
    split = getattr(measure, "halves", None)  # OutputSnr: each half of the inputs, from the same run

    def halves_of(p: Any) -> Any:
        return split(p) if split is not None else None
    start_fps = fps(program, opts)
    front = [{"label": "start", "moved": [], "fps": _r(start_fps), "snr_db": _r(min(snr.values()))}]
    rows: list[dict[str, Any]] = []
    todo = list(candidates[:MIXBW_CANDIDATES])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo) + len(references or {}), desc=desc, unit="candidate", file=sys.stderr)
    moved: list[str] = []
    state = {"program": program, "opts": opts, "snr": snr, "halves": halves_of(program)}

    def local(trial: QuantOptions) -> tuple[float, Program, dict[str, float] | None, Any]:
        variant = build(trial)
        f = fps(variant, trial)
        return (f, variant, None, None) if f < bound else (f, variant, measure(variant), halves_of(variant))

    def half_gains(hv: Any) -> list[float] | None:
        """The lowest-output SNR gain on each half of the inputs over the accepted state's."""
        if hv is None or state["halves"] is None:
            return None
        return [_gain(b, a)[0] for b, a in zip(state["halves"], hv)]

    def promote(s: dict[str, float], hv: Any) -> tuple[bool, str]:
        gain, _ = _gain(state["snr"], s)
        if gain < MIXBW_MIN_GAIN_DB:
            return False, f"gains less than {MIXBW_MIN_GAIN_DB:g} dB"
        hg = half_gains(hv)
        if MIXBW_HALF_LOSS_DB is not None and hg is not None and min(hg) < -MIXBW_HALF_LOSS_DB:
            return False, (f"gains {gain:.2f} dB but lowers one half of the inputs by {-min(hg):.2f} dB "
                           "(a gain of a few inputs)")
        return True, "accepted"

    def phase(todo: list[Candidate], accept: Callable[[dict[str, float], Any], tuple[bool, str]], name: str
              ) -> list[dict]:
        """Measure ``todo`` in order on top of the accepted state (batches of ``width`` on an
        executor, the ones after an acceptance measured again); returns this phase's rows."""
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(todo):
            batch = todo[i:i + (max(1, int(width)) if evaluate is not None else 1)]
            trials = [replace(state["opts"], overrides=c.apply(state["opts"].overrides)) for c in batch]
            if evaluate is None:
                results = [local(trials[0])]
            else:  # (FPS, SNRs) or (FPS, SNRs, halves) per trial
                results = [(r[0], None, r[1], r[2] if len(r) > 2 else None) for r in evaluate(trials)]
            for c, trial, (f, variant, sn, hv) in zip(batch, trials, results):
                i += 1
                row = {"label": c.label, "kind": c.kind, "phase": name, "estimate_db": _r(c.estimate_db), "fps": _r(f),
                       "snr_db": None, "gain_db": None, "accepted": False}
                out.append(row)
                accepted = False
                if f < bound or sn is None:
                    row["why"] = f"over the time bound: estimated FPS {f:.1f} < {bound:.1f}"
                else:
                    gain, _ = _gain(state["snr"], sn)
                    row.update(snr_db=_r(min(sn.values())), gain_db=_r(gain) if math.isfinite(gain) else None)
                    hg = half_gains(hv)
                    if hg is not None:
                        row["halves_gain_db"] = [_r(g) if math.isfinite(g) else None for g in hg]
                    accepted, row["why"] = accept(sn, hv)
                    if accepted:
                        row["accepted"] = True
                        state.update(program=variant if variant is not None else build(trial), opts=trial, snr=sn,
                                     halves=hv)
                        moved.append(c.label)
                        front.append({"label": c.label, "moved": list(moved), "fps": _r(f),
                                      "snr_db": _r(min(sn.values()))})
                if bar is not None:
                    bar.update(1)
                if accepted:  # the rest of the batch was measured on the state before: again
                    break
        rows.extend(out)
        return out

    try:
        first = phase(todo, promote, "promote")
        if demotions is not None:
            saved = (dict(state), len(front), len(moved))
            before = min(state["snr"].values())
            floor = before - MIXBW_INT4_TRIAL_LOSS_DB
            down = list(demotions(state["opts"]))[:MIXBW_INT4_CANDIDATES]
            if bar is not None:
                bar.total += len(down)
                bar.refresh()

            def demote(s: dict[str, float], _hv: Any) -> tuple[bool, str]:
                if min(s.values()) >= floor:
                    return True, f"accepted: the lowest output SNR stays within {MIXBW_INT4_TRIAL_LOSS_DB:g} dB"
                return False, f"lowers the lowest output SNR below {floor:.2f} dB"

            int4_rows = phase(down, demote, "int4") if down else []
            demoted = {name for c, r in zip(down, int4_rows) if r["accepted"] for name, _ in c.overrides}
            # (a promotion that sets a demoted step's weights would undo the demotion: left out)
            # (a row without an SNR was over the time bound: not measured)
            again = [c for c, r in zip(todo, first) if r["snr_db"] is None
                     and not any(name in demoted and "weight_bits" in dict(f) for name, f in c.overrides)]
            if demoted:  # the time freed: the promotions that were over the bound, again
                if bar is not None:
                    bar.total += len(again)
                    bar.refresh()
                later = int4_rows + phase(again, promote, "promote again")
                if min(state["snr"].values()) < before - MIXBW_INT4_MAX_LOSS_DB:
                    state.update(saved[0])
                    del front[saved[1]:], moved[saved[2]:]
                    for r in later:
                        if r["accepted"]:
                            r.update(accepted=False, why=f"undone: the int4 phase ended more than "
                                     f"{MIXBW_INT4_MAX_LOSS_DB:g} dB below the promotions' SNR ({before:.2f} dB)")
        refs = []
        for label, (p, o) in (references or {}).items():
            refs.append({"label": label, "fps": _r(fps(p, o)), "snr_db": _r(min(measure(p).values()))})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    program, opts = state["program"], state["opts"]
    record = {"mode": {"datapath": opts.mix_datapath or None, "weight": opts.mix_weight or None},
              "flops_ratio": opts.flops_ratio, "fps_int8": _r(fps_int8), "fps_bound": _r(bound),
              "samples": None, "candidates": len(candidates), "measured": rows, "front": front,
              "chosen": front[-1], "references": refs, "int4": demotions is not None}
    return program, opts, record
