"""Outputs read part by part (docs/fixed-point.md section 3.1): an output whose graph joins quantities
of different kinds along its last axis (YOLOX's ``[N, anchors, 4 boxes + 1 objectness + classes]``)
is measured part by part, and counts as its lowest part.

The graph rule runs on small hand-made graphs and on the real detectors that have such an output
(shared: yolox_nano, ddddocr); the measure on the shipped MNIST model cut after its second
convolution and written as a one-output "head" (the convolution's 16 channels beside their Sigmoid,
two levels, as YOLOX writes it), checked against a by-hand computation with onnxruntime.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from npuflow.analysis.parts import PartsSnr, output_parts
from npuflow.analysis.precision import OutputSnr
from tests.analysis.test_measure_logits import (
    analyse_mnist_variant,
    mnist_until,
    report_of,
)


def _graph(nodes, outputs, shapes, inputs=("x",)) -> onnx.ModelProto:
    """A model of ``nodes`` whose every tensor's static shape is given in ``shapes``."""
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()
          if n not in outputs and n not in inputs]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, shapes[i]) for i in inputs],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs],
                          value_info=vi)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _level(k: int, hw: int, order: tuple[str, ...] = ("box", "obj", "cls")) -> tuple[list, dict]:
    """One YOLOX level: box (4 channels) | Sigmoid objectness (1) | Sigmoid classes (3) joined along
    the channels (in ``order``), regrouped to [1, 8, hw]."""
    h = math.isqrt(hw)
    nodes = [helper.make_node("Relu", [f"f{k}"], [f"box{k}"]),
             helper.make_node("Sigmoid", [f"o{k}"], [f"obj{k}"]),
             helper.make_node("Sigmoid", [f"c{k}"], [f"cls{k}"]),
             helper.make_node("Concat", [f"{t}{k}" for t in order], [f"cat{k}"], axis=1),
             helper.make_node("Reshape", [f"cat{k}", f"rshape{k}"], [f"flat{k}"])]
    shapes = {f"f{k}": [1, 4, h, h], f"box{k}": [1, 4, h, h], f"o{k}": [1, 1, h, h], f"obj{k}": [1, 1, h, h],
              f"c{k}": [1, 3, h, h], f"cls{k}": [1, 3, h, h], f"cat{k}": [1, 8, h, h], f"flat{k}": [1, 8, hw]}
    return nodes, shapes


def _yolox_head(level_parts_differ: bool = False) -> onnx.ModelProto:
    nodes, shapes, inits = [], {}, []
    for k, hw in enumerate((16, 4)):
        # the second level may write its objectness after its classes
        order = ("box", "cls", "obj") if (level_parts_differ and k == 1) else ("box", "obj", "cls")
        n, s = _level(k, hw, order)
        nodes += n
        shapes.update(s)
        inits.append(onnx.numpy_helper.from_array(np.array([1, 8, hw], dtype=np.int64), f"rshape{k}"))
    nodes += [helper.make_node("Concat", ["flat0", "flat1"], ["levels"], axis=2),
              helper.make_node("Transpose", ["levels"], ["output"], perm=[0, 2, 1])]
    shapes.update(levels=[1, 8, 20], output=[1, 20, 8])
    inputs = [t for k in range(2) for t in (f"f{k}", f"o{k}", f"c{k}")]
    m = _graph(nodes, ["output"], shapes, inputs=inputs)
    m.graph.initializer.extend(inits)
    return m


def test_a_yolox_head_has_three_parts():
    assert output_parts(_yolox_head(), ["output"]) == {"output": [0, 4, 5, 8]}


def test_levels_whose_parts_differ_give_none():
    assert output_parts(_yolox_head(level_parts_differ=True), ["output"]) == {}


@pytest.mark.parametrize("case", ["concat on another axis", "last axis merged", "no concat", "unknown shape"])
def test_no_parts_unless_a_concat_builds_the_last_axis(case):
    shapes = {"a": [1, 3, 4], "b": [1, 3, 4]}
    if case == "concat on another axis":
        nodes = [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
        shapes["y"] = [1, 6, 4]
    elif case == "last axis merged":  # the joined axis is regrouped with another one: not a column any more
        nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=2),
                 helper.make_node("Flatten", ["c"], ["y"], axis=1)]
        shapes.update(c=[1, 3, 8], y=[1, 24])
    elif case == "no concat":
        nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
        shapes["y"] = [1, 3, 4]
    else:
        nodes = [helper.make_node("Concat", ["a", "b"], ["y"], axis=2)]
    out = {"y": shapes.get("y", [1, 3, 8])}
    m = _graph(nodes, ["y"], {**shapes, **out}, inputs=("a", "b"))
    if case == "unknown shape":
        m.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "n"
    assert output_parts(m, ["y"]) == {}


def test_parts_through_a_transpose_of_a_concat_on_the_last_axis():
    # a Concat along axis 1, then the axes turned so that axis 1 becomes the last
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 1])]
    m = _graph(nodes, ["y"], {"a": [1, 2, 5], "b": [1, 3, 5], "c": [1, 5, 5], "y": [1, 5, 5]}, inputs=("a", "b"))
    assert output_parts(m, ["y"]) == {"y": [0, 2, 5]}


@pytest.mark.parametrize("op", ["Flatten", "Squeeze", "Unsqueeze", "Reshape"])
def test_parts_through_regrouping_ops(op):
    # [1, 6, 1, 2] | [1, 6, 1, 3] along the last axis, then regrouped keeping that axis whole
    shapes = {"a": [1, 6, 1, 2], "b": [1, 6, 1, 3], "c": [1, 6, 1, 5]}
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=-1)]
    inits = []
    if op == "Flatten":
        nodes.append(helper.make_node("Flatten", ["c"], ["y"], axis=3))
        shapes["y"] = [6, 5]
    elif op == "Squeeze":
        inits.append(onnx.numpy_helper.from_array(np.array([2], np.int64), "ax"))
        nodes.append(helper.make_node("Squeeze", ["c", "ax"], ["y"]))
        shapes["y"] = [1, 6, 5]
    elif op == "Unsqueeze":
        inits.append(onnx.numpy_helper.from_array(np.array([0], np.int64), "ax"))
        nodes.append(helper.make_node("Unsqueeze", ["c", "ax"], ["y"]))
        shapes["y"] = [1, 1, 6, 1, 5]
    else:
        inits.append(onnx.numpy_helper.from_array(np.array([2, 3, 5], np.int64), "ax"))
        nodes.append(helper.make_node("Reshape", ["c", "ax"], ["y"]))
        shapes["y"] = [2, 3, 5]
    m = _graph(nodes, ["y"], shapes, inputs=("a", "b"))
    m.graph.initializer.extend(inits)
    assert output_parts(m, ["y"]) == {"y": [0, 2, 5]}


def test_a_graph_whose_shapes_disagree_gives_none_and_no_error():
    # a Transpose whose recorded input shape has another rank, a Concat axis out of range
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=2),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 1])]
    m = _graph(nodes, ["y"], {"a": [1, 2, 5], "b": [1, 3, 5], "c": [5, 5], "y": [1, 5, 5]}, inputs=("a", "b"))
    assert output_parts(m, ["y"]) == {}
    nodes = [helper.make_node("Concat", ["a", "b"], ["y"], axis=7)]
    m = _graph(nodes, ["y"], {"a": [1, 2], "b": [1, 3], "y": [1, 5]}, inputs=("a", "b"))
    assert output_parts(m, ["y"]) == {}


def test_shared_inputs_are_followed_once():
    # 40 chained Concat(x, x): 2^40 paths, each tensor visited once
    nodes, shapes = [], {"t0": [1, 2]}
    for k in range(40):
        nodes.append(helper.make_node("Concat", [f"t{k}", f"t{k}"], [f"t{k + 1}"], axis=0))
        shapes[f"t{k + 1}"] = [2 ** (k + 1), 2]
    m = _graph(nodes, ["t40"], shapes, inputs=("t0",))
    assert output_parts(m, ["t40"]) == {}


# ------------------------------------------------------------------------------------------------ the SNR
def _db(sig: float, noise: float) -> float:
    return 10 * math.log10(sig / noise)


def test_parts_snr_is_the_lowest_part():
    ref = np.array([[10.0, 20.0, 0.9], [30.0, 40.0, 0.1]])
    got = ref + np.array([[0.1, 0.0, -0.3], [0.0, -0.1, 0.0]])
    acc = PartsSnr([0, 2, 3])
    acc.add(ref.ravel(), got.ravel())
    boxes = _db(10**2 + 20**2 + 30**2 + 40**2, 0.02)
    score = _db(0.81 + 0.01, 0.09)
    assert acc.each_db() == pytest.approx([boxes, score])
    assert acc.db() == pytest.approx(score)
    # pooled, the boxes decide: the score's 3-dB error hides under 48 dB
    assert _db(3000.82, 0.11) > 44


def test_a_part_without_signal_is_left_out():
    ref = np.array([[1.0, 0.0], [2.0, 0.0]])
    got = np.array([[1.1, 0.01], [2.0, 0.0]])
    acc = PartsSnr([0, 1, 2])
    acc.add(ref, got)
    assert acc.db() == pytest.approx(_db(5.0, 0.01))
    none = PartsSnr([0, 1, 2])
    none.add(np.zeros(4), np.array([0.1, 0.0, 0.0, 0.1]))
    assert none.db() == -300.0  # as the pooled SNR of an all-zero reference


# ------------------------------------------------------------------------------------------------ measure
def _mnist_head(path) -> onnx.ModelProto:
    """MNIST up to its second convolution ([1, 16, 14, 14]), written as YOLOX writes its head: the 16
    channels beside their Sigmoid along the channels, a second level max-pooled to 7x7, both
    regrouped to [1, 32, hw], joined along hw and turned to ``output`` [1, 245, 32]."""
    m = mnist_until(path, "Convolution110_Output_0")
    g = m.graph
    conv = "Convolution110_Output_0"
    mk = helper.make_node
    g.node.extend([
        mk("Sigmoid", [conv], ["sig0"], name="sig0"),
        mk("Concat", [conv, "sig0"], ["cat0"], name="cat0", axis=1),
        mk("MaxPool", [conv], ["pooled"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        mk("Sigmoid", ["pooled"], ["sig1"], name="sig1"),
        mk("Concat", ["pooled", "sig1"], ["cat1"], name="cat1", axis=1),
        mk("Constant", [], ["s0"], name="s0", value=onnx.numpy_helper.from_array(np.array([1, 32, 196], np.int64))),
        mk("Constant", [], ["s1"], name="s1", value=onnx.numpy_helper.from_array(np.array([1, 32, 49], np.int64))),
        mk("Reshape", ["cat0", "s0"], ["r0"], name="r0"),
        mk("Reshape", ["cat1", "s1"], ["r1"], name="r1"),
        mk("Concat", ["r0", "r1"], ["levels"], name="levels", axis=2),
        mk("Transpose", ["levels"], ["output"], name="turn", perm=[0, 2, 1]),
    ])
    g.output.extend([helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 245, 32])])
    onnx.checker.check_model(m)
    return m


@pytest.fixture(scope="module")
def analysed(mnist_example, mnist_digits, tmp_path_factory):
    return analyse_mnist_variant(_mnist_head(mnist_example), mnist_digits, tmp_path_factory.mktemp("parts"))


def test_the_optimized_head_keeps_its_parts(analysed):
    model, res, _xs = analysed
    assert output_parts(model, ["output"]) == {"output": [0, 16, 32]}
    assert res.ranges["output_parts"] == {"output": [0, 16, 32]}


def test_the_part_snr_by_hand(analysed):
    model, res, xs = analysed
    p = res.program
    feeds = [{"Input3": x} for x in xs]
    m = OutputSnr(model, feeds, ["output"], threads=1)
    assert m.parts == {"output": [0, 16, 32]}
    import onnxruntime as ort

    runner = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    acc = [[0.0, 0.0], [0.0, 0.0]]  # per part: signal, noise
    for f in feeds:
        ref = np.asarray(runner.run(["output"], f)[0], np.float64).reshape(-1, 32)
        got = p.formats["output"].dequantize(p.run(p.quantize_inputs(f))["output"]).reshape(-1, 32)
        for k, (lo, hi) in enumerate(((0, 16), (16, 32))):
            acc[k][0] += float(np.sum(ref[:, lo:hi] ** 2))
            acc[k][1] += float(np.sum((ref[:, lo:hi] - got[:, lo:hi]) ** 2))
    each = [_db(s, n) for s, n in acc]
    assert m(p)["output"] == pytest.approx(min(each), abs=1e-6)
    pooled = OutputSnr(model, feeds, ["output"], threads=1, parts={})
    assert pooled.parts == {}
    assert pooled(p)["output"] == pytest.approx(_db(acc[0][0] + acc[1][0], acc[0][1] + acc[1][1]), abs=1e-6)
    # halves from the same run, consistent with the whole
    even, odd = (h["output"] for h in m.halves(p))
    assert min(even, odd) <= m(p)["output"] + 1e-9
    # a worker's measure from the references and the parts: the same SNRs
    again = OutputSnr(None, feeds, ["output"], refs=m.refs, parts=m.parts)
    assert again(p) == m(p)
    # with row weights too (a detector with a score output): each part weighted by its rows
    rng = np.random.default_rng(0)
    w = [{"output": rng.uniform(0.0, 1.0, (1, 245, 1))} for _ in feeds]
    both = OutputSnr(None, feeds, ["output"], refs=m.refs, weights=w, parts=m.parts)
    acc = [[0.0, 0.0], [0.0, 0.0]]
    for i, f in enumerate(feeds):
        ref = np.asarray(m.refs[i]["output"], np.float64).reshape(-1, 32)
        got = p.formats["output"].dequantize(p.run(p.quantize_inputs(f))["output"]).reshape(-1, 32)
        wi = w[i]["output"].reshape(-1, 1)
        for k, (lo, hi) in enumerate(((0, 16), (16, 32))):
            acc[k][0] += float(np.sum(wi * ref[:, lo:hi] ** 2))
            acc[k][1] += float(np.sum(wi * (ref[:, lo:hi] - got[:, lo:hi]) ** 2))
    assert both(p)["output"] == pytest.approx(min(_db(s, n) for s, n in acc), abs=1e-6)
    # references narrower than the graph said: measured pooled, not split in the wrong places
    assert OutputSnr(None, feeds, ["output"], refs=m.refs, parts={"output": [0, 16, 64]}).parts == {}


# ------------------------------------------------------------------------------------------------ real detectors
@pytest.mark.parametrize("name, bounds", [("yolox_nano.onnx", [0, 4, 5, 85]),
                                          ("zoo/ddddocr_common_det.onnx", [0, 4, 5, 6])])
def test_real_yolox_style_outputs(shared, name, bounds):
    import npuflow

    model = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(shared / "models" / name)).optimized_model()
    assert output_parts(model, ["output"]) == {"output": bounds}


def test_the_report_lists_the_parts(mnist_example, mnist_digits, tmp_path):
    _km, doc, html = report_of(_mnist_head(mnist_example), mnist_digits, tmp_path)
    assert doc["quantization"]["ranges"]["output_parts"] == {"output": [0, 16, 32]}
    assert "Outputs read part by part" in html
    assert "output columns 0&ndash;15 | 16&ndash;31." in html
    # the summary gives each part's SNR beside the output's pooled one, on the report's inputs
    out = doc["quantization"]["outputs"][0]
    assert [(pt["first"], pt["last"]) for pt in out["parts"]] == [(0, 15), (16, 31)]
    each = [pt["snr_db"] for pt in out["parts"]]
    assert min(each) <= out["snr_db"] <= max(each)
    assert "by part (columns): 0&ndash;15 " in html
    # the headline, the ranking and every measured suggestion use the analysis' measure: the lowest part
    q = doc["quantization"]
    low = int(np.argmin(each))
    assert q["model_output_snr_db"] == each[low]
    assert q["lowest"] == {"output": "output", "first": out["parts"][low]["first"], "last": out["parts"][low]["last"]}
    assert "(lowest part: output output, columns " in html
    measured = [r["measured"] for r in q["ranking"] if r["measured"] and "error" not in r["measured"]]
    measured += [m for m in (q["reference_int16"], q["combined"]) if m]
    assert measured
    for m in measured:
        assert m["model_output_snr_db"] == q["model_output_snr_db"]
        parts = m["outputs"][0]["parts"]
        assert m["with_suggestion_snr_db"] == min(pt["snr_db"] for pt in parts)
        assert m["with_suggestion_snr_db"] <= m["outputs"][0]["snr_db"]  # the lowest part, not the pooled SNR


def test_low_output_snr_names_the_part():
    from npuflow.calibration.degenerate import check_output_snr

    found = check_output_snr(3.25, count=8, where={"output": "output", "first": 5, "last": 84})
    assert found["message"].startswith("the fixed-point model's output SNR is 3.2 dB (its lowest part: output "
                                       "'output', columns 5-84) on the first 8 calibration input(s)")
    assert "lowest part" not in check_output_snr(3.25, count=8, where={"output": "output"})["message"]
    assert check_output_snr(12.0, count=8, where={"output": "output", "first": 5, "last": 84}) is None
    # the trade-offs the report measured, priced (docs/report.md, fps_ratio)
    msg = check_output_snr(3.25, count=8, trades=[("int16 for the first 10% of the nodes", 4.72, 0.8179),
                                                  ("int16 everywhere", 17.73, None)])["message"]
    assert msg.endswith("; it measured (gain, estimated FPS relative to now): int16 for the first 10% of the "
                        "nodes +4.7 dB x0.82, int16 everywhere +17.7 dB"), msg
