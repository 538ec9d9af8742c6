"""fix_input_shapes: dynamic input dims fixed from input_shapes, batch defaults to 1, clear errors."""
from __future__ import annotations

import pytest
from onnx import helper
from optimizer_testutil import make_model, vi

from npuflow.errors import DynamicShapeError, InvalidConfigError
from npuflow.ir.load import dims_of
from npuflow.passes import fix_input_shapes


def _dims(model, name):
    return dims_of(next(i for i in model.graph.input if i.name == name))


def test_rec_model_without_override_names_input_dim_and_symbol(load_shared):
    model = load_shared("en_number_mobile_v2.0_rec_infer")
    with pytest.raises(DynamicShapeError) as e:
        fix_input_shapes.run(model)
    msg = str(e.value)
    assert "'x'" in msg and "dim 3" in msg and "p2o.DynamicDimension.1" in msg
    assert "dim 0 (" not in msg  # the batch dim defaults to 1, it is not an error
    assert 'input_shapes={"x": [1, 3, 32, <p2o.DynamicDimension.1>]}' in msg
    assert "--input-shape x=1,3,32,<p2o.DynamicDimension.1>" in msg
    assert 'input_shapes={"x": [1, 3, 32, 320]}' in msg and "--input-shape x=1,3,32,320" in msg


def test_det_model_error_lists_every_dynamic_dim(load_shared):
    with pytest.raises(DynamicShapeError) as e:
        fix_input_shapes.run(load_shared("en_PP-OCRv3_det_infer"))
    msg = str(e.value)
    assert "dim 2 ('p2o.DynamicDimension.1')" in msg and "dim 3 ('p2o.DynamicDimension.2')" in msg


def test_cls_model_unnamed_dims_and_minus_one_batch(load_shared):
    model = load_shared("ch_ppocr_mobile_v2.0_cls_infer")
    assert _dims(model, "x") == [-1, 3, "?", "?"]
    with pytest.raises(DynamicShapeError, match=r"dim 2 \('\?'\), dim 3 \('\?'\)"):
        fix_input_shapes.run(model)
    out, modified = fix_input_shapes.run(model, input_shapes={"x": [1, 3, 48, 192]})
    assert modified and _dims(out, "x") == [1, 3, 48, 192]
    # stale output dims (-1) are cleared for shape inference to recompute
    assert all(not d.HasField("dim_value") and not d.HasField("dim_param")
               for d in out.graph.output[0].type.tensor_type.shape.dim)


def test_override_fixes_rec_input_and_clears_stale_value_info(load_shared):
    model = load_shared("en_number_mobile_v2.0_rec_infer")
    model.graph.value_info.append(vi("stale", [7, 7]))
    out, modified = fix_input_shapes.run(model, input_shapes={"x": [1, 3, 32, 320]})
    assert modified and _dims(out, "x") == [1, 3, 32, 320]
    assert len(out.graph.value_info) == 0
    assert len(out.graph.output[0].type.tensor_type.shape.dim) == 3  # rank kept


def test_dynamic_batch_alone_defaults_to_1(load_shared):
    model = load_shared("efficientnet_lite0")
    assert _dims(model, "input") == ["batch", 3, 224, 224]
    out, modified = fix_input_shapes.run(model)
    assert modified and _dims(out, "input") == [1, 3, 224, 224]


def test_static_model_without_override_is_unchanged(load_shared):
    model = load_shared("yolox_nano")
    before = model.SerializeToString()
    out, modified = fix_input_shapes.run(model)
    assert not modified and out.SerializeToString() == before
    # an override equal to the fixed shape is accepted and changes nothing
    out, modified = fix_input_shapes.run(model, input_shapes={"images": [1, 3, 416, 416]})
    assert not modified


def test_unknown_input_name_lists_the_model_inputs(load_shared):
    with pytest.raises(InvalidConfigError) as e:
        fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"), input_shapes={"images": [1, 3, 32, 320]})
    msg = str(e.value)
    assert "'images'" in msg and "'x' [p2o.DynamicDimension.0, 3, 32, p2o.DynamicDimension.1]" in msg


def test_weights_listed_as_inputs_are_not_valid_override_names(load_shared):
    model = load_shared("mnist_cntk_opt")
    weight = model.graph.initializer[0].name
    with pytest.raises(InvalidConfigError, match="'Input3'"):
        fix_input_shapes.run(model, input_shapes={weight: [1]})


def test_rank_mismatch_says_expected_and_given_rank(load_shared):
    with pytest.raises(InvalidConfigError) as e:
        fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"), input_shapes={"x": [3, 32, 320]})
    msg = str(e.value)
    assert "rank 3" in msg and "rank 4" in msg and "expected 4 dims" in msg


@pytest.mark.parametrize("bad", [[1, 4, 32, 320], [1, 3, 48, 320]])
def test_override_may_not_change_a_fixed_dim(load_shared, bad):
    with pytest.raises(InvalidConfigError, match="only dynamic dims can be chosen"):
        fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"), input_shapes={"x": bad})


@pytest.mark.parametrize("bad", [[1, 3, 0, 320], [1, 3, -32, 320], "1,3,32,320", [1, 3, 32.0, 320], 5, [1, 3, True, 320]])
def test_override_values_must_be_positive_ints(load_shared, bad):
    with pytest.raises(InvalidConfigError):
        fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"), input_shapes={"x": bad})


def test_input_shapes_must_be_a_mapping(load_shared):
    with pytest.raises(InvalidConfigError, match="must be a dict"):
        fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"), input_shapes=[1, 3, 32, 320])


def test_input_without_any_shape_needs_an_override():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", None)], [vi("y", None)])
    with pytest.raises(DynamicShapeError, match="'x' has no shape information"):
        fix_input_shapes.run(model)
    out, modified = fix_input_shapes.run(model, input_shapes={"x": [2, 5]})
    assert modified and _dims(out, "x") == [2, 5]


def test_numpy_ints_and_tuples_are_accepted(load_shared):
    import numpy as np

    out, _ = fix_input_shapes.run(load_shared("en_number_mobile_v2.0_rec_infer"),
                                  input_shapes={"x": tuple(np.array([1, 3, 32, 96]))})
    assert _dims(out, "x") == [1, 3, 32, 96]
