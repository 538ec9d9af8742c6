"""Pass ``constant_folding``: evaluate nodes whose result does not depend on any real input.

Constants are the initializers that are not graph inputs (an initializer listed in graph.input
may be overridden by the caller, so its value is not fixed).

Rules:
1. Nodes are visited once, in graph (topological) order; a folded node's outputs count as
   constants for the nodes after it, so a whole chain folds in one run.
2. A node is folded when all its non-empty inputs are constants, it has at least one input,
   it is in the default ONNX domain, it has no subgraph attribute (If/Loop/Scan), and it is not
   random (RandomNormal[Like], RandomUniform[Like], Multinomial, Bernoulli).
3. ``Shape`` (with its ``start``/``end`` attributes) and ``Size`` are folded when the shape of
   their input is statically known (from graph inputs, value_info or initializers), whatever
   computes the input: only the *shape* is used, never a real input's values.
4. Evaluation runs the node alone in onnxruntime (CPU, graph optimizations off), i.e. with the
   same kernels as the original model; if onnxruntime cannot run it, ``onnx.reference`` is
   tried; if both fail the node is kept.
5. Size guard: a node whose outputs would hold more than ``max_bytes`` (default 64 MiB) is not
   folded; the inferred output shapes are checked before evaluating when known, the results
   after.
6. Each output becomes an initializer with the output's name; the node is removed; stale
   value_info of those names is dropped. Initializers that became unused are left for
   ``remove_unused``. When something was folded and ``ir_version < 4`` it is raised to 4.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.passes._graph import (
    constant_initializers,
    drop_value_info,
    ensure_ir_version,
    is_default_domain,
    known_static_shapes,
    remove_nodes,
    static_shape,
    subgraphs,
)

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024 * 1024
_RANDOM = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


def _shape_of_value(node: onnx.NodeProto, shape: list[int]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(shape)
    start = attrs.get("start", 0)
    end = attrs.get("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return np.array(shape[start:end], dtype=np.int64)


def _tiny_model(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto], model: onnx.ModelProto) -> onnx.ModelProto:
    inputs = []
    seen: set[str] = set()
    for name in node.input:
        if name and name not in seen:
            seen.add(name)
            t = consts[name]
            inputs.append(helper.make_tensor_value_info(name, t.data_type, list(t.dims)))
    outputs = []
    for name in node.output:
        if name:
            vi = onnx.ValueInfoProto()
            vi.name = name
            outputs.append(vi)
    g = helper.make_graph([node], "fold", inputs, outputs)
    tiny = helper.make_model(g, opset_imports=list(model.opset_import))
    tiny.ir_version = max(model.ir_version, 3)
    return tiny


def _evaluate(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto], model: onnx.ModelProto) -> list[np.ndarray] | None:
    feeds = {}
    for name in node.input:
        if name and name not in feeds:
            feeds[name] = numpy_helper.to_array(consts[name])
    tiny = _tiny_model(node, consts, model)
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(tiny.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return list(sess.run(None, feeds))
    except Exception as exc:  # noqa: BLE001 - any failure means "try the other evaluator"
        log.debug("onnxruntime cannot fold %s (%s): %s", node.name, node.op_type, exc)
    try:
        from onnx.reference import ReferenceEvaluator

        return list(ReferenceEvaluator(tiny).run(None, feeds))
    except Exception as exc:  # noqa: BLE001
        log.debug("onnx.reference cannot fold %s (%s): %s", node.name, node.op_type, exc)
        return None


def _too_big_before(node: onnx.NodeProto, vis: dict[str, onnx.ValueInfoProto], max_bytes: int) -> bool:
    total = 0
    for o in node.output:
        vi = vis.get(o)
        if vi is None:
            continue
        shape = static_shape(vi)
        if shape is None:
            continue
        elem = vi.type.tensor_type.elem_type
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize
        except Exception:  # noqa: BLE001 - unknown element type: no estimate
            itemsize = 1
        total += math.prod(shape) * itemsize
    return total > max_bytes


def run(model: onnx.ModelProto, *, max_bytes: int = MAX_BYTES) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    consts = constant_initializers(graph)
    shapes = known_static_shapes(graph)
    overridable = {i.name for i in graph.input} & {t.name for t in graph.initializer}
    vis = {v.name: v for v in [*graph.value_info, *graph.output]}
    folded: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []

    for node in graph.node:
        if not is_default_domain(node.domain) or node.op_type in _RANDOM or any(True for _ in subgraphs(node)):
            continue
        if not any(node.output):
            continue
        results: list[np.ndarray] | None = None
        if node.op_type in ("Shape", "Size") and node.input[0] not in consts:
            shape = shapes.get(node.input[0])
            if shape is None or node.input[0] in overridable:
                continue
            results = [_shape_of_value(node, shape)]
        else:
            real = [i for i in node.input if i]
            if not real or not all(i in consts for i in real):
                continue
            if _too_big_before(node, vis, max_bytes):
                log.debug("not folding %s: output larger than %d bytes", node.name, max_bytes)
                continue
            results = _evaluate(node, consts, model)
            if results is None:
                continue
        outs = [o for o in node.output if o]
        if len(results) != len(outs) or not all(isinstance(r, np.ndarray) for r in results):
            continue
        if sum(r.nbytes for r in results) > max_bytes:
            log.debug("not folding %s: output larger than %d bytes", node.name, max_bytes)
            continue
        tensors = [numpy_helper.from_array(np.asarray(r), name) for r, name in zip(results, outs)]
        for t in tensors:
            consts[t.name] = t
            shapes[t.name] = [int(d) for d in t.dims]
        new_inits.extend(tensors)
        folded.append(node)

    if not folded:
        return model, False
    remove_nodes(graph, folded)
    graph.initializer.extend(new_inits)
    drop_value_info(graph, {t.name for t in new_inits})
    ensure_ir_version(model)
    return model, True
