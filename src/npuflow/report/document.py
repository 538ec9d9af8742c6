"""Report document: build, validate, render to text/CSV/HTML, write atomically."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from npuflow._io import atomic_write_text, csv_row, ensure_output_dir, finite_or_null, json_dumps
from npuflow.analysis.tails import HOST_REASON
from npuflow.errors import NpuflowError
from npuflow.evaluate.result import EvalResult

REPORT_SCHEMA_VERSION = "1.10"
REPORT_FILES = ("model_fx_report.json", "model_fx_report.html", "model_fx_report.csv")

_SNR = {"type": ["number", "null"]}  # null: no error at all (exact)
_FMT = {"type": "object", "required": ["bits", "per_channel"],
        "properties": {"bits": {"type": "integer"}, "per_channel": {"type": "boolean"},
                       # 1.2 (step outputs, model inputs): the rule that gave the width (docs/fixed-point.md
                       # 3.7) and, under a 16-bit datapath, the option that keeps the tensor at 8 bits
                       "width_rule": {"type": "string"}, "stays_8bit": {"type": "string"}}}
_STEP_FIELDS: dict[str, Any] = {
    "index": {"type": "integer"}, "name": {"type": "string"}, "op_type": {"type": "string"},
    "nodes": {"type": "array", "items": {"type": "string"}}, "placement": {"enum": ["NPU", "CPU"]},
    "float_step": {"type": "boolean"}, "reason": {"type": "string"}, "pass_through": {"type": "boolean"},
    "inputs": {"type": "array", "items": _FMT}, "outputs": {"type": "array", "items": _FMT},
    "weight": {"type": ["object", "null"]},
    # 1.10: read_between / read_max (consumer bounds, docs/fixed-point.md 3.1)
    "range": {"type": "object", "required": ["calib_abs_max", "report_abs_max", "chosen", "clipped_calib", "clipped_report"],
              "properties": {"read_between": {"type": ["object", "null"]}, "read_max": {"type": ["number", "null"]}}},
    "isolated": {"type": "object", "required": ["snr_db"], "properties": {"snr_db": _SNR}},
    "out_quant_snr_db": _SNR,
    "cumulative": {"type": "object", "required": ["snr_db", "cosine"], "properties": {"snr_db": _SNR}},
    "saturated": {"type": "object", "required": ["acc", "out"]},
    "macs": {"type": "integer"}, "time_ms": {"type": "number"},
    # 1.3: a float tail's step, run as host post-processing (docs/fixed-point.md 10.1)
    "host": {"type": "boolean"},
}
#: the ``quantization`` section (analysis only; null in evaluate()'s report)
QUANTIZATION_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["report_inputs", "calibration_samples", "model_output_snr_db", "outputs", "inputs", "steps",
                 "ranking", "histograms", "timing_s"],
    "properties": {
        "report_inputs": {"type": "object", "required": ["count", "source"],
                          "properties": {"count": {"type": "integer"}, "source": {"enum": ["calibration", "user"]}}},
        "calibration_samples": {"type": "integer"},
        "model_output_snr_db": _SNR,
        # 1.8: where model_output_snr_db was measured (the ranking's measure: an output read part by
        # part counts as its lowest part): {"output"} or {"output", "first", "last"}; null when exact
        "lowest": {"type": ["object", "null"], "required": ["output"],
                   "properties": {"output": {"type": "string"}, "first": {"type": "integer"}, "last": {"type": "integer"}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "snr_db", "cosine"], "properties": {
            # 1.7: the SNR of each part the output's graph joins along its last axis (columns first..last)
            "parts": {"type": "array", "items": {"type": "object", "required": ["first", "last", "snr_db"],
                                                 "properties": {"snr_db": _SNR}}}}}},
        "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "bits"]}},
        "steps": {"type": "array", "items": {"type": "object", "required": [k for k in _STEP_FIELDS if k != "host"],
                                                     "properties": _STEP_FIELDS}},
        "ranking": {"type": "array", "items": {
            "type": "object", "required": ["rank", "index", "name", "op_type", "isolated_snr_db", "cause", "suggestions", "measured"],
            "properties": {"rank": {"type": "integer"}, "index": {"type": "integer"}, "suggestions": {"type": "array"},
                           "measured": {"type": ["object", "null"]}}}},
        "combined": {"type": ["object", "null"]},
        "joint": {"type": "array", "items": {"type": "object", "required": ["ranks", "model_output_snr_db", "gain_db", "added_db"]}},
        "reference_int16": {"type": ["object", "null"]},
        "regions_int16": {"type": "array", "items": {"type": "object", "required": ["nodes", "first", "last", "macs_fraction", "measured"]}},
        "histograms": {"type": "array", "items": {"type": "object", "required": ["name", "tensor", "hi", "counts", "chosen", "abs_max"]}},
        "timing_s": {"type": "object"},
        # 1.3: the automatic precision choices (docs/fixed-point.md 10.1, docs/report.md "Automatic precision")
        "auto_precision": {
            "type": "object", "required": ["enabled", "float_tails"],
            "properties": {"enabled": {"type": "boolean"}, "float_tails": {"type": "array", "items": {
                "type": "object",
                "required": ["outputs", "nodes", "inputs", "ops", "snr_quantized_db", "snr_float_db", "gain_db",
                             "samples", "kept", "why"],
                "properties": {"kept": {"type": "boolean"}, "gain_db": {"type": ["number", "null"]},
                               "nodes": {"type": "array", "items": {"type": "string"}},
                               "outputs": {"type": "array", "items": {"type": "string"}}}}},
                "promotions": {"type": "array", "items": {
                    "type": "object",
                    "required": ["tensor", "tensors", "steps", "consumers", "channels", "vanishing_channels", "share",
                                 "channel_range", "snr_before_db", "snr_after_db", "gain_db", "fps_ratio", "kept", "why"],
                    "properties": {"kept": {"type": "boolean"}, "tensor": {"type": "string"},
                                   "gain_db": {"type": ["number", "null"]},
                                   "fps_ratio": {"type": ["number", "null"]}}}},
                # 1.7: the budgeted precision search (docs/fixed-point.md 10.2, docs/report.md); null when not considered
                "search": {"type": ["object", "null"], "required": ["ran", "start_snr_db", "below_db"],
                           "properties": {"ran": {"type": "boolean"}, "measured": {"type": "array"},
                                          "overrides": {"type": "object"}}},
                # 1.6: float islands (docs/fixed-point.md 10.4): the measurement; null without a candidate
                "float_islands": {"type": ["object", "null"], "required": [
                    "islands", "snr_quantized_db", "snr_float_db", "gain_db", "worst_db", "kept", "why"],
                    "properties": {"kept": {"type": "boolean"}, "islands": {"type": "array", "items": {
                        "type": "object", "required": ["nodes", "seeds", "moved", "inputs", "ops"]}}}}}},
        # 1.5: datapath_range_method="auto" (docs/fixed-point.md 3.1, docs/report.md "Range choice"): the
        # search's record; under "mmse" the comparison with "percentage"; null under "percentage"
        "ranges": {"type": ["object", "null"], "properties": {
            "candidates": {"type": "array", "items": {"type": "string"}},
            "tensors": {"type": "integer"}, "measurements": {"type": "integer"},
            "start_snr_db": _SNR, "chosen_snr_db": _SNR, "whole_model_choice": {"type": "string"},
            "whole_model": {"type": "array", "items": {"type": "object", "required": ["quantile", "snr_db"]}},
            "parts": {"type": "array", "items": {"type": "object",
                                                 "required": ["first", "last", "tensors", "quantile", "tried"]}},
            "chosen": {"type": "object", "additionalProperties": {"type": "string"}},
            # model output -> the tensor measured in its place (a Softmax's logits, spec 3.1)
            "measured_at": {"type": "object", "additionalProperties": {"type": "string"}},
            # 1.7: model output -> the score output whose rows weight its error (spec 3.1, outputs read
            # per detection)
            "weighted_by": {"type": "object", "additionalProperties": {"type": "string"}},
            # 1.7: model output -> the boundaries of the parts joined along its last axis, each measured
            # alone (spec 3.1, outputs read part by part)
            "output_parts": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
            "method": {"type": "string"}, "warning": {"type": ["string", "null"]}}},
        # 1.2: what the options did (docs/fixed-point.md 3.7, docs/report.md "Option effects")
        "option_effects": {
            "type": "object",
            "required": ["no_effect", "stays_8bit", "post_sigmoid", "post_sigmoid_skipped", "model_out"],
            "properties": {
                "no_effect": {"type": "array", "items": {"type": "object", "required": ["option", "value", "reason"],
                                                         "properties": {"option": {"type": "string"},
                                                                        "reason": {"type": "string"}}}},
                "stays_8bit": {"type": "array", "items": {
                    "type": "object", "required": ["tensor", "producer", "rule", "option", "via"],
                    "properties": {"tensor": {"type": "string"}, "producer": {"type": ["string", "null"]},
                                   "rule": {"type": "string"}, "option": {"type": "string"},
                                   "via": {"type": ["string", "null"]}}}},
                "post_sigmoid": {"type": "array", "items": {
                    "type": "object", "required": ["tensor", "calibrated", "capped", "applies", "why"],
                    "properties": {"tensor": {"type": "string"}, "calibrated": {"type": "number"},
                                   "capped": {"type": "number"}, "applies": {"type": "boolean"},
                                   "why": {"type": "string"}}}},
                "post_sigmoid_skipped": {"type": "array", "items": {"type": "string"}},
                "model_out": {"type": "array", "items": {
                    "type": "object", "required": ["output", "bits", "tensors"],
                    "properties": {"output": {"type": "string"}, "bits": {"type": ["integer", "null"]},
                                   "tensors": {"type": "array", "items": {"type": "string"}}}}},
            },
        },
    },
}

_NODE_FIELDS = {
    "name": "string", "op_type": "string", "placement": "string", "reason": "string",
    "macs": "integer", "weight_bytes": "integer", "input_bytes": "integer", "output_bytes": "integer",
    "compute_ms": "number", "memory_ms": "number", "time_ms": "number", "bound": "string",
}

#: JSON Schema (draft 2020-12) of model_fx_report.json. Bump REPORT_SCHEMA_VERSION on any change:
#: minor for added optional fields, major for removed/renamed ones.
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "npuflow model_fx_report",
    "type": "object",
    "required": ["schema", "schema_version", "npuflow_version", "producer", "model", "platform",
                 "bitwidths", "summary", "nodes", "options"],
    "properties": {
        "schema": {"const": "npuflow.model_fx_report"},
        "schema_version": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "npuflow_version": {"type": "string"},
        "producer": {"enum": ["evaluate", "analysis"]},
        "model": {"type": "object", "required": ["name", "path"],
                  "properties": {"name": {"type": "string"}, "path": {"type": ["string", "null"]}}},
        "platform": {"type": "object", "required": ["id", "name"],
                     "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
        "bitwidths": {"type": "object", "additionalProperties": {"type": "string"}},
        "options": {"type": "object"},
        "summary": {
            "type": "object",
            "required": ["fps", "total_ms", "total_macs", "ddr_read_bytes", "ddr_write_bytes",
                         "weight_bytes", "npu_node_count", "cpu_node_count", "cpu_nodes", "cost_model"],
            "properties": {
                # null when not finite (no NPU work: 0 ms); null_reasons["summary.fps"] says why
                "fps": {"type": ["number", "null"]}, "total_ms": {"type": "number"},
                "total_macs": {"type": "integer"}, "ddr_read_bytes": {"type": "integer"},
                "ddr_write_bytes": {"type": "integer"}, "weight_bytes": {"type": "integer"},
                "npu_node_count": {"type": "integer"}, "cpu_node_count": {"type": "integer"},
                "cpu_nodes": {"type": "array", "items": {"type": "object"}},
                # 1.3: CPU nodes that are host post-processing (float tails, docs/fixed-point.md 10.1)
                "host_node_count": {"type": "integer"},
                "cost_model": {"type": "object"},
            },
        },
        "nodes": {
            "type": "array",
            "items": {"type": "object", "required": list(_NODE_FIELDS),
                      "properties": {k: {"type": v} for k, v in _NODE_FIELDS.items()}},
        },
        "quantization": QUANTIZATION_SCHEMA,
        "files": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "timing_s": {"type": "object", "additionalProperties": {"type": "number"}},
        # 1.4 (analysis reports): degenerate calibration data and a low model-output SNR, the same
        # findings analysis() warns about (CalibrationWarning; npuflow.calibration.degenerate,
        # docs/report.md "Warnings"); [] when there is none
        "warnings": {"type": "array", "items": {
            "type": "object", "required": ["kind", "message"],
            "properties": {"kind": {"enum": ["outlier_input", "zero_range", "low_output_snr"]},
                           "message": {"type": "string"},
                           "tensors": {"type": "array", "items": {"type": "string"}},
                           "input_index": {"type": "integer"}, "snr_db": {"type": "number"},
                           "threshold_db": {"type": "number"}}}},
        # the file is standard JSON (no NaN/Infinity): every figure that is not finite is written as null,
        # and this maps its path (e.g. "summary.fps", "nodes[3].time_ms") to the reason
        "null_reasons": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _version() -> str:
    from npuflow._version import __version__

    return __version__


def build_evaluation_report(
    result: EvalResult,
    *,
    model_path: str | None,
    options: dict[str, Any],
    platform_name: str,
) -> dict[str, Any]:
    """The report document of an ``evaluate()`` run (no quantization section yet)."""
    nodes = []
    for n in result.nodes:
        d = asdict(n)
        d["inputs"] = list(n.inputs)
        d["outputs"] = list(n.outputs)
        nodes.append(d)
    cpu = [{"name": n.name, "op_type": n.op_type, "reason": n.reason} for n in result.cpu_nodes]
    host = [c for c in cpu if c["reason"].startswith(HOST_REASON)]
    fps = float(result.fps)
    null_reasons = {}
    if not math.isfinite(fps):
        null_reasons["summary.fps"] = (f"not finite ({fps}): no NPU work on {platform_name} ({float(result.total_ms)} ms "
                                       "estimated; only NPU time is estimated)")
    return {
        "schema": "npuflow.model_fx_report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "npuflow_version": _version(),
        "producer": "evaluate",
        "model": {"name": result.model_name, "path": model_path},
        "platform": {"id": result.platform, "name": platform_name},
        "bitwidths": dict(result.bitwidths),
        "options": options,
        "summary": {
            "fps": fps if math.isfinite(fps) else None,
            "total_ms": float(result.total_ms),
            "total_macs": int(result.total_macs),
            "ddr_read_bytes": int(result.ddr_read_bytes),
            "ddr_write_bytes": int(result.ddr_write_bytes),
            "weight_bytes": int(result.weight_bytes),
            "npu_node_count": len(result.npu_nodes),
            "cpu_node_count": len(cpu),
            "cpu_nodes": cpu,
            "host_node_count": len(host),
            "cost_model": dict(result.cost_model),
        },
        "nodes": nodes,
        "quantization": None,
        "null_reasons": null_reasons,
    }


def build_analysis_report(
    result: EvalResult,
    quantization: dict[str, Any] | None,
    *,
    model_path: str | None,
    options: dict[str, Any],
    platform_name: str,
    bitwidths: dict[str, str],
    files: dict[str, str | None] | None = None,
    timing: dict[str, float] | None = None,
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report document of an ``analysis()`` run: evaluate()'s placement/cost data at the
    analysis bit widths plus the ``quantization`` section (``npuflow.report.precision``) and the
    ``warnings`` on the calibration data and the measured precision
    (``npuflow.calibration.degenerate``)."""
    doc = build_evaluation_report(result, model_path=model_path, options=options, platform_name=platform_name)
    doc["producer"] = "analysis"
    doc["bitwidths"] = dict(bitwidths)
    doc["quantization"] = quantization
    doc["files"] = dict(files or {})
    doc["timing_s"] = {k: round(float(v), 3) for k, v in (timing or {}).items()}
    doc["warnings"] = [dict(w) for w in (warnings or [])]
    return doc


def validate_report(doc: dict[str, Any]) -> None:
    """Check a report document against REPORT_SCHEMA's required keys and basic types.

    A dependency-free subset of JSON Schema validation (required keys, types, const/enum);
    the tests also validate with the ``jsonschema`` package.
    """
    _check(doc, REPORT_SCHEMA, "report")


_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None),
          "boolean": bool}


def _check(value: Any, schema: dict[str, Any], where: str) -> None:
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        ok = any(isinstance(value, _TYPES[x]) and not (x in ("integer", "number") and isinstance(value, bool))
                 for x in types)
        if not ok:
            raise NpuflowError(f"{where}: expected {t}, got {type(value).__name__}")
    if "const" in schema and value != schema["const"]:
        raise NpuflowError(f"{where}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise NpuflowError(f"{where}: expected one of {schema['enum']}, got {value!r}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise NpuflowError(f"{where}: missing key '{key}'")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]")


def _fmt_fps(fps: float | None) -> str:
    if fps is None:  # not finite: no NPU work (the text keeps the original's parseable "inf")
        return "inf"
    return f"{fps:.1f}" if fps >= 100 else f"{fps:.4g}"


def summary_text(doc: dict[str, Any], report_path: str | None = None) -> str:
    """The text ``evaluate()`` returns: the original's key lines (``kdp720/ip_eval/fps: 683.1`` ...)
    so that users' log parsers keep working, followed by the node table."""
    p = f"kdp{doc['platform']['id']}"
    bw = doc["bitwidths"]
    s = doc["summary"]
    cm = s.get("cost_model", {})
    lines = [
        f"npuflow_version: {doc['npuflow_version']}",
        f"{p}/input bitwidth: {bw.get('model_in', 'int8')}",
        f"{p}/output bitwidth: {bw.get('model_out', 'int8')}",
        f"{p}/cpu bitwidth: {bw.get('cpu_node', 'int8')}",
        f"{p}/datapath bitwidth: {bw.get('datapath', 'int8')}",
        f"{p}/weight bitwidth: {bw.get('weight', 'int8')}",
        f"{p}/ip_eval/fps: {_fmt_fps(s['fps'])}",
        f"{p}/ip_eval/ITC(ms): {s['total_ms']:.4f} ms",
    ]
    for key, label in (("rdma_gbps", "RDMA"), ("wdma_gbps", "WDMA"), ("getw_gbps", "GETW")):
        if key in cm:
            lines.append(f"{p}/ip_eval/{label} bandwidth GB/s: {float(cm[key]):.6f}")
    lines += [
        f"{p}/ip_eval/RV(MB): {s['ddr_read_bytes'] / 1e6:.3f}",
        f"{p}/ip_eval/WV(MB): {s['ddr_write_bytes'] / 1e6:.3f}",
        f"{p}/ip_eval/MACs(G): {s['total_macs'] / 1e9:.4f}",
        f"{p}/cpu_node: " + (", ".join(f"{c['name']}({c['op_type']})" for c in s["cpu_nodes"]) or "N/A"),
    ]
    host = [c for c in s["cpu_nodes"] if c.get("reason", "").startswith(HOST_REASON)]
    if host:  # float tails an analysis runs in float (docs/fixed-point.md 10.1); also among the cpu_node line
        lines.append(f"{p}/{HOST_REASON}: " + ", ".join(f"{c['name']}({c['op_type']})" for c in host))
    if report_path:
        lines.append(f"gen fx model report: {report_path}")
    lines.append(", node, node origin, type, node backend, time(ms), reason,")
    for i, n in enumerate(doc["nodes"]):
        backend = f"{'npu' if n['placement'] == 'NPU' else 'cpu'}_node_{n['name']}"
        lines.append(f"{i}, {n['name']}, {n['name']}, {n['placement']}, {backend}, {n['time_ms']:.4f}, {n['reason']},")
    return "\n".join(lines) + "\n"


def fmt_snr(v: float | None, nd: int = 1) -> str:
    """SNR for people: ``None`` (no error at all) reads ``exact``."""
    return "exact" if v is None else f"{v:.{nd}f}"


def fmt_fps_ratio(m: dict[str, Any] | None) -> str:
    """A measured suggestion's estimated FPS relative to the analysed model: ``x0.81`` (empty without one)."""
    r = (m or {}).get("fps_ratio")
    return "" if r is None else f"x{r:.2f}"


def fmt_format(d: dict[str, Any] | None) -> str:
    """``int8 r4 s1.323`` (per tensor) or ``int8 r5..9 s0.99..1.98 (32 ch)`` (per channel)."""
    if not d:
        return ""
    if d.get("per_channel"):
        r = f"r{d['radix_min']}" if d["radix_min"] == d["radix_max"] else f"r{d['radix_min']}..{d['radix_max']}"
        return f"int{d['bits']} {r} s{d['scale_min']:.3g}..{d['scale_max']:.3g} ({d['channels']} ch)"
    return f"int{d['bits']} r{d['radix']} s{d['scale']:.4g}"


STEP_CSV_FIELDS = [
    "index", "name", "op_type", "nodes", "placement", "reason", "in_bits", "out_bits", "weight_bits", "out_radix",
    "out_scale", "weight_radix", "weight_scale", "calib_abs_max", "report_abs_max", "chosen_range", "clipped_calib_pct",
    "clipped_report_pct", "read_max", "cum_snr_db", "cum_cosine", "iso_snr_db", "out_quant_snr_db", "weight_snr_db",
    "acc_saturated", "out_saturated", "macs", "time_ms",
]


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.4g}"


def _num(v: float | None, fmt: str = "{:.6g}") -> str:
    return "" if v is None else fmt.format(v)


def step_rows_csv(q: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat CSV row per quantized step (``exact`` where an SNR has no error)."""
    out = []
    for r in q["steps"]:
        o = r["outputs"][0] if r["outputs"] else None
        w = r["weight"] or None
        rng = r["range"]
        out.append({
            "index": r["index"], "name": r["name"], "op_type": r["op_type"], "nodes": " ".join(r["nodes"]),
            "placement": r["placement"], "reason": r["reason"],
            "in_bits": "/".join(str(i["bits"]) for i in r["inputs"]), "out_bits": "/".join(str(i["bits"]) for i in r["outputs"]),
            "weight_bits": w["bits"] if w else "",
            "out_radix": o.get("radix", "") if o else "", "out_scale": o.get("scale", "") if o else "",
            "weight_radix": (f"{w['radix_min']}..{w['radix_max']}" if w.get("per_channel") else w.get("radix", "")) if w else "",
            "weight_scale": (f"{w['scale_min']}..{w['scale_max']}" if w.get("per_channel") else w.get("scale", "")) if w else "",
            "calib_abs_max": _num(rng["calib_abs_max"]), "report_abs_max": _num(rng["report_abs_max"]),
            "chosen_range": _num(rng["chosen"]), "clipped_calib_pct": _pct(rng["clipped_calib"]),
            "clipped_report_pct": _pct(rng["clipped_report"]), "read_max": _num(rng.get("read_max")),
            "cum_snr_db": fmt_snr(r["cumulative"]["snr_db"], 3) if r["outputs"] else "",
            "cum_cosine": _num(r["cumulative"]["cosine"]),
            "iso_snr_db": fmt_snr(r["isolated"]["snr_db"], 3) if r["outputs"] else "",
            "out_quant_snr_db": fmt_snr(r["out_quant_snr_db"], 3) if r["outputs"] else "",
            "weight_snr_db": fmt_snr(w.get("snr_db"), 3) if w else "",
            "acc_saturated": r["saturated"]["acc"], "out_saturated": r["saturated"]["out"],
            "macs": r["macs"], "time_ms": f"{r['time_ms']:.6f}",
        })
    return out


def node_table_csv(doc: dict[str, Any]) -> str:
    """The node table: one row per quantized step (after fusion) for an analysis report, one row
    per ONNX node (placement and cost) for an evaluate() report. Text cells that a spreadsheet
    would run as a formula get a leading ``'`` (``npuflow._io.csv_cell``)."""
    buf = io.StringIO()
    if doc.get("quantization"):
        w = csv.DictWriter(buf, fieldnames=STEP_CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in step_rows_csv(doc["quantization"]):
            w.writerow(csv_row(row))
        return buf.getvalue()
    fields = ["index", *_NODE_FIELDS]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for i, n in enumerate(doc["nodes"]):
        w.writerow(csv_row({"index": i, **n}))
    return buf.getvalue()


_env = Environment(loader=PackageLoader("npuflow.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)


def _bars(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-node time bars (top 40 nodes by time)."""
    nodes = sorted(doc["nodes"], key=lambda n: -n["time_ms"])[:40]
    return [{"name": n["name"], "op": n["op_type"], "ms": n["time_ms"], "bound": n["bound"]} for n in nodes]


def render_html(doc: dict[str, Any]) -> str:
    """The self-contained HTML page (no scripts, no external files; charts are data: SVG images)."""
    from npuflow.report import charts

    bars = _bars(doc)
    q = doc.get("quantization")
    pics: dict[str, Any] = {"time": charts.data_uri(charts.time_bars(bars)) if bars else None}
    worst: set[int] = set()
    if q:
        pics["snr"] = charts.data_uri(charts.snr_along_graph(q["steps"], q["ranking"][:3]))
        pics["hists"] = [(h, charts.data_uri(charts.histogram(h))) for h in q["histograms"]]
        worst = {r["index"] for r in q["ranking"][:3]}
        mp = q.get("mixed_precision") or {}
        if mp.get("front"):
            pics["front"] = charts.data_uri(charts.front(mp["front"], mp.get("references", []), mp.get("fps_bound")))
    tpl = _env.get_template("model_fx_report.html.j2")
    return tpl.render(doc=doc, s=doc["summary"], q=q, bars=bars, pics=pics, worst=worst, fmt_fps=_fmt_fps,
                      isfinite=math.isfinite, fmt_snr=fmt_snr, fmt_format=fmt_format, pct=_pct, num=_num,
                      fps_ratio=fmt_fps_ratio, files=doc.get("files") or {}, timing=doc.get("timing_s") or {})


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def report_json(doc: dict[str, Any]) -> str:
    """The JSON text of a report: standard JSON (``allow_nan=False``); every figure that is not
    finite is written as null, with its reason in ``null_reasons`` (its path -> why)."""
    clean, found = finite_or_null(doc)
    reasons = dict(clean.get("null_reasons") or {})
    for path, value in found.items():
        reasons.setdefault(path, f"not finite ({value})")
    clean["null_reasons"] = reasons
    return json_dumps(clean, what="model_fx_report.json", indent=1, sort_keys=True, default=_json_default) + "\n"


def write_report(doc: dict[str, Any], output_dir: str | Path | None) -> dict[str, Path]:
    """Validate and write the JSON, HTML and CSV files atomically; returns their paths."""
    validate_report(doc)
    out = ensure_output_dir(output_dir)
    paths = {
        "json": out / "model_fx_report.json",
        "html": out / "model_fx_report.html",
        "csv": out / "model_fx_report.csv",
    }
    html = render_html(doc)
    atomic_write_text(paths["json"], report_json(doc))
    atomic_write_text(paths["csv"], node_table_csv(doc))
    atomic_write_text(paths["html"], html)
    return paths
