"""Float tails: the post-processing after a model's last MAC layer, kept in float where that
measurably helps (docs/fixed-point.md section 10.1).

Many exported detectors decode inside the graph after their last convolution: Exp of the size
regression times the priors, centres plus offsets, corner form, and Concats of values of very
different ranges into one output (ultraface_rfb_320 concatenates box centres and sizes into one int8
tensor whose step is 1 % of the image width). The original's manual tells users to cut such nodes
off to post-processing; here the BIE keeps the model's outputs and runs such a tail inside it as
float CPU steps ("host post-processing"), chosen by measurement:

* **Candidates** (:func:`find_tails`): the nodes that come after a MAC layer (Conv, ConvTranspose,
  Gemm, MatMul; recurrent cells count as MAC layers too) and from which no MAC layer can be reached,
  minus (a) the nodes of a step that also holds a node outside that set (an activation fused into
  the last MAC layer), (b) data movement at the start (Reshape, Transpose, Slice, ... whose inputs
  come from the NPU: they copy integers, nothing is lost), and (c) any node whose output an NPU
  step would read. Nodes connected through tensors form one candidate; a candidate without a
  computing node or a Concat is dropped. A float tail never contains a MAC layer.
* **Measurement** (:func:`choose_tails`): on the first :data:`TAIL_SAMPLES` calibration inputs, the
  SNR of each model output against the float model, with every candidate quantized (the program
  as built) and with every candidate in float (host steps: inputs dequantized, the ONNX node run
  in float, outputs **not** quantized). A candidate is kept when it raises the SNR of at least one
  of its model outputs by :data:`MIN_GAIN_DB` or more from below :data:`MAX_QUANTIZED_SNR_DB` and
  lowers none by more than :data:`MAX_LOSS_DB` (an output without any error counts as infinitely
  good). With ``quantize_mode="post_sigmoid"`` a candidate without a Sigmoid is not measured: the
  option takes its outputs as logits to cap (:func:`logit_tails`).
* ``analysis(auto_precision=False)`` (CLI ``--no-auto-precision``) skips all of this.

The kept tails are listed in one :class:`npuflow.errors.AutoPrecisionWarning`, in the report
(``quantization.auto_precision``) and as CPU nodes whose reason starts with :data:`HOST_REASON` in
evaluate()'s and the report's node tables.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from npuflow.analysis.graph import (
    MAC_OPS,
    PASS_THROUGH,
    Step,
    components,
    default_opset,
)
from npuflow.analysis.program import Program, as_float_step

#: the label of host post-processing in reasons (evaluate(), the report, the BIE's steps)
HOST_REASON = "host post-processing"
#: the label of a float island's steps (:mod:`npuflow.analysis.islands`, spec 10.4)
ISLAND_REASON = "host float island"
#: calibration inputs the measurement uses (the first ones)
TAIL_SAMPLES = 8
#: a candidate must raise the SNR of one of its outputs by at least this much (dB): the tail's own
#: quantization then causes at least 3/4 of the error there. Measured (docs/compatibility.md,
#: auto_precision): ultraface_rfb_320's box decode gains 9.6 dB; the tails of the other shared models
#: 0.2 dB or less; an Add + Relu after the last Conv of a small test graph about 3 dB (its output's
#: own int8 rounding: not a decode worth moving to the host)
MIN_GAIN_DB = 6.0
#: ... from a quantized SNR below this (dB): about the best an int8 output gives (a full-scale uniform
#: signal: 6.02 * 8 + 1.76 = 49.9 dB); beyond it the tail costs nothing that matters ...
MAX_QUANTIZED_SNR_DB = 50.0
#: ... and lower none by more than this (dB)
MAX_LOSS_DB = 0.1
#: ops a float tail never contains: the NPU's work
HEAVY_OPS = frozenset(MAC_OPS) | {"LSTM", "GRU", "RNN", "Einsum", "ConvInteger", "MatMulInteger", "QLinearConv",
                                  "QLinearMatMul"}


@dataclass(frozen=True)
class TailCandidate:
    """One connected tail: its ONNX nodes (graph order), the model outputs it computes and the
    tensors it reads from the rest of the model (its boundary: NPU outputs, model inputs)."""

    nodes: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]


def find_tails(model: onnx.ModelProto, steps: Sequence[Step]) -> list[TailCandidate]:
    """The candidate float tails of the optimized, topologically sorted ``model`` whose steps are
    ``steps`` (see the module docstring)."""
    g = model.graph
    nodes = list(g.node)
    inits = {t.name for t in g.initializer}
    prod = {y: i for i, n in enumerate(nodes) for y in n.output if y}
    cons: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for x in dict.fromkeys(n.input):
            if x:
                cons.setdefault(x, []).append(i)
    heavy = [n.op_type in HEAVY_OPS for n in nodes]
    after = [False] * len(nodes)  # a MAC layer comes before it
    for i, n in enumerate(nodes):
        after[i] = any(x in prod and (heavy[prod[x]] or after[prod[x]]) for x in n.input if x)
    before = [False] * len(nodes)  # a MAC layer can be reached from it
    for i in reversed(range(len(nodes))):
        before[i] = any(heavy[c] or before[c] for y in nodes[i].output if y for c in cons.get(y, []))
    tail = {i for i in range(len(nodes)) if after[i] and not before[i] and not heavy[i]}
    if not tail:
        return []
    index = {n.name: i for i, n in enumerate(nodes)}
    for st in steps:  # (a) a step is all in the tail or all out of it
        ks = [index[n] for n in st.nodes if n in index]
        if any(k in tail for k in ks) and not all(k in tail for k in ks):
            tail.difference_update(ks)
    changed = True
    while changed:
        changed = False
        for i in sorted(tail):
            n = nodes[i]
            readers_out = any(c not in tail for y in n.output if y for c in cons.get(y, []))  # (c)
            leading = n.op_type in PASS_THROUGH and all(prod.get(x) not in tail for x in n.input if x and x not in inits)
            if readers_out or leading:  # (b)
                tail.discard(i)
                changed = True
    links = ((i, c) for i in tail for y in nodes[i].output if y for c in cons.get(y, []))
    out: list[TailCandidate] = []
    for members in components(tail, links):
        mset = set(members)
        if all(nodes[i].op_type in PASS_THROUGH for i in members):
            continue
        outputs = tuple(o.name for o in g.output if prod.get(o.name) in mset)
        if not outputs:
            continue
        inputs = tuple(dict.fromkeys(x for i in members for x in nodes[i].input
                                     if x and x not in inits and prod.get(x) not in mset))
        out.append(TailCandidate(tuple(nodes[i].name for i in members), outputs, inputs))
    return out


def with_host_steps(model: onnx.ModelProto, steps: Sequence[Step], tails: Iterable[TailCandidate],
                    reason: str = HOST_REASON) -> list[Step]:
    """``steps`` with every step of ``tails`` replaced by host steps, one per ONNX node, in place
    (the other steps are the same objects, so their memoised parameters carry over)."""
    host = {n for t in tails for n in t.nodes}
    if not host:
        return list(steps)
    by_name = {n.name: n for n in model.graph.node}
    inits = {t.name: t for t in model.graph.initializer}
    opset = default_opset(model)
    out: list[Step] = []
    for st in steps:
        if not any(n in host for n in st.nodes):
            out.append(st)
            continue
        for name in st.nodes:
            node = by_name[name]
            hs = Step(name, node.op_type, (name,), [], [], {})
            as_float_step(hs, node, inits, opset, reason)
            hs.host = True
            out.append(hs)
    return out


def host_nodes(steps: Iterable[Step]) -> dict[str, str]:
    """ONNX node name -> reason, for every node run as host post-processing."""
    return {n: st.reason for st in steps if st.host for n in st.nodes}


def host_steps_of(program: Program) -> list[int]:
    """Indices of the host steps of ``program``: ``Step.host``, or (a program read from a BIE) a
    float step with a float output that has no format, or one labelled as a float island's (the
    island's border outputs are quantized, spec 10.4)."""
    out = []
    for k, st in enumerate(program.steps):
        if st.host or (st.float_step and (st.reason.startswith(ISLAND_REASON) or any(
                y and y not in program.formats and program.float_dtypes.get(y, True) for y in st.outputs))):
            out.append(k)
    return out


def op_counts(model: onnx.ModelProto, nodes: Iterable[str]) -> dict[str, int]:
    """ONNX op type -> how many of ``nodes`` (names) have it, in first-seen order."""
    by_name = {n.name: n.op_type for n in model.graph.node}
    out: dict[str, int] = {}
    for n in nodes:
        out[by_name[n]] = out.get(by_name[n], 0) + 1
    return out


def snr_gains(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Per output, the SNR change from ``before`` to ``after`` (dB); ``inf`` counts as no error:
    reaching it is an infinite gain, staying at it none."""
    return {o: (math.inf if after[o] == math.inf and before[o] != math.inf else
                0.0 if after[o] == before[o] else after[o] - before[o]) for o in before}


class _Snr:
    __slots__ = ("noise", "sig")

    def __init__(self) -> None:
        self.sig = self.noise = 0.0

    def add(self, ref: np.ndarray, x: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64).ravel()
        d = r - np.asarray(x, dtype=np.float64).ravel()
        self.sig += float(np.dot(r, r))
        self.noise += float(np.dot(d, d))

    def db(self) -> float:
        """SNR in dB; ``inf`` without any error."""
        if self.noise <= 0.0:
            return math.inf
        if self.sig <= 0.0:
            return -300.0
        return 10.0 * math.log10(self.sig / self.noise)


def _value(program: Program, name: str, v: np.ndarray) -> np.ndarray:
    f = program.formats.get(name)
    return f.dequantize(v) if f is not None else np.asarray(v, dtype=np.float64)


def _sub_program(program: Program, ks: list[int], inputs: list[str], outputs: list[str]) -> Program:
    return Program([program.steps[k] for k in ks], [program.params[k] for k in ks], program.formats, list(inputs),
                   list(outputs), program.float_dtypes, opset=program.opset)


def batch_groups(feeds: Sequence[Mapping[str, np.ndarray]], input_names: Sequence[str]) -> list[list[int]]:
    """Indices of ``feeds`` run together: all at once where every model input has a batch axis of
    1 (the simulator's batch path: the same integers as one at a time), else one at a time."""
    batched = len(feeds) > 1 and all(np.shape(f[n])[:1] == (1,) for f in feeds for n in input_names)
    return [list(range(len(feeds)))] if batched else [[i] for i in range(len(feeds))]


def _r(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 3)


def choose_tails(
    model: onnx.ModelProto,
    steps: list[Step],
    program: Program,
    candidates: list[TailCandidate],
    feeds: Sequence[Mapping[str, np.ndarray]],
    build: Callable[[list[Step]], Program],
    *,
    threads: int | None = None,
) -> tuple[list[Step], Program, list[dict[str, Any]]]:
    """Measure ``candidates`` on ``feeds`` (see the module docstring) and keep those that help.

    ``build(steps)`` builds a program from steps with the analysis' statistics and options.
    Returns the final steps and program (``steps``/``program`` themselves when nothing is kept) and
    one record per candidate: ``nodes``, ``ops`` (op type -> count), ``outputs``, ``inputs``,
    ``snr_quantized_db`` / ``snr_float_db`` (per output; None: no error), ``gain_db`` (the largest),
    ``kept`` and ``why``."""
    from npuflow.reference.float_runner import FloatRunner

    variant_steps = with_host_steps(model, steps, candidates)
    variant = build(variant_steps)
    outs = [o for t in candidates for o in t.outputs]
    runner = FloatRunner(model, label="float model (float tails)", threads=threads)
    base_acc = {o: _Snr() for o in outs}
    tail_acc = {o: _Snr() for o in outs}
    hk = host_steps_of(variant)
    boundary = list(dict.fromkeys(x for t in candidates for x in t.inputs))
    # the head is the same program when every tensor it formats has the same format: then only
    # the host steps run again, on the base run's tensors
    same_head = all(program.formats.get(t) == f for t, f in variant.formats.items()) and all(
        x in program.formats or x in program.input_names or not program.float_dtypes.get(x, True) for x in boundary)
    sub = _sub_program(variant, hk, boundary, outs) if same_head else None
    # the base program, returning the outputs and the boundary (Conv + table fusion stays on)
    head = _sub_program(program, list(range(len(program.steps))), program.input_names,
                        list(dict.fromkeys(outs + (boundary if sub is not None else []))))
    groups = [[feeds[i] for i in g] for g in batch_groups(feeds, program.input_names)]
    for group in groups:
        n = len(group)
        feed = {k: np.concatenate([np.asarray(f[k]) for f in group]) for k in group[0]}
        refs = [dict(zip(outs, runner.run(dict(f), outs))) for f in group]
        ref = {o: np.concatenate([np.asarray(r[o]).reshape(-1) for r in refs]) for o in outs}
        env = head.run(program.quantize_inputs(feed), batch=n)
        if sub is not None:
            res = sub.run({x: env[x] for x in boundary}, batch=n)
        else:
            res = variant.run(variant.quantize_inputs(feed), batch=n)
        for o in outs:
            base_acc[o].add(ref[o], _value(program, o, env[o]))
            tail_acc[o].add(ref[o], _value(variant, o, res[o]))
        del env, res
    records: list[dict[str, Any]] = []
    kept: list[TailCandidate] = []
    for t in candidates:
        q = {o: base_acc[o].db() for o in t.outputs}
        f = {o: tail_acc[o].db() for o in t.outputs}
        gains = snr_gains(q, f)
        best, worst = max(gains.values()), min(gains.values())
        helped = [o for o in t.outputs if gains[o] >= MIN_GAIN_DB and q[o] < MAX_QUANTIZED_SNR_DB]
        ok = bool(helped) and worst >= -MAX_LOSS_DB
        if ok:
            why = f"kept: raises the SNR of {', '.join(helped)} by {MIN_GAIN_DB:g} dB or more"
            kept.append(t)
        elif best < MIN_GAIN_DB:
            why = f"not kept: gains less than {MIN_GAIN_DB:g} dB on every output"
        elif not helped:
            why = (f"not kept: the outputs it would improve by {MIN_GAIN_DB:g} dB are already at "
                   f"{MAX_QUANTIZED_SNR_DB:g} dB or more quantized")
        else:
            why = f"not kept: lowers the SNR of {', '.join(o for o in t.outputs if gains[o] < -MAX_LOSS_DB)}"
        records.append({"outputs": list(t.outputs), "nodes": list(t.nodes), "inputs": list(t.inputs),
                        "ops": op_counts(model, t.nodes),
                        "snr_quantized_db": {o: _r(q[o]) for o in t.outputs},
                        "snr_float_db": {o: _r(f[o]) for o in t.outputs},
                        "gain_db": None if not math.isfinite(best) else round(best, 3),
                        "samples": len(feeds), "kept": ok, "why": why})
    if not kept:
        return steps, program, records
    if len(kept) == len(candidates):
        final_steps, final = variant_steps, variant
    else:
        final_steps = with_host_steps(model, steps, kept)
        final = build(final_steps)
    reasons = {}
    for t, rec in zip(candidates, records):
        if rec["kept"]:
            snrs = ", ".join(f"{o} {_fmt_db(rec['snr_quantized_db'][o])} -> {_fmt_db(rec['snr_float_db'][o])} dB"
                             for o in t.outputs)
            for n in t.nodes:
                reasons[n] = (f"{HOST_REASON}: float tail after the last MAC layer, kept in float by auto_precision "
                              f"(measured on {len(feeds)} calibration inputs: {snrs})")
    for st in final_steps:
        if st.host and st.name in reasons:
            st.reason = reasons[st.name]
    return final_steps, final, records


def unmeasured_record(model: onnx.ModelProto, t: TailCandidate, why: str) -> dict[str, Any]:
    """The record of a candidate that is not measured (see :func:`choose_tails`), with ``why``."""
    return {"outputs": list(t.outputs), "nodes": list(t.nodes), "inputs": list(t.inputs),
            "ops": op_counts(model, t.nodes),
            "snr_quantized_db": {o: None for o in t.outputs}, "snr_float_db": {o: None for o in t.outputs},
            "gain_db": None, "samples": 0, "kept": False, "why": why}


def logit_tails(model: onnx.ModelProto, tails: Iterable[TailCandidate]) -> list[TailCandidate]:
    """The candidates without a Sigmoid: ``quantize_mode="post_sigmoid"`` takes their outputs as
    logits whose Sigmoid was removed and caps them (spec 3.7), so they stay quantized."""
    ops = {n.name: n.op_type for n in model.graph.node}
    return [t for t in tails if not any(ops[n] == "Sigmoid" for n in t.nodes)]


def _fmt_db(v: float | None) -> str:
    """An SNR for a message: "exact" for no error (None in records, ``inf`` measured)."""
    return "exact" if v is None or v == math.inf else f"{v:.1f}"


def auto_precision_message(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The one warning line for the kept float tails (None when there is none)."""
    kept = [r for r in records if r.get("kept")]
    if not kept:
        return None
    parts = []
    for r in kept:
        snrs = ", ".join(f"{o} {_fmt_db(r['snr_quantized_db'][o])} -> {_fmt_db(r['snr_float_db'][o])} dB"
                         for o in r["outputs"])
        ops = ", ".join(f"{op}" + (f" x{c}" if c > 1 else "") for op, c in r["ops"].items())
        parts.append(f"{len(r['nodes'])} nodes ({ops}) computing {snrs}")
    return (f"auto_precision: {len(kept)} float tail(s) after the last MAC layer run as host post-processing (float "
            "CPU nodes, outputs not quantized; docs/fixed-point.md section 10.1): " + "; ".join(parts)
            + ". analysis(auto_precision=False) or --no-auto-precision keeps them quantized")


#: the node types ``onnx2onnx_flow(eliminate_tail=True)`` removes from the end of a graph: the
#: original's list (ONNX_Convertor's ``remove_useless_last_nodes``)
TRAILING_OPS = ("Reshape", "Identity", "Transpose", "Flatten", "Dropout", "Constant", "Squeeze", "Unsqueeze", "Softmax")


def trailing_nodes(model: onnx.ModelProto, ops: Iterable[str] = TRAILING_OPS) -> tuple[list[str], list[str]]:
    """The trailing nodes ``onnx2onnx_flow(eliminate_tail=True)`` removes, as the original does:
    from the model outputs backwards, every node of a type in ``ops`` whose outputs are read by
    removed nodes only (or are only model outputs). Returns ``(removed, first)``: the removed node
    names in graph order, and those of them whose inputs come from kept nodes (cutting the graph
    from ``first`` removes exactly ``removed``, :func:`npuflow.passes.edit.cut_graph_from_nodes`)."""
    g = model.graph
    nodes = list(g.node)
    outputs = {o.name for o in g.output}
    ops = set(ops)
    cons: dict[str, list[int]] = {}
    prod: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for x in dict.fromkeys(n.input):
            if x:
                cons.setdefault(x, []).append(i)
        for y in n.output:
            if y:
                prod[y] = i
    removed: set[int] = set()
    for i in reversed(range(len(nodes))):  # consumers come later in a topologically sorted graph
        n = nodes[i]
        outs = [y for y in n.output if y]
        if n.op_type in ops and outs and all(c in removed for y in outs for c in cons.get(y, [])) and (
                any(y in outputs for y in outs) or any(cons.get(y) for y in outs)):
            removed.add(i)
    first = [nodes[i].name for i in sorted(removed) if not any(prod.get(x) in removed for x in nodes[i].input if x)]
    return [nodes[i].name for i in sorted(removed)], first
