"""Analysis orchestration: optimize -> place -> fuse -> calibrate -> choose formats -> program."""
from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import onnx

from npuflow.analysis.bias_adjust import MEMORY_BUDGET as ADJUST_BUDGET
from npuflow.analysis.effects import option_effects, softmax_logits
from npuflow.analysis.equalize import EQ_SAMPLES, equalize, find_pairs, range_overrides
from npuflow.analysis.executors import SearchContext, context_of, executor_evaluate
from npuflow.analysis.flat import consumer_bounds
from npuflow.analysis.graph import Step, build_steps
from npuflow.analysis.islands import choose_islands, find_islands
from npuflow.analysis.precision import (
    MIN_FPS_RATIO,
    MIXBW_SAMPLES,
    FpsModel,
    OutputSnr,
    choose_promotions,
    ill_conditioned,
    int4_candidates,
    merge_overrides,
    mix_rule_overrides,
    mixbw_candidates,
    mixbw_search,
    promotion_units,
)
from npuflow.analysis.program import (
    Program,
    build_program,
    mac_inputs,
    needed_stats,
    step_override,
    weight_bits,
)
from npuflow.analysis.range_search import check_mmse, choose_ranges
from npuflow.analysis.ranges import QuantOptions
from npuflow.analysis.tails import (
    TAIL_SAMPLES,
    _r,
    choose_tails,
    find_tails,
    logit_tails,
    unmeasured_record,
)
from npuflow.calibration.collector import StatsCollector
from npuflow.calibration.inputs import iter_calibration_inputs, length_hint
from npuflow.evaluate.placement import place_model
from npuflow.platforms import get_platform
from npuflow.quant import weight_rounding as wr
from npuflow.quant.weight_rounding import SecondMoment
from npuflow.reference.float_runner import input_specs
from npuflow.sim.kernels import KERNELS

log = logging.getLogger(__name__)


@dataclass
class AnalysisResult:
    optimized: onnx.ModelProto
    steps: list[Step]
    program: Program
    stats: dict[str, Any]  # tensor -> AbsHistogram
    samples: int
    #: per-channel means of MAC inputs (bias correction): pass ``channel_means.get`` to
    #: ``build_program`` to rebuild the same program with other options (the report does)
    channel_means: dict[str, Any] = field(default_factory=dict)
    #: the first ``keep_inputs`` validated calibration feeds, in order (the report's default inputs)
    kept_inputs: list[dict[str, Any]] = field(default_factory=list)
    #: per-step bias corrections of the sequential bias adjustment (``opts.bias_adjust``): pass
    #: them to ``build_program(bias_deltas=)`` to rebuild the same program
    bias_deltas: dict[str, Any] = field(default_factory=dict)
    #: step name -> second moment of its input (compensated weight rounding): pass them to
    #: ``build_program(weight_moments=)`` to rebuild the same program
    weight_moments: dict[str, Any] = field(default_factory=dict)
    #: what the options did on this model (:func:`npuflow.analysis.effects.option_effects`): the
    #: options that change nothing, the tensors that stay 8-bit under a 16-bit datapath, the
    #: post_sigmoid caps, the model outputs' chains
    effects: dict[str, Any] = field(default_factory=dict)
    #: the automatic precision choices (``opts.auto_precision``): ``enabled``, ``float_tails`` (one
    #: record per candidate tail measured, :func:`npuflow.analysis.tails.choose_tails`, kept or
    #: not), ``promotions`` and ``float_islands`` (the islands' measurement,
    #: :func:`npuflow.analysis.islands.choose_islands`; empty when there is none)
    auto_precision: dict[str, Any] = field(default_factory=dict)
    #: the platform id the analysis placed the nodes for
    platform_id: int | None = None
    #: the options ``program`` was built with: the given ones plus the ranges ``auto`` chose
    #: (``range_choice``), the automatic 16-bit promotions and the mixed modes' choices as
    #: ``overrides`` (:mod:`npuflow.analysis.precision`); rebuild variants from these
    options: QuantOptions | None = None
    #: the mixed modes (docs/fixed-point.md section 10.3): ``mode``, and ``rule_overrides`` (mix light
    #: / mix balance) or the mixbw search's record (``front``, ``chosen``, ``measured``, ...)
    mixed: dict[str, Any] = field(default_factory=dict)
    #: ``datapath_range_method="auto"``: the range search's record
    #: (:func:`npuflow.analysis.range_search.choose_ranges`); empty under the other methods
    ranges: dict[str, Any] = field(default_factory=dict)
    #: ``equalize``: the channel equalization's record (:func:`npuflow.analysis.equalize.equalize`:
    #: ``pairs`` with their scales; ``optimized`` is the equalized model); empty when off
    equalized: dict[str, Any] = field(default_factory=dict)
    #: tensor -> (lo, hi) outside which its readers cannot tell values apart
    #: (:func:`npuflow.analysis.flat.consumer_bounds`): its range is at most the largest clipped
    #: value of the calibration (``AbsHistogram.read_max``)
    bounds: dict[str, Any] = field(default_factory=dict)


#: the budgeted joint search at defaults (auto_precision, docs/fixed-point.md section 10.2) runs when the
#: lowest model-output SNR on its measurement inputs is below this (the original's ladder: "int8 if
#: SNR >= 20 dB is acceptable", then mixed precision)
AUTO_SEARCH_BELOW_DB = 20.0


def _widths(override: Any) -> dict[str, int]:
    """The widths a NodeOverride sets (``bits``, ``weight_bits``), for the records."""
    return {f: getattr(override, f) for f in ("bits", "weight_bits") if getattr(override, f) is not None}


def analyse(
    optimized: onnx.ModelProto,
    platform: Any,
    input_mapping: Any,
    opts: QuantOptions,
    *,
    threads: int = 4,
    progress: bool | None = None,
    keep_inputs: int = 0,
    executor: Any = None,
) -> AnalysisResult:
    """Calibrate ``optimized`` (already through ``npuflow.passes.optimize``) and build its program.

    ``executor``: a ``concurrent.futures.Executor`` on which the mixbw search measures its
    candidates, ``threads`` at a time (:mod:`npuflow.analysis.executors`; None: one at a time in
    this process). The result is the same either way.

    ``keep_inputs``: keep the first N validated calibration feeds in ``AnalysisResult.kept_inputs``
    (memory: N inputs; the rest are streamed and dropped as before)."""
    calibration = iter_calibration_inputs(input_specs(optimized), input_mapping)
    head: list[dict[str, Any]] = []
    equalized: dict[str, Any] = {}
    if opts.equalize:
        # channel equalization into depthwise convolutions (spec 3.8), from the first calibration
        # inputs; the rest of the analysis works on the equalized model
        head = list(itertools.islice(calibration, EQ_SAMPLES))
        optimized, equalized = equalize(optimized, head, skip=range_overrides(opts.overrides),
                                        threads=max(1, int(threads)))
    placements = place_model(optimized, platform)
    steps = build_steps(optimized, placements, set(KERNELS))
    given = opts
    mixbw = "mixbw" in (opts.mix_datapath, opts.mix_weight)
    fps_model = FpsModel(optimized, platform, opts) if (opts.mix_datapath or opts.mix_weight) else None
    if fps_model is not None and not mixbw:  # mix light / mix balance: fixed rules (spec 10.3)
        opts = replace(opts, overrides=merge_overrides(mix_rule_overrides(steps, opts, fps_model.macs), opts.overrides))
    # float tails after the last MAC layer (docs/fixed-point.md 10.1): found now, measured once the
    # program is built, on the first calibration inputs (kept for it)
    candidates = find_tails(optimized, steps)
    specs = input_specs(optimized)
    input_names = [s.name for s in specs]
    output_names = [o.name for o in optimized.graph.output]
    tensors = needed_stats(optimized, steps, input_names)
    # float islands (docs/fixed-point.md 10.4): found on the steps as placed, measured after the tails
    found_islands = find_islands(optimized, steps, set(tensors))
    islands = found_islands if opts.auto_precision else []
    # second moments of the inputs of the convolutions that get compensated weight rounding
    # (8-bit and narrower weights only: a 16-bit grid is 256 times finer, nothing to gain)
    units = promotion_units(steps, through_gates=True) if (opts.auto_precision or mixbw) else []
    compensable = [st for st in steps if not st.float_step and st.weights.get("W") is not None and st.runtime_inputs
                   and weight_bits(step_override(st, opts), opts) <= 8
                   and wr.eligible(st.op_type, st.attrs, st.weights["W"].shape)]
    moments: dict[str, SecondMoment] = {}
    if opts.weight_rounding == "compensated":
        for st in compensable:
            moments[st.name] = SecondMoment(st.attrs, st.weights["W"].shape)
    bounds = consumer_bounds(optimized, tensors)
    collector = StatsCollector(optimized, tensors, threads=max(1, int(threads)),
                               channel_means=mac_inputs(steps) if opts.bias_correction else [],
                               # the exact per-input quantiles the range method reads (spec 3.1)
                               track=opts.tracked_quantiles(),
                               # the bias adjustment's float references come from this same pass
                               stash=[st.outputs[0] for st in steps if not st.float_step and st.op_type == "Conv"
                                      and "W" in st.weights and st.outputs] if opts.bias_adjust else [],
                               stash_samples=opts.bias_adjust, stash_budget=ADJUST_BUDGET,
                               moments=_moment_accumulators(steps, moments),
                               channel_absmax=[u.tensor for u in units],
                               # statistics of the values the readers tell apart (spec 3.1, "Consumer bounds")
                               bounds=bounds)
    total = length_hint(input_mapping) if isinstance(input_mapping, dict) else None
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="calibration", unit="input", file=sys.stderr)
    try:
        kept: list[dict[str, Any]] = []
        keep = max(keep_inputs, opts.bias_adjust,
                   TAIL_SAMPLES if ((candidates or units or islands) and opts.auto_precision) else 0,
                   MIXBW_SAMPLES if mixbw else 0, TAIL_SAMPLES if opts.range_method in ("auto", "mmse") else 0)
        for feeds in itertools.chain(head, calibration):
            collector.feed(feeds)
            if len(kept) < keep:
                kept.append(feeds)
            if bar is not None:
                bar.update(1)
    finally:
        collector.close()
        if bar is not None:
            bar.close()
    weight_moments = {name: h for name, acc in moments.items() if (h := acc.moment()) is not None}
    program = build_program(optimized, steps, collector.hist, opts, input_names, output_names,
                            channel_means=collector.channel_mean, weight_moments=weight_moments)
    deltas: dict[str, Any] = {}
    base_program = program  # no automatic choice: the reference of their FPS cost

    def build(variant: list[Step], o: QuantOptions = opts) -> Program:
        """A program from ``variant`` steps with the calibration statistics, options ``o``."""
        return build_program(optimized, variant, collector.hist, o, input_names, output_names,
                             channel_means=collector.channel_mean, weight_moments=weight_moments,
                             bias_deltas=deltas or None)

    # the float references of the first n calibration inputs, computed once (per n, and per where a
    # Softmax output is measured)
    measures: dict[tuple[int, bool], OutputSnr] = {}

    def measure_on(n: int, at_logits: bool = False) -> OutputSnr:
        """``at_logits``: Softmax outputs measured at their logits (spec 3.1), for the choices that
        only change formats upstream of them (ranges, promotions); the float tails, islands and mixbw
        can change the Softmax's own output and measure it."""
        n = min(n, len(kept))
        softmax = softmax_logits(steps, output_names, program.opset)
        logits = softmax if at_logits else {}
        key = (n, bool(logits))  # no Softmax output: the plain measure (its float references run once)
        if key not in measures:
            measures[key] = OutputSnr(optimized, kept[:n], output_names, threads=max(1, int(threads) // 2),
                                      logits=logits, scores=list(softmax))
        return measures[key]

    records: list[dict[str, Any]] = []
    measured = candidates
    if opts.post_sigmoid and opts.auto_precision:  # outputs the option caps as logits stay quantized
        logits = logit_tails(optimized, candidates)
        records = [unmeasured_record(optimized, t, "not measured: quantize_mode='post_sigmoid' takes its outputs as "
                                                   "logits to cap") for t in logits]
        measured = [t for t in candidates if t not in logits]
    if measured and opts.auto_precision and kept:
        steps, program, chosen = choose_tails(optimized, steps, program, measured, kept[:TAIL_SAMPLES], build,
                                              threads=max(1, int(threads) // 2))
        records += chosen
    island_record: dict[str, Any] = {}
    if islands and kept:
        # found again on the steps the float tails left (an island never holds a host step)
        islands = find_islands(optimized, steps, collector.hist)
    if islands and kept:
        steps, program, island_record = choose_islands(optimized, steps, program, islands, build,
                                                       measure_on(TAIL_SAMPLES))
    ranges: dict[str, Any] = {}
    if opts.range_method == "auto" and kept:
        # datapath_range_method="auto" (spec 3.1): the ranges chosen by the model outputs, on the steps
        # as the float tails left them; later choices (promotions, mixbw) build on this choice
        at = measure_on(TAIL_SAMPLES, at_logits=True)
        program, opts, ranges = choose_ranges(program, opts, lambda o: build(steps, o), at, progress=bool(show))
        ranges["measured_at"] = at.measured_at()
        ranges["weighted_by"] = dict(at.weighted_by)
        ranges["output_parts"] = {o: list(b) for o, b in at.parts.items()}
        given = replace(given, range_choice=opts.range_choice)
    elif opts.range_method == "mmse" and kept:
        ranges = check_mmse(program, opts, lambda o: build(steps, o), measure_on(TAIL_SAMPLES, at_logits=True))
    if opts.bias_adjust:
        # the sequential bias adjustment (analysis(optimize>=1)) on the program whose formats are final
        # (after the range choice: the corrections depend on every format upstream); the later
        # variants (promotions, mixbw, the report's) are built with the same corrections
        from npuflow.analysis.bias_adjust import adjust_biases

        deltas.update(adjust_biases(optimized, program, opts, kept[:opts.bias_adjust],
                                    channel_means=collector.channel_mean, refs=collector.stashed,
                                    weight_moments=weight_moments, progress=show))
    promoted: list[dict[str, Any]] = []
    built_opts = opts

    def rebuild(o: QuantOptions) -> Program:  # the steps as the float tails left them
        return build(steps, o)

    int16 = 16 in get_platform(platform).bitwidths["datapath"]  # the 520 has no 16-bit datapath
    found = (ill_conditioned(steps, program, collector.channel_max, units)
             if (units and kept and int16 and opts.auto_precision) else [])
    if found:
        fps_model = fps_model or FpsModel(optimized, platform, opts)
        program, built_opts, promoted = choose_promotions(found, program, opts, rebuild,
                                                          measure_on(TAIL_SAMPLES, at_logits=True),
                                                          fps_model.fps, fps_model.fps(base_program))
    searched: dict[str, Any] = {}
    would_search = False
    if (kept and int16 and not (opts.mix_datapath or opts.mix_weight)
            and opts.datapath_bits == 8 and opts.weight_bits == 8):
        # the budgeted joint search at defaults (docs/fixed-point.md 10.2): mixbw's search, inside
        # MIN_FPS_RATIO of the estimate without automatic choices, where the int8 model loses much;
        # under auto_precision=False only whether it would have run (the options-that-change-nothing note)
        at = measure_on(MIXBW_SAMPLES, at_logits=True)
        low = min(at(program).values(), default=float("inf"))
        would_search = low < AUTO_SEARCH_BELOW_DB
        if opts.auto_precision:
            searched = {"ran": would_search, "start_snr_db": _r(low), "below_db": AUTO_SEARCH_BELOW_DB}
        if opts.auto_precision and would_search:
            fps_model = fps_model or FpsModel(optimized, platform, opts)
            trial = replace(built_opts, mix_datapath="mixbw", mix_weight="mixbw",
                            flops_ratio=1.0 / MIN_FPS_RATIO - 1.0)
            cands = mixbw_candidates(steps, program, trial, collector.channel_max)
            program, trial, record = mixbw_search(program, trial, cands, rebuild, at, fps_model.fps,
                                                  fps_model.fps(base_program), progress=bool(show),
                                                  desc="precision search")
            added = {k: v for k, v in trial.overrides.items() if built_opts.overrides.get(k) != v}
            record.pop("mode", None)
            record.pop("flops_ratio", None)
            searched.update(record, samples=len(at.feeds),
                            overrides={k: _widths(v) for k, v in sorted(added.items())})
            built_opts = replace(trial, mix_datapath="", mix_weight="", flops_ratio=built_opts.flops_ratio)
    mixed: dict[str, Any] = {}
    means = {t: m for t in collector.channel_sum if (m := collector.channel_mean(t)) is not None}
    if mixbw and kept:
        assert fps_model is not None

        def search_context(o: QuantOptions, bound: float) -> SearchContext:
            return context_of(optimized, get_platform(platform).id, steps, collector.hist, input_names, output_names,
                              means, weight_moments, deltas, measure_on(MIXBW_SAMPLES), o, bound)

        program, built_opts, mixed = _mixbw(steps, program, given, built_opts, rebuild, fps_model,
                                            measure_on(MIXBW_SAMPLES), collector.channel_max, progress=bool(show),
                                            executor=executor, width=max(1, int(threads)), context=search_context)
    elif fps_model is not None and not mixbw and (opts.mix_datapath or opts.mix_weight):
        mixed = {"mode": {"datapath": opts.mix_datapath or None, "weight": opts.mix_weight or None},
                 "rule_overrides": {k: _widths(v) for k, v in sorted(opts.overrides.items()) if v.auto}}
    effects = option_effects(program, given, program.notes, bias_adjusted=len(deltas), compensable=len(compensable),
                             tail_candidates=len(candidates) + len(found_islands),
                             equalize_pairs=len(equalized.get("pairs", [])) if opts.equalize else len(find_pairs(
                                 optimized, range_overrides(opts.overrides))), would_search=would_search)
    return AnalysisResult(optimized, steps, program, collector.hist, collector.samples, means, kept[:keep_inputs], deltas,
                          weight_moments, effects,
                          {"enabled": opts.auto_precision, "float_tails": records, "promotions": promoted,
                           "float_islands": island_record, **({"search": searched} if searched else {})},
                          get_platform(platform).id, built_opts, mixed, ranges, equalized, bounds)


def _mixbw(steps: list[Step], program: Program, given: QuantOptions, opts: QuantOptions, rebuild: Any,
           fps_model: FpsModel, measure: OutputSnr, channel_max: Any, *,
           progress: bool, executor: Any = None, width: int = 1,
           context: Callable[[QuantOptions, float], SearchContext] | None = None
           ) -> tuple[Program, QuantOptions, dict[str, Any]]:
    """The mixbw search (docs/fixed-point.md section 10.3) from ``program`` (built with ``opts``: the
    mixbw start, with the automatic promotions as fixed overrides)."""
    user = {k: v for k, v in given.overrides.items() if not v.auto}
    # t_int8: datapath and weights int8, no automatic choice; model input, output and CPU nodes as
    # the mode forces them (16-bit), so that the bound is on what the search adds (spec 10.3)
    int8 = replace(given, datapath_bits=8, weight_bits=8, mix_datapath="", mix_weight="", auto_precision=False,
                   overrides=user)
    int8_program = rebuild(int8)
    fps_int8 = fps_model.fps(int8_program, int8)
    light = replace(int8, model_in_bits=8, model_out_bits=8, cpu_bits=8,
                    mix_datapath="mix light" if given.mix_datapath == "mixbw" else "",
                    mix_weight="mix light" if given.mix_weight == "mixbw" else "")
    light = replace(light, overrides=merge_overrides(mix_rule_overrides(steps, light, fps_model.macs), user))
    cands = mixbw_candidates(steps, program, opts, channel_max)
    evaluate = None
    if executor is not None and context is not None:
        evaluate = executor_evaluate(executor, context(opts, fps_int8 / (1.0 + opts.flops_ratio)))
    # int4 weights where the platform has them (the 730) and the weights are in mixbw (spec 10.3)
    int4 = opts.mix_weight == "mixbw" and 4 in fps_model.platform.bitwidths.get("weight", ())
    demotions = (lambda o: int4_candidates(steps, o)) if int4 else None
    program, opts, record = mixbw_search(program, opts, cands, rebuild, measure, fps_model.fps, fps_int8,
                                         references={"int8": (int8_program, int8), "mix light": (rebuild(light), light)},
                                         progress=progress, evaluate=evaluate, width=width, demotions=demotions)
    record["samples"] = len(measure.feeds)
    return program, opts, record


def _moment_accumulators(steps: list[Step], moments: dict[str, SecondMoment]) -> dict[str, list[SecondMoment]]:
    """Runtime input tensor -> the accumulators of the steps reading it."""
    by_tensor: dict[str, list[SecondMoment]] = {}
    for st in steps:
        if st.name in moments:
            by_tensor.setdefault(st.runtime_inputs[0], []).append(moments[st.name])
    return by_tensor
