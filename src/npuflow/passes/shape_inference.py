"""Pass ``shape_inference``: recompute the shape of every intermediate tensor.

Rules:
1. Every ``graph.value_info`` entry is dropped and every dim of every graph output is cleared
   (rank and element type kept) first: the previous entries may be stale after other passes
   (renamed tensors, fixed inputs), and ONNX shape inference in non-strict mode keeps what is
   already there instead of replacing it, silently, even when it contradicts the inferred shape.
2. ``onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)`` then fills
   ``value_info`` and the outputs; ``data_prop`` propagates the values of small shape tensors
   (Shape -> Gather -> Concat ...) so that Reshape/Resize/Tile outputs get static shapes.
3. An output dim that inference cannot determine gets its previous value back (fixed value or
   symbolic name). A previous fixed value that contradicts the inferred one is logged as a
   warning and replaced by the inferred value.
4. Nodes, initializers and inputs are never changed. ``modified`` is True when the value_info
   or output types differ from before.
5. Models over 2 GB (protobuf limit of the in-memory API) are not supported.
"""
from __future__ import annotations

import logging

import onnx

from npuflow.passes._graph import is_static_dim

log = logging.getLogger(__name__)


def _type_signature(graph: onnx.GraphProto) -> bytes:
    parts = [v.SerializeToString() for v in graph.value_info]
    parts += [o.SerializeToString() for o in graph.output]
    return b"\0".join(parts)


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    before = _type_signature(model.graph)
    previous: dict[str, list[onnx.TensorShapeProto.Dimension]] = {}
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
            dims = out.type.tensor_type.shape.dim
            previous[out.name] = [onnx.TensorShapeProto.Dimension() for _ in dims]
            for saved, d in zip(previous[out.name], dims):
                saved.CopyFrom(d)
                d.Clear()
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    for out in inferred.graph.output:
        saved_dims = previous.get(out.name)
        if saved_dims is None or not out.type.tensor_type.HasField("shape"):
            continue
        dims = out.type.tensor_type.shape.dim
        if len(dims) != len(saved_dims):
            continue
        for k, (d, saved) in enumerate(zip(dims, saved_dims)):
            if not (d.HasField("dim_value") or d.HasField("dim_param")):
                d.CopyFrom(saved)
            elif is_static_dim(saved) and d.HasField("dim_value") and d.dim_value != saved.dim_value:
                log.warning("graph output %r dim %d was declared %d but is inferred as %d; using %d",
                            out.name, k, saved.dim_value, d.dim_value, d.dim_value)
    return inferred, _type_signature(inferred.graph) != before
