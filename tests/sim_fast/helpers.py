"""Helpers of the fast-path conformance tests: compare a fast function with the reference kernel."""
from __future__ import annotations

import os

from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats

# NPUFLOW_PROP_SCALE=N multiplies every example count (a local stress run; CI uses 1)
PROP_SCALE = max(1, int(os.environ.get("NPUFLOW_PROP_SCALE", "1")))
FAST_PROP = settings(max_examples=60 * PROP_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FAST_FEW = settings(max_examples=25 * PROP_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def same(op: str, fast: Any, params: Any, *inputs: np.ndarray) -> Any:
    """Run the reference kernel and ``fast`` on the same inputs; assert identical integers,
    dtypes and stats; return the result."""
    s_ref, s_fast = KernelStats(), KernelStats()
    ref = KERNELS[op].eval(params, *inputs, stats=s_ref)
    got = fast(params, *inputs, stats=s_fast)
    refs = ref if isinstance(ref, tuple) else (ref,)
    gots = got if isinstance(got, tuple) else (got,)
    assert len(refs) == len(gots)
    for a, b in zip(refs, gots):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)
    assert s_ref == s_fast, (s_ref, s_fast)
    # and without stats
    again = fast(params, *inputs)
    for a, b in zip(refs, again if isinstance(again, tuple) else (again,)):
        np.testing.assert_array_equal(a, b)
    return got


def rand_q(rng: np.random.Generator, shape: Any, fmt: QFormat, *, extreme: float = 0.0) -> np.ndarray:
    """Random integers over ``fmt``'s range (a share ``extreme`` at qmin/qmax, both forced in)."""
    q = rng.integers(fmt.qmin, fmt.qmax + 1, size=shape, dtype=np.int64)
    if extreme:
        m = rng.random(q.shape) < extreme
        q[m] = rng.choice([fmt.qmin, fmt.qmax], size=int(m.sum()))
    flat = q.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = fmt.qmin, fmt.qmax
    return q.astype(fmt.dtype)


@st.composite
def window_case(draw: Any, nd: int, k_max: int, sp_max: int) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    """``(kernel, input spatial size, attrs)`` of an ``nd``-D convolution window that fits:
    kernel 1..k_max, strides 1..3, dilations 1..2, explicit pads or any auto_pad (no ``group``)."""
    k = tuple(draw(st.integers(1, k_max)) for _ in range(nd))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(2 * nd))
    keff = [(k[i] - 1) * dil[i] + 1 for i in range(nd)]
    sp = tuple(draw(st.integers(max(1, keff[i] - (pads[i] + pads[i + nd] if auto_pad == "NOTSET" else 0)), sp_max))
               for i in range(nd))
    if auto_pad == "VALID":
        sp = tuple(max(s, keff[i]) for i, s in enumerate(sp))
    attrs: dict[str, Any] = {"kernel_shape": list(k), "strides": list(strides), "dilations": list(dil),
                             "auto_pad": auto_pad}
    if auto_pad == "NOTSET":
        attrs["pads"] = list(pads)
    return k, sp, attrs


@st.composite
def act_attrs(draw: Any, leaky: bool = True) -> dict[str, Any]:
    kinds = ["none", "Relu", "Clip"] + (["LeakyRelu"] if leaky else [])
    k = draw(st.sampled_from(kinds))
    if k == "none":
        return {}
    if k == "Clip":
        lo = draw(st.floats(-4, 0.5))
        return {"activation": "Clip", "activation_min": lo, "activation_max": lo + draw(st.floats(0.1, 6))}
    if k == "LeakyRelu":
        return {"activation": "LeakyRelu", "activation_alpha": draw(st.floats(-0.5, 0.9))}
    return {"activation": k}


def weight_fmt(rng: np.random.Generator, bits: int, channels: int, axis: int) -> QFormat:
    """Per-channel weight format with random radix/scale per channel."""
    r = tuple(int(v) for v in rng.integers(-2, 10, channels))
    s = tuple(float(v) for v in rng.uniform(1.0, 1.99, channels))
    return QFormat(bits, r, s, axis)


def int_weights(rng: np.random.Generator, shape: Any, bits: int, big: bool) -> np.ndarray:
    """Already-quantized integer weights; ``big`` puts most at full scale (forces limb splits)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if big:
        w = rng.choice([lo, hi, hi - 1, lo + 1], size=shape)
    else:
        w = np.rint(rng.normal(0, (hi + 1) / 6, size=shape)).clip(lo, hi)
    dt = np.int8 if bits <= 8 else np.int16
    return w.astype(dt)


def out_fmt(rng: np.random.Generator, bits: int, x_fmt: QFormat, w_fmt: QFormat, k: int, stretch: float) -> QFormat:
    """An output format near the accumulator's real range (``stretch`` < 1 forces saturation)."""
    f_in = float(x_fmt.factor()[0])
    f_w = float(np.min(w_fmt.factor()))
    amax = (x_fmt.qmax / f_in) * (k * (1 << (w_fmt.bits - 1)) / f_w) * 0.05 * stretch
    return QFormat.from_abs_max(max(amax, 1e-6), bits)
