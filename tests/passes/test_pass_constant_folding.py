"""constant_folding: input-independent nodes become initializers; Shape chains disappear."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from optimizer_testutil import init, make_model, ops, ort_outputs, vi

from npuflow.passes import constant_folding, constant_to_initializer, fix_input_shapes, optimize, shape_inference


@pytest.mark.parametrize("name, gone, left", [
    # ultraface: Shape -> Gather -> Unsqueeze -> Concat -> Reshape for the 8 heads
    ("ultraface_rfb_320", {"Shape": 8, "Gather": 8, "Unsqueeze": 24}, {"Reshape": 8, "Concat": 5, "Slice": 6}),
    # PaddleOCR cls: Shape -> Cast -> Slice -> Cast -> Concat -> Reshape, and Reshape of SE constants
    ("ch_ppocr_mobile_v2.0_cls_infer", {"Shape": 1, "Cast": 3, "Slice": 1, "Concat": 1}, {"Reshape": 1}),
    # PaddleOCR rec: Shape/Slice/Concat/Tile chains building the LSTM initial states
    ("en_number_mobile_v2.0_rec_infer", {"Shape": 2, "Slice": 30, "Concat": 20, "Tile": 2}, {"LSTM": 2}),
    # PAN: Shape -> Slice -> Concat feeding Resize sizes
    ("pan_mnv3s_skin_clothes_hair", {"Shape": 5, "Slice": 5, "Concat": 5}, {"Resize": 8}),
])
def test_shape_chains_disappear_once_shapes_are_fixed(trace, name, gone, left):
    t = trace(name)
    before, after = ops(t.original), ops(t.optimized)
    for op, n in gone.items():
        assert before[op] == n and after[op] == 0, op
    for op, n in left.items():
        assert after[op] == n, op
    # what is left reads activations: no node with only constant inputs remains
    inits = {i.name for i in t.optimized.graph.initializer}
    assert not [n.name for n in t.optimized.graph.node if all(i in inits for i in n.input if i)]


def _prepared(model, **shapes):
    model, _ = constant_to_initializer.run(model)
    if shapes:
        model, _ = fix_input_shapes.run(model, input_shapes=shapes)
    model, _ = shape_inference.run(model)
    return model


def test_shape_of_a_dynamic_tensor_is_not_folded(load_shared):
    # dynamic width: the LSTM sequence length depends on the input, the Shape nodes must stay
    model = load_shared("en_number_mobile_v2.0_rec_infer")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = _prepared(model)
    out, _ = constant_folding.run(model)
    assert ops(out)["Shape"] == 2


def test_with_fixed_shapes_the_chain_folds(load_shared):
    model = _prepared(load_shared("en_number_mobile_v2.0_rec_infer"), x=[1, 3, 32, 320])
    out, modified = constant_folding.run(model)
    assert modified and ops(out)["Shape"] == 0 and ops(out)["Tile"] == 0


def _graph_with_const_chain():
    # y = x + ((a * b) reshaped by Concat(Shape(x)[0:1], [-1]))  -- all but the Add is foldable
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["ab"], name="mul"),
        helper.make_node("Shape", ["x"], ["sx"], name="shape", start=0, end=1),
        helper.make_node("Concat", ["sx", "minus1"], ["newshape"], name="concat", axis=0),
        helper.make_node("Reshape", ["ab", "newshape"], ["abr"], name="reshape"),
        helper.make_node("Add", ["x", "abr"], ["y"], name="add"),
    ]
    inits = [init("a", np.arange(6, dtype=np.float32)), init("b", np.full(6, 0.5, np.float32)),
             init("minus1", np.array([-1], np.int64))]
    return make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], inits, opset=15)


def test_chain_folds_in_one_run_and_matches_onnxruntime():
    model = _graph_with_const_chain()
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    ref = ort_outputs(model, {"x": x})
    out, modified = constant_folding.run(model)
    assert modified and [n.op_type for n in out.graph.node] == ["Add"]
    abr = numpy_helper.to_array(next(t for t in out.graph.initializer if t.name == "abr"))
    np.testing.assert_array_equal(abr, (np.arange(6) * 0.5).astype(np.float32).reshape(2, 3))
    np.testing.assert_array_equal(ort_outputs(out, {"x": x})[0], ref[0])
    onnx.checker.check_model(out)


def test_node_reading_a_real_input_is_never_folded():
    model = _graph_with_const_chain()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"  # Shape(x) no longer static
    out, _ = constant_folding.run(model)
    assert [n.op_type for n in out.graph.node] == ["Shape", "Concat", "Reshape", "Add"]


def test_initializer_listed_as_input_is_not_a_constant():
    nodes = [helper.make_node("Mul", ["a", "b"], ["ab"], name="mul"), helper.make_node("Add", ["x", "ab"], ["y"], name="add")]
    model = make_model(nodes, [vi("x", [3]), vi("a", [3])], [vi("y", [3])],
                       [init("a", np.ones(3, np.float32)), init("b", np.ones(3, np.float32))])
    out, modified = constant_folding.run(model)
    assert not modified and ops(out)["Mul"] == 1


def test_shape_start_end_attributes():
    node = helper.make_node("Shape", ["x"], ["s"], name="shape", start=-3, end=-1)
    model = make_model([node], [vi("x", [2, 3, 4, 5])], [vi("s", [2], onnx.TensorProto.INT64)], opset=15)
    out, modified = constant_folding.run(model)
    assert modified and not out.graph.node
    np.testing.assert_array_equal(numpy_helper.to_array(out.graph.initializer[0]), [3, 4])


def test_size_guard_keeps_big_results_unfolded():
    shape = init("shape", np.array([1024, 1024], np.int64))  # 4 MiB of float32
    node = helper.make_node("ConstantOfShape", ["shape"], ["big"], name="cos",
                            value=numpy_helper.from_array(np.array([1.0], np.float32)))
    add = helper.make_node("Add", ["x", "big"], ["y"], name="add")
    model = make_model([node, add], [vi("x", [1024, 1024])], [vi("y", [1024, 1024])], [shape])
    out, modified = constant_folding.run(model, max_bytes=1 << 20)
    assert not modified and ops(out)["ConstantOfShape"] == 1
    # the same with inferred shapes: refused before evaluating
    inferred, _ = shape_inference.run(model)
    out, modified = constant_folding.run(inferred, max_bytes=1 << 20)
    assert not modified
    out, modified = constant_folding.run(model)  # default guard is 64 MiB
    assert modified and ops(out)["ConstantOfShape"] == 0


def test_random_ops_are_not_folded():
    node = helper.make_node("RandomUniformLike", ["c"], ["r"], name="rnd")
    add = helper.make_node("Add", ["x", "r"], ["y"], name="add")
    model = make_model([node, add], [vi("x", [3])], [vi("y", [3])], [init("c", np.zeros(3, np.float32))])
    out, modified = constant_folding.run(model)
    assert not modified


def test_folding_is_deterministic(load_shared):
    a = optimize(load_shared("ultraface_rfb_320")).SerializeToString()
    b = optimize(load_shared("ultraface_rfb_320")).SerializeToString()
    assert a == b
