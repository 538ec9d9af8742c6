"""A two-input model quantizes and simulates (none of the shared models has two inputs)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

import ktc
import npuflow


def two_input_model() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 1, 1, 1)).astype(np.float32), "w2")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b1")
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv_image", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["mask", "w2"], ["c2"], name="conv_mask"),
        helper.make_node("Add", ["c1", "c2"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    g = helper.make_graph(nodes, "two_inputs",
                          [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8]),
                           helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
                          initializer=[w1, w2, b1])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_two_input_model(tmp_path):
    rng = np.random.default_rng(0)
    model = two_input_model()
    cal = {"image": [rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(16)],
           "mask": (rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32) for _ in range(16))}
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=model)
    bie = km.analysis(cal, output_dir=tmp_path)
    x = [rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32), rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)]
    ref = npuflow.load(model).run(x, ["image", "mask"])[0]
    out = ktc.kneron_inference(x, input_names=["image", "mask"], bie_file=bie, platform=720)[0]
    snr = 10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref - out) ** 2).sum())
    assert out.shape == ref.shape and snr > 25
    # order of input_names does not matter
    swapped = ktc.kneron_inference(x[::-1], input_names=["mask", "image"], bie_file=bie, platform=720)[0]
    np.testing.assert_array_equal(swapped, out)


def test_two_input_lengths_must_match(tmp_path):
    import pytest

    from npuflow.errors import InputError

    z = np.zeros((1, 3, 8, 8), np.float32)
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=two_input_model())
    with pytest.raises(InputError, match="different lengths"):
        km.analysis({"image": [z, z], "mask": [np.zeros((1, 1, 8, 8), np.float32)]}, output_dir=tmp_path / "o")
    with pytest.raises(InputError, match="Cannot find the corresponding input data of model input mask"):
        km.analysis({"image": [z]}, output_dir=tmp_path / "o")
