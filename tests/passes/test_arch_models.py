"""models/arch/*.onnx.gz (zeroed weights): optimize succeeds and every shape is static."""
from __future__ import annotations

import gzip

import onnx
import pytest
from optimizer_testutil import ops, static_shape_report

from npuflow.passes import optimize


@pytest.mark.parametrize("name, convs", [("mobilenet_v2", 52), ("resnet50", 53)])
def test_arch_model_optimizes_to_static_shapes(shared, name, convs):
    with gzip.open(shared / "models" / "arch" / f"{name}.onnx.gz") as f:
        model = onnx.load_from_string(f.read())
    out = optimize(model)
    onnx.checker.check_model(out)
    assert static_shape_report(out) == []
    assert ops(out)["Conv"] == convs
    # torchvision's export reads weights through Identity nodes and Constant shapes: all folded
    assert ops(out)["Identity"] == 0 and ops(out)["Constant"] == 0
    assert {t.name for t in out.graph.initializer} <= {i for n in out.graph.node for i in n.input}
