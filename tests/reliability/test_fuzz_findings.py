"""What the long fuzz run (docs/bie-format.md, "Fuzzing") found, pinned.

* A float ONNX model whose MaxPool window is larger than its input (MNIST's Pooling66 with
  kernel_shape 31x31 on a 28x28 map, stride 2: no output position) loaded, and onnxruntime then
  killed the process with SIGFPE on the first run (tests/bie/test_fuzz.py::test_fuzz_float_onnx,
  seed 153533938). The graph check (npuflow.ir.validate, rule 6) refuses it at load, naming the node;
  with a dynamic H, W the same check runs before onnxruntime, once per input shape (FloatRunner).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

import npuflow
from npuflow.errors import ModelLoadError
from tests.conftest import EXAMPLES

MNIST = EXAMPLES / "mnist" / "mnist_cntk_opt.onnx"


def _edited(tmp_path, node, attr, ints, *, dynamic=False):
    m = onnx.load(str(MNIST))
    n = next(n for n in m.graph.node if n.name == node)
    a = next((a for a in n.attribute if a.name == attr), None)
    if a is None:
        n.attribute.append(onnx.helper.make_attribute(attr, ints))
    else:
        del a.ints[:]
        a.ints.extend(ints)
    if dynamic:  # H and W unknown: nothing to infer sizes from
        for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
            d.dim_param = "hw"
    p = tmp_path / "edited.onnx"
    onnx.save(m, str(p))
    return p


@pytest.mark.parametrize("node, k, size", [("Pooling66", 31, 28), ("Pooling66", 29, 28), ("Pooling160", 31, 14)])
def test_a_pool_window_larger_than_its_input_is_refused_at_load(tmp_path, node, k, size):
    p = _edited(tmp_path, node, "kernel_shape", [k, k])
    with pytest.raises(ModelLoadError, match=rf"the {k}-wide window \(dilation 1\) of node '{node}' \(MaxPool\) does "
                                             rf"not fit its input .* \(size {size}, padded {size}\)") as e:
        npuflow.load(p)
    assert str(p) in str(e.value)


def _run_in_child(path, hw=28):
    """Load and run in a child process (a SIGFPE would kill pytest itself): its stdout and exit code."""
    code = ("import numpy as np, npuflow, sys\n"
            "try:\n"
            f"    out = npuflow.load(sys.argv[1]).run({{'Input3': np.ones((1, 1, {hw}, {hw}), np.float32)}})\n"
            "    print('ran', out[0].shape)\n"
            "except npuflow.errors.NpuflowError as e:\n"
            "    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout.strip(), r.stderr[-500:]


def test_the_fuzzers_model_no_longer_kills_the_process(tmp_path):
    rc, out, err = _run_in_child(_edited(tmp_path, "Pooling66", "kernel_shape", [31, 31]))
    assert rc == 0 and out.startswith("ModelLoadError") and "'Pooling66'" in out, (rc, err)


def test_windows_that_fit_still_load(tmp_path):
    npuflow.load(_edited(tmp_path, "Pooling66", "pads", [1, 1, 1, 1]))  # padded: fits
    p = _edited(tmp_path, "Pooling66", "kernel_shape", [28, 28])  # fits exactly once: a 1x1 map after it ...
    with pytest.raises(ModelLoadError, match=r"3-wide window .* of node 'Pooling160' .* \(size 1, padded 1\)"):
        npuflow.load(p)  # ... on which the next pooling's window does not fit (sizes follow the graph)


def test_dynamic_sizes_are_checked_per_input_shape_before_onnxruntime_runs(tmp_path):
    bad = _edited(tmp_path, "Pooling66", "kernel_shape", [31, 31], dynamic=True)
    m = npuflow.load(bad)  # the size is not known at load
    assert m.inputs[0].shape[2:] == (-1, -1)
    rc, out, err = _run_in_child(bad)
    assert rc == 0 and out.startswith("ModelLoadError") and "(size 28, padded 28)" in out, (rc, err)
    good = _edited(tmp_path, "Pooling66", "kernel_shape", [2, 2], dynamic=True)  # the model as shipped, dynamic H, W
    m = npuflow.load(good)
    for _ in range(2):  # checked once for this shape, then cached
        (y,) = m.run({"Input3": np.ones((1, 1, 28, 28), np.float32)})
        assert y.shape == (1, 10)
