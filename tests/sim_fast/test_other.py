"""Fast Add/Sub, table ops, MaxPool, AveragePool, Concat and Resize return the reference integers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npuflow.sim.fast import FAST
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS
from tests.sim_fast.helpers import FAST_PROP, act_attrs, rand_q, same

fmts = st.builds(lambda b, r, s: QFormat(b, r, s), st.sampled_from([8, 16]), st.integers(-3, 12),
                 st.sampled_from([1.0, 1.37, 1.99]))


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["Add", "Sub"]), fa=fmts, fb=fmts, fo=fmts,
       shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), const=st.sampled_from([None, "scalar", "array"]),
       act=act_attrs(leaky=False))
def test_add_sub_fast_equals_reference(seed, op, fa, fb, fo, shape, const, act):
    rng = np.random.default_rng(seed)
    weights = {}
    formats = [fa, fb]
    if const == "scalar":
        weights["B"] = np.array(rng.normal(0, 4))
        formats = [fa, None]
    elif const == "array":
        weights["B"] = rng.normal(0, 4, shape[-1:])
        formats = [fa, None]
    try:
        params = KERNELS[op].prepare(act, formats, fo, weights)
    except ValueError:
        assume(False)
    xs = [rand_q(rng, shape, fa)] + ([] if const else [rand_q(rng, shape, fb)])
    same(op, FAST[op], params, *xs)



def test_add_scalar_constant_hand_vectors(monkeypatch):
    """Add of one int8 input and a scalar constant (the decomposed HardSwish's x + 3): every int8
    input, worked by hand, on the compiled branch-free kernel (the others are patched out). Input
    LSB 0.5, output LSB 1: q / 2 rounds half to even (1 -> 0, 3 -> 2, -1 -> 0, -3 -> -2); with
    + 100 the output saturates from q = 55 on (127.5 -> 127 would be 128 before the clamp),
    counted; + 3 then Clip(0, 6): the constant joins before the one rounding (-5 / 2 + 3 = 0.5 -> 0),
    clamped at 0 and 6."""
    import npuflow.sim.fast.elementwise as E
    from npuflow.sim.kernels import KernelStats

    def other(*a, **k):
        raise AssertionError("not the branch-free scalar-constant kernel")

    monkeypatch.setattr(E, "_add1", other)
    monkeypatch.setattr(KERNELS["Add"], "eval", other)
    q = np.arange(-128, 128, dtype=np.int8)
    half, unit = QFormat(8, 1, 1.0), QFormat(8, 0, 1.0)
    p0 = KERNELS["Add"].prepare({}, [half, None], unit, {"B": np.array(0.0)})
    got = FAST["Add"](p0, q)
    want = [int(np.rint(v / 2)) for v in range(-128, 128)]  # np.rint: half to even
    assert got.tolist() == want
    assert [int(got[128 + v]) for v in (1, 3, 5, -1, -3, -5)] == [0, 2, 2, 0, -2, -2]
    stats = KernelStats()
    p100 = KERNELS["Add"].prepare({}, [half, None], unit, {"B": np.array(100.0)})
    got = FAST["Add"](p100, q, stats=stats)
    want = [min(127, int(np.rint(v / 2)) + 100) for v in range(-128, 128)]
    assert got.tolist() == want
    assert stats.out_saturated == sum(1 for v in range(-128, 128) if int(np.rint(v / 2)) + 100 > 127)
    relu6 = KERNELS["Add"].prepare({"activation": "Clip", "activation_min": 0.0, "activation_max": 6.0},
                                   [half, None], unit, {"B": np.array(3.0)})
    got = FAST["Add"](relu6, q)
    # one rounding of the exact sum: -5 / 2 + 3 = 0.5 -> 0 and -3 / 2 + 3 = 1.5 -> 2 (not rint(q / 2) + 3)
    assert got.tolist() == [min(6, max(0, int(np.rint(v / 2 + 3)))) for v in range(-128, 128)]
    assert [int(got[128 + v]) for v in (-5, -3, -1, 1)] == [0, 2, 2, 4]
    monkeypatch.undo()
    for params in (p0, p100, relu6):
        same("Add", FAST["Add"], params, q)

@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish",
                                                             "Swish"]), fi=fmts, fo=fmts,
       shape=st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_table_ops_fast_equal_reference(seed, op, fi, fo, shape):
    rng = np.random.default_rng(seed)
    params = KERNELS[op].prepare({}, [fi], fo)
    same(op, FAST[op], params, rand_q(rng, shape, fi))
    # a non-contiguous input too
    x = rand_q(rng, shape + [2], fi)[..., 0]
    same(op, FAST[op], params, x)


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), nd=st.sampled_from([1, 2]), k=st.integers(1, 5), s=st.integers(1, 3),
       d=st.integers(1, 2), pad=st.integers(0, 4), ceil=st.booleans(),
       auto=st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]),
       fi=fmts, same_fmt=st.booleans(), fo=fmts, n=st.integers(1, 3), size=st.integers(1, 12))
def test_max_pool_fast_equals_reference(seed, nd, k, s, d, pad, ceil, auto, fi, same_fmt, fo, n, size):
    rng = np.random.default_rng(seed)
    attrs = {"kernel_shape": [k] * nd, "strides": [s] * nd, "dilations": [d] * nd, "auto_pad": auto,
             "ceil_mode": int(ceil)}
    if auto == "NOTSET":
        attrs["pads"] = [pad] * (2 * nd)
    try:
        params = KERNELS["MaxPool"].prepare(attrs, [fi], fi if same_fmt else fo)
        x = rand_q(rng, (n, 3) + (size,) * nd, fi)
        KERNELS["MaxPool"].eval(params, x)
    except ValueError:
        assume(False)
    same("MaxPool", FAST["MaxPool"], params, x)



@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       pads=st.lists(st.integers(0, 4), min_size=4, max_size=4), ceil=st.booleans(), fi=fmts,
       same_fmt=st.booleans(), fo=fmts, n=st.integers(1, 2), h=st.integers(1, 11), w=st.integers(1, 11),
       extreme=st.booleans())
def test_max_pool_2d_compiled_equals_reference(seed, kh, kw, sh, sw, dh, dw, pads, ceil, fi, same_fmt, fo, n, h, w,
                                               extreme):
    """The compiled 2-D MaxPool: per-axis kernels, strides, dilations and asymmetric pads
    (also pads as large as the kernel, which onnxruntime refuses), ceil mode, 8/16-bit formats,
    format-extreme values, requantized outputs."""
    rng = np.random.default_rng(seed)
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "dilations": [dh, dw], "pads": pads,
             "ceil_mode": int(ceil)}
    try:
        params = KERNELS["MaxPool"].prepare(attrs, [fi], fi if same_fmt else fo)
        x = rand_q(rng, (n, 2, h, w), fi)
        if extreme:
            x = np.where(rng.random(x.shape) < 0.5, fi.qmin, fi.qmax).astype(x.dtype)
        KERNELS["MaxPool"].eval(params, x)
    except ValueError:
        assume(False)
    same("MaxPool", FAST["MaxPool"], params, x)


def test_max_pool_2d_hand_vectors(monkeypatch):
    """Worked by hand, on the compiled loop (onnxruntime and the reference patched out): a 2x3
    window with stride (1, 2), pads (top 1, left 1) that never win over negative values, a dilated
    window, and a finer output format that saturates (counted)."""
    import npuflow.sim.fast.movement as M
    from npuflow.sim.kernels import KernelStats

    def other(*a, **k):
        raise AssertionError("not the compiled MaxPool")

    x = np.array([[[[-5, -3, -9, -1, -7],
                    [-8, -2, -6, -4, -10]]]], dtype=np.int8)  # (1, 1, 2, 5)
    p = KERNELS["MaxPool"].prepare({"kernel_shape": [2, 3], "strides": [1, 2], "pads": [1, 1, 0, 0]}, [UNIT], UNIT)
    want = KERNELS["MaxPool"].eval(p, x)
    monkeypatch.setattr(M, "single_node_session", other)
    monkeypatch.setattr(KERNELS["MaxPool"], "eval", other)
    got = FAST["MaxPool"](p, x)
    # rows {pad, 0} then {0, 1}; columns {pad, 0, 1}, {1, 2, 3}: padding never wins over -5
    assert got.tolist() == want.tolist() == [[[[-3, -1], [-2, -1]]]]
    pd = KERNELS["MaxPool"].prepare({"kernel_shape": [1, 2], "dilations": [1, 3]}, [UNIT], UNIT)
    # columns {0, 3}, {1, 4}: max(-5, -1) = -1, max(-3, -7) = -3; row 2: max(-8, -4), max(-2, -10)
    assert FAST["MaxPool"](pd, x).tolist() == [[[[-1, -3], [-4, -2]]]]
    stats = KernelStats()
    fine = KERNELS["MaxPool"].prepare({"kernel_shape": [1, 1]}, [UNIT], QFormat(8, 4, 1.0))
    y = np.array([[[[8, -9, 7, 0]]]], dtype=np.int8)
    # x16: 128 -> 127 (saturated), -144 -> -128 (saturated), 112, 0
    assert FAST["MaxPool"](fine, y, stats=stats).tolist() == [[[[127, -128, 112, 0]]]]
    assert stats.out_saturated == 2 and stats.out_elements == 4

@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), kh=st.integers(1, 5), kw=st.integers(1, 5), sh=st.integers(1, 3),
       sw=st.integers(1, 3), d=st.integers(1, 2), pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       ceil=st.booleans(), include_pad=st.booleans(),
       auto=st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]),
       fi=fmts, fo=fmts, n=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), extreme=st.booleans())
def test_average_pool_fast_equals_reference(seed, kh, kw, sh, sw, d, pads, ceil, include_pad, auto, fi, fo, n, h, w,
                                            extreme):
    rng = np.random.default_rng(seed)
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "dilations": [d, d], "auto_pad": auto,
             "ceil_mode": int(ceil), "count_include_pad": int(include_pad)}
    if auto == "NOTSET":
        attrs["pads"] = pads
    try:
        params = KERNELS["AveragePool"].prepare(attrs, [fi], fo)
        x = rand_q(rng, (n, 3, h, w), fi)
        if extreme:  # the format's ends: the largest sums, saturation of a finer output
            x = np.where(rng.random(x.shape) < 0.5, fi.qmin, fi.qmax).astype(x.dtype)
        KERNELS["AveragePool"].eval(params, x)
    except ValueError:
        assume(False)
    same("AveragePool", FAST["AveragePool"], params, x)


UNIT = QFormat(8, 0, 1.0)


def _pool(kernel, strides, fo=UNIT, **attrs):
    return KERNELS["AveragePool"].prepare({"kernel_shape": kernel, "strides": strides, **attrs}, [UNIT], fo)


def test_average_pool_hand_vectors(monkeypatch):
    """Worked by hand (input and output in the same format): each window's sum over its count,
    rounded once, half to even; the compiled path must run (the reference is patched out)."""
    from npuflow.sim.kernels import KernelStats

    def no_reference(*a, **k):
        raise AssertionError("the fast AveragePool fell back to the reference")

    row = [1, 1, 1, 2, 3, 3, -3, -3, 5, 5]
    x = np.array([[[row, [0] * 10]]], dtype=np.int8)  # (1, 1, 2, 10): five 2x2 windows
    p = _pool([2, 2], [2, 2])
    want = same("AveragePool", FAST["AveragePool"], p, x)
    # 2/4 = 0.5 -> 0 (tie, even), 3/4 -> 1, 6/4 = 1.5 -> 2 (tie, even), -6/4 = -1.5 -> -2, 10/4 = 2.5 -> 2
    assert want.tolist() == [[[[0, 1, 2, -2, 2]]]]
    # count 6 (2x3 windows): 3/6 = 0.5 -> 0, 9/6 = 1.5 -> 2, -15/6 = -2.5 -> -2
    y = np.array([[[[1, 1, 1, 2, 2, 2, -5, -5, -5], [0, 0, 0, 1, 1, 1, 0, 0, 0]]]], dtype=np.int8)
    assert same("AveragePool", FAST["AveragePool"], _pool([2, 3], [2, 3]), y).tolist() == [[[[0, 2, -2]]]]
    # ceil_mode: the last window overhangs by two columns, which do not count (7 / 1)
    z = np.array([[[[1, 1, 0, 2, 2, 1, 7]]]], dtype=np.int8)
    p3 = _pool([1, 3], [1, 3], ceil_mode=1)
    assert same("AveragePool", FAST["AveragePool"], p3, z).tolist() == [[[[1, 2, 7]]]]  # 2/3, 5/3, 7/1
    # explicit pads, one column before and one row after: a 1x1 input's one window holds one
    # element (3/1) and three pads, counted with count_include_pad=1 (3/4 -> 1); a 1x2 input's
    # second window (3 + 0) / 2 = 1.5 -> 2 without, 3/4 -> 1 with
    u = np.array([[[[3]]]], dtype=np.int8)
    pads = {"pads": [0, 1, 1, 0]}
    assert same("AveragePool", FAST["AveragePool"], _pool([2, 2], [1, 1], count_include_pad=1, **pads), u).tolist() == [[[[1]]]]
    assert same("AveragePool", FAST["AveragePool"], _pool([2, 2], [1, 1], **pads), u).tolist() == [[[[3]]]]
    u2 = np.array([[[[3, 0]]]], dtype=np.int8)  # two windows: {pad, 3}, {3, 0} over two rows (the second a pad)
    assert same("AveragePool", FAST["AveragePool"], _pool([2, 2], [1, 1], **pads), u2).tolist() == [[[[3, 2]]]]
    assert same("AveragePool", FAST["AveragePool"], _pool([2, 2], [1, 1], count_include_pad=1, **pads),
                u2).tolist() == [[[[1, 1]]]]
    # an output format 4x finer saturates: 40 -> 160 -> 127, counted
    v = np.array([[[[40, 40], [40, 40]]]], dtype=np.int8)
    stats = KernelStats()
    monkeypatch.setattr(KERNELS["AveragePool"], "eval", no_reference)
    got = FAST["AveragePool"](_pool([2, 2], [2, 2], fo=QFormat(8, 2, 1.0)), v, stats=stats)
    assert got.tolist() == [[[[127]]]] and stats.out_saturated == 1 and stats.out_elements == 1
    assert FAST["AveragePool"](p, x).tolist() == want.tolist()  # the compiled path, no reference



def test_linear_resize_split_rounding_equals_exact():
    """The branch-free rounding of the compiled linear Resize (``movement._mul_rne_split``) is
    the exact RNE(v * m / 2**s) of ``_requant._mul_rne`` (clamped alike) over its whole domain:
    random sums up to 2**55 (16-bit data times 2**40 of weights), both signs of m, s from 25 to
    86; exact ties (v * m an odd multiple of 2**(s - 1), both parities of the quotient); the
    extremes. Hand-worked: 5 * 2**39 / 2**40 = 2.5 -> 2, 7 * 2**39 -> 3.5 -> 4, -5 * 2**39 ->
    -2.5 -> -2, and one above a tie (+1) -> 3."""
    import numba

    from npuflow.sim.fast._requant import _mul_rne
    from npuflow.sim.fast.movement import _mul_rne_split

    @numba.njit
    def both(vs, ms, ss, a, b):
        for i in range(vs.size):
            a[i] = min(max(_mul_rne(vs[i], ms[i], ss[i]), -(1 << 40)), 1 << 40)
            b[i] = min(max(_mul_rne_split(vs[i], ms[i], ss[i]), -(1 << 40)), 1 << 40)

    def agree(vs, ms, ss):
        vs, ms, ss = (np.ascontiguousarray(v, dtype=np.int64) for v in (vs, ms, ss))
        a, b = np.empty_like(vs), np.empty_like(vs)
        both(vs, ms, ss, a, b)
        np.testing.assert_array_equal(a, b)
        return b

    assert agree([5 << 39, 7 << 39, -(5 << 39), (5 << 39) + 1], [1] * 4, [40] * 4).tolist() == [2, 4, -2, 3]
    rng = np.random.default_rng(3)
    n = 200_000
    agree(rng.integers(-2**15, 2**15 + 1, n) * rng.integers(0, 2**40 + 1, n),
          rng.integers(-(2**31) + 1, 2**31, n), rng.integers(25, 87, n))
    s = rng.integers(25, 36, n)  # ties: v = k * 2**(s - 1), k * m odd
    m = rng.integers(0, 2**20, n) * 2 + 1
    agree((rng.integers(-2**19, 2**19, n) * 2 + 1) << (s - 1), m, s)
    ext_v = [2**55, -(2**55), 2**55 - 1, -(2**55) + 1, 0, 1, -1, 2**47, -(2**47)]
    ext_m = [2**31 - 1, -(2**31) + 1, 1, -1, 12345, 2**30]
    grid = np.array(np.meshgrid(ext_v, ext_m, np.arange(25, 87))).reshape(3, -1)
    agree(grid[0], grid[1], grid[2])

@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), axis=st.integers(-3, 2), fo=fmts,
       shared_fmt=st.booleans(), data=st.data())
def test_concat_fast_equals_reference(seed, k, axis, fo, shared_fmt, data):
    rng = np.random.default_rng(seed)
    fmts_in = [fo if shared_fmt else data.draw(fmts) for _ in range(k)]
    params = KERNELS["Concat"].prepare({"axis": axis}, fmts_in, fo)
    a = axis % 3
    xs = []
    for f in fmts_in:
        shape = [2, 3, 4]
        shape[a] = int(rng.integers(1, 4))
        xs.append(rand_q(rng, shape, f))
    same("Concat", FAST["Concat"], params, *xs)


@pytest.mark.parametrize("sim", ["", "numpy"])
@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), fi=fmts, fo=fmts, mode=st.sampled_from(["nearest", "linear"]),
       ctm=st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]),
       nm=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
       scales=st.sampled_from([(1.0, 1.0, 2.0, 2.0), (1.0, 1.0, 0.5, 1.5), (1.0, 1.0, 3.0, 0.75), (1.0, 1.0, 1.0, 2.0),
                               (1.0, 1.0, 1.5, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 2.0, 1.0, 1.0)]),
       use_sizes=st.booleans())
def test_resize_fast_equals_reference(sim, seed, fi, fo, mode, ctm, nm, scales, use_sizes, monkeypatch):
    """Nearest and linear (one or both of the last two axes, none, or the channel axis: the
    reference), numba and numpy modes, a cached plan reused."""
    if sim:
        monkeypatch.setenv("NPUFLOW_SIM", sim)
    rng = np.random.default_rng(seed)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nm}
    weights = ({"sizes": np.array([2, 3, 7, 5], np.int64)} if use_sizes
               else {"scales": np.array(scales, np.float32)})
    params = KERNELS["Resize"].prepare(attrs, [fi], fo, weights)
    for shape in ((2, 3, 4, 6), (2, 3, 5, 3), (2, 3, 4, 6)):  # the second shape and the cached first
        same("Resize", FAST["Resize"], params, rand_q(rng, shape, fi))


@pytest.mark.parametrize("sim", ["", "numpy"])
@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["Swish", "Sigmoid", "HardSwish"]),
       out_bits=st.sampled_from([8, 16]), lut_bits=st.sampled_from([8, 16]), act=act_attrs(),
       k=st.sampled_from([1, 3]), x_bits=st.sampled_from([8, 16]))
def test_conv_with_fused_table_equals_two_steps(sim, seed, op, out_bits, lut_bits, act, k, x_bits, monkeypatch):
    """3x3 (float32 engine, limbs for int16) and 1x1 (the int8 matrix engine: one product for int8
    activations, two limbs for int16) convolutions with a table step fused behind."""
    from npuflow.sim.fast.conv import conv_lut
    from npuflow.sim.kernels import KernelStats

    if sim:
        monkeypatch.setenv("NPUFLOW_SIM", sim)
    rng = np.random.default_rng(seed)
    x_fmt = QFormat(x_bits, 5 if x_bits == 8 else 13, 1.0)
    w_fmt = QFormat(8, tuple(int(v) for v in rng.integers(3, 8, 4)), tuple(float(v) for v in rng.uniform(1, 2, 4)), 0)
    c_fmt = QFormat(out_bits, int(rng.integers(0, 10)), 1.5)
    params = KERNELS["Conv"].prepare({"pads": [k // 2] * 4, **act}, [x_fmt, w_fmt], c_fmt,
                                     {"W": rng.normal(0, 0.3, (4, 3, k, k)), "B": rng.normal(0, 1, 4)})
    lp = KERNELS[op].prepare({}, [c_fmt], QFormat(lut_bits, int(rng.integers(2, 12)), 1.0))
    x = rand_q(rng, (2, 3, 5, 6), x_fmt)
    s1, s2, t1, t2 = KernelStats(), KernelStats(), KernelStats(), KernelStats()
    ref = KERNELS[op].eval(lp, KERNELS["Conv"].eval(params, x, stats=s1), stats=t1)
    got = conv_lut(params, op, lp, x, stats=s2, lut_stats=t2)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert (s1, t1) == (s2, t2)
    np.testing.assert_array_equal(conv_lut(params, op, lp, x), ref)



@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), fi=fmts, fo=fmts, n=st.integers(1, 3), c=st.integers(1, 4),
       spatial=st.lists(st.integers(1, 40), min_size=1, max_size=3), extreme=st.booleans())
def test_global_average_pool_fast_equals_reference(seed, fi, fo, n, c, spatial, extreme):
    """The compiled per-plane sums: 3-D to 5-D inputs, 8/16-bit formats, format-extreme values
    (16-bit planes of 64 000 values at the limit), finer and coarser outputs (saturation counted)."""
    rng = np.random.default_rng(seed)
    try:
        params = KERNELS["GlobalAveragePool"].prepare({}, [fi], fo)
    except ValueError:
        assume(False)
    x = rand_q(rng, (n, c, *spatial), fi)
    if extreme:
        x = np.full(x.shape, fi.qmin if seed % 2 else fi.qmax, dtype=x.dtype)
    same("GlobalAveragePool", FAST["GlobalAveragePool"], params, x)


def test_global_average_pool_hand_vectors(monkeypatch):
    """Worked by hand, input and output in one format, on the compiled path (the reference
    patched out): means 2/4 = 0.5 -> 0, 6/4 = 1.5 -> 2, -10/4 = -2.5 -> -2, 3/4 -> 1 (one
    rounding, half to even); a 4x finer output saturates 100 -> 127 (counted)."""
    from npuflow.sim.kernels import KernelStats

    def other(*a, **k):
        raise AssertionError("not the compiled GlobalAveragePool")

    x = np.array([[[[1, 1], [0, 0]], [[1, 2], [3, 0]], [[-4, -1], [-2, -3]], [[0, 1], [1, 1]]]], dtype=np.int8)
    p = KERNELS["GlobalAveragePool"].prepare({}, [UNIT], UNIT)
    want = KERNELS["GlobalAveragePool"].eval(p, x)
    fine = KERNELS["GlobalAveragePool"].prepare({}, [UNIT], QFormat(8, 2, 1.0))
    big = np.full((1, 1, 3, 3), 100, dtype=np.int8)
    monkeypatch.setattr(KERNELS["GlobalAveragePool"], "eval", other)
    assert FAST["GlobalAveragePool"](p, x).tolist() == want.tolist() == [[[[0]], [[2]], [[-2]], [[1]]]]
    stats = KernelStats()
    assert FAST["GlobalAveragePool"](fine, big, stats=stats).tolist() == [[[[127]]]]
    assert stats.out_saturated == 1 and stats.out_elements == 1


@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), fi=fmts, fo=fmts, shape=st.lists(st.integers(1, 9), min_size=2, max_size=5),
       data=st.data(), keepdims=st.booleans(), negative=st.booleans(), extreme=st.booleans())
def test_reduce_mean_fast_equals_reference(seed, fi, fo, shape, data, keepdims, negative, extreme):
    """ReduceMean over trailing axes (compiled plane sums) and over any other axes (the reference
    through the fast entry), negative axis numbers, keepdims either way, 8/16-bit, extremes."""
    rng = np.random.default_rng(seed)
    nd = len(shape)
    k = data.draw(st.integers(1, nd))
    axes = data.draw(st.sampled_from([list(range(nd - k, nd)), sorted(rng.choice(nd, k, replace=False).tolist())]))
    if negative:
        axes = [a - nd for a in axes]
    try:
        params = KERNELS["ReduceMean"].prepare({"axes": axes, "keepdims": int(keepdims)}, [fi], fo)
    except ValueError:
        assume(False)
    x = rand_q(rng, tuple(shape), fi)
    if extreme:
        x = np.full(x.shape, fi.qmin if seed % 2 else fi.qmax, dtype=x.dtype)
    same("ReduceMean", FAST["ReduceMean"], params, x)


def test_reduce_mean_trailing_axes_hand_vectors(monkeypatch):
    """An SE block's mean over H, W on the compiled path (the reference patched out): 2/4 -> 0,
    6/4 -> 2, -10/4 -> -2 (half to even), without and with keepdims."""
    def other(*a, **k):
        raise AssertionError("not the compiled ReduceMean")

    x = np.array([[[[1, 1], [0, 0]], [[1, 2], [3, 0]], [[-4, -1], [-2, -3]]]], dtype=np.int8)
    keep = KERNELS["ReduceMean"].prepare({"axes": [2, 3], "keepdims": 1}, [UNIT], UNIT)
    flat = KERNELS["ReduceMean"].prepare({"axes": [-1, -2], "keepdims": 0}, [UNIT], UNIT)
    want = KERNELS["ReduceMean"].eval(keep, x)
    monkeypatch.setattr(KERNELS["ReduceMean"], "eval", other)
    assert FAST["ReduceMean"](keep, x).tolist() == want.tolist() == [[[[0]], [[2]], [[-2]]]]
    assert FAST["ReduceMean"](flat, x).tolist() == [[0, 2, -2]]

def test_every_fast_op_is_tested():
    tested = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Sigmoid", "Tanh", "Exp", "HardSigmoid",
              "Mul", "BatchNormalization", "Relu", "Clip",
              "HardSwish", "Swish", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Concat", "Resize"}
    assert set(FAST) <= tested, set(FAST) - tested


@pytest.mark.parametrize("fo", [QFormat(8, 0, 1.0), QFormat(8, 0, 1.37), QFormat(8, 1, 1.0)])
def test_max_pool_window_of_only_padding(fo):
    """Found by Hypothesis in CI: input length 1, kernel 2, dilation 2, SAME_UPPER pads 1+1, so the
    one window sees positions -1 and 1, both padding. The reference's maximum is qmin - 1 = -129
    (docs/fixed-point.md §9); the fast path must not hand this to onnxruntime (0 or -inf there)."""
    fi = QFormat(8, 0, 1.0)
    attrs = {"kernel_shape": [2], "strides": [1], "dilations": [2], "auto_pad": "SAME_UPPER", "ceil_mode": 0}
    params = KERNELS["MaxPool"].prepare(attrs, [fi], fo)
    x = np.array([[[5], [-7], [0]]], dtype=np.int8)
    got = same("MaxPool", FAST["MaxPool"], params, x)
    assert got.tolist() == [[[-128], [-128], [-128]]]  # -129 (x1, x1.37 or x2) saturates at -128


@pytest.mark.parametrize("bits", [8, 16, 32])
@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), mult=st.integers(2**30, 2**31 - 1), shift=st.integers(-31, 80),
       few_bits=st.booleans(), out_bits=st.sampled_from([8, 16]))
def test_requant_array_equals_reference(bits, seed, mult, shift, few_bits, out_bits, monkeypatch):
    """The fused requantization of Concat/Resize (float64 branch for 8/16-bit inputs, integer
    otherwise) against the reference ``finish(Requant.apply(q))``: ties (multipliers with few
    significant bits), saturation, shifts far beyond the value range."""
    from npuflow.sim.fast.elementwise import requant_array
    from npuflow.sim.kernels import KernelStats
    from npuflow.sim.kernels.base import Requant, finish

    monkeypatch.delenv("NPUFLOW_SIM", raising=False)
    rng = np.random.default_rng(seed)
    if few_bits:
        mult = 2**30 + (int(rng.integers(0, 4)) << 28)
    rq = Requant(mult, shift, out_bits, False)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = rng.integers(lo, hi + 1, 257, dtype=np.int64).astype(f"int{bits}")
    q[:4] = [lo, hi, 0, -1]
    out = QFormat(out_bits, 0, 1.0)
    s1, s2 = KernelStats(), KernelStats()
    ref = finish(rq.apply(q), out, s1)
    got = requant_array(q, rq, out, s2)
    assert got is not None and got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert s1 == s2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST_PROP
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([4, 8, 16, 32]), radix=st.integers(-20, 40),
       scale=st.sampled_from([1.0, 1.37, 1.99]), spread=st.floats(-30, 30))
def test_quantize_array_equals_reference(dtype, seed, bits, radix, scale, spread, monkeypatch):
    """The fused float boundary (model inputs, float steps' outputs, the report) against
    ``QFormat.quantize``: exact ties (k + 0.5 LSB, both parities), saturation, +-inf, signed zero,
    huge and tiny values; NaN still raises the reference's error."""
    from npuflow.sim.fast.elementwise import quantize_array

    monkeypatch.delenv("NPUFLOW_SIM", raising=False)
    fmt = QFormat(bits, radix, scale)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(301) * 2.0 ** spread).astype(dtype)
    lsb = 1.0 / float(fmt.factor()[0])
    ties = (np.arange(-8, 8) + 0.5) * lsb  # exactly representable when scale is 1
    x[:16] = ties.astype(dtype)
    x[16:24] = np.array([np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30, -1e-30], dtype=dtype)
    x[24:26] = np.array([fmt.qmax + 0.5, fmt.qmin - 0.5]) * lsb
    x = x.reshape(7, 43)
    ref = fmt.quantize(x)
    got = quantize_array(x, fmt)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    x[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        quantize_array(x, fmt)


def test_quantize_array_hand_vector(monkeypatch):
    """LSB 0.5 (radix 1): ties go to even, saturation at the int8 limits."""
    from npuflow.sim.fast.elementwise import quantize_array

    monkeypatch.delenv("NPUFLOW_SIM", raising=False)
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25, 63.75, 64.0, -64.0, -64.5, np.inf], dtype=np.float32)
    got = quantize_array(x, QFormat(8, 1, 1.0))
    assert got.dtype == np.int8
    assert got.tolist() == [0, 2, 0, -2, 2, 127, 127, -128, -128, 127]


def test_plans_are_freed_with_their_params():
    """A fast kernel's plan (sessions, converted weights) lives only as long as its params: the
    plan caches are weak dictionaries, and a plan holding its own key would never be freed (it
    leaked every analysed program's onnxruntime sessions and threads before)."""
    import gc
    import weakref

    from npuflow.sim.fast import conv as fast_conv
    from npuflow.sim.fast import matmul as fast_matmul

    rng = np.random.default_rng(5)
    x_fmt = QFormat(8, 5, 1.0)
    plans = []
    for group, k in ((1, 3), (4, 3), (1, 1)):  # a spatial, a depthwise and a pointwise convolution
        params = KERNELS["Conv"].prepare({"pads": [k // 2] * 4, "group": group}, [x_fmt, QFormat(8, 6, 1.0)],
                                         QFormat(8, 3), {"W": rng.normal(0, 0.3, (4, 4 // group, k, k))})
        same("Conv", FAST["Conv"], params, rand_q(rng, (1, 4, 6, 6), x_fmt))
        plans.append(weakref.ref(fast_conv._PLANS.get(params)))
        del params
    mm = KERNELS["Gemm"].prepare({}, [x_fmt, QFormat(8, 6, 1.0)], QFormat(8, 3), {"B": rng.normal(0, 0.3, (5, 3))})
    same("Gemm", FAST["Gemm"], mm, rand_q(rng, (2, 5), x_fmt))
    plans.append(weakref.ref(fast_matmul._PLANS.get(mm)))
    del mm
    gc.collect()
    assert [p() for p in plans] == [None] * len(plans)
