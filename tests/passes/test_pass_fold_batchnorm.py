"""fold_batchnorm: Conv+BatchNormalization folded into the Conv; numerics and exact counts."""
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

from npuflow.passes import fold_batchnorm, optimize

# BatchNormalization count in each shared model before and after optimize()
BN_COUNTS = {
    "efficientnet_lite0": (49, 0),
    "mnist_cntk_opt": (0, 0),
    "yolox_nano": (0, 0),
    "ultraface_rfb_320": (35, 0),
    "pan_mnv3s_skin_clothes_hair": (0, 0),
    "ch_ppocr_mobile_v2.0_cls_infer": (35, 0),
    "en_PP-OCRv3_det_infer": (49, 0),  # one follows ConvTranspose -> Add: fold_conv_affine, then this
    "en_number_mobile_v2.0_rec_infer": (35, 0),
}


@pytest.mark.parametrize("name", list(BN_COUNTS))
def test_exact_batchnorm_counts(trace, name):
    t = trace(name)
    assert (ops(t.original)["BatchNormalization"], ops(t.optimized)["BatchNormalization"]) == BN_COUNTS[name]
    assert ops(t.optimized)["Conv"] == ops(t.original)["Conv"]


def test_det_batchnorm_after_convtranspose_and_its_bias_add_folds(trace):
    t = trace("en_PP-OCRv3_det_infer")
    (bn,) = [n for n in t.original.graph.node if n.op_type == "BatchNormalization"
             and not any(p.op_type == "Conv" and n.input[0] in p.output for p in t.original.graph.node)]
    producer = {o: n for n in t.optimized.graph.node for o in n.output}
    assert producer[bn.output[0]].op_type == "ConvTranspose"


def test_keep_bn_keeps_every_batchnorm(load_shared):
    out = optimize(load_shared("efficientnet_lite0"), keep_bn=True)
    assert ops(out)["BatchNormalization"] == 49


def test_conv_names_survive_folding(load_shared):
    model = load_shared("efficientnet_lite0")
    named_convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name]
    assert named_convs
    out = optimize(model)
    names = {n.name for n in out.graph.node}
    assert set(named_convs) <= names


def conv_bn_model(rng, *, cin=3, cout=4, group=1, k=3, bias=True, eps=1e-3):
    w = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    inits = [init("W", w)]
    conv_in = ["x", "W"]
    if bias:
        inits.append(init("B", rng.standard_normal(cout).astype(np.float32)))
        conv_in.append("B")
    inits += [
        init("scale", rng.uniform(0.2, 3.0, cout).astype(np.float32)),
        init("beta", rng.standard_normal(cout).astype(np.float32)),
        init("mean", rng.standard_normal(cout).astype(np.float32)),
        init("var", rng.uniform(0.1, 4.0, cout).astype(np.float32)),
    ]
    nodes = [helper.make_node("Conv", conv_in, ["c"], name="conv", group=group, pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["y"], name="bn", epsilon=eps)]
    return make_model(nodes, [vi("x", [1, cin, 8, 8])], [vi("y", [1, cout, 8, 8])], inits)


def _assert_close(model, out, rng, cin, rel=1e-5):
    x = rng.standard_normal((1, cin, 8, 8)).astype(np.float32)
    (ref,), (got,) = ort_outputs(model, {"x": x}), ort_outputs(out, {"x": x})
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= rel * np.max(np.abs(ref))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_fold_numerics_match_onnxruntime(bias, group):
    rng = np.random.default_rng(1234 + group + 2 * bias)
    model = conv_bn_model(rng, cin=4, cout=6, group=group, bias=bias)
    out, modified = fold_batchnorm.run(model)
    assert modified and [n.op_type for n in out.graph.node] == ["Conv"]
    conv = out.graph.node[0]
    assert conv.name == "conv" and list(conv.output) == ["y"] and len(conv.input) == 3
    onnx.checker.check_model(out)
    _assert_close(model, out, rng, cin=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cout=st.integers(1, 8), k=st.sampled_from([1, 3]), bias=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_fold_numerics_property(seed, cout, k, bias, eps):
    rng = np.random.default_rng(seed)
    model = conv_bn_model(rng, cin=3, cout=cout, k=k, bias=bias, eps=eps)
    if k == 1:
        for a in model.graph.node[0].attribute:
            if a.name == "pads":
                a.ints[:] = [0, 0, 0, 0]
    out, modified = fold_batchnorm.run(model)
    assert modified
    _assert_close(model, out, rng, cin=3)


def test_batchnorm_not_after_conv_is_left_alone():
    rng = np.random.default_rng(0)
    model = conv_bn_model(rng)
    model.graph.node[1].input[0] = "r"
    model.graph.node.insert(1, helper.make_node("Relu", ["c"], ["r"], name="relu"))
    out, modified = fold_batchnorm.run(model)
    assert not modified and ops(out)["BatchNormalization"] == 1


def test_conv_output_read_twice_or_a_graph_output_is_not_folded():
    rng = np.random.default_rng(0)
    model = conv_bn_model(rng)
    model.graph.node.append(helper.make_node("Neg", ["c"], ["n"], name="neg"))
    model.graph.output.append(vi("n", [1, 4, 8, 8]))
    assert not fold_batchnorm.run(model)[1]
    model = conv_bn_model(rng)
    model.graph.output.append(vi("c", [1, 4, 8, 8]))
    assert not fold_batchnorm.run(model)[1]


def test_shared_weight_gets_its_own_folded_copy():
    rng = np.random.default_rng(3)
    # a second Conv reads the same weight W without a BN after it
    check_shared_weight(conv_bn_model(rng), fold_batchnorm.run, rng, cin=3, cout=4)
