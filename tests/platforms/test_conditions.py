"""The generic condition checker, on NodeInfo built by hand."""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.platforms import get_platform
from npuflow.platforms.conditions import NodeInfo, RuleError, check_rules, validate_rule

X4 = (1, 8, 32, 32)


def node(op, attrs=None, consts=None, n_inputs=1, in_shapes=(X4,), out_shapes=(X4,)):
    consts = {k: np.asarray(v) for k, v in (consts or {}).items()}
    return NodeInfo(name="n", op_type=op, attrs=attrs or {}, input_shapes=in_shapes, output_shapes=out_shapes,
                    const_inputs=consts, present_inputs=frozenset(range(n_inputs)))


def reason(pid, n):
    return get_platform(pid).npu_reason(n)


def test_conv_kernel_13_on_520_only():
    n = node("Conv", {"kernel_shape": [13, 13]}, consts={1: np.zeros((8, 8, 13, 13))}, n_inputs=2)
    assert reason(520, n) == "Conv kernel_shape 13x13 exceeds the KL520 limit 12"
    for pid in (720, 530, 630, 730):
        assert reason(pid, n) is None
    assert reason(520, node("Conv", {"kernel_shape": [12, 12]})) is None


def test_conv_strides_on_520():
    assert reason(520, node("Conv", {"kernel_shape": [3, 3], "strides": [4, 16]})) is None
    assert reason(520, node("Conv", {"kernel_shape": [3, 3], "strides": [1, 17]})) == "Conv stride_w 17 exceeds the KL520 limit 16"
    assert reason(520, node("Conv", {"kernel_shape": [3, 3], "strides": [5, 1]})) == "Conv stride_h 5 exceeds the KL520 limit 4"
    assert reason(520, node("Conv", {"kernel_shape": [3, 3]})) is None  # default strides 1


def test_clip_min_zero_max_non_negative():
    ok = node("Clip", consts={1: 0.0, 2: 6.0}, n_inputs=3)
    assert reason(520, ok) is None
    bad = node("Clip", consts={1: -1.0, 2: 1.0}, n_inputs=3)
    assert "min is -1" in reason(520, bad)
    assert "max -1 is below" in reason(720, node("Clip", consts={1: 0.0, 2: -1.0}, n_inputs=3))
    assert "min is not set" in reason(520, node("Clip"))  # no min: -inf
    assert reason(520, node("Clip", {"min": 0.0, "max": 6.0})) is None  # opset 6 attributes
    assert reason(520, node("Clip", consts={1: 0.0}, n_inputs=2)) is None  # no max = ReLU
    assert "not a constant" in reason(520, node("Clip", n_inputs=2))


def test_pad_conditions():
    pads = [0, 0, 1, 1, 0, 0, 1, 1]
    assert reason(520, node("Pad", consts={1: pads}, n_inputs=2)) is None
    assert "mode is reflect" in reason(520, node("Pad", {"mode": "reflect"}, consts={1: pads}, n_inputs=2))
    assert "pads" in reason(520, node("Pad", consts={1: [0, 0, 32, 0, 0, 0, 0, 0]}, n_inputs=2))
    assert "batch" in reason(520, node("Pad", consts={1: [1, 0, 0, 0, 0, 0, 0, 0]}, n_inputs=2))
    assert "constant value" in reason(520, node("Pad", consts={1: pads, 2: 1.0}, n_inputs=3))
    assert reason(520, node("Pad", {"pads": pads})) is None  # opset < 11


def test_reduce_keepdims():
    assert reason(520, node("ReduceMax")) is None
    assert reason(520, node("ReduceMax", {"keepdims": 0})) == "ReduceMax keepdims is 0; the KL520 NPU supports only 1"
    assert "keepdims" in reason(720, node("ReduceMean", {"keepdims": 0}))


def test_resize_modes():
    assert "cubic" in reason(720, node("Resize", {"mode": "cubic"}))
    assert reason(720, node("Resize", {"mode": "linear"})) is None
    assert "mode linear" in reason(520, node("Resize", {"mode": "linear"}))
    assert reason(520, node("Resize", {"mode": "nearest", "nearest_mode": "floor"})) is None
    assert "nearest_mode" in reason(520, node("Resize", {"mode": "nearest"}))


def test_pow_only_square():
    assert reason(720, node("Pow", consts={1: 2.0}, n_inputs=2)) is None
    assert "exponent is 3" in reason(720, node("Pow", consts={1: 3.0}, n_inputs=2))


def test_matmul_second_input():
    assert reason(720, node("MatMul", consts={1: np.zeros((8, 4))}, n_inputs=2, in_shapes=((1, 5, 8), (8, 4)), out_shapes=((1, 5, 4),))) is None
    r = reason(720, node("MatMul", n_inputs=2, in_shapes=((1, 5, 8), (1, 8, 4)), out_shapes=((1, 5, 4),)))
    assert r.startswith("MatMul second input must be a constant")
    assert reason(720, node("MatMul", n_inputs=2, in_shapes=((1, 2, 5, 8), (1, 2, 8, 4)), out_shapes=((1, 2, 5, 4),))) is None


def test_rank_limit_is_platform_wide():
    five = (1, 2, 3, 4, 5)
    assert reason(730, node("Add", n_inputs=2, in_shapes=(five, five), out_shapes=(five,))) == "Add rank 5 exceeds the KL730 limit 4"


def test_pools():
    assert reason(520, node("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]})) is None
    assert reason(720, node("MaxPool", {"kernel_shape": [5, 5], "strides": [1, 1]})) is None
    assert "stride 1" in reason(720, node("MaxPool", {"kernel_shape": [5, 5], "strides": [2, 2]}))
    assert "kernel_shape 5x5 exceeds" in reason(520, node("AveragePool", {"kernel_shape": [5, 5]}))
    big = node("GlobalAveragePool", in_shapes=((1, 8, 20, 20),), out_shapes=((1, 8, 1, 1),))
    assert "400 exceeds the KL520 limit 256" in reason(520, big)
    assert reason(720, big) is None


def test_unsupported_op_reason():
    assert reason(520, node("Sigmoid")) == "op Sigmoid not supported on KL520 NPU"


def test_check_rules_returns_first_failure():
    rules = [{"of": "attr:a", "max": 1}, {"of": "attr:b", "eq": 0}]
    n = node("X", {"a": 5, "b": 1})
    assert check_rules(rules, n, "KLX") == "X a 5 exceeds the KLX limit 1"
    assert check_rules(rules, node("X", {"a": 0, "b": 0}), "KLX") is None
    assert check_rules([{"of": "attr:m", "in": ["p", "q"]}], node("X", {"m": "r"}), "KLX") == \
        "X m r is not supported on the KLX NPU (supported: p, q)"
    assert check_rules([{"of": "reduce_axes", "subset_of": [2, 3]}], node("X", {"axes": [-1, -2]}), "KLX") is None
    assert "within" in check_rules([{"of": "reduce_axes", "subset_of": [2, 3]}], node("X", {"axes": [1]}), "KLX")


def test_unknown_shape_is_permissive():
    assert check_rules([{"of": "rank", "max": 4}], node("X", in_shapes=(None,), out_shapes=(None,)), "KLX") is None


@pytest.mark.parametrize("rule", [{"of": "attr:x"}, {"max": 1}, {"of": "input:a", "max": 1}, {"any": []}, [1], {"of": "attr:x", "max": 1, "eq": 1}])
def test_validate_rule_rejects(rule):
    with pytest.raises(RuleError):
        validate_rule(rule, "t")
