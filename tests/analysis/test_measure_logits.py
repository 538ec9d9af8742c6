"""Softmax outputs measured at their logits (docs/fixed-point.md section 3.1): the range search and
the promotions measure a model output that a Softmax produces at the Softmax's input, centred along
its axis, since an 8-bit softmax of confident inputs hides every upstream error below its own
rounding (open_nsfw: several whole-model range candidates measured the same 52.5 dB).

The mechanics run on the shipped MNIST model with a Softmax appended (a real classifier's logits);
the ``keep=`` of ``Program.run`` that the measurement needs is checked against ``keep_all``.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

import npuflow
from npuflow.analysis.effects import Logits, softmax_logits
from npuflow.analysis.precision import OutputSnr
from npuflow.analysis.ranges import QuantOptions
from npuflow.analysis.run import analyse
from npuflow.platforms import get_platform

LOGITS = "Plus214_Output_0"


def _with_softmax(path, *, reshape: bool = False) -> onnx.ModelProto:
    """The MNIST model with ``prob = Softmax(logits)`` as its output (``reshape``: the Softmax's
    output reaches ``prob`` through a Reshape)."""
    m = onnx.load(str(path))
    g = m.graph
    assert g.output[0].name == LOGITS
    if reshape:
        g.node.append(onnx.helper.make_node("Softmax", [LOGITS], ["prob_2d"], name="softmax", axis=1))
        g.node.append(onnx.helper.make_node("Constant", [], ["shape_1x1x10"], name="shape_1x1x10",
                                            value=onnx.numpy_helper.from_array(np.array([1, 1, 10], dtype=np.int64))))
        g.node.append(onnx.helper.make_node("Reshape", ["prob_2d", "shape_1x1x10"], ["prob"], name="reshape_prob"))
        shape = [1, 1, 10]
    else:
        g.node.append(onnx.helper.make_node("Softmax", [LOGITS], ["prob"], name="softmax", axis=1))
        shape = [1, 10]
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info("prob", onnx.TensorProto.FLOAT, shape))
    onnx.checker.check_model(m)
    return m


def mnist_until(path, tensor: str) -> onnx.ModelProto:
    """The shipped MNIST model cut after the node that produces ``tensor``: the initializers and
    inputs nothing reads any more dropped, no outputs (the caller appends its nodes and outputs)."""
    m = onnx.load(str(path))
    g = m.graph
    keep = []
    for n in g.node:
        keep.append(n)
        if n.output[0] == tensor:
            break
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    keep_init = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_init)
    inputs = [i for i in g.input if i.name in used]  # an IR 3 model lists its initializers as inputs
    del g.input[:]
    g.input.extend(inputs)
    del g.output[:]
    return m


def report_of(model: onnx.ModelProto, mnist_digits, folder, n: int = 8) -> tuple:
    """(ModelConfig, model_fx_report.json as a dict, the HTML report with its whitespace collapsed)
    of ``model``'s analysis at the defaults on 720, calibrated on ``n`` MNIST digits."""
    import json
    import warnings

    path = folder / "model.onnx"
    onnx.save(model, str(path))
    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.analysis({"Input3": list(mnist_digits["calib_x"][:n])}, output_dir=str(folder / "out"), threads=1)
    doc = json.loads((folder / "out" / "model_fx_report.json").read_text())
    return km, doc, " ".join((folder / "out" / "model_fx_report.html").read_text().split())


def analyse_mnist_variant(model: onnx.ModelProto, mnist_digits, folder) -> tuple:
    """(optimized model, AnalysisResult at the defaults on 720, the 8 calibration digits) of a variant
    of the shipped MNIST model, saved under ``folder``."""
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(path))
    optimized = km.optimized_model()
    xs = [mnist_digits["calib_x"][i].reshape(1, 1, 28, 28).astype(np.float32) for i in range(8)]
    res = analyse(optimized, get_platform(720), {"Input3": xs}, QuantOptions(), threads=1, progress=False)
    return optimized, res, xs


@pytest.fixture(scope="module")
def analysed(mnist_example, mnist_digits, tmp_path_factory):
    return analyse_mnist_variant(_with_softmax(mnist_example), mnist_digits, tmp_path_factory.mktemp("softmax"))


def test_logits_centre_along_the_axis_and_flattened():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    c = Logits("t", -1, False).centre(x)
    assert np.allclose(c.mean(axis=-1), 0) and np.allclose(c[0, 0], [-1.5, -0.5, 0.5, 1.5])
    # opset < 13: the axis and every later one form one distribution per leading index
    f = Logits("t", 1, True).centre(x)
    assert np.allclose(f.reshape(2, -1).mean(axis=1), 0) and np.allclose(f[0, 0, 0], -5.5)
    # a common shift of a distribution changes nothing
    assert np.allclose(Logits("t", 1, False).centre(x + 7.0), Logits("t", 1, False).centre(x))
    assert Logits("t", 1, False).usable(2) and not Logits("t", 0, False).usable(2)
    assert not Logits("t", -2, False).usable(2) and not Logits("t", -1, False).usable(1)


def _steps(path, xs):
    model = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(path)).optimized_model()
    res = analyse(model, get_platform(720), {"Input3": xs[:2]}, QuantOptions(range_method="percentage"), threads=1,
                  progress=False)
    return res.steps, res.program.opset


def test_softmax_found_through_relabelling_steps(mnist_example, mnist_digits, tmp_path):
    xs = [mnist_digits["calib_x"][i].reshape(1, 1, 28, 28).astype(np.float32) for i in range(2)]
    for reshape in (False, True):
        path = tmp_path / f"m{int(reshape)}.onnx"
        onnx.save(_with_softmax(mnist_example, reshape=reshape), str(path))
        steps, opset = _steps(path, xs)
        found = softmax_logits(steps, ["prob"], opset)
        (sm,) = [st for st in steps if st.op_type == "Softmax"]
        assert list(found) == ["prob"]
        assert found["prob"] == Logits(LOGITS, 1, opset < 13) and sm.runtime_inputs == [LOGITS]
        # with the Reshape, the output is not the Softmax's own: found by walking up through it
        assert (sm.outputs != ["prob"]) == reshape
    # no Softmax: nothing to move
    steps, opset = _steps(mnist_example, xs)
    assert softmax_logits(steps, [LOGITS], opset) == {}


def test_run_keep_returns_the_tensor_as_keep_all_does(analysed):
    _model, res, xs = analysed
    p = res.program
    q = p.quantize_inputs({"Input3": xs[0]})
    lg = softmax_logits(res.steps, p.output_names, p.opset)["prob"]
    everything = p.run(q, keep_all=True)
    kept = p.run(q, keep=(lg.tensor,))
    plain = p.run(q)
    assert set(kept) == {"prob", lg.tensor}
    assert np.array_equal(kept[lg.tensor], everything[lg.tensor])
    assert np.array_equal(kept["prob"], plain["prob"]) and np.array_equal(plain["prob"], everything["prob"])


def test_output_snr_at_logits_is_the_centred_logits_snr(analysed):
    model, res, xs = analysed
    p = res.program
    feeds = [{"Input3": x} for x in xs]
    lg = softmax_logits(res.steps, p.output_names, p.opset)
    at = OutputSnr(model, feeds, ["prob"], threads=1, logits=lg)
    plain = OutputSnr(model, feeds, ["prob"], threads=1)
    assert at.measured_at() == {"prob": lg["prob"].tensor} and plain.measured_at() == {}
    # by hand: the float logits (onnxruntime, the tensor exposed) against the program's, both centred
    from npuflow.calibration.collector import expose_tensors
    from npuflow.reference.float_runner import FloatRunner

    runner = FloatRunner(expose_tensors(model, [lg["prob"].tensor]), threads=1)
    sig = noise = 0.0
    for f in feeds:
        ref = lg["prob"].centre(runner.run(f, [lg["prob"].tensor])[0])
        env = p.run(p.quantize_inputs(f), keep=(lg["prob"].tensor,))
        t = lg["prob"].tensor
        got = lg["prob"].centre(p.formats[t].dequantize(env[t]) if t in p.formats else env[t])
        sig += float(np.sum(ref ** 2))
        noise += float(np.sum((ref - got) ** 2))
    assert at(p)["prob"] == pytest.approx(10 * math.log10(sig / noise), abs=1e-6)
    # the probabilities' SNR is another number (what the tails and mixbw measure)
    assert plain(p)["prob"] != pytest.approx(at(p)["prob"], abs=1e-3)
    # halves from the same run, consistent with the pooled figure
    even, odd = (h["prob"] for h in at.halves(p))
    assert min(even, odd) <= at(p)["prob"] <= max(even, odd)
    # another process's measurement from the references: the same SNR
    again = OutputSnr(None, feeds, ["prob"], refs=at.refs, logits=at.logits)
    assert again(p)["prob"] == at(p)["prob"]


def test_the_range_search_records_where_it_measured(analysed):
    _model, res, _xs = analysed
    assert res.ranges["measured_at"] == {"prob": softmax_logits(res.steps, ["prob"], res.program.opset)["prob"].tensor}


def test_the_report_says_where_it_measured(mnist_example, mnist_digits, tmp_path):
    km, doc, html = report_of(_with_softmax(mnist_example), mnist_digits, tmp_path, n=16)
    assert doc["quantization"]["ranges"]["measured_at"] == km.analysis_result.ranges["measured_at"]
    assert list(doc["quantization"]["ranges"]["measured_at"]) == ["prob"]
    assert "Softmax outputs are measured at their logits" in html
