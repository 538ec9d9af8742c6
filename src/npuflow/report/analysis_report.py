"""The report of an ``analysis()`` run: placement/cost at the analysis bit widths + precision."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from npuflow.report.document import build_analysis_report, write_report

log = logging.getLogger(__name__)


def write_analysis_report(
    result: Any,
    *,
    platform: Any,
    opts: Any,
    bitwidths: dict[str, str],
    options: dict[str, Any],
    model_name: str,
    model_path: str | None,
    feeds: Sequence[dict[str, np.ndarray]],
    user_inputs: bool,
    output_dir: str | Path,
    bie_path: str | None,
    files_dir: str | Path | None = None,
    analysis_s: float | None = None,
    threads: int = 1,
    weight_bandwidth: float | None = None,
    dma_bandwidth: float | None = None,
    warnings: Sequence[dict[str, Any]] = (),
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Measure, build and write model_fx_report.{json,html,csv}; returns (document, paths).

    ``warnings``: the findings on the calibration data already made
    (:func:`npuflow.calibration.degenerate.check_statistics`); the report adds the low
    model-output SNR one (:func:`~npuflow.calibration.degenerate.check_output_snr`) on its own
    measurement, and lists them all under ``warnings`` (the document's)."""
    from npuflow.analysis.program import forget_prepared
    from npuflow.calibration.degenerate import check_output_snr
    from npuflow.evaluate import evaluate_model
    from npuflow.report.precision import measure_precision

    t0 = time.perf_counter()
    from npuflow.analysis.precision import program_bits
    from npuflow.analysis.tails import host_nodes

    # the float tails run as host post-processing are CPU nodes (docs/fixed-point.md 10.1)
    ev = evaluate_model(result.optimized, platform, model_name=model_name,
                        datapath_bits=opts.datapath_bits, weight_bits=opts.weight_bits,
                        weight_bandwidth=weight_bandwidth, dma_bandwidth=dma_bandwidth,
                        host_nodes=host_nodes(result.steps) or None,
                        # the program's own widths (16-bit promotions, node_overrides)
                        **dict(zip(("tensor_bits", "node_weight_bits"), program_bits(result.program, opts))))
    ev = type(ev)(**{**ev.__dict__, "bitwidths": dict(bitwidths)})
    try:
        q = measure_precision(result, opts, feeds, platform=platform, eval_nodes={n.name: n for n in ev.nodes},
                              user_inputs=user_inputs, threads=threads) if feeds else None
    finally:  # the measured variants' parameters (and their simulator sessions) go with the report
        forget_prepared(result.steps, result.program.params)
    out = Path(output_dir)
    named = Path(files_dir) if files_dir is not None else out  # where the files will be (a staged set: its final folder)
    files = {"bie": bie_path, "json": str(named / "model_fx_report.json"), "html": str(named / "model_fx_report.html"),
             "csv": str(named / "model_fx_report.csv")}
    timing: dict[str, float] = {}
    if analysis_s is not None:
        timing["analysis"] = analysis_s
    timing["report"] = time.perf_counter() - t0
    found = list(warnings)
    if q is not None:
        low = check_output_snr(q["model_output_snr_db"], count=len(feeds), source="user" if user_inputs else "calibration",
                               where=q.get("lowest"), trades=_trades(q))
        if low is not None:
            found.append(low)
    doc = build_analysis_report(ev, q, model_path=model_path, options=options, platform_name=platform.name,
                                bitwidths=bitwidths, files=files, timing=timing, warnings=found)
    paths = write_report(doc, out)
    return doc, paths


def _trades(q: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """What the report measured, for the low-SNR warning: its best single suggestion, the smallest
    int16 region and int16 everywhere, each as (what, gain dB, estimated FPS ratio), where measured."""
    out: list[tuple[str, float, float | None]] = []
    best = max((r["measured"] for r in q.get("ranking") or [] if r.get("measured") and r["measured"].get("gain_db") is not None),
               key=lambda m: m["gain_db"], default=None)
    if best is not None:
        out.append(("its best single suggestion", best["gain_db"], best.get("fps_ratio")))
    for g in (q.get("regions_int16") or [])[:1]:
        m = g.get("measured") or {}
        if m.get("gain_db") is not None:
            out.append((f"int16 for the first {g['fraction']:.0%} of the nodes", m["gain_db"], m.get("fps_ratio")))
    ref = q.get("reference_int16") or {}
    if ref.get("gain_db") is not None:
        out.append(("int16 everywhere", ref["gain_db"], ref.get("fps_ratio")))
    return out
