"""Float E2E simulator: kneron_inference, the loaded-model object, its cache and input checks."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import onnx
import pytest

import ktc
import npuflow
from npuflow import api
from npuflow.errors import CompatibilityWarning, InputError, InvalidConfigError, ModelLoadError, NotAvailableError

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.fixture(scope="module")
def digits():
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_float_inference_matches_labels_on_real_digits(digits):
    outs = [ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MNIST)[0] for x in digits["eval_x"]]
    pred = np.array([o.argmax() for o in outs])
    assert pred.shape == (64,)
    assert (pred == digits["eval_y"]).mean() >= 0.95


def test_batch_equals_single(digits):
    m = npuflow.load(MNIST)
    xs = digits["eval_x"][:8, 0]  # [8,1,28,28]
    batch = m.run_batch({"Input3": xs})[0]
    single = np.concatenate([m.run({"Input3": x[None]})[0] for x in xs])
    np.testing.assert_array_equal(batch, single)
    # a batch axis in front of the model's own shape works too
    batch5 = m.run_batch({"Input3": digits["eval_x"][:8]})[0]
    np.testing.assert_array_equal(batch5, batch)


def test_kneron_inference_batch(digits, tmp_path):
    """batch=True: N inputs in one call, float and fixed, equal to N single calls."""
    xs = digits["eval_x"][:6]  # [6,1,1,28,28]: a batch axis in front of the model's [1,1,28,28]
    got = ktc.kneron_inference([xs], input_names=["Input3"], onnx_file=MNIST, batch=True)[0]
    single = np.concatenate([ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MNIST)[0] for x in xs])
    np.testing.assert_array_equal(got, single)
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    bie = km.analysis({"Input3": list(digits["calib_x"][:8])}, output_dir=tmp_path, threads=1, report=False)
    for dt in ("fixed", "float"):
        got = ktc.kneron_inference([xs], input_names=["Input3"], bie_file=bie, platform=720, data_type=dt, batch=True)[0]
        single = np.concatenate([ktc.kneron_inference([x], input_names=["Input3"], bie_file=bie, platform=720,
                                                      data_type=dt)[0] for x in xs])
        np.testing.assert_array_equal(got, single)
    with pytest.raises(InvalidConfigError, match="batch must be True or False"):
        ktc.kneron_inference([xs[0]], input_names=["Input3"], onnx_file=MNIST, batch=1)


def test_dynamic_batch_model_runs_batch_in_one_call(tmp_path):
    # Relu with a dynamic batch dim
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
    model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)])
    m = npuflow.load(model)
    data = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(m.run_batch({"x": data})[0], np.maximum(data, 0))
    np.testing.assert_array_equal(m.run({"x": data})[0], np.maximum(data, 0))


def test_cache_reuses_model_and_reloads_changed_file(tmp_path, digits):
    api.clear_cache()
    path = tmp_path / "m.onnx"
    shutil.copy(MNIST, path)
    x = digits["eval_x"][0]
    ktc.kneron_inference([x], input_names=["Input3"], onnx_file=str(path))
    first = api._cache[next(iter(api._cache))]
    ktc.kneron_inference([x], input_names=["Input3"], onnx_file=str(path))
    assert len(api.cache_info()) == 1 and api._cache[next(iter(api._cache))] is first
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    ktc.kneron_inference([x], input_names=["Input3"], onnx_file=str(path))
    assert len(api.cache_info()) == 2  # new mtime -> new entry
    api.clear_cache()


def test_reordering_and_unknown_output(digits):
    out = ktc.kneron_inference([digits["eval_x"][0]], input_names=["Input3"], onnx_file=MNIST,
                               reordering=["Plus214_Output_0"])
    assert out[0].shape == (1, 10)
    with pytest.raises(InputError, match="not outputs of the model"):
        ktc.kneron_inference([digits["eval_x"][0]], input_names=["Input3"], onnx_file=MNIST, reordering=["nope"])


@pytest.mark.parametrize(
    "inputs, names, match",
    [
        ([np.zeros((1, 1, 28, 28), np.float32)], ["wrong"], "unknown input name 'wrong'"),
        ([np.zeros((1, 28, 28), np.float32)], ["Input3"], r"has shape \(1, 28, 28\), but the model expects \(1, 1, 28, 28\)"),
        ([np.full((1, 1, 28, 28), np.nan, np.float32)], ["Input3"], "contains NaN"),
        ([np.full((1, 1, 28, 28), np.inf, np.float32)], ["Input3"], "contains Inf"),
        ([], [], "missing model input"),
        ([np.zeros((1, 1, 28, 28), np.float32)] * 2, ["Input3"], "got 2 arrays but 1 input_names"),
        ([[0.0] * 4], ["Input3"], "expected a numpy.ndarray, got list"),
        (np.zeros((1, 1, 28, 28), np.float32), ["Input3"], "got a single numpy array"),
    ],
)
def test_bad_inputs_are_named(inputs, names, match):
    with pytest.raises(InputError, match=match):
        ktc.kneron_inference(inputs, input_names=names, onnx_file=MNIST)


def test_float64_is_cast_with_warning():
    x = np.zeros((1, 1, 28, 28), np.float64)
    with pytest.warns(CompatibilityWarning, match="float64; cast to the model's float32"):
        out = ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MNIST)
    assert out[0].dtype == np.float32


def test_model_sources_and_features_not_built_yet(tmp_path):
    x = [np.zeros((1, 1, 28, 28), np.float32)]
    with pytest.raises(NotAvailableError, match="NEF simulation is not available"):
        ktc.kneron_inference(x, input_names=["Input3"], nef_file="models_720.nef", platform=720)
    with pytest.raises(InputError, match="needs a model"):
        ktc.kneron_inference(x, input_names=["Input3"])
    with pytest.raises(InvalidConfigError, match="data_type"):
        ktc.kneron_inference(x, input_names=["Input3"], onnx_file=MNIST, data_type="int")
    with pytest.raises(InvalidConfigError, match="needs a quantized model"):
        ktc.kneron_inference(x, input_names=["Input3"], onnx_file=MNIST, data_type="fixed")
    with pytest.raises(ModelLoadError, match="not found"):
        ktc.kneron_inference(x, input_names=["Input3"], onnx_file=str(tmp_path / "missing.onnx"))
    with pytest.raises(InvalidConfigError, match="unknown parameters"):
        ktc.kneron_inference(x, input_names=["Input3"], onnx_file=MNIST, bogus=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CompatibilityWarning, match="radix"):
            ktc.kneron_inference(x, input_names=["Input3"], onnx_file=MNIST, radix=8)
