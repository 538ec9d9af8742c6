"""Fixtures of the evaluator tests: small hand-built graphs and the shared models, prepared once."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SHARED_MODELS = (
    "efficientnet_lite0",
    "mnist_cntk_opt",
    "yolox_nano",
    "ultraface_rfb_320",
    "pan_mnv3s_skin_clothes_hair",
    "ch_ppocr_mobile_v2.0_cls_infer",
    "en_PP-OCRv3_det_infer",
    "en_number_mobile_v2.0_rec_infer",
)
INPUT_SHAPES = {
    "ch_ppocr_mobile_v2.0_cls_infer": {"x": [1, 3, 48, 192]},
    "en_PP-OCRv3_det_infer": {"x": [1, 3, 640, 640]},
    "en_number_mobile_v2.0_rec_infer": {"x": [1, 3, 32, 320]},
    "efficientnet_lite0": {"input": [1, 3, 224, 224]},
}


def make_model(nodes, inputs, outputs, inits=(), opset=13, extra_opsets=()):
    """inputs/outputs: (name, shape) pairs; inits: name -> ndarray; extra_opsets: (domain, version)."""
    g = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in dict(inits).items()],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(g, opset_imports=opsets)
    return onnx.shape_inference.infer_shapes(m)


def _prepare(shared: Path, name: str) -> onnx.ModelProto:
    model = onnx.load(str(shared / "models" / f"{name}.onnx"))
    try:
        from npuflow.passes import optimize
    except ImportError:  # optimizer not there yet: static-shape models only
        return onnx.shape_inference.infer_shapes(model)
    return optimize(model, input_shapes=INPUT_SHAPES.get(name))


@pytest.fixture(scope="session")
def shared_model(shared):
    cache: dict[str, onnx.ModelProto] = {}

    def get(name: str) -> onnx.ModelProto:
        if name not in cache:
            cache[name] = _prepare(shared, name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def arch_model(shared):
    cache: dict[str, onnx.ModelProto] = {}

    def get(name: str) -> onnx.ModelProto:
        if name not in cache:
            with gzip.open(shared / "models" / "arch" / f"{name}.onnx.gz", "rb") as f:
                cache[name] = onnx.shape_inference.infer_shapes(onnx.load_from_string(f.read()))
        return cache[name]

    return get
