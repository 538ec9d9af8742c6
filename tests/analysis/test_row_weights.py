"""Outputs read per detection (docs/fixed-point.md section 3.1): a detector's boxes, landmarks and
scores are read only at the rows (anchors) whose score passes the decode's threshold, so the
measurements weight each row of the outputs that share a Softmax score output's rows by
``1 - p(background)``, the background being the class most rows predict.

The rule runs on hand-made values; the weighted measure on the shipped MNIST model cut after its
second convolution and read as 196 rows of 16 values (a Softmax over them as the scores, the rows
themselves as "boxes"); the effect on a real detector (retinaface, shared) beside the equalization
test of the same model.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from npuflow.analysis.effects import softmax_logits
from npuflow.analysis.precision import OutputSnr, row_weights
from tests.analysis.test_measure_logits import (
    analyse_mnist_variant,
    mnist_until,
    report_of,
)


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)[None]


def test_weights_are_one_minus_the_background_probability():
    conf = _probs([[0.99, 0.01], [0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    values = [{"conf": conf, "loc": np.ones((1, 4, 4)), "emb": np.ones((1, 3))}]
    w, by = row_weights(values, ["loc", "conf", "emb"], ["conf"])
    assert by == {"loc": "conf", "conf": "conf"}
    np.testing.assert_allclose(w[0]["loc"], [[[0.01], [0.8], [0.1], [0.5]]])
    np.testing.assert_array_equal(w[0]["conf"], w[0]["loc"])
    assert "emb" not in w[0]


def test_the_background_is_the_class_most_rows_predict():
    # class 2 wins most rows: it is the background, whatever its index
    conf = _probs([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.05, 0.05, 0.9], [0.3, 0.0, 0.7]])
    w, _ = row_weights([{"conf": conf, "loc": np.zeros((1, 4, 2))}], ["conf", "loc"], ["conf"])
    np.testing.assert_allclose(w[0]["loc"][0, :, 0], [0.2, 0.9, 0.1, 0.3])


@pytest.mark.parametrize("case", ["one row", "axis not last", "alone", "no object", "not a score"])
def test_nothing_is_weighted_unless_a_score_output_qualifies(case):
    conf = _probs([[0.2, 0.8], [0.9, 0.1], [0.99, 0.01]])
    values = {"conf": conf, "loc": np.ones((1, 3, 4))}
    outputs, scores = ["conf", "loc"], ["conf"]
    if case == "one row":  # a classifier's probabilities and an embedding
        values = {"conf": np.array([[0.3, 0.7]]), "loc": np.ones((1, 5))}
    elif case == "axis not last":  # the Softmax ran over axis 1: the last axis does not sum to 1
        values["conf"] = np.full((1, 3, 2), 0.25)
    elif case == "alone":
        outputs = ["conf"]
    elif case == "no object":  # less than one row's worth of object on all the inputs
        values["conf"] = _probs([[0.9, 0.1], [0.99, 0.01], [0.95, 0.05]])
    else:
        scores = []
    assert row_weights([values], outputs, scores) == ([], {})


# ------------------------------------------------------------------------------------------------ measure
def _detector(path) -> onnx.ModelProto:
    """MNIST up to its second convolution ([1, 16, 14, 14]) as 196 rows of 16: ``boxes`` the rows,
    ``scores`` their Softmax."""
    m = mnist_until(path, "Convolution110_Output_0")
    g = m.graph
    g.node.append(onnx.helper.make_node("Transpose", ["Convolution110_Output_0"], ["nhwc"], name="nhwc",
                                        perm=[0, 2, 3, 1]))
    g.node.append(onnx.helper.make_node("Constant", [], ["rows_shape"], name="rows_shape",
                                        value=onnx.numpy_helper.from_array(np.array([1, 196, 16], dtype=np.int64))))
    g.node.append(onnx.helper.make_node("Reshape", ["nhwc", "rows_shape"], ["boxes"], name="rows"))
    g.node.append(onnx.helper.make_node("Softmax", ["boxes"], ["scores"], name="scores", axis=2))
    g.output.extend([onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, 196, 16]),
                     onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 196, 16])])
    onnx.checker.check_model(m)
    return m


@pytest.fixture(scope="module")
def analysed(mnist_example, mnist_digits, tmp_path_factory):
    return analyse_mnist_variant(_detector(mnist_example), mnist_digits, tmp_path_factory.mktemp("rows"))


def test_the_weighted_snr_by_hand(analysed):
    model, res, xs = analysed
    p = res.program
    feeds = [{"Input3": x} for x in xs]
    scores = list(softmax_logits(res.steps, p.output_names, p.opset))
    assert scores == ["scores"]
    m = OutputSnr(model, feeds, ["boxes", "scores"], threads=1, scores=scores)
    assert m.weighted_by == {"boxes": "scores", "scores": "scores"}
    plain = OutputSnr(model, feeds, ["boxes", "scores"], threads=1)
    assert plain.weighted_by == {} and plain.weights == []
    import onnxruntime as ort

    runner = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sig = noise = 0.0
    for i, f in enumerate(feeds):
        ref_boxes = runner.run(["boxes"], f)[0]
        env = p.run(p.quantize_inputs(f))
        got = p.formats["boxes"].dequantize(env["boxes"])
        w = m.weights[i]["boxes"]
        assert w.shape == (1, 196, 1)
        sig += float(np.sum(w * np.asarray(ref_boxes, np.float64) ** 2))
        noise += float(np.sum(w * (np.asarray(ref_boxes, np.float64) - got) ** 2))
    assert m(p)["boxes"] == pytest.approx(10 * math.log10(sig / noise), abs=1e-6)
    # the weights change the figure (the rows are not all alike)
    assert plain(p)["boxes"] != pytest.approx(m(p)["boxes"], abs=1e-3)
    # halves from the same run, consistent with the pooled figure
    even, odd = (h["boxes"] for h in m.halves(p))
    assert min(even, odd) <= m(p)["boxes"] <= max(even, odd)
    # a worker's measure from the references and the weights: the same SNRs
    again = OutputSnr(None, feeds, ["boxes", "scores"], refs=m.refs, weights=m.weights)
    assert again(p) == m(p)


def test_the_range_search_records_the_weighting(analysed):
    _model, res, _xs = analysed
    assert res.ranges["weighted_by"] == {"boxes": "scores", "scores": "scores"}
    # the Softmax output is measured at its logits, which share its rows: weighted too
    assert list(res.ranges["measured_at"]) == ["scores"]


def test_the_report_lists_the_weighted_outputs(mnist_example, mnist_digits, tmp_path):
    _km, doc, html = report_of(_detector(mnist_example), mnist_digits, tmp_path)
    assert doc["quantization"]["ranges"]["weighted_by"] == {"boxes": "scores", "scores": "scores"}
    assert "Outputs read per detection" in html
    assert "boxes by scores; scores by its own rows." in html
