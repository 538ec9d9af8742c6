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

from npuflow.analysis.graph import Step
from npuflow.analysis.program import Program
from npuflow._io import json_dumps
from npuflow.errors import ModelLoadError
from npuflow.sim.fixed_point import NUMERICS_VERSION, QFormat
from npuflow.sim.kernels.base import params_from_dict, params_to_dict

BIE_FORMAT_VERSION = "1.0"
BIE_DOMAIN = "ai.npuflow"
KEY = "npuflow."
INLINE_MAX = 16  # arrays up to this many elements stay inline in the JSON


def _pack_int4(a: np.ndarray) -> np.ndarray:
    flat = (a.ravel().astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _unpack_int4(packed: np.ndarray, shape: list[int]) -> np.ndarray:
    lo = (packed & 0xF).astype(np.int16)
    hi = (packed >> 4).astype(np.int16)
    flat = np.empty(packed.size * 2, dtype=np.int16)
    flat[0::2], flat[1::2] = lo, hi
    flat = np.where(flat >= 8, flat - 16, flat)
    n = int(np.prod(shape)) if shape else 1
    return flat[:n].astype(np.int8).reshape(shape)


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


def _internalize(v: Any, inits: dict[str, onnx.TensorProto]) -> Any:
    if isinstance(v, dict):
        if "__init__" in v:
            t = inits.get(v["__init__"])
            if t is None:
                raise ModelLoadError(f"BIE is corrupted: parameter tensor {v['__init__']} is missing")
            arr = numpy_helper.to_array(t)
            if v.get("int4"):
                arr = _unpack_int4(arr, v["shape"])
            arr = arr.astype(np.dtype(v["dtype"]))
            # a flat array, not a list: params_from_dict takes either
            return {"__ndarray__": arr.dtype.str, "shape": list(arr.shape), "data": arr.ravel()}
        return {k: _internalize(e, inits) for k, e in v.items()}
    if isinstance(v, list):
        return [_internalize(e, inits) for e in v]
    return v


def _fmt_str(f: QFormat | None) -> str:
    if f is None:
        return "raw"
    if f.per_channel:
        return f"int{f.bits} per-channel(axis {f.axis}, {f.channels} ch)"
    return f"int{f.bits} radix {f.radix} scale {f.scale:.6g}"


def _serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


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
        "numerics_version": NUMERICS_VERSION,
        "platform": str(platform),
        "model_name": model_name,
        "options": json_dumps(options, what="the analysis options", sort_keys=True),
        "plan": json.dumps(plan, sort_keys=True, separators=(",", ":"), allow_nan=False),  # non-finite: a bug
        "preprocess": json_dumps(preprocess, what="preprocess", sort_keys=True) if preprocess else "",
    }
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = KEY + k, v
    digest = hashlib.sha256(_serialize(model)).hexdigest()
    e = model.metadata_props.add()
    e.key, e.value = KEY + "checksum", digest
    return _serialize(model)


class BieContents:
    """A parsed, verified BIE."""

    def __init__(self, model: onnx.ModelProto, meta: dict[str, str], path: str) -> None:
        self.model = model
        self.meta = meta
        self.path = path
        self.platform = int(meta[KEY + "platform"])
        self.model_name = meta.get(KEY + "model_name", "model")
        self.options = json.loads(meta.get(KEY + "options") or "{}")
        self.preprocess = json.loads(meta[KEY + "preprocess"]) if meta.get(KEY + "preprocess") else None
        self.numerics_version = meta.get(KEY + "numerics_version")
        inits = {t.name: t for t in model.graph.initializer}
        fm = inits.get("npuflow.float_model")
        if fm is None:
            raise ModelLoadError(f"{path}: BIE is corrupted (no npuflow.float_model)")
        self.float_model = onnx.load_model_from_string(numpy_helper.to_array(fm).tobytes())
        plan = json.loads(meta[KEY + "plan"])
        steps, params = [], []
        for e in plan["steps"]:
            inputs = [x or None for x in e["inputs"]]
            if e["float_step"]:
                node = onnx.NodeProto()
                node.ParseFromString(base64.b64decode(e["onnx_node"]))
                weights = {s: numpy_helper.to_array(inits[n]) for s, n in e["weights"].items()}
                steps.append(Step(e["name"], e["op_type"], tuple(e["nodes"]), inputs, e["outputs"], {}, weights,
                                  dict(e["weights"]), True, e["reason"], node))
                params.append(None)
            else:
                steps.append(Step(e["name"], e["op_type"], tuple(e["nodes"]), inputs, e["outputs"], {}, {}, {},
                                  False, e["reason"], None))
                params.append(params_from_dict(_internalize(e["params"], inits)))
        formats = {t: QFormat.from_dict(d) for t, d in plan["formats"].items()}
        self.program = Program(steps, params, formats, plan["input_names"], plan["output_names"],
                               plan.get("float_dtypes", {}), opset=int(plan.get("opset", 13)))


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
    version = meta[KEY + "bie.format_version"]
    major = version.split(".")[0]
    if major != BIE_FORMAT_VERSION.split(".")[0] or version > BIE_FORMAT_VERSION:
        raise ModelLoadError(f"{p} is an npuflow BIE of format version {version}, newer than the {BIE_FORMAT_VERSION} "
                             "this npuflow reads: upgrade npuflow")
    nv = meta.get(KEY + "numerics_version", "")
    if nv.split(".")[0] != NUMERICS_VERSION.split(".")[0] or nv > NUMERICS_VERSION:
        raise ModelLoadError(f"{p} uses numerics version {nv}; this npuflow implements {NUMERICS_VERSION}: upgrade npuflow")
    stored = meta.get(KEY + "checksum")
    check = onnx.ModelProto()
    check.CopyFrom(model)
    kept = [m for m in check.metadata_props if m.key != KEY + "checksum"]
    del check.metadata_props[:]
    check.metadata_props.extend(kept)
    if stored is None or hashlib.sha256(_serialize(check)).hexdigest() != stored:
        raise ModelLoadError(f"{p}: BIE checksum mismatch: the file is corrupted or was edited. Re-run analysis().")
    try:
        return BieContents(model, meta, str(p))
    except ModelLoadError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{p}: BIE is corrupted ({type(exc).__name__}: {exc})") from exc
