"""Float islands: the cheap elementwise steps that feed a range-sensitive CPU node, run in float
with it where that measurably helps (docs/fixed-point.md section 10.4).

A CPU node such as Log, Sqrt, Reciprocal or a Div by a runtime divisor magnifies the error of its
quantized input where that input is small: basic_pitch's front end takes ``log(x**2 + eps)`` of a
CQT magnitude whose range is set by its largest values, so most small values round to 0 and their
log saturates at the format's minimum; every LayerNorm of gtcrn divides by ``sqrt(mean((x - m)**2)
+ eps)``, whose quantized variance rounds the quiet frames' to 0. The square, the add of eps, the
mean are NPU steps, so the chain is quantized in its middle, where it hurts most. The fix is to run
that short chain on the CPU with the node it feeds, in float, and quantize only where the NPU reads
again:

* **Seeds** (:data:`SEED_OPS`): float steps (CPU nodes, or nodes without an integer kernel) of
  those ops.
* **Growth.** Backwards from a seed over the steps that produce its inputs: float steps always
  (they are CPU work already), NPU steps when all their nodes are cheap elementwise, reduction or
  data-movement ops (:data:`GROW_OPS`, never a MAC layer or a step with weights) and at most
  :data:`MAX_NPU_STEPS` of them lie between that step and the seed; forwards over the float
  steps that read an island tensor (CPU chains). A data-movement step whose output has no
  calibrated range must be read by the island only; model inputs and model outputs are borders.
  Overlapping islands merge.
* **Execution.** The island's nodes become host steps (one float step per ONNX node, as the float
  tails of section 10.1): inputs dequantized, the ONNX node in float, outputs float; an output
  that an NPU step or the model reads is quantized with its calibrated range at
  ``cpu_node_bitwidth_mode`` (the island's border to the NPU), the others stay float.
* **Measurement.** On the first :data:`TAIL_SAMPLES` calibration inputs, the SNR of every model
  output against the float model with all islands quantized (the program as built) and with all
  in float. They are kept when one output gains :data:`MIN_GAIN_DB` or more and none loses more
  than :data:`MAX_LOSS_DB`.

``auto_precision=False`` skips this, like the other automatic choices.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from npuflow.analysis.graph import PASS_THROUGH, Step, components
from npuflow.analysis.program import Program
from npuflow.analysis.tails import (
    HEAVY_OPS,
    ISLAND_REASON,
    _fmt_db,
    _r,
    op_counts,
    snr_gains,
    with_host_steps,
)

#: CPU ops whose error grows without bound as their input goes to 0
SEED_OPS = frozenset({"Log", "Sqrt", "Reciprocal", "Div"})
#: the ONNX ops an NPU step may hold to move into an island: cheap elementwise arithmetic,
#: reductions and data movement
GROW_OPS = frozenset({"Add", "Sub", "Mul", "Pow", "Abs", "Neg", "Relu", "Clip", "Max", "Min", "ReduceMean",
                      "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceMax", "ReduceMin", "Sqrt",
                      "Reciprocal", "Exp"}) | PASS_THROUGH - {"MaxPool", "GlobalMaxPool"}
#: NPU steps between a seed and the farthest step moved into its island
MAX_NPU_STEPS = 4
#: a model output must gain at least this much (dB) ...
MIN_GAIN_DB = 1.0
#: ... and none lose more than this (dB)
MAX_LOSS_DB = 0.1


@dataclass(frozen=True)
class Island:
    """One connected island: its ONNX nodes (graph order), its seeds' step names, the NPU steps it
    moves to the CPU and the tensors it reads from the rest of the model."""

    nodes: tuple[str, ...]
    seeds: tuple[str, ...]
    moved: tuple[str, ...]
    inputs: tuple[str, ...]


def find_islands(model: onnx.ModelProto, steps: Sequence[Step], stats: Mapping[str, Any]) -> list[Island]:
    """The float islands of ``steps`` (see the module docstring); ``stats`` holds the tensors with
    a calibrated range."""
    by_node = {n.name: n for n in model.graph.node}
    outputs = {o.name for o in model.graph.output}
    prod: dict[str, int] = {}
    readers: dict[str, set[int]] = {}
    for k, st in enumerate(steps):
        for y in st.outputs:
            if y:
                prod[y] = k
        for x in st.runtime_inputs:
            readers.setdefault(x, set()).add(k)

    def movable(k: int) -> bool:
        st = steps[k]
        if st.host:
            return False
        if st.float_step:
            return True
        ops = [by_node[n].op_type for n in st.nodes if n in by_node]
        return (len(ops) == len(st.nodes) and all(op in GROW_OPS and op not in HEAVY_OPS for op in ops)
                and st.weights.get("W") is None)

    members: set[int] = set()
    for s, st in enumerate(steps):
        if not (st.float_step and not st.host and st.op_type in SEED_OPS):
            continue
        isl = {s}
        queue = [(s, 0)]
        while queue:  # backwards
            k, d = queue.pop(0)
            for x in steps[k].runtime_inputs:
                p = prod.get(x)
                if p is None or p in isl or not movable(p):
                    continue
                dp = d + (0 if steps[p].float_step else 1)
                if dp > MAX_NPU_STEPS:
                    continue
                isl.add(p)
                queue.append((p, dp))
        changed = True
        while changed:  # a border needs a calibrated range: prune what the rest reads without one
            changed = False
            for k in sorted(isl - {s}):
                outs = [y for y in steps[k].outputs if y]
                read_out = any((r not in isl) for y in outs for r in readers.get(y, ())) or any(y in outputs
                                                                                                 for y in outs)
                if read_out and not all(y in stats for y in outs):
                    isl.discard(k)
                    changed = True
            # what is no longer connected to the seed through the island goes too
            reach, todo = {s}, [s]
            while todo:
                k = todo.pop()
                for x in steps[k].runtime_inputs:
                    p = prod.get(x)
                    if p in isl and p not in reach:
                        reach.add(p)
                        todo.append(p)
            if reach != isl:
                isl = reach
                changed = True
        members |= isl
    if not members:
        return []
    grown = True
    while grown:  # forwards over CPU chains
        grown = False
        for k in sorted(members):
            for y in steps[k].outputs:
                for r in readers.get(y, ()):
                    if r not in members and steps[r].float_step and not steps[r].host:
                        members.add(r)
                        grown = True
    links = ((p, k) for k in members for x in steps[k].runtime_inputs if (p := prod.get(x)) is not None)
    out = []
    for ks in components(members, links):
        kset = set(ks)
        seeds = tuple(steps[k].name for k in ks if steps[k].float_step and steps[k].op_type in SEED_OPS)
        if not seeds or len(ks) == 1:
            continue
        inputs = tuple(dict.fromkeys(x for k in ks for x in steps[k].runtime_inputs if prod.get(x) not in kset))
        out.append(Island(tuple(n for k in ks for n in steps[k].nodes), seeds,
                          tuple(steps[k].name for k in ks if not steps[k].float_step), inputs))
    return out


def choose_islands(
    model: onnx.ModelProto,
    steps: list[Step],
    program: Program,
    islands: list[Island],
    build: Callable[[list[Step]], Program],
    measure: Callable[[Program], dict[str, float]],
) -> tuple[list[Step], Program, dict[str, Any]]:
    """Measure ``islands`` together (see the module docstring); returns the steps and program to go
    on with and the record: ``islands`` (nodes, seeds, moved NPU steps, ops), ``snr_quantized_db``
    / ``snr_float_db`` per model output, ``gain_db``, ``worst_db``, ``kept`` and ``why``."""
    reason = f"{ISLAND_REASON}: runs in float with the range-sensitive CPU node it feeds, kept by auto_precision"
    variant_steps = with_host_steps(model, steps, islands, reason=reason)
    variant = build(variant_steps)
    before, after = measure(program), measure(variant)
    gains = snr_gains(before, after)
    best, worst = max(gains.values()), min(gains.values())
    ok = best >= MIN_GAIN_DB and worst >= -MAX_LOSS_DB
    if ok:
        why = f"kept: raises the SNR of {', '.join(o for o in gains if gains[o] >= MIN_GAIN_DB)} by {MIN_GAIN_DB:g} dB or more"
    elif best < MIN_GAIN_DB:
        why = f"not kept: gains less than {MIN_GAIN_DB:g} dB on every output"
    else:
        why = f"not kept: lowers the SNR of {', '.join(o for o in gains if gains[o] < -MAX_LOSS_DB)}"
    record = {
        "islands": [{"nodes": list(i.nodes), "seeds": list(i.seeds), "moved": list(i.moved), "inputs": list(i.inputs),
                     "ops": op_counts(model, i.nodes)} for i in islands],
        "snr_quantized_db": {o: _r(v) for o, v in before.items()},
        "snr_float_db": {o: _r(v) for o, v in after.items()},
        "gain_db": _r(best), "worst_db": _r(worst), "kept": ok, "why": why,
    }
    if not ok:
        return steps, program, record
    snrs = ", ".join(f"{o} {_fmt_db(before[o])} -> {_fmt_db(after[o])} dB" for o in before if gains[o] >= MIN_GAIN_DB)
    for st in variant_steps:
        if st.host and st.reason == reason:
            st.reason = f"{reason} ({snrs})"
    return variant_steps, variant, record


def islands_message(record: Mapping[str, Any]) -> str | None:
    """The one warning line for kept islands (None when none is kept)."""
    if not record or not record.get("kept"):
        return None
    isl = record["islands"]
    moved = sum(len(i["moved"]) for i in isl)
    seeds = ", ".join(f"{s}" for i in isl for s in i["seeds"][:1])
    gains = ", ".join(f"{o} {_fmt_db(record['snr_quantized_db'][o])} -> {_fmt_db(record['snr_float_db'][o])} dB"
                      for o in record["snr_float_db"])
    return (f"auto_precision: {len(isl)} float island(s) run on the CPU in float (docs/fixed-point.md section 10.4): "
            f"{moved} NPU step(s) moved to feed the range-sensitive CPU nodes {seeds} unquantized ({gains}). "
            "analysis(auto_precision=False) or --no-auto-precision keeps them quantized")
