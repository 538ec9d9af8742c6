"""The report on a step that reads a non-float tensor made by another step (TensorFlow's div_no_nan:
Equal -> bool condition -> Where), as basic_pitch_nmp has: it measured each step on the float model's
tensors, which exposed only the quantized (float) ones, and failed with a KeyError at the Where."""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ktc
import npuflow


def _div_no_nan_model() -> onnx.ModelProto:
    w = np.array([[[[0.5]], [[-1.0]]], [[[1.5]], [[0.25]]]], np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Equal", ["c", "zero"], ["cond"], name="eq"),
             helper.make_node("Where", ["cond", "one", "c"], ["w"], name="where"),
             helper.make_node("Relu", ["w"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "div_no_nan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_report_measures_a_where_fed_by_a_bool_step(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_div_no_nan_model(), str(path))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 2, 4, 4)).astype(np.float32) for _ in range(6)]
    for x in xs[::2]:
        x[..., :2] = 0.0  # conv output exactly 0 there: the condition is true (Where gives 1.0)
    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=str(path))
    bie = km.analysis({"x": xs}, output_dir=str(tmp_path / "out"), threads=1, progress=False)
    doc = json.loads((tmp_path / "out" / "model_fx_report.json").read_text())
    rows = {r["name"]: r for r in doc["quantization"]["steps"]}
    assert rows["where"]["op_type"] == "Where"
    assert rows["where"]["isolated"]["snr_db"] is not None and rows["where"]["isolated"]["snr_db"] > 30
    assert doc["quantization"]["model_output_snr_db"] is not None
    # the BIE computes the condition too: 1.0 where the convolution is exactly 0 (0.0 if the condition were lost)
    y = npuflow.load(bie).run({"x": xs[0]})
    y = np.asarray(next(iter(y.values())) if isinstance(y, dict) else y[0])
    np.testing.assert_allclose(y[..., :2], 1.0, atol=0.01)  # 1.0 in the output's int8 format


def test_current_override_is_the_users_only():
    """The report's suggestions keep what the user already overrides at a node, never an automatic
    choice (a 16-bit promotion, a mixed mode's rule), which the pasted suggestion replaces."""
    from types import SimpleNamespace

    from npuflow.analysis.ranges import NodeOverride, QuantOptions
    from npuflow.report.precision import _current_override

    st = SimpleNamespace(name="s", nodes=("Conv_1", "Relu_2"))
    user = QuantOptions(overrides={"Relu_2": NodeOverride(bits=16, abs_max=3.0)})
    auto = QuantOptions(overrides={"Conv_1": NodeOverride(bits=16, auto=True)})
    assert _current_override(user, st) == {"bits": 16, "abs_max": 3.0}
    assert _current_override(auto, st) == {}
    assert _current_override(QuantOptions(), st) == {}
