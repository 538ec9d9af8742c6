"""The engines behind ``ModelConfig.evaluate()`` and ``ModelConfig.analysis()``.

Each takes the (already optimized) float model, validated options (``npuflow.flow.options``) and
the user's data, runs the pipeline and writes the outputs. They hold no state: ``ModelConfig``
(``npuflow.config``) keeps the model, its optimized form and the results.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import onnx

from npuflow._io import atomic_write_bytes, ensure_output_dir
from npuflow.analysis.effects import no_effect_message, stays_8bit_message
from npuflow.analysis.run import AnalysisResult, analyse
from npuflow.bie import build_bie
from npuflow.calibration.inputs import iter_calibration_inputs
from npuflow.errors import InputError, InvalidConfigError, OptionEffectWarning, warn_user
from npuflow.evaluate import evaluate_model
from npuflow.flow.options import AnalysisOptions, EvaluateOptions
from npuflow.reference.float_runner import input_specs
from npuflow.report import build_evaluation_report, summary_text, write_report


Optimized = Callable[[], onnx.ModelProto]


def run_evaluate(optimized: Optimized, opts: EvaluateOptions, *, model_name: str, model_path: str | None,
                 input_shapes: Any = None, write_optimized: bool = False) -> str:
    """IP evaluator: placement and estimated speed of the model on ``opts.platform``; writes
    model_fx_report.{html,json,csv} (and ``<name>.opt.onnx`` with ``write_optimized``) into
    ``opts.output_dir`` and returns the text summary.

    ``optimized()`` returns the optimized float model; it is called after the output folder is
    checked (ModelConfig caches it)."""
    out_dir = ensure_output_dir(opts.output_dir)
    model = optimized()
    bits = opts.bits
    result = evaluate_model(model, opts.platform, model_name=model_name, datapath_bits=bits["datapath"],
                            weight_bits=bits["weight"], weight_bandwidth=opts.weight_bandwidth,
                            dma_bandwidth=opts.dma_bandwidth)
    result = type(result)(**{**result.__dict__, "bitwidths": opts.bitwidths})
    doc = build_evaluation_report(result, model_path=model_path, options=opts.report_options(input_shapes),
                                  platform_name=opts.platform.name)
    if write_optimized:
        atomic_write_bytes(out_dir / f"{model_name}.opt.onnx", model.SerializeToString())
    paths = write_report(doc, out_dir)
    return summary_text(doc, str(paths["html"]))


@dataclass
class AnalysisOutcome:
    """What one ``analysis()`` produced; filled as the run goes (see ``run_analysis``'s ``on_bie``)."""

    bie_path: str | None = None
    result: AnalysisResult | None = None
    #: seconds: "analysis" (up to the written BIE), then "report"
    timing: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    report_paths: dict[str, Any] | None = None

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


def run_analysis(optimized: Optimized, opts: AnalysisOptions, input_mapping: Any, *, report_inputs: Any = None,
                 model_name: str, model_path: str | None, started: float | None = None,
                 on_bie: Callable[[AnalysisOutcome], None] | None = None) -> AnalysisOutcome:
    """Fixed-point analysis of the model ``optimized()`` returns (called after the output folder is
    checked): calibrate on ``input_mapping``, write
    ``<model_name>.kdp<platform>.scaled.bie`` into ``opts.output_dir``, then (``opts.report``) the
    fixed-point report and (``opts.export_dynasty_dump``) the layer dump.

    ``on_bie(outcome)`` is called as soon as the BIE is written, before the report, so that a
    caller keeps the BIE even when the report fails. ``started``: the ``time.perf_counter()`` at
    which the caller's ``analysis()`` began (the report's "analysis" time counts from there).
    """
    t_start = time.perf_counter() if started is None else started
    platform = opts.platform
    out_dir = ensure_output_dir(opts.output_dir)
    model = optimized()
    unknown = sorted(set(opts.node_overrides) - {n.name for n in model.graph.node})
    if unknown:
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
    result = analyse(model, platform, input_mapping, quant, threads=opts.threads, progress=opts.progress, keep_inputs=keep)
    warn_option_effects(result.effects, opts)
    options = opts.record(bias_adjusted_steps=len(result.bias_deltas), compensated_steps=len(result.weight_moments),
                          calibration_samples=result.samples)
    data = build_bie(result.program, model, platform=platform.id, model_name=model_name, options=options,
                     preprocess=opts.preprocess)
    bie_path = out_dir / f"{model_name}.kdp{platform.id}.scaled.bie"
    atomic_write_bytes(bie_path, data)
    analysis_s = time.perf_counter() - t_start
    outcome = AnalysisOutcome(bie_path=str(bie_path), result=result, timing={"analysis": analysis_s})
    if on_bie is not None:
        on_bie(outcome)
    feeds = user_feeds if user_feeds is not None else result.kept_inputs
    if opts.report:
        from npuflow.report.analysis_report import write_analysis_report

        t0 = time.perf_counter()
        outcome.report, outcome.report_paths = write_analysis_report(
            result, platform=platform, opts=quant, bitwidths=opts.bitwidths, options=options, model_name=model_name,
            model_path=model_path, feeds=feeds, user_inputs=user_feeds is not None, output_dir=out_dir,
            bie_path=str(bie_path), analysis_s=analysis_s, threads=opts.threads,
            weight_bandwidth=opts.weight_bandwidth, dma_bandwidth=opts.dma_bandwidth)
        outcome.timing["report"] = time.perf_counter() - t0
    if opts.export_dynasty_dump and feeds:
        from npuflow.debug import compare_layers

        compare_layers(outcome, feeds[0]).dump(out_dir / "layer_dump")
    return outcome
