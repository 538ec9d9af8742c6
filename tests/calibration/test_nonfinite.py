"""Calibration statistics refuse non-finite values with a clear error."""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.calibration.histogram import AbsHistogram


@pytest.mark.parametrize("sim", ["", "numpy"])
@pytest.mark.parametrize("bits", [0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000, 0x7F800001],
                         ids=["nan", "negative-nan", "inf", "-inf", "signalling-nan"])
def test_non_finite_values_are_refused(bits, sim, monkeypatch):
    """Compiled (the abs max from bit patterns) and numpy paths; NaNs with the sign bit set too."""
    if sim:
        monkeypatch.setenv("NPUFLOW_SIM", sim)
    x = np.array([1.0, 2.0, -2.0] * 30, np.float32)
    x.view(np.uint32)[50] = bits
    with pytest.raises(ValueError, match="non-finite"):
        AbsHistogram().update(x)


@pytest.mark.parametrize("threads", [1, 2])
def test_nan_inside_the_model_names_tensor_and_input(tmp_path, threads):
    """An intermediate NaN (Log of a negative value on input #2) is reported with the tensor and the
    input, also when the statistics are updated in the background (threads > 1); nothing is written."""
    import onnx
    from onnx import TensorProto, helper

    import ktc
    from npuflow.errors import InputError

    g = helper.make_graph([helper.make_node("Log", ["x"], ["lx"], name="log"), helper.make_node("Relu", ["lx"], ["y"], name="relu")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "log.onnx"
    onnx.save(m, path)
    data = [np.full((1, 4), 2.0, np.float32)] * 2 + [np.array([[1.0, -1.0, 2.0, 3.0]], np.float32)] + [np.ones((1, 4), np.float32)] * 3
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(path))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"calibration input #2: tensor lx .*non-finite"):
        km.analysis({"x": data}, output_dir=str(out), threads=threads, report=False)
    assert not out.exists() or not any(out.iterdir())
