"""npuflow.passes.edit and the ktc.onnx_optimizer editing helpers over it.

Each helper is checked for its documented effect (graph structure and, where it has one, the
numbers computed by onnxruntime), and each bad argument for its error. Hand-built graphs keep
most cases fast; the cut, pixel_modify and opset conversion also run on real models
(examples/mnist, and the shared ultraface/yolox models when the shared folder is there).
"""
from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
import real_inputs
from onnx import TensorProto, helper
from optimizer_testutil import init, make_model, ort_outputs, vi

import ktc
from npuflow.errors import InvalidConfigError, NotAvailableError
from npuflow.passes import edit

TOL = 1e-5
RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------
# models


def two_output_model() -> onnx.ModelProto:
    """x -> conv -> c -> relu -> r -> softmax -> y (output 0);  r -> gap -> p (output 1)."""
    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=1),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
    ]
    return make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", [1, 4, 4, 4]), vi("p", [1, 4, 1, 1])],
                      [init("w", w), init("b", b)])


def conv_np(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The 1x1 Conv of two_output_model in numpy."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    return np.einsum("oc,nchw->nohw", inits["w"][:, :, 0, 0], x) + inits["b"][None, :, None, None]


def softmax1(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def x34() -> np.ndarray:
    return RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)


def out_names(m: onnx.ModelProto) -> list[str]:
    return [o.name for o in m.graph.output]


def in_names(m: onnx.ModelProto) -> list[str]:
    return [i.name for i in m.graph.input]


def node_names(m: onnx.ModelProto) -> list[str]:
    return [n.name for n in m.graph.node]


def run(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    onnx.checker.check_model(m)
    return dict(zip(out_names(m), ort_outputs(m, feeds)))


@pytest.fixture(scope="module")
def mnist(mnist_example) -> onnx.ModelProto:
    return onnx.load(str(mnist_example))


@pytest.fixture(scope="module")
def digit(mnist_example) -> dict[str, np.ndarray]:
    d = np.load(mnist_example.parent / "digits.npz")
    return {"Input3": d["eval_x"][0]}  # [1, 1, 28, 28], pixels / 255


def assert_close(a: np.ndarray, b: np.ndarray, tol: float = TOL) -> None:
    assert a.shape == b.shape
    assert float(np.max(np.abs(a - b))) <= tol


# ------------------------------------------------------------------------------------------
# cut_model


def test_cut_model_yolox_head_then_tail_equals_model(load_shared, shared):
    model = load_shared("yolox_nano")
    feeds = real_inputs.yolox_nano(shared)
    ref = ort_outputs(model, feeds)[0]
    for cut in (["687"], ["1158", "1166", "1174"]):  # after the stem; the three head outputs
        head, tail = edit.cut_model(model, cut)
        assert in_names(head) == ["images"] and out_names(head) == cut
        assert in_names(tail) == cut and out_names(tail) == ["output"]
        mid = run(head, feeds)
        assert_close(run(tail, mid)["output"], ref)
    assert len(head.graph.node) + len(tail.graph.node) == len(model.graph.node)
    assert [n.op_type for n in tail.graph.node] == ["Concat", "Transpose"]


def test_cut_model_ultraface_keeps_weight_inputs_and_passes_outputs_through(load_shared, shared):
    model = load_shared("ultraface_rfb_320")  # IR 4, every weight also listed as a graph input
    feeds = real_inputs.ultraface_rfb_320(shared)
    ref = dict(zip(out_names(model), ort_outputs(model, feeds)))
    head, tail = edit.cut_model(model, ["459", "460"])  # before the Softmax and the box decoding
    assert in_names(head)[0] == "input" and out_names(head) == ["459", "460"]
    assert in_names(tail)[:2] == ["459", "460"] and out_names(tail) == ["scores", "boxes"]
    assert {n.op_type for n in tail.graph.node} >= {"Softmax", "Exp"}
    assert "Softmax" not in {n.op_type for n in head.graph.node}
    out = run(tail, run(head, feeds))
    for k in ("scores", "boxes"):
        assert_close(out[k], ref[k])
    # a model output may be a cut tensor: the tail passes it through
    head, tail = edit.cut_model(model, ["scores", "460"])
    out = run(tail, run(head, feeds))
    for k in ("scores", "boxes"):
        assert_close(out[k], ref[k])


def test_cut_model_hand_built_two_outputs_and_argument_unchanged():
    m = two_output_model()
    before = m.SerializeToString()
    head, tail = edit.cut_model(m, "r")
    assert m.SerializeToString() == before
    assert node_names(head) == ["conv", "relu"] and node_names(tail) == ["softmax", "gap"]
    x = x34()
    ref = run(m, {"x": x})
    out = run(tail, run(head, {"x": x}))
    for k in ("y", "p"):
        assert_close(out[k], ref[k])


@pytest.mark.parametrize("tensors, message", [
    (["rr"], "no node computes a tensor named 'rr' (did you mean 'r'"),
    (["x"], "'x' is a graph input"),
    (["w"], "'w' is an initializer"),
    (["c", "nope"], "'nope'"),
    ([], "tensors is empty"),
    (3, "tensors must be a list of names"),
    ([None], "non-empty strings"),
    (["y", "p"], None),  # fine: outputs may be cut tensors (the tail passes them through)
])
def test_cut_model_bad_tensors(tensors, message):
    m = two_output_model()
    if message is None:
        edit.cut_model(m, tensors)
        return
    with pytest.raises(InvalidConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        edit.cut_model(m, tensors)


def test_cut_model_refuses_a_cut_that_does_not_separate_and_dead_or_constant_tensors():
    m = two_output_model()
    with pytest.raises(InvalidConfigError, match="does not separate the model: output 'p' still depends on input 'x'"):
        edit.cut_model(m, ["y"])
    nodes = [helper.make_node("Constant", [], ["k"], name="k", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])),
             helper.make_node("Mul", ["x", "k"], ["y"], name="mul"),
             helper.make_node("Neg", ["x"], ["dead"], name="dead")]
    m2 = make_model(nodes, [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(InvalidConfigError, match="output of Constant node 'k'"):
        edit.cut_model(m2, ["k"])
    with pytest.raises(InvalidConfigError, match="'dead' does not lead to any graph output"):
        edit.cut_model(m2, ["dead"])
    with pytest.raises(InvalidConfigError, match="expects an onnx.ModelProto"):
        edit.cut_model("model.onnx", ["y"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# cut_graph_from_nodes, remove_nodes_with_types


def test_cut_graph_from_nodes_replaces_the_removed_output_in_place():
    m = two_output_model()
    x = x34()
    ref = run(m, {"x": x})
    out = edit.cut_graph_from_nodes(m, ["softmax"])
    assert node_names(out) == ["conv", "relu", "gap"]
    assert out_names(out) == ["r", "p"]  # y replaced at its position by the Softmax's input
    got = run(out, {"x": x})
    assert_close(got["r"], np.maximum(conv_np(m, x), 0))
    assert_close(softmax1(got["r"]), ref["y"])  # the removed tail, done in postprocessing
    assert_close(got["p"], ref["p"])


def test_cut_graph_from_nodes_removes_everything_after_the_node():
    m = two_output_model()
    out = edit.cut_graph_from_nodes(m, "relu")  # relu, softmax and gap all go
    assert node_names(out) == ["conv"] and out_names(out) == ["c"]
    assert_close(run(out, {"x": (x := x34())})["c"], conv_np(m, x))
    assert edit.cut_graph_from_nodes(m, []).SerializeToString() == m.SerializeToString()


def test_cut_graph_from_nodes_on_mnist_drops_the_classifier(mnist, digit):
    out = ktc.onnx_optimizer.cut_graph_from_nodes(mnist, ["Times212_reshape0"])
    assert out_names(out) == ["Pooling160_Output_0"]
    assert [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim] == [1, 16, 4, 4]
    assert {n.op_type for n in out.graph.node} == {"Conv", "Relu", "MaxPool"}
    assert "Parameter193_reshape1" not in {t.name for t in out.graph.initializer}  # the Gemm weight is gone
    head, _ = edit.cut_model(mnist, ["Pooling160_Output_0"])
    assert_close(run(out, digit)["Pooling160_Output_0"], run(head, digit)["Pooling160_Output_0"])


def test_cut_graph_from_nodes_errors():
    m = two_output_model()
    with pytest.raises(InvalidConfigError, match="removes every node that computes an output"):
        edit.cut_graph_from_nodes(m, ["conv"])
    with pytest.raises(InvalidConfigError, match=r"no node named 'relu2' \(did you mean 'relu'"):
        edit.cut_graph_from_nodes(m, ["relu2"])
    with pytest.raises(InvalidConfigError, match="node_names must be a list"):
        edit.cut_graph_from_nodes(m, {"relu": 1})  # type: ignore[arg-type]
    m.graph.node[1].name = ""
    with pytest.raises(InvalidConfigError, match="1 node of this model has no name"):
        edit.cut_graph_from_nodes(m, ["relu"])
    m.graph.node[1].name = "gap"
    with pytest.raises(InvalidConfigError, match="2 nodes are named 'gap'"):
        edit.cut_graph_from_nodes(m, ["gap"])


def test_remove_nodes_with_types_moves_ultraface_softmax_out(load_shared, shared):
    model = load_shared("ultraface_rfb_320")
    feeds = real_inputs.ultraface_rfb_320(shared)
    ref = dict(zip(out_names(model), ort_outputs(model, feeds)))
    out = ktc.onnx_optimizer.remove_nodes_with_types(model, ["Softmax"])
    assert "Softmax" not in {n.op_type for n in out.graph.node}
    assert out_names(out) == ["459", "boxes"]
    got = run(out, feeds)
    e = np.exp(got["459"] - got["459"].max(axis=2, keepdims=True))
    assert_close(e / e.sum(axis=2, keepdims=True), ref["scores"])
    assert_close(got["boxes"], ref["boxes"])


def test_remove_nodes_with_types_hand_built_and_errors():
    m = two_output_model()
    out = edit.remove_nodes_with_types(m, ["Softmax", "GlobalAveragePool"])
    assert node_names(out) == ["conv", "relu"] and out_names(out) == ["r"]
    with pytest.raises(InvalidConfigError, match=r"no node of op type 'Sofmax' in the model \(did you mean 'Softmax'"):
        edit.remove_nodes_with_types(m, ["Sofmax"])
    with pytest.raises(InvalidConfigError, match="type_names must be a list"):
        edit.remove_nodes_with_types(m, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# delete_nodes


def test_delete_nodes_bypasses_a_middle_node():
    m = two_output_model()
    x = x34()
    out = ktc.onnx_optimizer.delete_nodes(m, ["relu"])
    assert node_names(out) == ["conv", "softmax", "gap"]
    assert [list(n.input) for n in out.graph.node[1:]] == [["c"], ["c"]]
    got = run(out, {"x": x})
    assert_close(got["y"], softmax1(conv_np(m, x)))
    assert_close(got["p"], conv_np(m, x).mean(axis=(2, 3), keepdims=True))


def test_delete_nodes_output_is_replaced_by_the_node_input_at_its_position():
    m = two_output_model()
    out = edit.delete_nodes(m, ["softmax"])
    assert out_names(out) == ["r", "p"]
    out = edit.delete_nodes(m, ["gap"])
    assert out_names(out) == ["y", "r"]
    assert_close(run(out, {"x": (x := x34())})["r"], np.maximum(conv_np(m, x), 0))
    with pytest.raises(InvalidConfigError, match="several graph outputs the same tensor 'r'"):
        edit.delete_nodes(m, ["softmax", "gap"])


def test_delete_nodes_after_the_input_gives_the_input_the_node_output_type():
    # channel-last input with a Transpose to channel-first: deleting it makes the input NCHW
    w = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="t", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["xt", "w"], ["y"], name="conv")]
    m = make_model(nodes, [vi("x", [1, 5, 6, 3])], [vi("y", [1, 2, 5, 6])], [init("w", w)])
    out = edit.delete_nodes(m, ["t"])
    assert in_names(out) == ["x"] and node_names(out) == ["conv"]
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 5, 6]
    x = RNG.standard_normal((1, 5, 6, 3)).astype(np.float32)
    assert_close(run(out, {"x": x.transpose(0, 3, 1, 2).copy()})["y"], run(m, {"x": x})["y"])
    # a node that keeps the input's type is just bypassed even when the input has other readers
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Neg", ["x"], ["b"], name="neg"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    m2 = make_model(nodes, [vi("x", [3])], [vi("y", [3])])
    out = edit.delete_nodes(m2, ["relu"])
    assert [list(n.input) for n in out.graph.node] == [["x"], ["x", "b"]]
    assert_close(run(out, {"x": np.array([1, -2, 3], np.float32)})["y"], np.zeros(3, np.float32))
    with pytest.raises(InvalidConfigError, match=r"node 'add' \(Add\) merges 2 activations"):
        edit.delete_nodes(m2, ["add"])
    # a type-changing node after an input that others read too
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="t", perm=[1, 0]),
             helper.make_node("Neg", ["x"], ["n"], name="neg")]
    m3 = make_model(nodes, [vi("x", [2, 3])], [vi("xt", [3, 2]), vi("n", [2, 3])])
    with pytest.raises(InvalidConfigError, match="changes its type or shape, but 'neg' also read"):
        edit.delete_nodes(m3, ["t"])


def test_delete_nodes_drops_the_weights_and_refuses_orphaning_readers():
    shape = helper.make_tensor("v", TensorProto.INT64, [2], [1, 6])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Constant", [], ["s"], name="shape", value=shape),
             helper.make_node("Reshape", ["r", "s"], ["y"], name="reshape")]
    m = make_model(nodes, [vi("x", [2, 3])], [vi("y", [1, 6])])
    out = edit.delete_nodes(m, ["reshape"])
    assert node_names(out) == ["relu"] and out_names(out) == ["r"]  # the Constant went with it
    assert [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim] == [2, 3]
    with pytest.raises(InvalidConfigError, match=r"node 'shape' \(Constant\) has no activation input"):
        edit.delete_nodes(m, ["shape"])
    assert node_names(edit.delete_nodes(m, ["reshape", "shape"])) == ["relu"]
    split = [helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=0, num_outputs=2)]
    m2 = make_model(split, [vi("x", [4])], [vi("a", [2]), vi("b", [2])], opset=18)
    with pytest.raises(InvalidConfigError, match=r"node 'split' \(Split\) has other outputs still in use \('b'\)"):
        edit.delete_nodes(m2, ["split"])


# ------------------------------------------------------------------------------------------
# delete_inputs, delete_outputs


def test_delete_inputs_turns_weight_inputs_into_constants(mnist, digit):
    assert mnist.ir_version == 3
    out = ktc.onnx_optimizer.delete_inputs(mnist, ["Parameter5", "23"])
    assert in_names(out) == [i for i in in_names(mnist) if i not in ("Parameter5", "23")]
    assert {"Parameter5", "23"} <= {t.name for t in out.graph.initializer}
    assert out.ir_version == 4  # IR 3 wants every initializer listed as an input
    assert_close(run(out, digit)["Plus214_Output_0"], run(mnist, digit)["Plus214_Output_0"])


def test_delete_inputs_removes_an_unread_input_and_refuses_the_rest(mnist):
    m = two_output_model()
    m.graph.input.append(vi("aux", [2]))
    out = edit.delete_inputs(m, ["aux"])
    assert in_names(out) == ["x"]
    with pytest.raises(InvalidConfigError, match="input 'x' is still read by 'conv'"):
        edit.delete_inputs(m, ["x"])
    with pytest.raises(InvalidConfigError, match=r"'r' is not a graph input \(a tensor computed by a node\)"):
        edit.delete_inputs(m, ["r"])
    with pytest.raises(InvalidConfigError, match=r"'w' is not a graph input \(an initializer that is not listed"):
        edit.delete_inputs(m, ["w"])
    with pytest.raises(InvalidConfigError, match=r"'Input4' is not a graph input \(unknown\) \(did you mean 'Input3'"):
        edit.delete_inputs(mnist, ["Input4"])


def test_delete_outputs_removes_the_nodes_that_only_served_them(load_shared, shared):
    model = load_shared("ultraface_rfb_320")
    feeds = real_inputs.ultraface_rfb_320(shared)
    out = ktc.onnx_optimizer.delete_outputs(model, ["boxes"])
    assert out_names(out) == ["scores"]
    assert "Exp" not in {n.op_type for n in out.graph.node}  # only the box decoding used Exp
    assert len(out.graph.initializer) < len(model.graph.initializer)
    assert_close(run(out, feeds)["scores"], ort_outputs(model, feeds)[0])


def test_delete_outputs_hand_built_and_errors():
    m = two_output_model()
    out = edit.delete_outputs(m, ["p"])
    assert out_names(out) == ["y"] and node_names(out) == ["conv", "relu", "softmax"]
    with pytest.raises(InvalidConfigError, match="would leave the model without outputs"):
        edit.delete_outputs(m, ["y", "p"])
    with pytest.raises(InvalidConfigError, match=r"'r' is not a graph output; the graph outputs are 'y', 'p'"):
        edit.delete_outputs(m, ["r"])


# ------------------------------------------------------------------------------------------
# change_input_output_shapes


def dynamic_model() -> onnx.ModelProto:
    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["y"], name="gap")]
    return make_model(nodes, [vi("x", ["N", 3, "H", "W"])], [vi("y", ["N", 4, 1, 1])], [init("w", w)])


def dims(v: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]


def test_change_input_output_shapes_fixes_inputs_and_recomputes_shapes():
    m = dynamic_model()
    out = ktc.onnx_optimizer.change_input_output_shapes(m, {"x": [2, 3, 8, 6]}, {"y": [2, 4, 1, 1]})
    assert dims(out.graph.input[0]) == [2, 3, 8, 6]
    assert dims(out.graph.output[0]) == [2, 4, 1, 1]
    assert {v.name: dims(v) for v in out.graph.value_info} == {"c": [2, 4, 8, 6]}
    assert run(out, {"x": RNG.standard_normal((2, 3, 8, 6)).astype(np.float32)})["y"].shape == (2, 4, 1, 1)
    # outputs not named are recomputed from the new inputs
    assert dims(edit.change_input_output_shapes(m, input_shape_mapping={"x": (1, 3, 5, 5)}).graph.output[0]) == [1, 4, 1, 1]
    # an output alone (e.g. a dynamic output the model computes as static)
    assert dims(edit.change_input_output_shapes(m, output_shape_mapping={"y": [7, 4, 1, 1]}).graph.output[0]) == [7, 4, 1, 1]
    assert dims(m.graph.input[0]) == ["N", 3, "H", "W"]  # argument unchanged


@pytest.mark.parametrize("ins, outs, message", [
    ({"x": [1, 3, 8]}, None, r"input 'x' has rank 4 \(\[N, 3, H, W\]\); the new shape \[1, 3, 8\] has rank 3"),
    ({"X": [1, 3, 8, 8]}, None, r"names 'X', which is not a graph input \(did you mean 'x'"),
    ({"w": [4, 3, 1, 1]}, None, "names 'w', which is not a graph input"),
    (None, {"c": [1, 4, 8, 8]}, "names 'c', which is not a graph output"),
    ({"x": [1, 3, 0, 8]}, None, "must be a list of positive ints"),
    ({"x": [1, 3, 8.0, 8]}, None, "must be a list of positive ints"),
    ({"x": [1, True, 8, 8]}, None, "must be a list of positive ints"),
    ({"x": "1,3,8,8"}, None, "must be a list of positive ints"),
    ([("x", [1, 3, 8, 8])], None, "input_shape_mapping must be a dict"),
    ({"x": [2, 3, 8, 8]}, {"y": [2, 5, 1, 1]}, r"output 'y' is computed as \[2, 4, 1, 1\] from the inputs; it cannot be declared \[2, 5, 1, 1\]"),
])
def test_change_input_output_shapes_errors(ins, outs, message):
    with pytest.raises(InvalidConfigError, match=message):
        edit.change_input_output_shapes(dynamic_model(), ins, outs)


def test_change_input_output_shapes_refuses_shapes_the_nodes_cannot_take():
    nodes = [helper.make_node("Add", ["x", "k"], ["y"], name="add")]
    m = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 4])], [init("k", np.ones((1, 3, 4, 4), np.float32))])
    with pytest.raises(InvalidConfigError, match="do not fit the model"):
        edit.change_input_output_shapes(m, {"x": [1, 3, 5, 5]})


# ------------------------------------------------------------------------------------------
# add_conv_after, add_bn_after, rename_output


def test_add_conv_after_inserts_an_exact_depthwise_identity(mnist, digit):
    out = ktc.onnx_optimizer.add_conv_after(mnist, ["ReLU32_Output_0", "Input3"])
    conv = {n.name: n for n in out.graph.node}["ReLU32_Output_0_nop_conv"]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    assert conv.op_type == "Conv" and attrs == {"group": 8, "kernel_shape": [1, 1]}
    weight = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}[conv.input[1]]
    assert weight.shape == (8, 1, 1, 1) and np.all(weight == 1)
    readers = [n.name for n in out.graph.node if "ReLU32_Output_0_nop_conv" in n.input]
    assert readers == ["Pooling66"]
    assert out.graph.node[0].name == "Input3_nop_conv" and out.graph.node[1].input[0] == "Input3_nop_conv"
    # (not bit-exact here: the result has IR 4 instead of 3, and onnxruntime computes IR-3 models a little differently)
    assert_close(run(out, digit)["Plus214_Output_0"], run(mnist, digit)["Plus214_Output_0"])
    m = two_output_model()
    x = x34()
    out = edit.add_conv_after(m, ["r"])
    got, ref = run(out, {"x": x}), run(m, {"x": x})
    assert np.array_equal(got["y"], ref["y"]) and np.array_equal(got["p"], ref["p"])


def test_add_bn_after_inserts_an_exact_identity_and_takes_over_outputs():
    m = two_output_model()
    x = x34()
    ref = run(m, {"x": x})
    out = ktc.onnx_optimizer.add_bn_after(m, ["r", "p"])
    ops = {n.name: n.op_type for n in out.graph.node}
    assert ops["r_nop_bn"] == ops["p_nop_bn"] == "BatchNormalization"
    assert out_names(out) == ["y", "p_nop_bn"]  # an output gets the BN's output, as in the original
    assert [n.input[0] for n in out.graph.node if n.name in ("softmax", "gap")] == ["r_nop_bn", "r_nop_bn"]
    got = run(out, {"x": x})
    assert np.array_equal(got["y"], ref["y"]) and np.array_equal(got["p_nop_bn"], ref["p"])


def test_add_conv_and_bn_after_errors():
    m = two_output_model()
    nodes = [helper.make_node("Cast", ["x"], ["i"], name="cast", to=TensorProto.INT64)]
    m_int = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("i", [1, 3, 4, 4], TensorProto.INT64)])
    cases = [
        (edit.add_conv_after, m, ["rr"], r"no tensor named 'rr' in the model \(did you mean 'r'"),
        (edit.add_bn_after, m, ["w"], "'w' is an initializer"),
        (edit.add_conv_after, m_int, ["i"], "'i' is a INT64 tensor; a Conv needs float data"),
        (edit.add_bn_after, m, "r ", "no tensor named 'r '"),
        (edit.add_conv_after, m, [1], "non-empty strings"),
    ]
    for fn, model, arg, message in cases:
        with pytest.raises(InvalidConfigError, match=message):
            fn(model, arg)
    gemm = [helper.make_node("Flatten", ["x"], ["f"], name="flat")]
    m2 = make_model(gemm, [vi("x", [1, 3, 4, 4])], [vi("f", [1, 48])])
    with pytest.raises(InvalidConfigError, match=r"rank >= 3 with a known channel dim 1, but its shape is \[1, 48\]"):
        edit.add_conv_after(m2, ["f"])
    dyn = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", [1, "C", 4])], [vi("y", [1, "C", 4])])
    with pytest.raises(InvalidConfigError, match=r"its shape is \[1, \?, 4\]"):
        edit.add_bn_after(dyn, ["y"])


def test_rename_output(mnist, digit):
    out = ktc.onnx_optimizer.rename_output(mnist, "Plus214_Output_0", "logits")
    assert out_names(out) == ["logits"] and out.graph.node[-1].output[0] == "logits"
    assert_close(run(out, digit)["logits"], run(mnist, digit)["Plus214_Output_0"])
    m = two_output_model()
    out = edit.rename_output(m, "y", "probs")
    assert out_names(out) == ["probs", "p"]
    with pytest.raises(InvalidConfigError, match=r"'r' is not a graph output"):
        edit.rename_output(m, "r", "q")
    with pytest.raises(InvalidConfigError, match="the name 'c' is already used by a tensor"):
        edit.rename_output(m, "y", "c")
    with pytest.raises(InvalidConfigError, match="new_name must be a non-empty string"):
        edit.rename_output(m, "y", "")


# ------------------------------------------------------------------------------------------
# pixel_modify


def test_pixel_modify_ultraface_takes_raw_pixels(load_shared, shared):
    model = load_shared("ultraface_rfb_320")
    x = real_inputs.ultraface_rfb_320(shared)["input"]  # (pixel - 127) / 128
    raw = x * 128.0 + 127.0                             # the pixels, 0..255
    assert raw.min() >= 0 and raw.max() <= 255 and np.all(raw == np.round(raw))
    ref = dict(zip(out_names(model), ort_outputs(model, {"input": x})))
    new = edit.pixel_modify(model, [1 / 128] * 3, [-127 / 128] * 3)
    assert in_names(new)[0] == "input" and new.graph.node[0].op_type == "BatchNormalization"
    got = run(new, {"input": raw})
    for k in ("scores", "boxes"):
        assert_close(got[k], ref[k])


def test_pixel_modify_formula_direction_and_ktc_in_place(mnist, digit):
    # inventory: pixel_modify(m, [1/255]*3, [0.5]*3) lets raw -128..127 feed a model made for 0..1:
    # new(raw) == original(raw * scale + bias)
    raw = np.round(digit["Input3"] * 255.0) - 128.0
    m = onnx.ModelProto()
    m.CopyFrom(mnist)
    returned = ktc.onnx_optimizer.pixel_modify(m, [1 / 255], [0.5])
    assert returned is m  # the original edits the model it gets (its documented usage ignores the result)
    assert m.graph.node[0].name == "Input3_scale_shift_bn" and m.graph.node[1].input[0] == "Input3_scale_shift_bn"
    expected = run(mnist, {"Input3": (raw * np.float32(1 / 255) + np.float32(0.5)).astype(np.float32)})
    assert_close(run(m, {"Input3": raw})["Plus214_Output_0"], expected["Plus214_Output_0"])
    before = mnist.SerializeToString()
    edit.pixel_modify(mnist, [2.0], [1.0])
    assert mnist.SerializeToString() == before  # npuflow's own function returns a new model


@pytest.mark.parametrize("scale, bias, kwargs, message", [
    ([1.0, 2.0], [0.0], {}, r"scale has 2 values but input 'Input3' has 1 channels"),
    ([1.0], [0.0, 1.0], {}, "bias has 2 values"),
    (1.0, [0.0], {}, "scale must be a list of 1 numbers"),
    (["1"], [0.0], {}, "scale must hold numbers"),
    ([1.0], [float("nan")], {}, "bias holds a non-finite value"),
    ([1.0], [0.0], {"input_name": "Input4"}, r"'Input4' is not a graph input \(did you mean 'Input3'"),
    ([1.0], [0.0], {"input_name": "Parameter5"}, "'Parameter5' is not a graph input"),
    ([1.0], [0.0], {"in_place": 1}, "in_place must be True or False"),
])
def test_pixel_modify_errors(mnist, scale, bias, kwargs, message):
    with pytest.raises(InvalidConfigError, match=message):
        edit.pixel_modify(mnist, scale, bias, **kwargs)


def test_pixel_modify_needs_input_name_with_several_inputs():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    m = make_model(nodes, [vi("a", [1, 2, 3]), vi("b", [1, 2, 3])], [vi("y", [1, 2, 3])])
    with pytest.raises(InvalidConfigError, match=r"the model has 2 inputs \('a', 'b'\); pass input_name="):
        edit.pixel_modify(m, [1.0, 1.0], [0.0, 0.0])
    out = edit.pixel_modify(m, [2.0, 3.0], [1.0, -1.0], input_name="b")
    a = RNG.standard_normal((1, 2, 3)).astype(np.float32)
    b = RNG.standard_normal((1, 2, 3)).astype(np.float32)
    expected = a + b * np.array([2, 3], np.float32)[None, :, None] + np.array([1, -1], np.float32)[None, :, None]
    assert_close(run(out, {"a": a, "b": b})["y"], expected)


# ------------------------------------------------------------------------------------------
# opset conversion


def default_opset(m: onnx.ModelProto) -> int:
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def test_convert_opset_mnist_8_to_9_to_11(mnist, digit):
    ref = run(mnist, digit)["Plus214_Output_0"]
    m9 = ktc.onnx_optimizer.convert_opset_8_to_9(mnist)
    assert default_opset(m9) == 9 and default_opset(mnist) == 8
    m11 = ktc.onnx_optimizer.convert_opset_9_to_11(m9)
    assert default_opset(m11) == 11 and m11.ir_version >= 6  # "ir_version from 4 to 6"
    for m in (m9, m11):
        assert_close(run(m, digit)["Plus214_Output_0"], ref)


def test_convert_opset_8_to_9_rewrites_upsample_and_batchnorm():
    nodes = [helper.make_node("Upsample", ["x"], ["y"], name="up", mode="nearest", scales=[1.0, 1.0, 2.0, 2.0])]
    m = make_model(nodes, [vi("x", [1, 1, 2, 2])], [vi("y", [1, 1, 4, 4])], opset=8, ir_version=4)
    out = edit.convert_opset_8_to_9(m)
    up = next(n for n in out.graph.node if n.op_type == "Upsample")
    assert len(up.input) == 2 and not any(a.name == "scales" for a in up.attribute)
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    assert np.array_equal(run(out, {"x": x})["y"], x.repeat(2, axis=2).repeat(2, axis=3))
    # and on to 11, where Upsample no longer exists
    assert [n.op_type for n in edit.convert_opset_9_to_11(out).graph.node if n.op_type != "Constant"] == ["Resize"]
    # BatchNormalization loses its opset-8 'spatial' attribute
    bn = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", spatial=1)]
    m = make_model(bn, [vi("x", [1, 2, 2, 2])], [vi("y", [1, 2, 2, 2])],
                   [init(k, np.ones(2, np.float32)) for k in "sbmv"], opset=8, ir_version=4)
    assert not edit.convert_opset_8_to_9(m).graph.node[0].attribute


def test_convert_opset_10_to_11_moves_clip_and_pad_attributes_to_inputs():
    nodes = [helper.make_node("Clip", ["x"], ["c"], name="clip", min=-1.0, max=1.0),
             helper.make_node("Pad", ["c"], ["y"], name="pad", pads=[0, 1, 0, 1], value=5.0)]
    m = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 5])], opset=10, ir_version=5)
    x = np.array([[-3, 0.5, 2], [1, -0.25, 9]], np.float32)
    ref = run(m, {"x": x})["y"]
    out = ktc.onnx_optimizer.convert_opset_10_to_11(m)
    assert default_opset(out) == 11 and out.ir_version >= 6
    ops = {n.op_type: n for n in out.graph.node}
    assert len(ops["Clip"].input) == 3 and not ops["Clip"].attribute
    assert len(ops["Pad"].input) >= 2 and not any(a.name == "pads" for a in ops["Pad"].attribute)
    assert np.array_equal(run(out, {"x": x})["y"], ref)


def test_convert_opset_9_to_11_ultraface(load_shared, shared):
    model = load_shared("ultraface_rfb_320")
    feeds = real_inputs.ultraface_rfb_320(shared)
    out = edit.convert_opset_9_to_11(model)
    assert default_opset(out) == 11 and out.ir_version >= 6
    for a, b in zip(run(out, feeds).values(), ort_outputs(model, feeds)):
        assert_close(a, b)


def test_convert_opset_refuses_other_source_opsets(mnist):
    with pytest.raises(InvalidConfigError, match="convert_opset_9_to_11: the model is at opset 8, not 9"):
        edit.convert_opset_9_to_11(mnist)
    m11 = edit.convert_opset(mnist, 11)
    with pytest.raises(InvalidConfigError, match="at opset 11, not 10; it is already at opset 11: nothing to convert"):
        edit.convert_opset_10_to_11(m11)
    with pytest.raises(InvalidConfigError, match="at opset 11, not 8; it is newer than opset 9"):
        edit.convert_opset_8_to_9(m11)
    with pytest.raises(InvalidConfigError, match="newer than the target 7; downgrading is not supported"):
        edit.convert_opset(mnist, 7)
    m = onnx.ModelProto()
    m.CopyFrom(mnist)
    del m.opset_import[:]
    with pytest.raises(InvalidConfigError, match="declares no ai.onnx opset"):
        edit.convert_opset_8_to_9(m)
    with pytest.raises(InvalidConfigError, match="expects an onnx.ModelProto"):
        ktc.onnx_optimizer.convert_opset_8_to_9(b"bytes")  # type: ignore[arg-type]


def test_convert_opset_reports_what_the_converter_cannot_do():
    # a node of an op the converter has no adapter for at the source opset: an unknown op
    nodes = [helper.make_node("NoSuchOp", ["x"], ["y"], name="odd")]
    m = make_model(nodes, [vi("x", [2])], [vi("y", [2])], opset=9, ir_version=4)
    with pytest.raises(NotAvailableError, match="convert_opset_9_to_11: the onnx version converter cannot convert this model from opset 9 to 11"):
        edit.convert_opset_9_to_11(m)


# ------------------------------------------------------------------------------------------
# the ktc facade


DOCUMENTED = {  # DC manual_3_onnx.md / python_api.md "Editors" and "ONNX Updater"
    "delete_nodes": ["model", "node_names"],
    "delete_inputs": ["model", "value_names"],
    "delete_outputs": ["model", "value_names"],
    "cut_graph_from_nodes": ["model", "node_names"],
    "remove_nodes_with_types": ["model", "type_names"],
    "change_input_output_shapes": ["model", "input_shape_mapping", "output_shape_mapping"],
    "add_conv_after": ["model", "value_names"],
    "add_bn_after": ["model", "value_names"],
    "rename_output": ["model", "old_name", "new_name"],
    "pixel_modify": ["model", "scale", "bias"],
    "convert_opset_8_to_9": ["model"],
    "convert_opset_9_to_11": ["model"],
    "convert_opset_10_to_11": ["model"],
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_ktc_helpers_have_the_documented_signature(name):
    params = inspect.signature(getattr(ktc.onnx_optimizer, name)).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == DOCUMENTED[name]


@pytest.mark.parametrize("call", [
    lambda m: edit.delete_nodes(m, ["ReLU32"]),
    lambda m: edit.delete_inputs(m, ["Parameter5"]),
    lambda m: edit.delete_outputs(m, []),
    lambda m: edit.cut_graph_from_nodes(m, ["Pooling160"]),
    lambda m: edit.remove_nodes_with_types(m, ["MaxPool"]),
    lambda m: edit.change_input_output_shapes(m, {"Input3": [1, 1, 28, 28]}),
    lambda m: edit.add_conv_after(m, ["ReLU32_Output_0"]),
    lambda m: edit.add_bn_after(m, ["ReLU32_Output_0"]),
    lambda m: edit.rename_output(m, "Plus214_Output_0", "out"),
    lambda m: edit.pixel_modify(m, [1.0], [0.0]),
    lambda m: edit.convert_opset_8_to_9(m),
    lambda m: edit.cut_model(m, ["Pooling160_Output_0"]),
])
def test_results_are_new_valid_models_and_the_argument_is_unchanged(mnist, digit, call):
    before = mnist.SerializeToString()
    result = call(mnist)
    assert mnist.SerializeToString() == before
    feeds = dict(digit)
    for m in result if isinstance(result, tuple) else (result,):
        assert m is not mnist
        onnx.checker.check_model(m)
        feeds.update(zip(out_names(m), ort_outputs(m, {k: v for k, v in feeds.items() if k in in_names(m)})))


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_helper_refuses_a_non_model(name):
    fn = getattr(ktc.onnx_optimizer, name)
    args = {"rename_output": ("a", "b"), "pixel_modify": ([1.0], [0.0]), "change_input_output_shapes": ()}
    extra = args.get(name, () if name.startswith("convert") else (["a"],))
    with pytest.raises(InvalidConfigError, match=f"{name} expects an onnx.ModelProto|expects an onnx.ModelProto"):
        fn("model.onnx", *extra)
