"""Helpers for the hand-built graphs of the optimizer tests."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    *,
    opset: int = 13,
    ir_version: int = 8,
    name: str = "test",
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def vi(name: str, shape: Sequence[int | str | None] | None, elem: int = onnx.TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    # Graph optimizations off: compare the graphs as written, not ORT's own rewrites of them.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def static_shape_report(model: onnx.ModelProto) -> list[str]:
    """Node outputs of the main graph without a fully static inferred shape (empty when all are)."""
    g = model.graph
    shapes = {}
    for v in [*g.input, *g.value_info, *g.output]:
        tt = v.type.tensor_type
        if v.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    bad = []
    for n in g.node:
        for o in n.output:
            if not o:
                continue
            s = shapes.get(o)
            if s is None or any(d is None or d < 0 for d in s):
                bad.append(f"{n.name} ({n.op_type}) -> {o}: {s}")
    return bad


def check_shared_weight(model: onnx.ModelProto, run, rng, cin: int, cout: int) -> None:
    """A second Conv ``conv2`` reads the weight ``W`` of ``model``'s folded Conv without anything
    after it: after the fold pass ``run`` its output is bit-identical (the original weight stays
    for it) and the folded output agrees within 1e-5 of its largest magnitude."""
    model.graph.node.append(helper.make_node("Conv", ["x", "W"], ["c2"], name="conv2", pads=[1, 1, 1, 1]))
    model.graph.output.append(vi("c2", [1, cout, 8, 8]))
    x = rng.standard_normal((1, cin, 8, 8)).astype(np.float32)
    ref = ort_outputs(model, {"x": x})
    out, modified = run(model)
    assert modified
    got = ort_outputs(out, {"x": x})
    np.testing.assert_array_equal(got[1], ref[1])
    assert np.max(np.abs(got[0] - ref[0])) <= 1e-5 * np.max(np.abs(ref[0]))
