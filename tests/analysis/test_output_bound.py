"""A model output written by a bounded op (Softmax, Sigmoid, HardSigmoid, Tanh: |y| <= 1) takes the
op's bound as its range where the calibration reaches more than half of it (docs/fixed-point.md
section 3.1): 1.0 is then on the grid, and a more confident evaluation input than any calibration
input no longer saturates below it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from npuflow.analysis.ranges import (
    OUTPUT_BOUNDS,
    QuantOptions,
    choose_abs_max,
    output_bound,
)
from tests.analysis.helpers import calibration_histogram as _hist


def test_bound_rule_by_op_role_and_calibrated_max():
    assert OUTPUT_BOUNDS == {"Softmax": 1.0, "Sigmoid": 1.0, "HardSigmoid": 1.0, "Tanh": 1.0}
    o8, o16 = QuantOptions(), QuantOptions(model_out_bits=16)
    conf = _hist([[0.99993, 7e-5], [0.2, 0.8]])
    # a model output of a bounded op: the bound, at 8 and at 16 bits (no headroom)
    for op in OUTPUT_BOUNDS:
        assert output_bound(op, conf) == 1.0
        assert choose_abs_max(conf, 8, o8, "output", op_type=op) == 1.0
        assert choose_abs_max(conf, 16, o16, "output", op_type=op) == 1.0
    # other ops, internal tensors and post_sigmoid-capped tensors: the rules of before
    assert output_bound("Relu", conf) is None
    assert choose_abs_max(conf, 8, o8, "output", op_type="Conv") == pytest.approx(0.99993)
    assert choose_abs_max(conf, 16, o16, "output") == pytest.approx(2 * 0.99993)  # PROMOTED_HEADROOM
    assert choose_abs_max(conf, 8, o8, "internal", op_type="Softmax") == choose_abs_max(conf, 8, o8, "internal")
    assert choose_abs_max(conf, 8, o8, "output", op_type="Sigmoid", capped=True) == pytest.approx(0.99993)
    # at most half the bound (a detector's rare scores): the calibrated max keeps its finer grid
    low = _hist([[0.5, 0.01], [0.3]])
    assert output_bound("Sigmoid", low) is None
    assert choose_abs_max(low, 8, o8, "output", op_type="Sigmoid") == pytest.approx(0.5)
    assert output_bound("Sigmoid", _hist([[0.5000001]])) == 1.0
    # the format: 1.0 is the top of the int8 grid (127 / (scale * 2**7) with scale 127/128)
    from npuflow.quant.formats import activation_format
    fmt = activation_format(1.0, 8)
    assert fmt.dequantize(fmt.quantize(np.array([0.99999988])))[0] == 1.0
    before = activation_format(0.99993, 8)
    assert before.dequantize(before.quantize(np.array([0.99999988])))[0] < 0.99994


def _softmax_model() -> onnx.ModelProto:
    # logits (10 x0, -10 x0): the other inputs only widen the input range
    w = np.zeros((4, 2), np.float32)
    w[0] = [10.0, -10.0]
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], w.ravel())
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"], name="fc"),
         helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=-1)],
        "softmax_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_softmax_output_reaches_one_end_to_end(tmp_path):
    """analysis() on a Softmax head calibrated on moderately confident inputs; an evaluation input
    far more confident than any of them dequantizes to exactly 1.0 (it stopped below before), and
    the report's rule names the bound."""
    import warnings

    import npuflow

    path = tmp_path / "softmax_head.onnx"
    onnx.save(_softmax_model(), str(path))
    rng = np.random.default_rng(1)
    calib = []  # x0 within +-0.4 (p at most 0.99966), x1..x3 up to +-2
    for _ in range(16):
        x = rng.uniform(-2.0, 2.0, (1, 4)).astype(np.float32)
        x[0, 0] = rng.uniform(-0.4, 0.4)
        calib.append(x)
    km = npuflow.ModelConfig(32769, "0001", "720", onnx_path=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bie = km.analysis({"x": calib}, output_dir=str(tmp_path / "out"), progress=False, report=False)
    fmt = km.analysis_result.program.formats["prob"]
    assert km.analysis_result.program.notes.range["prob"] == "output bound"
    assert fmt.dequantize(np.array([127]))[0] == 1.0
    m = npuflow.load(bie)
    sure = np.array([[2.0, 0.0, 0.0, 0.0]], np.float32)  # logits +-20 in float: p = 1 - 4e-18
    q = np.asarray(m.run({"x": sure})[0]).ravel()
    assert sorted(q.tolist()) == [0.0, 1.0]
