"""What the float-ONNX fuzzing (test_fuzz.py::test_fuzz_float_onnx) found, pinned: an ONNX model
whose nodes disagree only at run time, and an input of an element type ONNX does not define, are
npuflow errors naming the model, not onnxruntime's or protobuf's exceptions."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import npuflow
from npuflow.errors import ModelLoadError

from ._models import MNIST


def test_nodes_that_disagree_at_run_time(tmp_path):
    m = onnx.load(str(MNIST))
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    pool.attribute.remove(next(a for a in pool.attribute if a.name == "strides"))  # 14x14 -> 27x27: the Reshape fails
    path = tmp_path / "edited.onnx"
    path.write_bytes(m.SerializeToString())
    model = npuflow.load(str(path))  # loads: every node is valid on its own
    with pytest.raises(ModelLoadError, match="onnxruntime cannot run .*edited.onnx.*Reshape") as ei:
        model.run({"Input3": np.zeros((1, 1, 28, 28), np.float32)})
    assert "\n" not in str(ei.value)


def test_input_of_an_undefined_element_type(tmp_path):
    m = onnx.load(str(MNIST))
    m.graph.input[0].type.tensor_type.elem_type = 30  # no TensorProto.DataType has this number
    path = tmp_path / "edited.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(ModelLoadError, match="input 'Input3' has type unknown element type 30"):
        npuflow.load(str(path))
