"""Small hand-built ONNX models for the reliability tests (issue 18)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

X = h.make_tensor_value_info("x", T.FLOAT, [1, 2, 6, 6])


def model(nodes, inputs=(X,), outputs=None, inits=(), *, name="g", opset=13) -> onnx.ModelProto:
    if outputs is None:
        outputs = [h.make_tensor_value_info("y", T.FLOAT, None)]
    g = h.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path


def relu(name="relu") -> onnx.ModelProto:
    return model([h.make_node("Relu", ["x"], ["y"], name=name)],
                 outputs=[h.make_tensor_value_info("y", T.FLOAT, [1, 2, 6, 6])])


def conv(conv_name="conv", relu_name="relu", tensor="c", name="tiny") -> onnx.ModelProto:
    """Conv(2->3, 3x3, pad 1) + Relu on a [1, 2, 6, 6] input: quick to analyse (< 1 s)."""
    rng = np.random.default_rng(0)
    w = nh.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "W")
    b = nh.from_array(np.zeros(3, np.float32), "B")
    nodes = [h.make_node("Conv", ["x", "W", "B"], [tensor], name=conv_name, pads=[1, 1, 1, 1]),
             h.make_node("Relu", [tensor], ["y"], name=relu_name)]
    return model(nodes, outputs=[h.make_tensor_value_info("y", T.FLOAT, [1, 3, 6, 6])], inits=[w, b], name=name)


def cycle() -> onnx.ModelProto:
    """x -> Add(x, r) -> a -> Relu -> r: the Add reads the Relu's output, which reads the Add's."""
    nodes = [h.make_node("Relu", ["a"], ["r"], name="relu_in_cycle"), h.make_node("Add", ["x", "r"], ["a"], name="add_in_cycle")]
    return model(nodes, outputs=[h.make_tensor_value_info("a", T.FLOAT, [1, 2, 6, 6])])


def missing_weight() -> onnx.ModelProto:
    return model([h.make_node("Conv", ["x", "W_missing"], ["y"], name="conv_no_weight", kernel_shape=[3, 3])])


def two_producers() -> onnx.ModelProto:
    return model([h.make_node("Relu", ["x"], ["y"], name="first_writer"),
                  h.make_node("Sigmoid", ["x"], ["y"], name="second_writer")])


def no_inputs() -> onnx.ModelProto:
    c = h.make_node("Constant", [], ["y"], name="const", value=nh.from_array(np.ones((1, 4), np.float32)))
    return model([c], inputs=[], outputs=[h.make_tensor_value_info("y", T.FLOAT, [1, 4])], name="constant_only")


def no_opset() -> onnx.ModelProto:
    m = relu()
    del m.opset_import[:]
    return m


def string_input() -> onnx.ModelProto:
    return model([h.make_node("Identity", ["s"], ["y"], name="id")], inputs=[h.make_tensor_value_info("s", T.STRING, [1])],
                 outputs=[h.make_tensor_value_info("y", T.STRING, [1])])


def zero_size_input() -> onnx.ModelProto:
    return model([h.make_node("Relu", ["z"], ["y"], name="relu")], inputs=[h.make_tensor_value_info("z", T.FLOAT, [1, 0, 4])],
                 outputs=[h.make_tensor_value_info("y", T.FLOAT, [1, 0, 4])])


def external_outside(folder: Path) -> Path:
    """A Conv whose weight is external data at ``../outside.bin`` (outside the model's folder)."""
    from onnx.external_data_helper import set_external_data

    m = conv()
    w = m.graph.initializer[0]
    set_external_data(w, location="../outside.bin")
    w.data_location = T.EXTERNAL
    w.ClearField("float_data")
    w.ClearField("raw_data")
    (folder.parent / "outside.bin").write_bytes(np.zeros(54, np.float32).tobytes())
    path = folder / "ext.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def bad_utf8(path: Path, where: str = "node") -> Path:
    """The serialized model with one name made invalid UTF-8 (``\\xff`` in it)."""
    if where == "node":
        data = relu(name="QQ").SerializeToString()
    else:  # a tensor name (the graph input)
        m = model([h.make_node("Relu", ["xQ"], ["y"], name="relu")], inputs=[h.make_tensor_value_info("xQ", T.FLOAT, [1, 2, 6, 6])])
        data = m.SerializeToString()
    key = b"QQ" if where == "node" else b"xQ"
    assert data.count(key) == (1 if where == "node" else 2)
    path.write_bytes(data.replace(key, key[:1] + b"\xff"))
    return path
