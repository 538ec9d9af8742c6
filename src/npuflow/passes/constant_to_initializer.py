"""Pass ``constant_to_initializer``: turn ``Constant`` nodes of the main graph into initializers.

paddle2onnx stores every weight as a ``Constant`` node; a quantizer, the BN folder and the
constant folder all look for weights among the initializers, so they are moved there.

Rules:
1. A ``Constant`` node whose single attribute is ``value`` (a tensor), ``value_float``,
   ``value_floats``, ``value_int``, ``value_ints``, ``value_string`` or ``value_strings`` is
   removed and an initializer with the node's output name is added, holding exactly that value:
   ``value`` is copied byte for byte; ``value_float`` becomes a float32 scalar (shape ``[]``),
   ``value_floats`` a 1-D float32 tensor, ``value_int`` an int64 scalar, ``value_ints`` a 1-D
   int64 tensor, ``value_string(s)`` a string scalar / 1-D tensor.
2. ``sparse_value`` Constants are left as nodes (a dense copy could be huge).
3. Constants inside subgraphs (If/Loop/Scan bodies) are left alone.
4. New initializers are appended in node order; when one was added and ``ir_version < 4``,
   ``ir_version`` is raised to 4 (IR 3 requires initializers to be graph inputs).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.passes._graph import drop_value_info, ensure_ir_version, remove_nodes


def _tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if len(node.attribute) != 1 or len(node.output) != 1:
        return None
    a = node.attribute[0]
    name = node.output[0]
    if a.name == "value":
        t = onnx.TensorProto()
        t.CopyFrom(a.t)
        t.name = name
        return t
    if a.name == "value_float":
        return numpy_helper.from_array(np.array(a.f, dtype=np.float32), name)
    if a.name == "value_floats":
        return numpy_helper.from_array(np.array(list(a.floats), dtype=np.float32), name)
    if a.name == "value_int":
        return numpy_helper.from_array(np.array(a.i, dtype=np.int64), name)
    if a.name == "value_ints":
        return numpy_helper.from_array(np.array(list(a.ints), dtype=np.int64), name)
    if a.name == "value_string":
        return helper.make_tensor(name, onnx.TensorProto.STRING, [], [a.s])
    if a.name == "value_strings":
        return helper.make_tensor(name, onnx.TensorProto.STRING, [len(a.strings)], list(a.strings))
    return None  # sparse_value or an unknown attribute


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    done: list[onnx.NodeProto] = []
    new: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or not node.output[0]:
            continue
        t = _tensor(node)
        if t is None:
            continue
        new.append(t)
        done.append(node)
    if not done:
        return model, False
    remove_nodes(graph, done)
    graph.initializer.extend(new)
    drop_value_info(graph, {t.name for t in new})
    ensure_ir_version(model)
    return model, True
