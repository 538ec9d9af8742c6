"""The engines behind ``ModelConfig.evaluate()`` and ``ModelConfig.analysis()``.

Each takes the (already optimized) float model, validated options (``npuflow.flow.options``) and
the user's data, runs the pipeline and writes the outputs. They hold no state: ``ModelConfig``
(``npuflow.config``) keeps the model, its optimized form and the results.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from npuflow._io import atomic_write_bytes, atomic_write_text, json_dumps
from npuflow._outputs import OutputSet
from npuflow.analysis.effects import no_effect_message, stays_8bit_message
from npuflow.analysis.equalize import added_node_names
from npuflow.analysis.islands import islands_message
from npuflow.analysis.precision import promotion_message, search_message
from npuflow.analysis.run import AnalysisResult, analyse
from npuflow.analysis.tails import auto_precision_message, host_nodes
from npuflow.bie import build_bie
from npuflow.calibration.degenerate import check_statistics
from npuflow.calibration.inputs import iter_calibration_inputs
from npuflow.errors import (
    AutoPrecisionWarning,
    CalibrationWarning,
    InputError,
    InvalidConfigError,
    OptionEffectWarning,
    warn_user,
)
from npuflow.evaluate import evaluate_model
from npuflow.flow.options import AnalysisOptions, EvaluateOptions
from npuflow.reference.float_runner import input_specs
from npuflow.report import build_evaluation_report, summary_text, write_report

Optimized = Callable[[], onnx.ModelProto]


def run_evaluate(optimized: Optimized, opts: EvaluateOptions, *, model_name: str, model_path: str | None,
                 input_shapes: Any = None, write_optimized: bool = False,
                 host: dict[str, str] | None = None,
                 widths: tuple[dict[str, int], dict[str, int]] | None = None) -> str:
    """IP evaluator: placement and estimated speed of the model on ``opts.platform``; writes
    model_fx_report.{html,json,csv} (and ``<name>.opt.onnx`` with ``write_optimized``) into
    ``opts.output_dir`` and returns the text summary.

    ``optimized()`` returns the optimized float model; it is called after the output folder is
    checked (ModelConfig caches it). ``host``: ONNX node name -> reason, the nodes an analysis runs
    as host post-processing (float tails, :func:`host_nodes_of`): CPU nodes with that reason.
    ``widths``: (tensor -> bits, ONNX node -> weight bits) of a quantized program
    (:func:`program_widths_of`, a BIE's): the estimate uses them instead of the global widths."""
    with OutputSet(opts.output_dir, run="evaluate") as staged:  # the files appear together (npuflow._outputs)
        model = optimized()
        bits = opts.bits
        names = {n.name for n in model.graph.node}
        host = {k: v for k, v in (host or {}).items() if k in names}
        result = evaluate_model(model, opts.platform, model_name=model_name, datapath_bits=bits["datapath"],
                                weight_bits=bits["weight"], weight_bandwidth=opts.weight_bandwidth,
                                dma_bandwidth=opts.dma_bandwidth, host_nodes=host or None,
                                **(dict(zip(("tensor_bits", "node_weight_bits"), widths)) if widths else {}))
        result = type(result)(**{**result.__dict__, "bitwidths": opts.bitwidths})
        doc = build_evaluation_report(result, model_path=model_path, options=opts.report_options(input_shapes),
                                      platform_name=opts.platform.name)
        if write_optimized:
            atomic_write_bytes(staged.staging / f"{model_name}.opt.onnx", model.SerializeToString())
        paths = write_report(doc, staged.staging)
        staged.commit()
    return summary_text(doc, str(staged.final(paths["html"])))


@dataclass
class AnalysisOutcome:
    """What one ``analysis()`` produced; filled as the run goes (see ``run_analysis``'s ``on_bie``)."""

    bie_path: str | None = None
    result: AnalysisResult | None = None
    #: seconds: "analysis" (up to the written BIE), then "report"
    timing: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    report_paths: dict[str, Any] | None = None
    #: the findings warned about (CalibrationWarning): degenerate calibration data, a low
    #: model-output SNR on the report's inputs (npuflow.calibration.degenerate); the report's
    #: ``warnings`` list holds the same
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def analysis_result(self) -> AnalysisResult | None:  # what npuflow.debug.compare_layers reads
        return self.result


def warn_option_effects(effects: dict[str, Any], opts: AnalysisOptions) -> None:
    """At most two warnings (``OptionEffectWarning``, attributed to the user's call): the options
    that change nothing on this model, and the tensors that stay 8-bit under a 16-bit datapath
    (docs/fixed-point.md section 3.7; the report lists the same). The options are named with the
    values the user gave (``effects`` is updated, the report shows the same)."""
    for e in effects.get("no_effect", []):
        if e["option"] != "node_overrides" and hasattr(opts, e["option"]):
            e["value"] = getattr(opts, e["option"])
    datapath_bits = opts.quant.datapath_bits
    if effects.get("no_effect"):
        warn_user(no_effect_message(effects["no_effect"]), OptionEffectWarning)
    if effects.get("stays_8bit"):
        warn_user(stays_8bit_message(effects["stays_8bit"], datapath_bits), OptionEffectWarning)


def program_widths_of(fixed: Any) -> tuple[dict[str, int], dict[str, int]] | None:
    """(tensor -> bits, ONNX node -> weight bits) of a loaded BIE's program (``npuflow.load``),
    for the IP evaluator (``evaluate_model(tensor_bits=, node_weight_bits=)``); None without one.
    A MAC step's weight width is its integer weights' container (int16 or int8), int4 when the BIE
    was analysed with int4 weights and every weight of the step fits [-8, 7] (int4 is stored in
    int8: docs/bie-format.md)."""
    program = getattr(fixed, "program", None)
    if program is None:
        return None
    options = getattr(getattr(fixed, "bie", None), "options", None) or {}
    int4 = options.get("weight_bitwidth_mode") == "int4"
    tensor_bits = {t: f.bits for t, f in program.formats.items()}
    node_wbits: dict[str, int] = {}
    for st, prm in zip(program.steps, program.params):
        w = getattr(prm, "w_q", None)
        if w is None or st.float_step:
            continue
        w = np.asarray(w)
        bits = 16 if w.dtype == np.int16 else (4 if int4 and w.size and w.min() >= -8 and w.max() <= 7 else 8)
        for n in st.nodes:
            node_wbits[n] = bits
    return tensor_bits, node_wbits


def host_nodes_of(source: Any, platform_id: int | None = None) -> dict[str, str]:
    """The nodes run as host steps (float tails and float islands, docs/fixed-point.md 10.1 and
    10.4) by an ``AnalysisResult`` (for ``platform_id`` when given) or a loaded BIE's program; {}
    otherwise (from a BIE: :func:`npuflow.analysis.tails.host_steps_of`)."""
    if isinstance(source, AnalysisResult):
        if platform_id is not None and source.platform_id not in (None, platform_id):
            return {}
        return host_nodes(source.steps)
    program = getattr(source, "program", None)
    if program is None:
        return {}
    from npuflow.analysis.tails import host_steps_of

    return {n: program.steps[k].reason for k in host_steps_of(program) for n in program.steps[k].nodes}


def warn_auto_precision(result: AnalysisResult) -> None:
    """``AutoPrecisionWarning`` lines (attributed to the user's call) listing the automatic precision
    choices that were kept: one for the float tails, one for the 16-bit promotions; none when
    there is none."""
    msg = auto_precision_message((result.auto_precision or {}).get("float_tails", []))
    if msg:
        warn_user(msg, AutoPrecisionWarning)
    msg = islands_message((result.auto_precision or {}).get("float_islands") or {})
    if msg:
        warn_user(msg, AutoPrecisionWarning)
    ap = result.auto_precision or {}
    for msg in (promotion_message(ap.get("promotions", [])), search_message(ap.get("search"))):
        if msg:
            warn_user(f"auto_precision: {msg} (docs/fixed-point.md section 10.2). analysis(auto_precision=False) or "
                      "--no-auto-precision keeps them 8-bit", AutoPrecisionWarning)


def run_analysis(optimized: Optimized, opts: AnalysisOptions, input_mapping: Any, *, report_inputs: Any = None,
                 model_name: str, model_path: str | None, started: float | None = None,
                 on_bie: Callable[[AnalysisOutcome], None] | None = None) -> AnalysisOutcome:
    """Fixed-point analysis of the model ``optimized()`` returns (called after the output folder is
    checked): calibrate on ``input_mapping``, write
    ``<model_name>.kdp<platform>.scaled.bie`` into ``opts.output_dir``, then (``opts.report``) the
    fixed-point report and (``opts.export_dynasty_dump``) the layer dump.

    Every file is written into a staging folder and the set is committed at the end
    (``npuflow._outputs``): after a failure or Ctrl-C, ``output_dir`` holds the previous outputs,
    never a new BIE beside an old report. ``on_bie(outcome)`` is called once the set is committed.
    ``started``: the ``time.perf_counter()`` at which the caller's ``analysis()`` began (the
    report's "analysis" time counts from there).
    """
    t_start = time.perf_counter() if started is None else started
    with OutputSet(opts.output_dir, run="analysis") as staged:
        outcome = _analysis_set(staged, optimized, opts, input_mapping, report_inputs=report_inputs,
                                model_name=model_name, model_path=model_path, t_start=t_start)
        staged.commit()
    if on_bie is not None:
        on_bie(outcome)
    return outcome


def _analysis_set(staged: OutputSet, optimized: Optimized, opts: AnalysisOptions, input_mapping: Any, *,
                  report_inputs: Any, model_name: str, model_path: str | None, t_start: float) -> AnalysisOutcome:
    """The work of :func:`run_analysis`, writing every file under ``staged.staging``; the paths it
    records (in the outcome and the report) are the final ones in ``staged.output_dir``."""
    platform = opts.platform
    out_dir, stage = staged.output_dir, staged.staging
    model = optimized()
    unknown = set(opts.node_overrides) - {n.name for n in model.graph.node}
    if unknown:  # the equalization's added nodes may be named too (found from the graph only when needed)
        unknown = unknown - added_node_names(model, opts.quant)
    if unknown:
        unknown = sorted(unknown)
        raise InvalidConfigError(f"node_overrides{'/quan_config' if opts.quan_config else ''} names {unknown} are not "
                                 "nodes of the optimized model; "
                                 "node names are listed in the evaluate() report")
    user_feeds = None
    if report_inputs is not None:  # validated like calibration inputs, before any work is done
        try:
            user_feeds = list(itertools.islice(iter_calibration_inputs(input_specs(model), report_inputs), opts.report_samples))
        except InputError as exc:
            msg = str(exc).replace("input_mapping", "report_inputs").replace("calibration array", "report input")
            raise InputError(f"report_inputs: {msg}") from None
    keep = 0 if user_feeds is not None else (opts.report_samples if (opts.report or opts.export_dynasty_dump) else 0)
    quant = opts.quant
    result = analyse(model, platform, input_mapping, quant, threads=opts.threads, progress=opts.progress, keep_inputs=keep,
                     executor=opts.executor)
    # degenerate calibration data, from the statistics the calibration pass kept (no second pass)
    findings = check_statistics(result.stats, inputs=result.program.input_names)
    for f in findings:
        warn_user(f["message"], CalibrationWarning)
    warn_option_effects(result.effects, opts)
    warn_auto_precision(result)
    if (result.ranges or {}).get("warning"):
        warn_user(result.ranges["warning"], OptionEffectWarning)
    kept_tails = [t for t in (result.auto_precision or {}).get("float_tails", []) if t.get("kept")]
    promoted = [p for p in (result.auto_precision or {}).get("promotions", []) if p.get("kept")]
    options = opts.record(bias_adjusted_steps=len(result.bias_deltas), compensated_steps=len(result.weight_moments),
                          calibration_samples=result.samples, float_tails=kept_tails, promotions=promoted,
                          float_islands=(result.auto_precision or {}).get("float_islands"),
                          equalized=result.equalized,
                          ranges=result.ranges, search=(result.auto_precision or {}).get("search"))
    data = build_bie(result.program, result.optimized, platform=platform.id, model_name=model_name, options=options,
                     preprocess=opts.preprocess)
    bie_path = out_dir / f"{model_name}.kdp{platform.id}.scaled.bie"
    atomic_write_bytes(stage / bie_path.name, data)
    if result.mixed.get("measured") is not None and os.environ.get("MIXBW_DEBUG", "").lower() in ("1", "true", "yes"):
        # the original's MIXBW_DEBUG: the per-candidate figures of the mixbw search (docs/fixed-point.md 10.3)
        (stage / "mixbw_debug").mkdir()
        atomic_write_text(stage / "mixbw_debug" / "candidates.json",
                          json_dumps(result.mixed, what="the mixbw search record", indent=1))
    analysis_s = time.perf_counter() - t_start
    outcome = AnalysisOutcome(bie_path=str(bie_path), result=result, timing={"analysis": analysis_s},
                              warnings=list(findings))
    feeds = user_feeds if user_feeds is not None else result.kept_inputs
    if opts.report:
        from npuflow.report.analysis_report import write_analysis_report

        t0 = time.perf_counter()
        outcome.report, outcome.report_paths = write_analysis_report(
            result, platform=platform, opts=result.options or quant, bitwidths=opts.bitwidths, options=options, model_name=model_name,
            model_path=model_path, feeds=feeds, user_inputs=user_feeds is not None, output_dir=stage, files_dir=out_dir,
            bie_path=str(bie_path), analysis_s=analysis_s, threads=opts.threads,
            weight_bandwidth=opts.weight_bandwidth, dma_bandwidth=opts.dma_bandwidth, warnings=findings)
        outcome.report_paths = {k: staged.final(v) for k, v in outcome.report_paths.items()}
        outcome.timing["report"] = time.perf_counter() - t0
        for f in outcome.report["warnings"][len(findings):]:  # the report's own: a low model-output SNR
            outcome.warnings.append(f)
            warn_user(f["message"], CalibrationWarning)
    if opts.export_dynasty_dump and feeds:
        from npuflow.debug import compare_layers

        compare_layers(outcome, feeds[0]).dump(stage / "layer_dump", as_set=False)  # part of this set
    return outcome
