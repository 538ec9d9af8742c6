"""Write and read npuflow's open BIE file (docs/bie-format.md).

The file is a valid ONNX model (opens in Netron):

* ``graph``: the integer program. One node per step, domain ``ai.npuflow``, op type = the kernel
  (``Conv``, ``Swish``, ...) or, for float (CPU) steps, the original op. Node inputs are the
  runtime tensors followed by the step's integer parameter tensors; node attributes show the
  fused ONNX nodes, the output formats, the placement and the reason for a CPU step.
* ``graph.initializer``: every integer parameter array (weights int8/int16, int4 packed two per
  byte into UINT8, bias/multipliers int32/int64, tables), float weights of CPU steps, and the
  optimized float model itself (``npuflow.float_model``, its serialized bytes as UINT8).
* ``metadata_props``: ``npuflow.bie.format_version``, ``npuflow.numerics_version``,
  ``npuflow.platform``, ``npuflow.model_name``, ``npuflow.options`` (JSON), ``npuflow.plan``
  (JSON: steps, params with references to initializers, every tensor's format),
  ``npuflow.preprocess`` (JSON or empty) and ``npuflow.checksum`` (sha256 of the deterministic
  serialization of the file without this entry).
No pickle anywhere; nothing in the file depends on paths, time or thread count.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from npuflow._io import json_dumps
from npuflow.analysis.program import Program, required_numerics_version
from npuflow.errors import ModelLoadError
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels.base import params_to_dict

BIE_FORMAT_VERSION = "1.0"
BIE_DOMAIN = "ai.npuflow"
KEY = "npuflow."
INLINE_MAX = 16  # arrays up to this many elements stay inline in the JSON


def _pack_int4(a: np.ndarray) -> np.ndarray:
    flat = (a.ravel().astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


class _Arrays:
    """Moves large arrays of a JSON-ready params dict into named initializers."""

    def __init__(self) -> None:
        self.inits: list[onnx.TensorProto] = []

    def externalize(self, v: Any, prefix: str) -> Any:
        if isinstance(v, dict):
            if "__ndarray__" in v and len(v["data"]) <= INLINE_MAX:  # inline, a JSON list
                return {**v, "data": np.asarray(v["data"], dtype=np.dtype(v["__ndarray__"])).tolist()}
            if "__ndarray__" in v:
                arr = np.asarray(v["data"], dtype=np.dtype(v["__ndarray__"])).reshape(v["shape"])
                name = f"{prefix}"
                if arr.dtype == np.int8 and arr.size and arr.min() >= -8 and arr.max() <= 7:
                    self.inits.append(numpy_helper.from_array(_pack_int4(arr), name))
                    return {"__init__": name, "int4": True, "shape": list(arr.shape), "dtype": arr.dtype.str}
                self.inits.append(numpy_helper.from_array(arr, name))
                return {"__init__": name, "dtype": arr.dtype.str}
            return {k: self.externalize(e, f"{prefix}.{k}") for k, e in v.items()}
        if isinstance(v, list):
            return [self.externalize(e, f"{prefix}.{i}") for i, e in enumerate(v)]
        return v


def _fmt_str(f: QFormat | None) -> str:
    if f is None:
        return "raw"
    if f.per_channel:
        return f"int{f.bits} per-channel(axis {f.axis}, {f.channels} ch)"
    return f"int{f.bits} radix {f.radix} scale {f.scale:.6g}"


def _serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def _without_checksum(model: onnx.ModelProto) -> None:
    items = [(m.key, m.value) for m in model.metadata_props if m.key != KEY + "checksum"]
    del model.metadata_props[:]
    for k, v in items:
        e = model.metadata_props.add()
        e.key, e.value = k, v


def _digest(model: onnx.ModelProto) -> str:
    """sha256 of the deterministic serialization of ``model`` without its checksum entry."""
    check = onnx.ModelProto()
    check.CopyFrom(model)
    _without_checksum(check)
    return hashlib.sha256(_serialize(check)).hexdigest()


def _checksum_ok(data: bytes, model: onnx.ModelProto, stored: str) -> bool:
    """Whether ``stored`` is the checksum of the file ``data`` (parsed: ``model``). A file written by
    :func:`seal` is the deterministic serialization without the checksum entry followed by that entry
    (the last field it writes), so the bytes before it are hashed as they are; any other layout is
    serialized again (the definition)."""
    tail = onnx.ModelProto()
    e = tail.metadata_props.add()
    e.key, e.value = KEY + "checksum", stored
    t = tail.SerializeToString()
    if data.endswith(t) and hashlib.sha256(memoryview(data)[: len(data) - len(t)]).hexdigest() == stored:
        return True
    return _digest(model) == stored


def seal(model: onnx.ModelProto) -> bytes:
    """The BIE bytes of ``model``: its ``npuflow.checksum`` entry (re)computed, last. The one
    writer of the integrity field (``build_bie`` ends with it; tests write edited files with it)."""
    _without_checksum(model)
    digest = hashlib.sha256(_serialize(model)).hexdigest()
    e = model.metadata_props.add()
    e.key, e.value = KEY + "checksum", digest
    return _serialize(model)


def build_bie(program: Program, float_model: onnx.ModelProto, *, platform: int, model_name: str,
              options: dict[str, Any], preprocess: dict[str, Any] | None = None) -> bytes:
    """Serialize a program to BIE bytes (deterministic)."""
    arrays = _Arrays()
    shared_float_weights: set[str] = set()
    nodes = []
    plan_steps = []
    for k, (st, p) in enumerate(zip(program.steps, program.params)):
        prefix = f"s{k}.{st.name}"
        entry: dict[str, Any] = {"name": st.name, "op_type": st.op_type, "nodes": list(st.nodes),
                                 "inputs": [x or "" for x in st.inputs], "outputs": list(st.outputs),
                                 "float_step": st.float_step, "reason": st.reason}
        before = len(arrays.inits)
        if st.float_step:
            entry["onnx_node"] = base64.b64encode(st.onnx_node.SerializeToString(deterministic=True)).decode()
            entry["weights"] = {}
            for sname, w in sorted(st.weights.items()):
                iname = st.weight_names.get(sname, f"{prefix}.{sname}")
                if iname not in shared_float_weights:
                    shared_float_weights.add(iname)
                    arrays.inits.append(numpy_helper.from_array(np.asarray(w), iname))
                entry["weights"][sname] = iname
            entry["params"] = None
        else:
            entry["params"] = arrays.externalize(params_to_dict(p, raw=True), prefix)
        param_inputs = [t.name for t in arrays.inits[before:]] if not st.float_step else list(entry["weights"].values())
        plan_steps.append(entry)
        attrs = {
            "fused_nodes": list(st.nodes),
            "placement": "CPU" if st.float_step else "NPU",
            "out_formats": [_fmt_str(program.formats.get(y)) for y in st.outputs],
        }
        if st.reason:
            attrs["reason"] = st.reason
        nodes.append(onnx.helper.make_node(st.op_type, st.runtime_inputs + param_inputs, list(st.outputs),
                                           name=st.name, domain=BIE_DOMAIN, **attrs))
    fm = numpy_helper.from_array(np.frombuffer(_serialize(float_model), dtype=np.uint8), "npuflow.float_model")
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(float_model.graph.input) + list(float_model.graph.value_info) + list(float_model.graph.output)}

    def _vi(name: str) -> onnx.ValueInfoProto:
        f = program.formats.get(name)
        et = onnx.TensorProto.FLOAT if f is None else (onnx.TensorProto.INT8 if f.bits <= 8 else
                                                        onnx.TensorProto.INT16 if f.bits <= 16 else onnx.TensorProto.INT32)
        return onnx.helper.make_tensor_value_info(name, et, shapes.get(name))

    vi_in = [_vi(n) for n in program.input_names]
    vi_out = [_vi(n) for n in program.output_names]
    graph = onnx.helper.make_graph(nodes, f"{model_name} (npuflow integer program)", vi_in, vi_out,
                                   initializer=arrays.inits + [fm])
    model = onnx.helper.make_model(graph, producer_name="npuflow", domain=BIE_DOMAIN,
                                   opset_imports=[onnx.helper.make_opsetid(BIE_DOMAIN, 1),
                                                  onnx.helper.make_opsetid("", program.opset)])
    model.ir_version = max(7, float_model.ir_version)
    plan = {
        "steps": plan_steps,
        "formats": {t: f.to_dict() for t, f in sorted(program.formats.items())},
        "input_names": program.input_names,
        "output_names": program.output_names,
        "float_dtypes": {k: v for k, v in sorted(program.float_dtypes.items())},
        "opset": program.opset,
    }
    meta = {
        "bie.format_version": BIE_FORMAT_VERSION,
        "numerics_version": required_numerics_version(program),  # 1.1 unless a float tail needs 1.2
        "platform": str(platform),
        "model_name": model_name,
        "options": json_dumps(options, what="the analysis options", sort_keys=True),
        "plan": json.dumps(plan, sort_keys=True, separators=(",", ":"), allow_nan=False),  # non-finite: a bug
        "preprocess": json_dumps(preprocess, what="preprocess", sort_keys=True) if preprocess else "",
    }
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = KEY + k, v
    return seal(model)


class BieContents:
    """A parsed BIE, checked by the validator (:mod:`npuflow.bie.validate`)."""

    def __init__(self, model: onnx.ModelProto, meta: dict[str, str], path: str) -> None:
        from npuflow.bie.validate import read_contents

        self.model = model
        self.meta = meta
        self.path = path
        c = read_contents(model, meta, path)
        self.platform: int = c["platform"]
        self.model_name: str = c["model_name"]
        self.options: dict[str, Any] = c["options"]
        self.preprocess: dict[str, Any] | None = c["preprocess"]
        self.numerics_version: str = c["numerics_version"]
        self.float_model: onnx.ModelProto = c["float_model"]
        self.program: Program = c["program"]


def read_bie(path: str | os.PathLike) -> BieContents:
    """Parse and verify a BIE; every failure is a ModelLoadError that says what the file is."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"BIE file not found: {p}")
    if p.is_dir() or p.stat().st_size == 0:
        raise ModelLoadError(f"{p} is not a BIE file (empty or a folder)")
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError):
        raise ModelLoadError(
            f"{p} is not an npuflow BIE: it is not readable as ONNX (truncated, corrupted, or an encrypted Kneron BIE). "
            "npuflow cannot read Kneron's encrypted .bie files; quantize the float ONNX model with npuflow's analysis()."
        ) from None
    meta = {m.key: m.value for m in model.metadata_props}
    if KEY + "bie.format_version" not in meta:
        if not model.graph.node:
            raise ModelLoadError(
                f"{p} is not an npuflow BIE (no graph inside: an encrypted Kneron BIE, a truncated file or another format). "
                "Quantize the float ONNX model with npuflow's analysis() to get an open BIE."
            )
        raise ModelLoadError(f"{p} is a plain ONNX model, not an npuflow BIE (no '{KEY}bie.format_version' metadata): "
                             "pass it as onnx_path/onnx_file")
    from npuflow.bie.validate import check_version

    check_version(str(p), "format", meta[KEY + "bie.format_version"], BIE_FORMAT_VERSION)
    stored = meta.get(KEY + "checksum")
    if stored is None or not _checksum_ok(data, model, stored):
        raise ModelLoadError(f"{p}: BIE checksum mismatch: the file is corrupted or was edited. Re-run analysis().")
    # the checksum catches accidental damage only (anyone can recompute it): the validator checks
    # everything the file says before any kernel sees it (docs/bie-format.md)
    return BieContents(model, meta, str(p))
