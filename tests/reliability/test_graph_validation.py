"""Issue 18, cases 1 and 5 and the unclear model cases: invalid float graphs are refused alike by
every entry point (load/run, kneron_inference, ModelConfig, evaluate, analysis, the optimizer),
with an npuflow error naming the model and the node or tensor."""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest

import ktc
import npuflow
from npuflow.errors import InputError, InvalidConfigError, ModelLoadError
from npuflow.ir import validate_graph
from npuflow.passes import optimize

from tests.reliability import _models as M

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

INVALID = {
    "cycle": (M.cycle, r"cycle \(node 'add_in_cycle' \(Add\) -> node 'relu_in_cycle' \(Relu\) -> node 'add_in_cycle'"),
    "missing_weight": (M.missing_weight, r"input 'W_missing' of node 'conv_no_weight' \(Conv\) is defined nowhere"),
    "two_producers": (M.two_producers, r"tensor 'y' is defined twice, by node 'first_writer' \(Relu\) and by node 'second_writer'"),
    "no_opset": (M.no_opset, r"no opset_import for the ONNX domain"),
}


@pytest.fixture(params=sorted(INVALID))
def invalid(request, tmp_path):
    build, match = INVALID[request.param]
    return M.save(build(), tmp_path / f"{request.param}.onnx"), match


def test_validate_graph_names_node_and_tensor(invalid):
    path, match = invalid
    with pytest.raises(ModelLoadError, match=match):
        validate_graph(onnx.load(str(path)), label=str(path))


def test_optimize_refuses(invalid):
    path, match = invalid
    with pytest.raises(ModelLoadError, match=match) as e:
        optimize(onnx.load(str(path)))
    assert "<in-memory ModelProto>" in str(e.value)
    with pytest.raises(ModelLoadError, match=match) as e:  # a path too
        optimize(str(path))
    assert str(path) in str(e.value)


def test_model_config_evaluate_and_analysis_refuse(invalid, tmp_path):
    path, match = invalid
    with pytest.raises(ModelLoadError, match=match) as e:
        ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path)).evaluate(output_dir=str(tmp_path / "out"))
    assert str(path) in str(e.value)
    with pytest.raises(ModelLoadError, match=match):
        ktc.ModelConfig(32769, "0001", "720", onnx_model=onnx.load(str(path)))
    assert not (tmp_path / "out").exists()


def test_load_and_kneron_inference_refuse(invalid):
    path, match = invalid
    with pytest.raises(ModelLoadError, match=match):
        npuflow.load(str(path))
    with pytest.raises(ModelLoadError, match=match):
        ktc.kneron_inference([np.zeros((1, 2, 6, 6), np.float32)], input_names=["x"], onnx_file=str(path))


def test_valid_models_still_pass(mnist_example):
    validate_graph(onnx.load(str(mnist_example)))
    validate_graph(M.conv())
    # nodes out of topological order are valid (onnxruntime accepts them too)
    m = M.conv()
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    validate_graph(m)
    # an initializer also listed as a graph input (old exporters) is a weight, not a second definition
    m = M.conv()
    m.graph.input.append(onnx.helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [3, 2, 3, 3]))
    validate_graph(m)


def test_graph_output_defined_nowhere():
    m = M.relu()
    m.graph.output.append(onnx.helper.make_tensor_value_info("ghost", onnx.TensorProto.FLOAT, [1]))
    with pytest.raises(ModelLoadError, match="graph output 'ghost' is produced by no node"):
        validate_graph(m, label="m.onnx")


def _in_thread(fn, timeout=60.0):
    """Run ``fn`` in a daemon thread; return its exception (fail if it does not end in time)."""
    box: dict = {}

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s (hang)"
    return box.get("exc")


def test_no_inputs_analysis_refused_not_hanging(tmp_path):
    """Case 1: analysis({}) of a model without graph inputs used to loop forever."""
    path = M.save(M.no_inputs(), tmp_path / "constant_only.onnx")
    km = ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path))
    exc = _in_thread(lambda: km.analysis({}, output_dir=str(tmp_path / "out")))
    assert isinstance(exc, ModelLoadError), exc
    assert "model 'constant_only' has no inputs" in str(exc)
    with pytest.raises(ModelLoadError, match="'constant_only' has no inputs"):
        npuflow.load(str(path))


def test_calibration_iterator_refuses_no_inputs():
    from npuflow.calibration.inputs import iter_calibration_inputs

    exc = _in_thread(lambda: next(iter_calibration_inputs([], {})), timeout=10)
    assert isinstance(exc, InputError) and "no inputs" in str(exc)


@pytest.mark.parametrize("build, match", [
    (M.string_input, r"model 'g': input 's' has type STRING"),
    (M.zero_size_input, r"model 'g': input 'z' has a zero-size dim 1"),
])
def test_unusable_inputs(tmp_path, build, match):
    path = M.save(build(), tmp_path / "m.onnx")
    with pytest.raises(ModelLoadError, match=match):
        npuflow.load(str(path))


def test_external_data_outside_the_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = M.external_outside(folder)
    with pytest.raises(ModelLoadError, match="outside the model's folder") as e:
        npuflow.load(str(path))
    assert str(path) in str(e.value) and "read nothing" in str(e.value)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path))


@pytest.mark.parametrize("where, match", [
    ("node", r"the name of node #0 \(Relu\) b'Q\\xff' is not valid UTF-8"),
    ("tensor", r"b'x\\xff' is not valid UTF-8"),
])
def test_names_with_invalid_utf8(tmp_path, where, match):
    path = M.bad_utf8(tmp_path / "bad.onnx", where)
    with pytest.raises(ModelLoadError, match=match) as e:
        npuflow.load(str(path))
    assert str(path) in str(e.value)
    with pytest.raises(ModelLoadError, match=match):
        ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path)).evaluate(output_dir=str(tmp_path / "o"))


@pytest.mark.parametrize("threads", ["2", -3, 0, 1.5, True])
def test_load_threads_refused(mnist_example, threads):
    with pytest.raises(InvalidConfigError, match=f"threads must be a positive int.*got {threads!r}"):
        npuflow.load(str(mnist_example), threads=threads)


def test_load_threads_valid(mnist_example):
    assert npuflow.load(str(mnist_example), threads=2).inputs[0].name == "Input3"

