"""Report document: build, validate, render to text/CSV/HTML, write atomically."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from npuflow._io import atomic_write_text, ensure_output_dir
from npuflow.errors import NpuflowError
from npuflow.evaluate.result import EvalResult

REPORT_SCHEMA_VERSION = "1.0"
REPORT_FILES = ("model_fx_report.json", "model_fx_report.html", "model_fx_report.csv")

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
                "fps": {"type": "number"}, "total_ms": {"type": "number"},
                "total_macs": {"type": "integer"}, "ddr_read_bytes": {"type": "integer"},
                "ddr_write_bytes": {"type": "integer"}, "weight_bytes": {"type": "integer"},
                "npu_node_count": {"type": "integer"}, "cpu_node_count": {"type": "integer"},
                "cpu_nodes": {"type": "array", "items": {"type": "object"}},
                "cost_model": {"type": "object"},
            },
        },
        "nodes": {
            "type": "array",
            "items": {"type": "object", "required": list(_NODE_FIELDS),
                      "properties": {k: {"type": v} for k, v in _NODE_FIELDS.items()}},
        },
        "quantization": {"type": ["object", "null"]},
    },
}


def _version() -> str:
    from npuflow import __version__

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
            "fps": float(result.fps),
            "total_ms": float(result.total_ms),
            "total_macs": int(result.total_macs),
            "ddr_read_bytes": int(result.ddr_read_bytes),
            "ddr_write_bytes": int(result.ddr_write_bytes),
            "weight_bytes": int(result.weight_bytes),
            "npu_node_count": len(result.npu_nodes),
            "cpu_node_count": len(cpu),
            "cpu_nodes": cpu,
            "cost_model": dict(result.cost_model),
        },
        "nodes": nodes,
        "quantization": None,
    }


def validate_report(doc: dict[str, Any]) -> None:
    """Check a report document against REPORT_SCHEMA's required keys and basic types.

    A dependency-free subset of JSON Schema validation (required keys, types, const/enum);
    the tests also validate with the ``jsonschema`` package.
    """
    _check(doc, REPORT_SCHEMA, "report")


_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None)}


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


def _fmt_fps(fps: float) -> str:
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
    if report_path:
        lines.append(f"gen fx model report: {report_path}")
    lines.append(", node, node origin, type, node backend, time(ms), reason,")
    for i, n in enumerate(doc["nodes"]):
        backend = f"{'npu' if n['placement'] == 'NPU' else 'cpu'}_node_{n['name']}"
        lines.append(f"{i}, {n['name']}, {n['name']}, {n['placement']}, {backend}, {n['time_ms']:.4f}, {n['reason']},")
    return "\n".join(lines) + "\n"


def node_table_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    fields = ["index", *_NODE_FIELDS]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for i, n in enumerate(doc["nodes"]):
        w.writerow({"index": i, **n})
    return buf.getvalue()


_env = Environment(loader=PackageLoader("npuflow.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)


def _bars(doc: dict[str, Any], width: int = 640) -> list[dict[str, Any]]:
    """Per-node time bars for the inline SVG chart (top 40 nodes by time)."""
    nodes = sorted(doc["nodes"], key=lambda n: -n["time_ms"])[:40]
    peak = max((n["time_ms"] for n in nodes), default=0.0) or 1.0
    return [{"name": n["name"], "op": n["op_type"], "ms": n["time_ms"], "bound": n["bound"],
             "w": max(1.0, width * n["time_ms"] / peak)} for n in nodes]


def render_html(doc: dict[str, Any]) -> str:
    tpl = _env.get_template("model_fx_report.html.j2")
    return tpl.render(doc=doc, s=doc["summary"], bars=_bars(doc), fmt_fps=_fmt_fps, isfinite=math.isfinite)


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
    atomic_write_text(paths["json"], json.dumps(doc, indent=1, sort_keys=True) + "\n")
    atomic_write_text(paths["csv"], node_table_csv(doc))
    atomic_write_text(paths["html"], html)
    return paths
