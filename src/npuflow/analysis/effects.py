"""Where the bit-width and range options reach, and which of them change nothing on a model
(docs/fixed-point.md section 3.7).

* **Output chains.** A model output produced by a data-movement op (Transpose, Reshape, Slice, ...:
  :data:`npuflow.analysis.graph.PASS_THROUGH`, whose output keeps its input's format) or by a
  Concat carries values computed further up. :func:`output_chains` maps every tensor whose values
  reach a model output only through such *carrier* steps to those outputs; the analysis gives them
  ``model_out_bitwidth_mode`` (so the output's width is the option's, not the Concat's or the
  producer's), and pass-through steps keep copying integers unchanged.
* **post_sigmoid.** :func:`post_sigmoid_targets` picks the tensors whose range gets the cap of 8:
  for a model output carrying Sigmoid outputs (directly or through carriers, e.g. the score
  channels of a Concat), the input of each such Sigmoid (the logit; ``sigmoid(8) = 0.99966``);
  for a model output that no Sigmoid produces, its own values (the original's documented use:
  logits whose Sigmoid was removed from the model).
* **Format notes.** ``build_program`` records, per tensor, the rule that gave its width and its
  range (:class:`FormatNotes`); :func:`option_effects` reads them to list the options that change
  nothing (one warning and the report) and, with a 16-bit datapath, every tensor that stays 8-bit
  and the rule that keeps it there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

import numpy as np

from npuflow.analysis.graph import PASS_THROUGH, Step
from npuflow.analysis.ranges import QuantOptions

#: steps whose output values are copies of (some of) their inputs' values
CARRIERS = PASS_THROUGH | {"Concat"}

#: width rules of a quantized activation tensor -> the option (or mechanism) behind them
WIDTH_RULES = {
    "model_in": "model_in_bitwidth_mode",
    "model_out": "model_out_bitwidth_mode",
    "datapath": "datapath_bitwidth_mode",
    "cpu_node": "cpu_node_bitwidth_mode",
    "override": "node_overrides",
    "auto_precision": "auto_precision",
    "inherit": "pass-through",
}


def carried_inputs(st: Step) -> list[str]:
    """The inputs whose values step ``st`` copies into its output (none for a computing step):
    every input of a Concat, the data input of a pass-through op."""
    if st.float_step:
        return []
    if st.op_type == "Concat":
        return [x for x in st.inputs if x]
    if st.op_type in PASS_THROUGH:
        return [st.inputs[0]] if st.inputs and st.inputs[0] else []
    return []


def _producers(steps: list[Step]) -> dict[str, int]:
    return {y: k for k, st in enumerate(steps) for y in st.outputs if y}


def _consumers(steps: list[Step]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for k, st in enumerate(steps):
        for x in dict.fromkeys(st.runtime_inputs):
            out.setdefault(x, []).append(k)
    return out


def output_chains(steps: list[Step], output_names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Tensor -> the model outputs it reaches through carrier steps only (a model output maps to
    itself). These tensors get ``model_out_bitwidth_mode`` (spec 3.7)."""
    prod = _producers(steps)
    chains: dict[str, list[str]] = {}
    for o in output_names:
        stack, seen = [o], set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            chains.setdefault(t, []).append(o)
            k = prod.get(t)
            if k is not None:
                stack += carried_inputs(steps[k])
    return {t: tuple(v) for t, v in chains.items()}


def post_sigmoid_targets(steps: list[Step], output_names: list[str],
                         chains: Mapping[str, tuple[str, ...]]) -> tuple[dict[str, str], list[str]]:
    """``quantize_mode="post_sigmoid"`` (spec 3.7): the tensors whose range is capped at 8, each with
    why, and the Sigmoids of the output chains whose input cannot be capped (with why).

    * A model output whose chain holds outputs of Sigmoid steps: the input of each such Sigmoid,
      followed up through pass-through steps to the tensor whose format is calibrated, provided
      every tensor on that way has this one consumer and is no model output or input (else other
      readers would be clipped too: that Sigmoid is listed as skipped).
    * A model output whose chain holds no Sigmoid output: every calibrated tensor of its chain
      (the values are logits whose Sigmoid was removed from the model, ktc's documented case).
    * A model output computed by a float tail (host steps, spec 10.1): the inputs of the tail's
      Sigmoids that come from the NPU, as in the first rule; its float values are not capped.
    """
    prod, cons = _producers(steps), _consumers(steps)
    outputs = set(output_names)
    targets: dict[str, str] = {}
    skipped: list[str] = []
    for o in output_names:
        k = prod.get(o)
        if k is not None and steps[k].host:
            # a float tail (spec 10.1) computes this output: the inputs of its Sigmoids that come
            # from the NPU are capped; its own values are float, nothing to cap
            sigmoids = [t for t in _host_upstream(steps, prod, o) if steps[prod[t]].op_type == "Sigmoid"]
            if not sigmoids:
                skipped.append(f"model output {o!r} is computed in float on the host (a float tail): not capped")
        else:
            tensors = [t for t, outs in chains.items() if o in outs]
            sigmoids = [t for t in tensors if t in prod and steps[prod[t]].op_type == "Sigmoid"]
        if not sigmoids and not (k is not None and steps[k].host):
            for t in tensors:
                k = prod.get(t)
                if k is None or (not steps[k].float_step and steps[k].op_type in PASS_THROUGH):
                    continue  # a model input (never clipped) or a copy of another tensor's format
                targets.setdefault(t, f"carries model output {o!r}, which no Sigmoid produces: taken as logits "
                                      "whose Sigmoid was removed")
            continue
        for t in sigmoids:
            sig = steps[prod[t]]
            x, why = sig.inputs[0] if sig.inputs else None, ""
            while x is not None:
                if len(cons.get(x, [])) != 1:
                    why = f"its input {x} has other consumers"
                elif x in outputs:
                    why = f"its input {x} is a model output"
                elif x not in prod:
                    why = f"its input {x} is a model input (never clipped)"
                elif steps[prod[x]].host:
                    why = f"its input {x} is computed in float on the host (a float tail)"
                else:
                    ps = steps[prod[x]]
                    if not ps.float_step and ps.op_type in PASS_THROUGH and ps.inputs and ps.inputs[0]:
                        x = ps.inputs[0]
                        continue
                break
            if x is None:
                why = "it has no runtime input"
            if why:
                skipped.append(f"{sig.name}: {why}")
            else:
                targets.setdefault(x, f"the input of {sig.name}, a Sigmoid whose output reaches model output {o!r}")
    return targets, skipped


#: steps that only relabel their input's values (no value dropped or added): a Softmax seen through
#: them is still the whole distribution
RELABEL = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"}


@dataclass(frozen=True)
class Logits:
    """Where a Softmax output's error is measured (docs/fixed-point.md section 3.1): the Softmax's
    input ``tensor``, centred along the Softmax's ``axis`` (``flatten``: opset < 13, the axis and
    every later one) since a Softmax ignores a common shift of its inputs."""

    tensor: str
    axis: int
    flatten: bool

    def usable(self, ndim: int) -> bool:
        """A Softmax over the batch axis (axis 0: the measurement concatenates its inputs there)
        cannot be measured at its logits."""
        return ndim >= 2 and self.axis % ndim != 0

    def centre(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        a = self.axis % x.ndim if x.ndim else 0
        if self.flatten:
            flat = x.reshape(int(np.prod(x.shape[:a], dtype=np.int64)), -1)
            return (flat - flat.mean(axis=1, keepdims=True)).reshape(x.shape)
        return x - x.mean(axis=a, keepdims=True)


def softmax_logits(steps: list[Step], output_names: Iterable[str], opset: int) -> dict[str, Logits]:
    """Model output -> :class:`Logits` for the outputs a Softmax produces (directly or through
    :data:`RELABEL` steps). Whether the axis is the batch axis is known only with a value
    (:meth:`Logits.usable`)."""
    prod = _producers(steps)
    out: dict[str, Logits] = {}
    for o in output_names:
        t = o
        while t in prod and steps[prod[t]].op_type in RELABEL and steps[prod[t]].runtime_inputs:
            t = steps[prod[t]].runtime_inputs[0]
        k = prod.get(t)
        if k is None or steps[k].op_type != "Softmax" or not steps[k].runtime_inputs:
            continue
        st = steps[k]
        x = st.runtime_inputs[0]
        node = st.onnx_node
        axis = next((a.i for a in node.attribute if a.name == "axis"), None) if node is not None else None
        if axis is None:
            axis = st.attrs.get("axis", -1 if opset >= 13 else 1)
        out[o] = Logits(x, int(axis), opset < 13)
    return out


def _host_upstream(steps: list[Step], prod: Mapping[str, int], tensor: str) -> list[str]:
    """The outputs of the host steps (float tails) that ``tensor`` is computed from, ``tensor`` included."""
    out: list[str] = []
    stack, seen = [tensor], set()
    while stack:
        t = stack.pop()
        k = prod.get(t)
        if t in seen or k is None or not steps[k].host:
            continue
        seen.add(t)
        out.append(t)
        stack += steps[k].runtime_inputs
    return out


@dataclass
class FormatNotes:
    """What ``build_program`` decided and why, per tensor (read by :func:`option_effects`)."""

    #: tensor -> its model outputs (see :func:`output_chains`)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: quantized activation tensor -> width rule (a key of :data:`WIDTH_RULES`)
    width: dict[str, str] = field(default_factory=dict)
    #: tensor -> the tensor whose format it keeps (width rule "inherit")
    inherits: dict[str, str] = field(default_factory=dict)
    #: tensor -> the name of the step that produces it
    producer: dict[str, str] = field(default_factory=dict)
    #: step name -> "weight" (weight_bitwidth_mode) or "override", for MAC steps with a constant weight
    weight: dict[str, str] = field(default_factory=dict)
    #: tensor with a calibrated range -> "output" (exact max), "percentage", "percentage_16b", "mmse", "abs_max"
    #: or, under datapath_range_method="auto", "auto <quantile>" ("auto max")
    range: dict[str, str] = field(default_factory=dict)
    #: post_sigmoid targets: tensor -> (range without the cap, range with it, why)
    capped: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    #: post_sigmoid: the Sigmoids of output chains whose input could not be capped, with why
    sigmoid_skipped: list[str] = field(default_factory=list)

    def root(self, t: str) -> str:
        """The tensor whose format ``t`` keeps (``t`` itself unless it is a pass-through copy)."""
        seen = {t}
        while t in self.inherits and self.inherits[t] not in seen:
            t = self.inherits[t]
            seen.add(t)
        return t


_DEFAULTS = QuantOptions()


def _changed(opts: QuantOptions, name: str) -> bool:
    return getattr(opts, name) != getattr(_DEFAULTS, name)


def option_effects(program: Any, opts: QuantOptions, notes: FormatNotes | None, *, bias_adjusted: int = 0,
                   compensable: int = 0, tail_candidates: int | None = None,
                   equalize_pairs: int | None = None, would_search: bool = False) -> dict[str, Any]:
    """What the options did on this model (spec 3.7), for the warnings and the report:

    * ``no_effect``: ``[{"option", "value", "reason"}]``, every option set to a non-default value
      that changes nothing here;
    * ``stays_8bit``: with ``datapath_bitwidth_mode`` above 8 bits, every quantized activation
      tensor that is 8-bit, ``[{"tensor", "producer", "rule", "option", "via"}]`` (``via``: the
      tensor whose format a pass-through copy keeps);
    * ``post_sigmoid``: the capped tensors ``[{"tensor", "calibrated", "capped", "applies", "why"}]``
      and ``post_sigmoid_skipped``;
    * ``model_out``: per model output, its width and the tensors of its chain that the width reaches.

    ``bias_adjusted``: steps the sequential bias adjustment changed; ``compensable``: steps eligible
    for compensated weight rounding; ``tail_candidates``: float tails and float islands the model has (None: unknown);
    ``equalize_pairs``: the pairs channel equalization would rescale (None: unknown)."""
    notes = notes or FormatNotes()
    fmts = program.formats
    rules = set(notes.width.values())
    out: list[dict[str, Any]] = []

    def no_effect(option: str, value: Any, reason: str) -> None:
        out.append({"option": option, "value": value, "reason": reason})

    bits_of = {"datapath_bits": ("datapath_bitwidth_mode", "datapath",
                                 ("every quantized tensor gets its width from another rule (model input/output, "
                                  "CPU node, pass-through, node_overrides)")),
               "model_in_bits": ("model_in_bitwidth_mode", "model_in", "the model has no quantized input"),
               "model_out_bits": ("model_out_bitwidth_mode", "model_out",
                                  ("no model output (or tensor it carries) gets its width from it: they copy a "
                                   "model input's format or have a bits override")),
               "cpu_bits": ("cpu_node_bitwidth_mode", "cpu_node",
                            ("no CPU node (or node simulated in float) has a quantized output outside the chains "
                             "of the model outputs"))}
    # under mixbw the model input, output and CPU nodes are 16-bit by the mode, not by an option
    forced = {"model_in_bits", "model_out_bits", "cpu_bits"} if "mixbw" in (opts.mix_datapath, opts.mix_weight) else set()
    for name, (option, rule, reason) in bits_of.items():
        # the CPU-node width's default follows the datapath's (npuflow.flow.options)
        changed = opts.cpu_bits != opts.datapath_bits if name == "cpu_bits" else _changed(opts, name)
        if changed and rule not in rules and name not in forced:
            no_effect(option, f"int{getattr(opts, name)}", reason)
    if _changed(opts, "weight_bits") and "weight" not in notes.weight.values():
        no_effect("weight_bitwidth_mode", f"int{opts.weight_bits}",
                  "every MAC node's weight_bits is overridden" if notes.weight else "the model has no MAC node with "
                  "constant weights")
    binding = {t: v for t, v in notes.capped.items() if v[1] < v[0]}
    if opts.post_sigmoid and not binding:
        if not notes.capped and notes.sigmoid_skipped:
            reason = "the inputs of the Sigmoids that produce model outputs cannot be capped"
        elif not notes.capped:
            reason = "no model output comes from a Sigmoid or from a tensor whose range could be capped"
        elif all(w.startswith("carries") for _, _, w in notes.capped.values()):
            reason = ("no model output comes from a Sigmoid, and the outputs' ranges are already within +-8 "
                      "(the cap for logits whose Sigmoid was removed)")
        else:
            reason = "the inputs of the Sigmoids that produce model outputs are already within +-8"
        if notes.sigmoid_skipped:
            reason += "; not capped: " + "; ".join(notes.sigmoid_skipped)
        no_effect("quantize_mode", "post_sigmoid", reason)
    ranges = set(notes.range.values())
    if opts.range_method == "mmse" and "mmse" not in ranges:
        no_effect("datapath_range_method", "mmse", "no tensor's range comes from it (model inputs and outputs use "
                                                   "their exact max, abs_max overrides their value)")
    if opts.range_method in ("percentage", "auto"):  # auto: 8-bit quantiles chosen per tensor (spec 3.1)
        if _changed(opts, "percentage") and not any(r == "percentage" or r.startswith("auto") for r in ranges):
            no_effect("percentage", opts.percentage, "no 8-bit tensor's range comes from a quantile")
        if _changed(opts, "percentage_16b") and "percentage_16b" not in ranges:
            no_effect("percentage_16b", opts.percentage_16b, "no 16-bit tensor's range comes from a quantile "
                                                             "(it applies to tensors of more than 8 bits)")
    for name in ("percentile", "outlier_factor"):
        if _changed(opts, name) and "mmse" not in ranges:
            why = ("it is read by datapath_range_method='mmse' only" if opts.range_method != "mmse"
                   else "no tensor's range comes from the mmse rule")
            no_effect(name, getattr(opts, name), why)
    if opts.bias_adjust and not bias_adjusted:
        no_effect("optimize", opts.bias_adjust, "the sequential bias adjustment changed no Conv node's bias (too few "
                                                "positions per channel, or no change kept)")
    if opts.weight_rounding == "nearest" and not compensable:
        no_effect("weight_rounding", "nearest", "no convolution would get compensated rounding (it applies to "
                                                "spatial 8-bit or int4 Conv weights)")
    if not opts.auto_precision and tail_candidates == 0 and not would_search:
        no_effect("auto_precision", False, "the model has no float tail after its last MAC layer and no float island "
                                           "that auto_precision would measure, and its int8 output SNR needs no "
                                           "precision search (docs/fixed-point.md sections 10.1, 10.2, 10.4)")
    if not opts.equalize and equalize_pairs == 0:
        no_effect("equalize", False, "the model has no convolution feeding a depthwise convolution through at most a "
                                     "Relu, LeakyRelu or PRelu (docs/fixed-point.md section 3.8)")
    # per-node overrides that change nothing
    for node, ov in sorted(opts.overrides.items()):
        given = {node: {f.name: getattr(ov, f.name) for f in fields(ov) if getattr(ov, f.name) is not None}}
        step = next((st for st in program.steps if node in st.nodes), None)
        if step is None:  # a node the equalization adds where it rescales a gated pair (engine checks the rest)
            no_effect("node_overrides", given,
                      f"{node} is not in this analysis (the channel equalization adds a <gate>_unscale node only "
                      "where it rescales a gated pair, docs/fixed-point.md section 3.8)")
            continue
        if not step.float_step and step.op_type in PASS_THROUGH and (ov.bits is not None or ov.abs_max is not None):
            no_effect("node_overrides", given, f"{step.name} is a {step.op_type}: its output keeps its input's format")
        elif ov.weight_bits is not None and step.name not in notes.weight:
            no_effect("node_overrides", {node: {"weight_bits": ov.weight_bits}}, f"{step.name} has no constant weights")

    stays: list[dict[str, Any]] = []
    if opts.datapath_bits > 8:
        for t, rule in notes.width.items():
            f = fmts.get(t)
            if f is None or f.bits > 8:
                continue
            root = notes.root(t)
            rr = notes.width.get(root, rule)
            stays.append({"tensor": t, "producer": notes.producer.get(t), "rule": rr,
                          "option": WIDTH_RULES.get(rr, rr), "via": root if root != t else None})
    chains: dict[str, list[str]] = {}
    for t, outs in notes.chains.items():
        if t in fmts:
            for o in outs:
                chains.setdefault(o, []).append(t)
    model_out = [{"output": o, "bits": fmts[o].bits if o in fmts else None,
                  "tensors": [t for t in ts if t != o and notes.width.get(t) == "model_out"]}
                 for o, ts in chains.items()]
    return {
        "no_effect": out,
        "stays_8bit": stays,
        "post_sigmoid": [{"tensor": t, "calibrated": float(f"{a:.6g}"), "capped": float(f"{c:.6g}"),
                          "applies": c < a, "why": w} for t, (a, c, w) in notes.capped.items()],
        "post_sigmoid_skipped": list(notes.sigmoid_skipped),
        "model_out": model_out,
    }


def no_effect_message(entries: list[dict[str, Any]]) -> str:
    """The one warning for the options that change nothing."""
    parts = [f"{e['option']}={e['value']!r}: {e['reason']}" for e in entries]
    return "options that change nothing on this model (see the report's option effects): " + "; ".join(parts)


def stays_8bit_message(entries: list[dict[str, Any]], datapath_bits: int) -> str:
    """The one warning listing the tensors that stay 8-bit under a 16-bit datapath, by rule."""
    by: dict[str, list[str]] = {}
    for e in entries:
        label = {"override": "node_overrides bits=8", "inherit": "pass-through copies"}.get(e["rule"], f"{e['option']}='int8'")
        by.setdefault(label, []).append(e["tensor"] + (f" (copies {e['via']})" if e["via"] else ""))
    parts = [f"{label}: {', '.join(ts)}" for label, ts in by.items()]
    return (f"datapath_bitwidth_mode='int{datapath_bits}': {len(entries)} tensor(s) stay 8-bit under another rule "
            "(docs/fixed-point.md section 3.7; marked in the report) -- " + "; ".join(parts))
