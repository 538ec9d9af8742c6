"""Shared test helpers: format strategies, float reference ops, the LSB-bound check."""

from __future__ import annotations

import os

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from npuflow.sim.fixed_point import QFormat, qrange

# NPUFLOW_PROP_SCALE=N multiplies every example count (a local stress run; CI uses 1)
PROP_SCALE = max(1, int(os.environ.get("NPUFLOW_PROP_SCALE", "1")))
PROP = settings(max_examples=100 * PROP_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROP_FEW = settings(max_examples=20 * PROP_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROP_MANY = settings(max_examples=400 * PROP_SCALE, deadline=None)  # cheap exactness checks of the primitives

MULT_EPS = 2.0**-14
"""Slack for the 31-bit multiplier (relative 2**-31 on outputs up to 2**16 LSB) and float64."""


@st.composite
def qformats(
    draw: Any, bits: Sequence[int] = (8, 16), radix: tuple[int, int] = (-3, 12), pot: bool | None = None
) -> QFormat:
    """Per-tensor formats, including negative radix and scales in [~1, 2)."""
    b = draw(st.sampled_from(tuple(bits)))
    r = draw(st.integers(*radix))
    use_pot = draw(st.booleans()) if pot is None else pot
    s = 1.0 if use_pot else draw(st.floats(0.99, 1.99, allow_nan=False))
    return QFormat(b, r, s)


def rand_q(rng: np.random.Generator, shape: Sequence[int], fmt: QFormat) -> np.ndarray:
    """Random integers over the whole range of ``fmt``, with the extremes forced in."""
    q = rng.integers(fmt.qmin, fmt.qmax + 1, size=shape, dtype=np.int64)
    flat = q.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = fmt.qmin, fmt.qmax
    return q.astype(fmt.dtype)


def out_format_for(ref: np.ndarray, bits: int, stretch: float) -> QFormat:
    """An output format sized to the float result (``stretch`` < 1 forces saturation)."""
    amax = float(np.max(np.abs(ref))) if ref.size else 1.0
    return QFormat.from_abs_max(amax * stretch if amax > 0 else 1.0, bits)


def lsb_error(out_q: np.ndarray, ref: np.ndarray, fmt: QFormat) -> float:
    """Max ``|out - clip(ref * factor)|`` in output LSBs."""
    lo, hi = qrange(fmt.bits)
    assert not np.isnan(np.asarray(ref, dtype=np.float64)).any(), "float reference has NaN"
    with np.errstate(over="ignore"):  # a reference beyond float64 after scaling saturates anyway
        exact = np.clip(np.asarray(ref, dtype=np.float64) * float(fmt.factor()[0]), lo, hi)
    return float(np.max(np.abs(out_q.astype(np.float64) - exact))) if out_q.size else 0.0


def assert_kernel_output(out_q: np.ndarray, ref: np.ndarray, fmt: QFormat, bound: float) -> None:
    """The three properties every kernel promises: integer dtype, in range, within ``bound`` LSB."""
    assert out_q.dtype == fmt.dtype, (out_q.dtype, fmt.dtype)
    assert out_q.dtype.kind == "i"
    if out_q.size:
        assert out_q.min() >= fmt.qmin and out_q.max() <= fmt.qmax
    assert out_q.shape == np.shape(ref), (out_q.shape, np.shape(ref))
    err = lsb_error(out_q, ref, fmt)
    assert err <= bound, f"error {err} LSB > bound {bound}"


def run_float(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    consts: Mapping[str, np.ndarray] | None = None,
    order: Sequence[str] | None = None,
    n_outputs: int = 1,
    opset: int = 21,
    domain: str = "",
) -> list[np.ndarray]:
    """Run one ONNX node with onnx's ReferenceEvaluator (float64 where possible).

    ``order``: input names in ONNX position order ('' for a skipped optional input); defaults to
    the runtime inputs followed by the constants.
    """
    consts = dict(consts or {})
    names = list(order) if order is not None else list(inputs) + list(consts)
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, domain=domain, **dict(attrs or {}))
    g_in = []
    for k, v in inputs.items():
        v = np.asarray(v)
        g_in.append(helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), None))
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    g_out = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs]
    graph = helper.make_graph([node], "g", g_in, g_out, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    ref = ReferenceEvaluator(model)
    res = ref.run(None, {k: np.asarray(v) for k, v in inputs.items()})
    return [np.asarray(r) for r in res]


def onnx_model_available() -> bool:
    return onnx is not None


def run_ort(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    consts: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> np.ndarray:
    """Run one float32 ONNX node with onnxruntime (second opinion where onnx's reference is
    incomplete, e.g. dilated ConvTranspose). Float32 error is far below one output LSB here."""
    import onnxruntime as ort

    consts = dict(consts or {})
    names = list(inputs) + list(consts)
    node = helper.make_node(op_type, names, ["y"], **dict(attrs or {}))
    g_in = [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k, v in inputs.items()]
    inits = [
        numpy_helper.from_array(
            np.asarray(v) if np.asarray(v).dtype.kind in "iu" else np.asarray(v, dtype=np.float32), k
        )
        for k, v in consts.items()
    ]
    g_out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    model = helper.make_model(
        helper.make_graph([node], "g", g_in, g_out, initializer=inits), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = 8
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.asarray(
        sess.run(None, {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()})[0], dtype=np.float64
    )
