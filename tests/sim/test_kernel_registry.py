"""The registry and the uniform kernel interface.

* every op in ``KERNELS`` is listed in the ``TESTED_OPS`` of some ``tests/sim/test_kernel_*.py``
  (and every listed op has a kernel): adding a kernel without tests fails here;
* for every kernel: ``eval`` refuses float arrays, returns the output container dtype, and its
  params survive a JSON round trip (the BIE stores them) with identical results.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats, params_from_dict, params_to_dict

HERE = Path(__file__).resolve().parent


def collect_tested_ops() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(HERE.glob("test_kernel_*.py")):
        tree = ast.parse(path.read_text())
        env: dict[str, tuple] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name in ("TESTED_OPS", "LUT_OPS"):
                    env[name] = _eval_tuple(node.value, env)
        if "TESTED_OPS" in env:
            found[path.name] = set(env["TESTED_OPS"])
    return found


def _eval_tuple(node: ast.AST, env: dict[str, tuple]) -> tuple:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval_tuple(node.left, env) + _eval_tuple(node.right, env)
    if isinstance(node, ast.Name):
        return env[node.id]
    return tuple(ast.literal_eval(node))


def test_every_kernel_has_tests_and_every_tested_op_has_a_kernel():
    found = collect_tested_ops()
    assert "test_kernel_registry.py" not in found
    listed = set().union(*found.values())
    missing = sorted(set(KERNELS) - listed)
    assert not missing, f"kernels without a test module listing them in TESTED_OPS: {missing}"
    stale = sorted(listed - set(KERNELS))
    assert not stale, f"TESTED_OPS names ops without a kernel: {stale}"


def test_registry_keys_match_op_types():
    for key, k in KERNELS.items():
        assert k.op_type == key
        assert callable(k.prepare) and callable(k.eval)


F8 = QFormat(8, 4, 1.25)
F16 = QFormat(16, 10, 1.0)
X4 = (1, 2, 4, 4)
W = np.linspace(-1, 1, 2 * 2 * 3 * 3).reshape(2, 2, 3, 3)

# op -> (attrs, in_formats, out_format(s), weights, runtime input shapes)
SMOKE = {
    "Conv": ({"pads": [1, 1, 1, 1]}, [F8, QFormat(8, (7, 7), (1.0, 1.0), 0)], F8, {"W": W, "B": np.ones(2)}, [X4]),
    "ConvTranspose": ({"strides": [2, 2]}, [F8, QFormat(8, 7, 1.0)], F8, {"W": W}, [X4]),
    "Gemm": ({"transB": 1}, [F8, QFormat(8, 7, 1.0)], F8, {"B": np.ones((3, 4)) * 0.5, "C": np.ones(3)}, [(2, 4)]),
    "MatMul": ({}, [F8, F8], F16, None, [(2, 3), (3, 2)]),
    "Add": ({}, [F8, F16], F8, None, [(2, 3), (3,)]),
    "Sub": ({}, [F8, None], F8, {"B": np.array(0.5)}, [(2, 3)]),
    "Mul": ({}, [F8, F8], F8, None, [(2, 3), (2, 3)]),
    "Div": ({}, [F8, None], F8, {"B": np.array(3.0)}, [(2, 3)]),
    "BatchNormalization": (
        {},
        [F8],
        F8,
        {"scale": np.ones(2), "B": np.zeros(2), "input_mean": np.zeros(2), "input_var": np.ones(2)},
        [X4],
    ),
    "Relu": ({}, [F8], F8, None, [X4]),
    "Clip": ({}, [F8], F8, {"min": np.array(0.0), "max": np.array(6.0)}, [X4]),
    "LeakyRelu": ({"alpha": 0.1}, [F8], F8, None, [X4]),
    "PRelu": ({}, [F8], F8, {"slope": np.array([[[0.1]], [[0.2]]])}, [X4]),
    "Sigmoid": ({}, [F8], QFormat(8, 7, 1.0), None, [X4]),
    "Tanh": ({}, [F16], F16, None, [X4]),
    "Exp": ({}, [F8], F8, None, [X4]),
    "HardSigmoid": ({}, [F8], F8, None, [X4]),
    "HardSwish": ({}, [F8], F8, None, [X4]),
    "Swish": ({}, [F8], F8, None, [X4]),
    "Softmax": ({"axis": 1}, [F8], QFormat(8, 7, 1.0), None, [X4]),
    "MaxPool": ({"kernel_shape": [2, 2]}, [F8], F8, None, [X4]),
    "GlobalMaxPool": ({}, [F8], F8, None, [X4]),
    "AveragePool": ({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, [F8], F8, None, [X4]),
    "GlobalAveragePool": ({}, [F8], F16, None, [X4]),
    "ReduceMean": ({"axes": [2, 3]}, [F8], F8, None, [X4]),
    "Resize": ({"mode": "linear"}, [F8, None, None], F8, {"scales": np.array([1, 1, 2, 2], np.float32)}, [X4]),
    "Concat": ({"axis": 1}, [F8, F16], F8, None, [X4, X4]),
    "Identity": ({}, [F8], F8, None, [X4]),
    "Reshape": ({}, [F8, None], F8, {"shape": np.array([2, -1])}, [X4]),
    "Flatten": ({}, [F8], F8, None, [X4]),
    "Transpose": ({"perm": [0, 2, 3, 1]}, [F8], F8, None, [X4]),
    "Slice": ({}, [F8], F8, {"starts": np.array([1]), "ends": np.array([3]), "axes": np.array([2])}, [X4]),
    "Squeeze": ({}, [F8], F8, {"axes": np.array([0])}, [X4]),
    "Unsqueeze": ({}, [F8], F8, {"axes": np.array([0])}, [X4]),
    "Gather": ({"axis": 1}, [F8], F8, {"indices": np.array([1, 0])}, [X4]),
    "Split": ({"axis": 1}, [F8], [F8, F16], None, [X4]),
    "Pad": ({}, [F8], F8, {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1])}, [X4]),
}


def test_smoke_table_covers_registry():
    assert set(SMOKE) == set(KERNELS)


def _inputs(fmts, shapes, rng):
    runtime = [f for f in fmts if f is not None]
    return [rng.integers(f.qmin, f.qmax + 1, size=s).astype(f.dtype) for f, s in zip(runtime, shapes)]


@pytest.mark.parametrize("op", sorted(KERNELS))
def test_uniform_interface(op):
    attrs, fmts, out_fmt, weights, shapes = SMOKE[op]
    k = KERNELS[op]
    params = k.prepare(attrs, fmts, out_fmt, weights)
    rng = np.random.default_rng(1)
    xs = _inputs(fmts, shapes, rng)
    st_ = KernelStats()
    out = k.eval(params, *xs, stats=st_)
    outs = out if isinstance(out, tuple) else (out,)
    ofmts = out_fmt if isinstance(out_fmt, list) else [out_fmt]
    for o, f in zip(outs, ofmts):
        assert isinstance(o, np.ndarray) and o.dtype == f.dtype
    assert st_.out_elements == sum(o.size for o in outs)
    # JSON round trip of the params (what the BIE stores) gives identical integers
    restored = params_from_dict(json.loads(json.dumps(params_to_dict(params))))
    again = k.eval(restored, *xs)
    again = again if isinstance(again, tuple) else (again,)
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a, b)
    # no float array enters eval
    with pytest.raises(TypeError):
        k.eval(params, *[x.astype(np.float32) for x in xs])


def test_params_from_dict_refuses_foreign_types():
    with pytest.raises(ValueError):
        params_from_dict({"__type__": "os:system"})
