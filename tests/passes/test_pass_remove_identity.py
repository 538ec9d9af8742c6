"""remove_identity: Identity and inference Dropout removed, graph output names kept."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from optimizer_testutil import init, make_model, ops, ort_outputs, vi

from npuflow.passes import remove_identity

X = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)


def _check_same(model, out):
    onnx.checker.check_model(out)
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    for a, b in zip(ort_outputs(model, {"x": X}), ort_outputs(out, {"x": X})):
        np.testing.assert_array_equal(a, b)


def test_identity_feeding_a_graph_output_keeps_the_output_name():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Neg", ["r"], ["n"], name="neg"),
             helper.make_node("Identity", ["r"], ["out"], name="id")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("out", [2, 3]), vi("n", [2, 3])])
    out, modified = remove_identity.run(model)
    assert modified and ops(out)["Identity"] == 0
    relu = next(n for n in out.graph.node if n.name == "relu")
    assert list(relu.output) == ["out"]  # the producer was renamed
    assert list(next(n for n in out.graph.node if n.name == "neg").input) == ["out"]  # and its other reader
    _check_same(model, out)


def test_identity_chain_inside_the_graph():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Identity", ["r"], ["i1"], name="id1"),
             helper.make_node("Identity", ["i1"], ["i2"], name="id2"),
             helper.make_node("Neg", ["i2"], ["y"], name="neg")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])])
    out, modified = remove_identity.run(model)
    assert modified and [n.name for n in out.graph.node] == ["relu", "neg"]
    assert list(out.graph.node[1].input) == ["r"]
    _check_same(model, out)


def test_identity_from_graph_input_to_graph_output_is_kept():
    model = make_model([helper.make_node("Identity", ["x"], ["y"], name="id")], [vi("x", [2, 3])], [vi("y", [2, 3])])
    out, modified = remove_identity.run(model)
    assert not modified and ops(out)["Identity"] == 1


def test_identity_between_two_graph_outputs_is_kept():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Identity", ["r"], ["y"], name="id")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("r", [2, 3]), vi("y", [2, 3])])
    out, modified = remove_identity.run(model)
    assert not modified
    _check_same(model, out)


def test_identity_of_an_initializer_feeding_an_output_renames_the_initializer():
    nodes = [helper.make_node("Identity", ["w"], ["wy"], name="id"), helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3]), vi("wy", [2, 3])], [init("w", np.ones((2, 3), np.float32))])
    out, modified = remove_identity.run(model)
    assert modified and [t.name for t in out.graph.initializer] == ["wy"]
    assert list(out.graph.node[0].input) == ["x", "wy"]
    _check_same(model, out)


def test_dropout_in_inference_is_removed():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Dropout", ["r", "ratio"], ["d"], name="drop"),
             helper.make_node("Neg", ["d"], ["y"], name="neg")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], [init("ratio", np.array(0.5, np.float32))])
    out, modified = remove_identity.run(model)
    assert modified and ops(out)["Dropout"] == 0
    _check_same(model, out)


def test_dropout_opset7_feeding_output():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Dropout", ["r"], ["y"], name="drop", ratio=0.3)]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], opset=7, ir_version=3)
    out, modified = remove_identity.run(model)
    assert modified and [n.op_type for n in out.graph.node] == ["Relu"] and out.graph.node[0].output[0] == "y"
    _check_same(model, out)


def test_dropout_with_used_mask_or_training_mode_is_kept():
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
             helper.make_node("Cast", ["mask"], ["m"], name="cast", to=onnx.TensorProto.FLOAT),
             helper.make_node("Add", ["d", "m"], ["y"], name="add")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])])
    assert not remove_identity.run(model)[1]
    nodes = [helper.make_node("Dropout", ["x", "ratio", "train"], ["y"], name="drop")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])],
                       [init("ratio", np.array(0.5, np.float32)), init("train", np.array(True))])
    assert not remove_identity.run(model)[1]


def test_real_model_identity_before_the_output(trace):
    t = trace("ch_ppocr_mobile_v2.0_cls_infer")
    assert ops(t.original)["Identity"] == 1 and ops(t.optimized)["Identity"] == 0
    assert [o.name for o in t.optimized.graph.output] == ["save_infer_model/scale_0.tmp_1"]
    softmax = next(n for n in t.optimized.graph.node if n.op_type == "Softmax")
    assert list(softmax.output) == ["save_infer_model/scale_0.tmp_1"]


def test_cast_to_the_type_it_already_has_is_removed_and_a_real_cast_is_kept():
    f, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["c1"], name="noop", to=f),
             helper.make_node("Cast", ["c1"], ["c2"], name="real", to=i64),
             helper.make_node("Cast", ["c2"], ["y"], name="back", to=f)]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])])
    model.graph.value_info.extend([vi("r", [2, 3]), vi("c1", [2, 3]), vi("c2", [2, 3], i64)])
    out, modified = remove_identity.run(model)
    assert modified and [n.name for n in out.graph.node] == ["relu", "real", "back"]
    assert list(out.graph.node[1].input) == ["r"]
    _check_same(model, out)


def test_cast_of_a_tensor_of_unknown_type_is_kept():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["y"], name="cast", to=onnx.TensorProto.FLOAT)]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])])  # no value_info for r
    assert not remove_identity.run(model)[1]
