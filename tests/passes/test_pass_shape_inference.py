"""shape_inference: after optimize every intermediate tensor has a static shape."""
from __future__ import annotations

import pytest
from onnx import helper
from optimizer_testutil import make_model, static_shape_report, vi

from real_inputs import MODELS
from npuflow.passes import shape_inference


@pytest.mark.parametrize("name", list(MODELS))
def test_every_intermediate_tensor_is_static_after_optimize(trace, name):
    t = trace(name)
    assert static_shape_report(t.optimized) == []
    for o in t.optimized.graph.output:
        dims = o.type.tensor_type.shape.dim
        assert dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims), o


def test_stale_output_dim_of_pan_is_recomputed(trace):
    t = trace("pan_mnv3s_skin_clothes_hair")
    assert t.original.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "unk__23"
    assert [d.dim_value for d in t.optimized.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 512, 512]


def test_stale_value_info_is_replaced():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Neg", ["r"], ["y"], name="neg")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", ["n", None])])
    model.graph.value_info.append(vi("r", ["stale", 3]))
    model.graph.value_info.append(vi("gone", [9]))
    out, modified = shape_inference.run(model)
    assert modified
    assert {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in out.graph.value_info} == {"r": [2, 3]}
    assert [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim] == [2, 3]
    again, modified = shape_inference.run(out)
    assert not modified


def test_contradicting_declared_output_dim_is_replaced_and_unknown_one_restored(caplog):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", [2, 3])], [vi("y", [2, 4])])
    out, modified = shape_inference.run(model)
    assert modified and [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim] == [2, 3]
    assert "declared 4 but is inferred as 3" in caplog.text
    # an op shape inference does not know: the declared output dims are kept
    node = helper.make_node("MyOp", ["x"], ["y"], name="custom", domain="my.domain")
    model = make_model([node], [vi("x", [2, 3])], [vi("y", ["N", 4])])
    model.opset_import.append(helper.make_opsetid("my.domain", 1))
    out, _ = shape_inference.run(model)
    dims = out.graph.output[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 4)
