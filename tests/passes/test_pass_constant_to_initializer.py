"""constant_to_initializer: Constant nodes become initializers holding the same values."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from optimizer_testutil import make_model, ops, ort_outputs, vi

from npuflow.passes import constant_to_initializer


@pytest.mark.parametrize("name, n_constants", [
    ("ch_ppocr_mobile_v2.0_cls_infer", 308),
    ("en_PP-OCRv3_det_infer", 380),
    ("en_number_mobile_v2.0_rec_infer", 397),
    ("ultraface_rfb_320", 31),
])
def test_real_models_lose_every_constant_node_with_values_kept(load_shared, name, n_constants):
    model = load_shared(name)
    values = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    assert len(values) == n_constants
    n_inits = len(model.graph.initializer)
    out, modified = constant_to_initializer.run(model)
    assert modified and ops(out)["Constant"] == 0
    assert len(out.graph.initializer) == n_inits + n_constants
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    for k, v in values.items():
        assert inits[k].dtype == v.dtype and inits[k].shape == v.shape
        np.testing.assert_array_equal(inits[k], v)


@pytest.mark.parametrize("attr, value, expected", [
    ("value_floats", [1.5, -2.0, 3.25], np.array([1.5, -2.0, 3.25], np.float32)),
    ("value_float", 2.5, np.array(2.5, np.float32)),
    ("value_ints", [1, -2, 3], np.array([1, -2, 3], np.int64)),
    ("value_int", 7, np.array(7, np.int64)),
    ("value", numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3)),
     np.arange(6, dtype=np.float32).reshape(2, 3)),
])
def test_every_dense_constant_form(attr, value, expected):
    const = helper.make_node("Constant", [], ["c"], **{attr: value})
    add = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    elem = onnx.TensorProto.FLOAT if expected.dtype == np.float32 else onnx.TensorProto.INT64
    model = make_model([const, add], [vi("x", [2, 3], elem)], [vi("y", [2, 3], elem)])
    x = np.ones((2, 3), expected.dtype)
    ref = ort_outputs(model, {"x": x})
    out, modified = constant_to_initializer.run(model)
    assert modified and [n.op_type for n in out.graph.node] == ["Add"]
    (t,) = out.graph.initializer
    got = numpy_helper.to_array(t)
    assert t.name == "c" and got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    onnx.checker.check_model(out)
    np.testing.assert_array_equal(ort_outputs(out, {"x": x})[0], ref[0])


def test_sparse_constant_is_left_alone():
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([5.0], np.float32), "v"), numpy_helper.from_array(np.array([1], np.int64), "i"), [3])
    const = helper.make_node("Constant", [], ["c"], sparse_value=sparse)
    add = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    model = make_model([const, add], [vi("x", [3])], [vi("y", [3])])
    out, modified = constant_to_initializer.run(model)
    assert not modified and ops(out)["Constant"] == 1


def test_ir3_model_is_raised_to_ir4():
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(3, np.float32)))
    add = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    model = make_model([const, add], [vi("x", [3])], [vi("y", [3])], opset=8, ir_version=3)
    out, _ = constant_to_initializer.run(model)
    assert out.ir_version == 4
    onnx.checker.check_model(out)
