"""Load an ONNX model from a path or a ModelProto with clear, actionable errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import onnx
from google.protobuf.message import DecodeError

from npuflow.errors import ModelLoadError
from npuflow.ir.validate import validate_graph

ModelSource = Union[str, os.PathLike, onnx.ModelProto]

# First bytes of files that are certainly not ONNX protobufs; used only for friendlier messages.
_FOREIGN_MAGIC = {
    b"PK\x03\x04": "a zip archive (PyTorch .pt/.pth, Keras .keras, or a NEF/zip container)",
    b"\x89HDF": "an HDF5 file (Keras .h5)",
    b"\x80\x02": "a Python pickle",
    b"\x80\x03": "a Python pickle",
    b"\x80\x04": "a Python pickle",
    b"\x1f\x8b": "a gzip archive (gunzip it first)",
    b"TFL3": "a TensorFlow Lite flatbuffer",
}

MAX_SUPPORTED_OPSET = onnx.defs.onnx_opset_version()

#: the metadata key every npuflow BIE carries (docs/bie-format.md): how a file is known to be a BIE,
#: whatever its extension
BIE_MARKER = "npuflow.bie.format_version"


def is_bie_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an npuflow BIE, by content (the :data:`BIE_MARKER` key in the file), not by
    extension. False for a missing or unreadable file (the loader then says what is wrong)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(BIE_MARKER.encode()) >= 0
    except (OSError, ValueError):  # missing, a folder, empty (mmap of 0 bytes)
        return False


def _sniff(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, what in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            return what
    if len(head) >= 4 and head[4:8] == b"ftyp":
        return "a media file"
    return None


def load_model(source: ModelSource, *, what: str = "model") -> onnx.ModelProto:
    """Return a checked ModelProto from a path or an in-memory ModelProto.

    Raises ModelLoadError naming the file and the fix for: missing file, directory, empty or
    truncated file, non-ONNX content, a Kneron (encrypted) BIE, an opset newer than this onnx
    package understands, external data outside the model's folder, and every invalid graph that
    :func:`npuflow.ir.validate.validate_graph` refuses (no opset_import, names that are not UTF-8,
    a tensor defined twice or nowhere, a cycle).
    """
    if isinstance(source, onnx.ModelProto):
        model = source
        label = "<in-memory ModelProto>"
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise ModelLoadError(
                f"{what} must be a file path or an onnx.ModelProto, got {type(source).__name__}"
            )
        path = Path(source)
        label = str(path)
        if not path.exists():
            raise ModelLoadError(f"{what} file not found: {label} (check the path; relative paths are resolved from {os.getcwd()})")
        if path.is_dir():
            raise ModelLoadError(f"{what} path is a directory, not an ONNX file: {label}")
        if path.stat().st_size == 0:
            raise ModelLoadError(f"{what} file is empty: {label}")
        foreign = _sniff(path)
        if foreign:
            raise ModelLoadError(f"{label} is not an ONNX model: it looks like {foreign}. Export the model to ONNX first.")
        try:
            model = onnx.load_model(str(path), load_external_data=True)
        except onnx.checker.ValidationError as exc:
            if "outside" not in str(exc):
                raise ModelLoadError(f"{label} has external data that cannot be read: {str(exc).splitlines()[0]}") from None
            raise ModelLoadError(
                f"{label} stores a weight in an external-data file outside the model's folder "
                f"{path.resolve().parent}; npuflow read nothing from it. Put the external-data files next to the "
                "model (or in a sub-folder of it) and re-export with relative locations"
            ) from None
        except (DecodeError, RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(
                f"{label} is not a readable ONNX model (truncated or corrupted file, or another format): {exc}. "
                "Re-export or re-copy the file."
            ) from exc
    if any(p.key == BIE_MARKER for p in model.metadata_props):
        raise ModelLoadError(
            f"{label} is an npuflow BIE (a quantized model), not a float ONNX model: pass it as a BIE "
            "(ModelConfig(bie_path=...), kneron_inference(bie_file=...)); analysis() and the optimizer need the float "
            "ONNX model it came from. npuflow.load() and the CLI recognize a BIE by its content."
        )
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{label} holds no ONNX graph (no nodes, no outputs): it is not an ONNX model or it is truncated")
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > MAX_SUPPORTED_OPSET:
            raise ModelLoadError(
                f"{label} uses ONNX opset {imp.version}, newer than the {MAX_SUPPORTED_OPSET} this installation "
                f"understands (onnx {onnx.__version__}). Upgrade onnx/onnxruntime or export with opset <= {MAX_SUPPORTED_OPSET}."
            )
    validate_graph(model, label=label)
    return model


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {init.name for init in model.graph.initializer}


def model_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real activations (initializers also listed as inputs are weights)."""
    inits = initializer_names(model)
    return [i for i in model.graph.input if i.name not in inits]


def model_outputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return list(model.graph.output)


def dims_of(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    """Dims of a tensor value_info: int for fixed, the dim_param string for named, None for unknown."""
    out: list[int | str | None] = []
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return out
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out
