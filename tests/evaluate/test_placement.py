"""NPU/CPU placement: reasons, fallbacks, unknown ops, and the expected CPU nodes of real models."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from npuflow.errors import UnsupportedOperatorError
from npuflow.evaluate import place_model
from npuflow.platforms import PLATFORMS

from .conftest import make_model


def conv_model(k: int):
    w = np.zeros((8, 4, k, k))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="big_conv", kernel_shape=[k, k], pads=[k // 2] * 4)]
    return make_model(nodes, [("x", [1, 4, 32, 32])], [("y", [1, 8, 32, 32])], {"w": w})


def by_name(placements):
    return {p.name: p for p in placements}


def test_conv_kernel_13_is_cpu_on_520_only():
    m = conv_model(13)
    p520 = by_name(place_model(m, 520))["big_conv"]
    assert p520.placement == "CPU"
    assert p520.reason == "Conv kernel_shape 13x13 exceeds the KL520 limit 12"
    for pid in (720, 530, 630, 730):
        pl = by_name(place_model(m, pid))["big_conv"]
        assert pl.placement == "NPU" and pl.reason == ""
    assert by_name(place_model(conv_model(11), 520))["big_conv"].placement == "NPU"


def test_custom_domain_op_raises_exact_message():
    nodes = [helper.make_node("MyOp", ["x"], ["y"], name="my_node", domain="com.example")]
    m = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])], extra_opsets=[("com.example", 1)])
    for pid in PLATFORMS:
        with pytest.raises(UnsupportedOperatorError) as exc:
            place_model(m, pid)
        assert str(exc.value) == "Invalid program input: undefined CPU op [MyOp] of node [my_node]"
        assert exc.value.op_type == "MyOp" and exc.value.node_name == "my_node"


def test_unknown_default_domain_op_raises():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("StringNormalizer", ["r"], ["y"], name="sn")]
    m = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])])
    with pytest.raises(UnsupportedOperatorError, match=r"undefined CPU op \[StringNormalizer\] of node \[sn\]"):
        place_model(m, 720)


def test_cpu_fallback_reason_for_op_not_in_table():
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"], name="sig")]
    m = make_model(nodes, [("x", [1, 4, 8, 8])], [("y", [1, 4, 8, 8])])
    assert by_name(place_model(m, 520))["sig"].reason == "op Sigmoid not supported on KL520 NPU"
    assert by_name(place_model(m, 720))["sig"].placement == "NPU"


def test_flatten_before_gemm_is_folded_on_520():
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1),
    ]
    m = make_model(nodes, [("x", [1, 16, 7, 7])], [("y", [1, 10])], {"w": np.zeros((10, 16))})
    pl = by_name(place_model(m, 520))
    assert pl["flat"].placement == "NPU" and pl["flat"].folded
    # a Flatten that feeds something else stays a CPU node on the 520
    nodes2 = [helper.make_node("Flatten", ["x"], ["y"], name="flat")]
    m2 = make_model(nodes2, [("x", [1, 16, 7, 7])], [("y", [1, 784])])
    assert by_name(place_model(m2, 520))["flat"].placement == "CPU"


def test_constants_and_identity_are_folded(arch_model):
    for pid in PLATFORMS:
        pls = place_model(arch_model("mobilenet_v2"), pid)
        assert not [p for p in pls if p.placement == "CPU"], pid  # Kneron: no CPU node on any platform
        assert all(p.folded for p in pls if p.op_type in ("Constant", "Identity", "Flatten"))


def cpu_ops_of(model, pid):
    return {p.op_type for p in place_model(model, pid) if p.placement == "CPU"}


def test_yolox_nano_cpu_nodes(shared_model):
    m = shared_model("yolox_nano")
    on520 = cpu_ops_of(m, 520)
    assert {"Sigmoid", "Mul", "Slice", "Reshape", "Transpose"} <= on520
    assert "Conv" not in on520
    for pid in (720, 530, 630, 730):
        assert cpu_ops_of(m, pid) == set(), pid


def test_lstm_is_cpu_everywhere(shared_model):
    m = shared_model("en_number_mobile_v2.0_rec_infer")
    for pid in PLATFORMS:
        pls = [p for p in place_model(m, pid) if p.op_type == "LSTM"]
        assert pls and all(p.placement == "CPU" for p in pls)
        assert all(p.reason == f"op LSTM not supported on KL{pid} NPU" for p in pls)


@pytest.mark.parametrize("name", ["mnist_cntk_opt", "efficientnet_lite0"])
def test_plain_cnns_have_no_cpu_nodes(shared_model, name):
    m = shared_model(name)
    for pid in PLATFORMS:
        assert cpu_ops_of(m, pid) == set(), pid
