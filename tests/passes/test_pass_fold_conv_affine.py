"""fold_conv_affine: per-channel Mul / Add / Sub constants after a Conv or ConvTranspose folded
into its weights and bias; numerics against onnxruntime, the cases left alone, real models."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from optimizer_testutil import (
    check_shared_weight,
    init,
    make_model,
    ops,
    ort_outputs,
    vi,
)

from npuflow.passes import fold_conv_affine, optimize


def affine_model(rng, chain, *, op="Conv", cin=4, cout=6, group=1, bias=True, shapes=None, const_first=()):
    """``op`` (3x3, pads 1) followed by ``chain`` (op types of Mul / Add / Sub), each with a
    per-channel constant of shape ``shapes[i]`` (default ``(1, cout, 1, 1)``)."""
    if op == "Conv":
        w = rng.standard_normal((cout, cin // group, 3, 3)).astype(np.float32)
    else:
        w = rng.standard_normal((cin, cout // group, 3, 3)).astype(np.float32)
    inits = [init("W", w)]
    conv_in = ["x", "W"]
    if bias:
        inits.append(init("B", rng.standard_normal(cout).astype(np.float32)))
        conv_in.append("B")
    nodes = [helper.make_node(op, conv_in, ["t0"], name="conv", group=group, pads=[1, 1, 1, 1])]
    for i, kind in enumerate(chain):
        shape = (shapes or {}).get(i, (1, cout, 1, 1))
        c = rng.uniform(0.3, 2.0, shape).astype(np.float32) * rng.choice([-1.0, 1.0], shape).astype(np.float32)
        inits.append(init(f"c{i}", c))
        ins = [f"c{i}", f"t{i}"] if i in const_first else [f"t{i}", f"c{i}"]
        nodes.append(helper.make_node(kind, ins, [f"t{i + 1}"], name=f"{kind.lower()}{i}"))
    out = f"t{len(chain)}"
    return make_model(nodes, [vi("x", [1, cin, 8, 8])], [vi(out, [1, cout, 8, 8])], inits)


def _assert_close(model, out, rng, cin=4, rel=1e-5):
    x = rng.standard_normal((1, cin, 8, 8)).astype(np.float32)
    (ref,), (got,) = ort_outputs(model, {"x": x}), ort_outputs(out, {"x": x})
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= rel * np.max(np.abs(ref))


@pytest.mark.parametrize("op,group", [("Conv", 1), ("Conv", 2), ("ConvTranspose", 1), ("ConvTranspose", 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_chain_folds_into_one_convolution(op, group, bias):
    rng = np.random.default_rng(7 + group + 2 * bias)
    model = affine_model(rng, ["Mul", "Add", "Sub"], op=op, group=group, bias=bias, const_first=(0, 1))
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    out, modified = fold_conv_affine.run(model)
    assert modified and [n.op_type for n in out.graph.node] == [op]
    conv = out.graph.node[0]
    assert conv.name == "conv" and list(conv.output) == ["t3"] and len(conv.input) == 3
    onnx.checker.check_model(out)
    _assert_close(ref, out, rng)


@pytest.mark.parametrize("shape", [(), (1,), (6, 1, 1), (1, 6, 1, 1), (1, 1, 1, 1)])
def test_constant_shapes_that_broadcast_per_channel_fold(shape):
    rng = np.random.default_rng(11)
    model = affine_model(rng, ["Mul"], shapes={0: shape})
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    out, modified = fold_conv_affine.run(model)
    assert modified and ops(out) == {"Conv": 1}
    _assert_close(ref, out, rng)


@pytest.mark.parametrize("shape", [(6,), (1, 6, 8, 1), (1, 1, 1, 8), (1, 1, 6, 1, 1)])
def test_constants_that_do_not_broadcast_per_channel_are_left_alone(shape):
    # (6,) right-aligns to the width axis; (1, 6, 8, 1) varies over rows; rank 5 grows the output
    rng = np.random.default_rng(12)
    model = affine_model(rng, ["Add"], shapes={0: shape})
    out, modified = fold_conv_affine.run(model)
    assert not modified and ops(out) == {"Conv": 1, "Add": 1}


def test_sub_of_the_convolution_from_a_constant_is_left_alone():
    rng = np.random.default_rng(13)
    model = affine_model(rng, ["Sub"], const_first=(0,))
    assert not fold_conv_affine.run(model)[1]


def test_output_read_twice_a_graph_output_or_a_runtime_operand_stops_the_fold():
    rng = np.random.default_rng(14)
    model = affine_model(rng, ["Mul"])
    model.graph.node.append(helper.make_node("Neg", ["t0"], ["n"], name="neg"))
    model.graph.output.append(vi("n", [1, 6, 8, 8]))
    assert not fold_conv_affine.run(model)[1]
    model = affine_model(rng, ["Mul"])
    model.graph.output.append(vi("t0", [1, 6, 8, 8]))
    assert not fold_conv_affine.run(model)[1]
    model = affine_model(rng, ["Mul"])
    model.graph.node[1].input[1] = "x"  # Mul(conv, x): not a constant
    assert not fold_conv_affine.run(model)[1]


def test_non_finite_constant_is_left_alone():
    rng = np.random.default_rng(15)
    model = affine_model(rng, ["Mul"])
    c = np.ones((1, 6, 1, 1), np.float32)
    c[0, 2] = np.inf
    model.graph.initializer[-1].CopyFrom(init("c0", c))
    assert not fold_conv_affine.run(model)[1]


def test_shared_weight_keeps_its_original_for_other_readers():
    rng = np.random.default_rng(16)
    check_shared_weight(affine_model(rng, ["Mul"]), fold_conv_affine.run, rng, cin=4, cout=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), chain=st.lists(st.sampled_from(["Mul", "Add", "Sub"]), min_size=1, max_size=4),
       op=st.sampled_from(["Conv", "ConvTranspose"]), group=st.sampled_from([1, 2]), bias=st.booleans())
def test_fold_numerics_property(seed, chain, op, group, bias):
    rng = np.random.default_rng(seed)
    model = affine_model(rng, chain, op=op, group=group, bias=bias)
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    out, modified = fold_conv_affine.run(model)
    assert modified and ops(out) == {op: 1}
    _assert_close(ref, out, rng)


def transposed_model(rng, chain, perm=(0, 2, 3, 1), shape=None):
    """Conv (4 -> 6 channels) -> Transpose(perm) -> chain of per-channel constants (TensorFlow's
    NHWC layout: constants of shape [6] broadcast on the last axis)."""
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    inits = [init("W", w), init("B", rng.standard_normal(6).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t0"], name="nhwc", perm=list(perm))]
    for i, kind in enumerate(chain):
        c = rng.uniform(0.3, 2.0, shape or (6,)).astype(np.float32)
        inits.append(init(f"c{i}", c))
        nodes.append(helper.make_node(kind, [f"t{i}", f"c{i}"], [f"t{i + 1}"], name=f"{kind.lower()}{i}"))
    out_shape = [[1, 6, 8, 8][p] for p in perm]
    return make_model(nodes, [vi("x", [1, 4, 8, 8])], [vi(f"t{len(chain)}", out_shape)], inits)


def test_chain_behind_a_transpose_folds_and_the_transpose_writes_its_output():
    rng = np.random.default_rng(21)
    model = transposed_model(rng, ["Add", "Sub", "Mul", "Add"])
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    out, modified = fold_conv_affine.run(model)
    assert modified and [n.op_type for n in out.graph.node] == ["Conv", "Transpose"]
    assert list(out.graph.node[0].output) == ["c"] and list(out.graph.node[1].output) == ["t4"]
    onnx.checker.check_model(out)
    _assert_close(ref, out, rng)


def test_constant_on_the_wrong_axis_behind_a_transpose_is_left_alone():
    rng = np.random.default_rng(22)
    # perm (0, 1, 3, 2) keeps channels on axis 1: a [6] constant lands on the last axis (width 8)
    model = transposed_model(rng, ["Add"], perm=(0, 1, 3, 2), shape=(8,))
    assert not fold_conv_affine.run(model)[1]


def test_open_nsfw_tf_batchnorms_fold_through_transposes(shared):
    # tf2onnx's open_nsfw: Conv -> Transpose -> Cast -> Add(bias) -> Cast -> Sub -> Mul -> Add per
    # layer; remove_identity drops the float-to-float Casts, this pass folds the rest
    model = onnx.load(str(shared / "models" / "zoo" / "open_nsfw.onnx"))
    before = ops(model)
    out = optimize(model)
    after = ops(out)
    assert (before["Cast"], before["Sub"], before["Mul"]) == (309, 62, 55)
    assert after["Cast"] == after["Sub"] == after["Mul"] == 0
    assert after["Add"] == 17 and after["Conv"] == 53  # 16 residual additions and the classifier's bias


# (Mul, Add) nodes of each model before and after optimize(): dlib's "affine" layers are
# Conv -> Mul -> Add; paddle2onnx writes ConvTranspose -> Add (bias) before a BatchNormalization
AFFINE_COUNTS = {
    "dlib_age_v1": ((11, 16), (0, 5)),  # the 5 Adds left are the residual additions
    "dlib_gender_v1": ((6, 4), (2, 0)),  # the 2 Muls left scale a pool's and a Relu's output
}


@pytest.mark.parametrize("name", list(AFFINE_COUNTS))
def test_dlib_affine_layers_fold_on_the_real_models(shared, name):
    path = shared / "models" / "zoo" / f"{name}.onnx"
    model = onnx.load(str(path))
    out = optimize(model)
    before, after = AFFINE_COUNTS[name]
    assert (ops(model)["Mul"], ops(model)["Add"]) == before
    assert (ops(out)["Mul"], ops(out)["Add"]) == after
