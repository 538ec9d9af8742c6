"""MaxPool, GlobalMaxPool, AveragePool, GlobalAveragePool, ReduceMean, Resize.

Bounds: max pools and nearest Resize 0 LSB with equal formats (else 0.5); averages 0.5 LSB (one
exact rounding of sum * M / count); linear Resize 0.5 + d * 2**-21 * max|q1 - q0| * f_out/f_in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels.resize import RESIZE_WEIGHT_BITS
from tests.sim.helpers import MULT_EPS, PROP, assert_kernel_output, out_format_for, qformats, rand_q, run_float, run_ort

TESTED_OPS = ("MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Resize")
BOUND = 0.5 + MULT_EPS
EXACT = 1e-9
F0 = QFormat(8, 0, 1.0)


def run(op, fin, fout, x, attrs=None, weights=None):
    k = KERNELS[op]
    return k.eval(k.prepare(attrs or {}, [fin], fout, weights), np.asarray(x, dtype=fin.dtype))


# ---------------------------------------------------------------------------------------------- hand vectors
def test_average_pool_ties_and_counts():
    x = np.array([[[[1, 2], [3, 5]]]])  # sum 11 / 4 = 2.75 -> 3
    assert run("AveragePool", F0, F0, x, {"kernel_shape": [2, 2]}).ravel().tolist() == [3]
    x = np.array([[[[1, 2], [2, 5]]]])  # 10 / 4 = 2.5 -> 2 (tie to even)
    assert run("AveragePool", F0, F0, x, {"kernel_shape": [2, 2]}).ravel().tolist() == [2]
    x = np.array([[[[3, 3], [3, 5]]]])  # 14 / 4 = 3.5 -> 4
    assert run("AveragePool", F0, F0, x, {"kernel_shape": [2, 2]}).ravel().tolist() == [4]
    # padding: count_include_pad=0 divides by the real elements, =1 by the padded window
    x = np.array([[[[4, 4]]]])  # 1x2, kernel 1x2, pads 1 left: windows [pad,4] and [4,4]
    a = {"kernel_shape": [1, 2], "pads": [0, 1, 0, 0]}
    assert run("AveragePool", F0, F0, x, a).ravel().tolist() == [4, 4]
    assert run("AveragePool", F0, F0, x, dict(a, count_include_pad=1)).ravel().tolist() == [2, 4]
    # negative radix output (LSB 4): mean 10 -> 2.5 -> 2
    assert run(
        "AveragePool", F0, QFormat(8, -2, 1.0), np.array([[[[10, 10]]]]), {"kernel_shape": [1, 2]}
    ).ravel().tolist() == [2]


def test_global_average_pool_and_reduce_mean():
    x = np.array([[[[127, 127], [127, 126]]], [[[-128, -128], [-128, -127]]]])  # (2,1,2,2)
    # 507/4 = 126.75 -> 127 ; -511/4 = -127.75 -> -128
    assert run("GlobalAveragePool", F0, F0, x).ravel().tolist() == [127, -128]
    # output LSB 1/2: 126.75 * 2 = 253.5 -> 254 -> saturates to 127
    assert run("GlobalAveragePool", F0, QFormat(8, 1, 1.0), x).ravel().tolist() == [127, -128]
    assert run("ReduceMean", F0, F0, np.array([[1, 2], [3, 4]]), {"axes": [1], "keepdims": 0}).tolist() == [
        2,
        4,
    ]  # 1.5, 3.5
    assert run("ReduceMean", F0, F0, np.array([[1, 2], [3, 4]]), {"keepdims": 0}).tolist() == 2  # 2.5 -> 2
    assert run("ReduceMean", F0, F0, np.array([[1, 2], [3, 4]]), None, {"axes": np.array([0])}).tolist() == [[2, 3]]


def test_max_pool_exact_and_padding_never_wins():
    x = np.array([[[[-128, -100], [-128, -128]]]])
    out = run("MaxPool", F0, F0, x, {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1], "strides": [2, 2]})
    assert out.ravel().tolist() == [-128, -100, -128, -128]
    assert run("GlobalMaxPool", F0, F0, x).ravel().tolist() == [-100]
    # different output format: requantize the max (monotone): -100 / 2 = -50 ; 127 -> 63.5 -> 64
    assert run(
        "MaxPool", F0, QFormat(8, -1, 1.0), np.array([[[[-100, 127]]]]), {"kernel_shape": [1, 1]}
    ).ravel().tolist() == [-50, 64]


def test_resize_nearest_and_linear_hand_vectors():
    x = np.array([[[[0, 10]]]])  # 1x2 -> 1x4
    sc = {"scales": np.array([1, 1, 1, 2], np.float32)}
    assert run("Resize", F0, F0, x, {"mode": "nearest"}, sc).ravel().tolist() == [0, 0, 10, 10]
    # linear half_pixel: source x = -0.25, 0.25, 0.75, 1.25 -> 0, 2.5, 7.5, 10 -> 0, 2, 8, 10 (ties to even)
    assert run("Resize", F0, F0, x, {"mode": "linear"}, sc).ravel().tolist() == [0, 2, 8, 10]
    # align_corners 2 -> 3: 0, 5, 10
    out = run(
        "Resize",
        F0,
        F0,
        x,
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        {"sizes": np.array([1, 1, 1, 3])},
    )
    assert out.ravel().tolist() == [0, 5, 10]
    # asymmetric nearest with floor, downscale 4 -> 2
    out = run(
        "Resize",
        F0,
        F0,
        np.array([[[[1, 2, 3, 4]]]]),
        {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"scales": np.array([1, 1, 1, 0.5], np.float32)},
    )
    assert out.ravel().tolist() == [1, 3]


def _ort_resize10(x: np.ndarray, mode: str, scales: list[float]) -> np.ndarray:
    """onnxruntime's Resize-10 (the float reference of the toolchain for opset-10 models)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array(scales, np.float32), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 10)])
    m.ir_version = 6
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.astype(np.float32)})[0]


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 1.5, 2.5], [1, 1, 0.6, 0.5], [1, 1, 1.7, 0.75], [1, 1, 3, 0.34]])
def test_resize_nearest_simple_is_onnxruntime_resize10(scales):
    """``nearest_mode = "simple"`` with asymmetric coordinates (spec 9): floor on axes with scale >= 1,
    ceil on axes with scale < 1, per axis -- bit for bit what onnxruntime's Resize-10 gathers."""
    x = np.arange(2 * 5 * 7).reshape(1, 2, 5, 7) - 35
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "simple"}
    out = run("Resize", F0, F0, x, attrs, {"scales": np.array(scales, np.float32)})
    ref = _ort_resize10(x, "nearest", scales)
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out, ref.astype(np.int64))


def test_resize_rejects_unsupported():
    with pytest.raises(ValueError):
        KERNELS["Resize"].prepare({"mode": "cubic"}, [F0], F0, {"scales": np.ones(4, np.float32)})
    with pytest.raises(ValueError):
        KERNELS["Resize"].prepare(
            {"coordinate_transformation_mode": "tf_crop_and_resize"}, [F0], F0, {"scales": np.ones(4, np.float32)}
        )


# ---------------------------------------------------------------------------------------------- properties
@PROP
@given(
    op=st.sampled_from(["MaxPool", "AveragePool"]),
    fin=qformats(),
    same=st.booleans(),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    ceil_mode=st.integers(0, 1),
    cip=st.integers(0, 1),
    dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_pool_property(op, fin, same, k, s, pads, ceil_mode, cip, dil, stretch, seed):
    assume(all(p < kk for p, kk in zip(pads, k + k)))  # ONNX: pads smaller than the kernel
    if op == "AveragePool":
        dil = (1, 1)
    rng = np.random.default_rng(seed)
    h = (k[0] - 1) * dil[0] + 1 + int(rng.integers(0, 4))
    w = (k[1] - 1) * dil[1] + 1 + int(rng.integers(0, 4))
    x_q = rand_q(rng, (1, 2, h, w), fin)
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(pads), "ceil_mode": ceil_mode}
    if op == "AveragePool":
        attrs["count_include_pad"] = cip
    else:
        attrs["dilations"] = list(dil)
    ref = run_ort(op, {"X": fin.dequantize(x_q)}, attrs, opset=19)
    fout = fin if same else out_format_for(ref, 8, stretch)
    out = run(op, fin, fout, x_q, attrs)
    bound = EXACT if (op == "MaxPool" and fout == fin) else BOUND
    assert_kernel_output(out, ref, fout, bound + 4e-3)  # + float32 reference slack (2**-24 relative on 2**15 LSB)


@PROP
@given(
    op=st.sampled_from(["GlobalAveragePool", "GlobalMaxPool", "ReduceMean"]),
    fin=qformats(),
    out_bits=st.sampled_from([8, 16]),
    keepdims=st.integers(0, 1),
    axes=st.sampled_from([(1,), (2, 3), (-1,), ()]),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_global_reduce_property(op, fin, out_bits, keepdims, axes, stretch, seed):
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, (2, 3, int(rng.integers(1, 9)), int(rng.integers(1, 9))), fin)
    attrs = {}
    consts = {}
    if op == "ReduceMean":
        attrs = {"keepdims": keepdims}
        if axes:
            consts = {"axes": np.array(axes, np.int64)}
    ref = run_float(op, {"X": fin.dequantize(x_q)}, attrs, consts, opset=18)[0]
    fout = out_format_for(ref, out_bits, stretch)
    assert_kernel_output(run(op, fin, fout, x_q, attrs, consts or None), ref, fout, BOUND)


@PROP
@given(
    fin=qformats(),
    mode=st.sampled_from(["nearest", "linear"]),
    ctm=st.sampled_from(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]),
    nearest_mode=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
    use_sizes=st.booleans(),
    sh=st.sampled_from([1.0, 2.0, 0.5, 3.0, 1.5]),
    sw=st.sampled_from([1.0, 2.0, 0.5, 4.0, 0.75]),
    same=st.booleans(),
    stretch=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31),
)
def test_resize_property(fin, mode, ctm, nearest_mode, use_sizes, sh, sw, same, stretch, seed):
    rng = np.random.default_rng(seed)
    x_q = rand_q(rng, (1, 2, int(rng.integers(1, 6)), int(rng.integers(1, 6))), fin)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest_mode}
    if use_sizes:
        sizes = np.array([1, 2, max(1, int(x_q.shape[2] * sh)), max(1, int(x_q.shape[3] * sw))], np.int64)
        consts = {"roi": np.array([], np.float32), "scales": np.array([], np.float32), "sizes": sizes}
        kw = {"sizes": sizes}
    else:
        scales = np.array([1, 1, sh, sw], np.float32)
        assume(int(x_q.shape[2] * sh) >= 1 and int(x_q.shape[3] * sw) >= 1)
        consts = {"roi": np.array([], np.float32), "scales": scales}
        kw = {"scales": scales}
    # onnxruntime is the float reference of the toolchain; onnx's ReferenceEvaluator differs for
    # align_corners with scales (it uses the unrounded output length)
    ref = run_ort("Resize", {"X": fin.dequantize(x_q)}, attrs, consts, opset=19)
    fout = fin if same else out_format_for(ref, 8, stretch)
    out = run("Resize", fin, fout, x_q, attrs, kw)
    if mode == "nearest" and fout == fin:
        # a pure gather: identical to the float op run on the integers themselves (exact in float32)
        gathered = run_ort("Resize", {"X": x_q.astype(np.float64)}, attrs, consts, opset=19)
        assert out.tolist() == gathered.astype(np.int64).tolist()
        bound = 4e-3
    elif mode == "nearest":
        bound = BOUND + 4e-3  # float32 reference slack
    else:
        ratio = float(fout.factor()[0] / fin.factor()[0])
        bound = BOUND + 4e-3 + 2 * 2.0 ** -(RESIZE_WEIGHT_BITS + 1) * (fin.qmax - fin.qmin) * ratio
    assert_kernel_output(out, ref, fout, bound)
