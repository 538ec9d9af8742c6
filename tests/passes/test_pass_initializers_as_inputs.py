"""initializers_as_inputs: weights listed in graph.input are no longer inputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from optimizer_testutil import init, make_model, ort_outputs, vi

from npuflow.ir.load import model_inputs
from npuflow.passes import initializers_as_inputs


@pytest.mark.parametrize("name, n_inputs, n_inits, real", [
    ("ultraface_rfb_320", 245, 244, "input"),
    ("mnist_cntk_opt", 8, 7, "Input3"),
])
def test_old_exporter_models_keep_only_real_inputs(load_shared, name, n_inputs, n_inits, real):
    model = load_shared(name)
    assert len(model.graph.input) == n_inputs
    out, modified = initializers_as_inputs.run(model)
    inits = {t.name for t in out.graph.initializer}
    assert modified
    assert [i.name for i in out.graph.input] == [real]
    assert not inits & {i.name for i in out.graph.input}
    assert len(inits) == n_inits  # weights are kept
    assert out.ir_version >= 4
    onnx.checker.check_model(out)


def test_ir3_graph_is_raised_to_ir4_and_still_runs():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    model = make_model([node], [vi("x", [1, 2]), vi("w", [2, 3])], [vi("y", [1, 3])], [init("w", w)],
                       opset=8, ir_version=3)
    onnx.checker.check_model(model)
    x = np.ones((1, 2), np.float32)
    ref = ort_outputs(model, {"x": x})
    out, modified = initializers_as_inputs.run(model)
    assert modified and out.ir_version == 4
    assert [i.name for i in model_inputs(out)] == [i.name for i in out.graph.input] == ["x"]
    onnx.checker.check_model(out)
    np.testing.assert_array_equal(ort_outputs(out, {"x": x})[0], ref[0])


def test_model_without_listed_initializers_is_unchanged(load_shared):
    model = load_shared("yolox_nano")
    before = model.SerializeToString()
    out, modified = initializers_as_inputs.run(model)
    assert not modified and out.SerializeToString() == before
