"""MAC/byte counting on hand-built graphs, time equations, options, and the published FPS."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

from npuflow.errors import InvalidConfigError
from npuflow.evaluate import evaluate_model
from npuflow.evaluate.cost import CostConstants, lane_utilisation
from npuflow.platforms import PLATFORMS, cost_model_spec, get_platform

from .conftest import SHARED_MODELS, make_model

PUBLISHED = {
    "mobilenet_v2": {520: 54.18, 720: 683.1, 530: 342.3, 630: 218.9, 730: 812.5},
    "resnet50": {520: 6.925, 720: 54.89, 530: 36.79, 630: 22.91, 730: 79.03},
}


def single(op, x_shape, y_shape, inits=None, **attrs):
    names = ["x"] + list((inits or {}).keys())
    m = make_model([helper.make_node(op, names, ["y"], name="n", **attrs)], [("x", x_shape)], [("y", y_shape)], inits or {})
    return m


def node_of(result, name="n"):
    return next(n for n in result.nodes if n.name == name)


def test_conv_macs_and_bytes():
    m = single("Conv", [1, 8, 16, 16], [1, 16, 16, 16], {"w": np.zeros((16, 8, 3, 3)), "b": np.zeros(16)},
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    n = node_of(evaluate_model(m, 720))
    assert n.macs == 16 * 16 * 16 * 8 * 9  # Hout*Wout*Cout*Cin*k*k = 294912
    assert n.weight_bytes == 16 * 8 * 9 + 16 * 4  # int8 weights + int32 bias
    assert n.input_bytes == 8 * 16 * 16 and n.output_bytes == 16 * 16 * 16
    n16 = node_of(evaluate_model(m, 720, datapath_bits=16, weight_bits=16))
    assert n16.input_bytes == 2 * n.input_bytes and n16.weight_bytes == 2 * 16 * 8 * 9 + 16 * 4
    assert n16.compute_ms == pytest.approx(4 * n.compute_ms)  # two 16-bit operands: 2 x 2 passes


def test_depthwise_and_grouped_conv_macs():
    dw = single("Conv", [1, 16, 16, 16], [1, 16, 8, 8], {"w": np.zeros((16, 1, 3, 3))},
                kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=16)
    assert node_of(evaluate_model(dw, 520)).macs == 8 * 8 * 16 * 9  # 9216
    g2 = single("Conv", [1, 8, 10, 10], [1, 8, 10, 10], {"w": np.zeros((8, 4, 1, 1))}, kernel_shape=[1, 1], group=2)
    assert node_of(evaluate_model(g2, 520)).macs == 10 * 10 * 8 * 4  # 3200


def test_depthwise_uses_the_array_poorly():
    """Same MACs: a depthwise conv takes longer than a dense conv with a full channel depth."""
    spec = cost_model_spec()
    dw = single("Conv", [1, 64, 32, 32], [1, 64, 32, 32], {"w": np.zeros((64, 1, 3, 3))},
                kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=64)
    dense = single("Conv", [1, 16, 32, 32], [1, 4, 32, 32], {"w": np.zeros((4, 16, 3, 3))}, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    for pid in PLATFORMS:
        a, b = node_of(evaluate_model(dw, pid)), node_of(evaluate_model(dense, pid))
        assert a.macs == b.macs == 32 * 32 * 64 * 9
        lanes = get_platform(pid).figure("channel_lanes")
        util = max(spec.constant("channelwise_utilisation"), 1 / lanes)  # channel-wise path or one lane of the array
        assert a.compute_ms == pytest.approx(b.compute_ms / util, rel=1e-9)
        assert a.compute_ms > 3 * b.compute_ms


def test_lane_utilisation():
    assert lane_utilisation(3, 16) == pytest.approx(3 / 16)
    assert lane_utilisation(16, 16) == 1.0
    assert lane_utilisation(24, 16) == pytest.approx(24 / 32)
    assert lane_utilisation(3, 4) == pytest.approx(0.75)


def test_conv_transpose_gemm_matmul_macs():
    ct = single("ConvTranspose", [1, 8, 10, 10], [1, 4, 20, 20], {"w": np.zeros((8, 4, 2, 2))}, kernel_shape=[2, 2], strides=[2, 2])
    assert node_of(evaluate_model(ct, 720)).macs == 8 * 10 * 10 * 4 * 4  # Cin*Hin*Win*Cout*k*k = 12800
    gemm = single("Gemm", [2, 32], [2, 10], {"w": np.zeros((10, 32)), "b": np.zeros(10)}, transB=1)
    g = node_of(evaluate_model(gemm, 520))
    assert g.macs == 2 * 32 * 10 and g.weight_bytes == 320 + 40
    mm = single("MatMul", [3, 5, 8], [3, 5, 4], {"w": np.zeros((8, 4))})
    assert node_of(evaluate_model(mm, 720)).macs == 3 * 5 * 8 * 4  # 480


def test_vector_ops_count_as_ops():
    pool = single("MaxPool", [1, 8, 16, 16], [1, 8, 8, 8], kernel_shape=[2, 2], strides=[2, 2])
    assert node_of(evaluate_model(pool, 520)).macs == 8 * 8 * 8 * 4  # out elements x window
    gap = single("GlobalAveragePool", [1, 8, 8, 8], [1, 8, 1, 1])
    assert node_of(evaluate_model(gap, 520)).macs == 8 * 8 * 8  # input elements
    add = make_model([helper.make_node("Add", ["x", "z"], ["y"], name="n")], [("x", [1, 4, 8, 8]), ("z", [1, 4, 8, 8])], [("y", [1, 4, 8, 8])])
    n = node_of(evaluate_model(add, 520))
    assert n.macs == 256 and n.input_bytes == 512 and n.output_bytes == 256 and n.weight_bytes == 0


def test_fused_activation_and_pool_cost_nothing():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    m = make_model(nodes, [("x", [1, 4, 16, 16])], [("y", [1, 8, 8, 8])], {"w": np.zeros((8, 4, 3, 3))})
    r = evaluate_model(m, 520)
    conv, relu, pool = (node_of(r, k) for k in ("conv", "relu", "pool"))
    assert relu.bound == pool.bound == "fused" and relu.time_ms == pool.time_ms == 0
    assert relu.placement == pool.placement == "NPU"
    assert conv.output_bytes == 8 * 8 * 8  # the conv writes the pooled result
    assert r.total_ms == pytest.approx(conv.time_ms)


def test_time_equation_and_summary():
    m = single("Conv", [1, 64, 56, 56], [1, 64, 56, 56], {"w": np.zeros((64, 64, 3, 3))}, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    plat = get_platform(530)
    c = CostConstants.for_platform(plat)
    r = evaluate_model(m, plat, model_name="one")
    n = node_of(r)
    assert n.compute_ms == pytest.approx(n.macs / (c.peak_macs_per_s * c.mac_efficiency) * 1e3)
    assert n.time_ms == pytest.approx(max(n.compute_ms, n.memory_ms) + c.layer_overhead_s * 1e3)
    assert r.total_ms == pytest.approx(sum(x.time_ms for x in r.nodes))
    assert r.fps == pytest.approx(1000 / r.total_ms)
    assert r.total_macs == n.macs and r.weight_bytes == n.weight_bytes
    assert r.platform == 530 and r.model_name == "one"
    assert r.bitwidths == {"datapath": "int8", "weight": "int8", "model_in": "int8", "model_out": "int8", "cpu_node": "int8"}
    assert r.cost_model["name"] == "npuflow-roofline" and "mac_efficiency" in r.cost_model["sources"]


def test_bandwidth_overrides_make_weights_memory_bound():
    m = single("Gemm", [1, 2048], [1, 2048], {"w": np.zeros((2048, 2048))}, transB=1)
    base = node_of(evaluate_model(m, 720))
    slow = node_of(evaluate_model(m, 720, weight_bandwidth=0.1))
    assert slow.memory_ms == pytest.approx(2048 * 2048 / 0.1e9 * 1e3)
    assert slow.bound == "memory" and slow.time_ms > base.time_ms
    io = node_of(evaluate_model(m, 720, dma_bandwidth=0.001))  # graph input/output always go through DDR
    assert io.memory_ms == pytest.approx(max(2048 / 1e6, 2048 * 2048 / 12.8e9) * 1e3)


def test_cpu_nodes_are_not_timed():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["c"], ["y"], name="sig")]
    m = make_model(nodes, [("x", [1, 4, 8, 8])], [("y", [1, 4, 8, 8])], {"w": np.zeros((4, 4, 1, 1))})
    r = evaluate_model(m, 520)
    sig = node_of(r, "sig")
    assert sig.placement == "CPU" and sig.bound == "cpu" and sig.time_ms == 0 and sig.macs == 256
    assert [n.name for n in r.cpu_nodes] == ["sig"] and [n.name for n in r.npu_nodes] == ["conv"]


@pytest.mark.parametrize("kwargs, match", [
    ({"datapath_bits": 16}, "int16 is not available on KL520"),
    ({"weight_bits": 4}, "int4 is not available on KL520"),
    ({"datapath_bits": "int12"}, "datapath"),
    ({"weight_bits": 8.0}, "weight_bits"),
    ({"dma_bandwidth": 0}, "dma_bandwidth"),
    ({"weight_bandwidth": -1.0}, "weight_bandwidth"),
])
def test_invalid_options(kwargs, match):
    m = single("Relu", [1, 4], [1, 4])
    with pytest.raises(InvalidConfigError, match=match):
        evaluate_model(m, 520, **kwargs)


def test_int4_weights_only_on_730_and_faster():
    m = single("Conv", [1, 64, 28, 28], [1, 64, 28, 28], {"w": np.zeros((64, 64, 3, 3))}, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    with pytest.raises(InvalidConfigError):
        evaluate_model(m, 720, weight_bits=4)
    a, b = node_of(evaluate_model(m, 730)), node_of(evaluate_model(m, 730, weight_bits="int4"))
    assert b.compute_ms == pytest.approx(a.compute_ms / 2) and b.weight_bytes == a.weight_bytes // 2


def test_bad_model_and_platform():
    with pytest.raises(InvalidConfigError):
        evaluate_model("model.onnx", 520)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="520, 720, 530, 630, 730"):
        evaluate_model(single("Relu", [1, 4], [1, 4]), 999)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("pid", PLATFORMS)
def test_published_fps_within_30_percent(arch_model, name, pid):
    r = evaluate_model(arch_model(name), pid, model_name=name)
    pub = PUBLISHED[name][pid]
    assert abs(r.fps / pub - 1) <= 0.30, f"{name} KL{pid}: estimated {r.fps:.2f} FPS vs published {pub}"
    assert not r.cpu_nodes


def test_arch_model_macs(arch_model):
    conv_macs = lambda r: sum(n.macs for n in r.nodes if n.op_type in ("Conv", "Gemm"))  # noqa: E731
    assert conv_macs(evaluate_model(arch_model("mobilenet_v2"), 720)) == 300_774_272
    assert conv_macs(evaluate_model(arch_model("resnet50"), 720)) == 4_089_184_256


@pytest.mark.parametrize("name", SHARED_MODELS)
def test_every_shared_model_on_every_platform(shared_model, name):
    model = shared_model(name)
    for pid in PLATFORMS:
        r = evaluate_model(model, pid, model_name=name)
        assert r.fps > 0 and math.isfinite(r.fps) and r.total_ms > 0, pid
        assert r.npu_nodes and r.total_macs > 0
        assert r.ddr_read_bytes >= r.weight_bytes > 0
        assert all(n.time_ms == 0 for n in r.cpu_nodes)
        assert len(r.nodes) == len(model.graph.node)
