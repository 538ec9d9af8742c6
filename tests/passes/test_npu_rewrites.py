"""The NPU-friendly rewrites (issue 15 part 1): ``div_to_mul``, ``fuse_hardswish``,
``hard_sigmoid``, ``fuse_silu``, ``fuse_gelu``, ``split_global_pool``.

Hand-built graphs for each pattern and its near misses (each pass run alone), the platform
choices, and the shared models: CPU nodes on the KL720, and the float function of every
rewritten node group checked *locally* on real activations (the group's inputs taken from the
model without the rewrites, its outputs compared: <= 1e-5 of the output's largest magnitude), so
that float32 rounding amplified by the rest of the network does not hide or fake an error.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from types import MappingProxyType

import numpy as np
import onnx
import pytest
import real_inputs
from onnx import TensorProto, helper
from optimizer_testutil import init, make_model, ops, ort_outputs, vi

from npuflow.errors import InvalidConfigError
from npuflow.evaluate.placement import place_model
from npuflow.passes import (
    PASSES,
    PIPELINE,
    div_to_mul,
    fuse_gelu,
    fuse_hardswish,
    fuse_silu,
    hard_sigmoid,
    optimize,
    split_global_pool,
)
from npuflow.passes._rewrite import CandidateNode
from npuflow.platforms import get_platform
from npuflow.platforms.conditions import NodeInfo

REWRITES = ("fuse_hardswish", "hard_sigmoid", "fuse_silu", "fuse_gelu", "div_to_mul", "split_global_pool")
RNG = np.random.default_rng(0)
X4 = [1, 4, 6, 6]


def with_ops(pid: int, **extra) -> object:
    """A copy of platform ``pid`` whose NPU table also has the given ops (no conditions)."""
    p = get_platform(pid)
    return dataclasses.replace(p, npu_ops=MappingProxyType({**p.npu_ops, **{k: () for k in extra}}))


def run_pass(fn, model, **kw):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out, changed = fn(m, **kw)
    onnx.checker.check_model(out, full_check=True)
    return out, changed


def same_function(before, after, feeds, rtol=1e-6, exact=False):
    a, b = ort_outputs(before, feeds), ort_outputs(after, feeds)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            assert np.max(np.abs(x - y)) <= rtol * max(np.max(np.abs(x)), 1e-30)


def xs(shape=X4, scale=6.0):
    return {"x": (RNG.standard_normal(shape) * scale).astype(np.float32)}


def sc(name, v):
    return init(name, np.array(v, np.float32))


# ------------------------------------------------------------------------- div_to_mul
def div_model(divisor, *, opset=13, elem=TensorProto.FLOAT, extra_inputs=()):
    nodes = [helper.make_node("Div", ["x", "c"], ["y"], name="div")]
    inits = [] if divisor is None else [init("c", divisor)]
    return make_model(nodes, [vi("x", X4, elem), *extra_inputs], [vi("y", X4, elem)], inits, opset=opset)


def test_div_by_constant_becomes_mul_within_bound():
    m = div_model(np.array(6.0, np.float32))
    out, changed = run_pass(div_to_mul.run, m)
    assert changed and ops(out) == Counter({"Mul": 1})
    n = out.graph.node[0]
    assert n.name == "Mul_div" and n.input[0] == "x" and n.output[0] == "y"
    r = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}[n.input[1]]
    assert r == np.float32(1.0 / 6.0)
    same_function(m, out, xs(), rtol=3 * 2.0**-24 + 2.0**-48)


@pytest.mark.parametrize("c", [4.0, 0.5, -2.0, 1.0])
def test_div_by_power_of_two_is_bit_identical(c):
    m = div_model(np.array(c, np.float32))
    out, changed = run_pass(div_to_mul.run, m)
    assert changed
    same_function(m, out, xs(scale=1e3), exact=True)


def test_div_by_per_channel_constant():
    m = div_model(np.array([1.0, 3.0, 7.0, 0.1], np.float32).reshape(1, 4, 1, 1))
    out, changed = run_pass(div_to_mul.run, m)
    assert changed
    same_function(m, out, xs(), rtol=3 * 2.0**-24 + 2.0**-48)


@pytest.mark.parametrize("case", ["runtime divisor", "constant dividend", "zero", "inf", "integer", "graph input"])
def test_div_near_misses_are_left_alone(case):
    if case == "runtime divisor":
        m = make_model([helper.make_node("Div", ["x", "d"], ["y"])], [vi("x", X4), vi("d", X4)], [vi("y", X4)])
    elif case == "constant dividend":
        m = make_model([helper.make_node("Div", ["c", "x"], ["y"])], [vi("x", X4)], [vi("y", X4)], [sc("c", 6.0)])
    elif case == "zero":
        m = div_model(np.array([1.0, 0.0, 2.0, 3.0], np.float32).reshape(1, 4, 1, 1))
    elif case == "inf":
        m = div_model(np.array(np.inf, np.float32))
    elif case == "integer":
        m = div_model(np.array(6, np.int64), elem=TensorProto.INT64)
    else:  # an initializer that is also a graph input is a default value, not a constant
        m = div_model(np.array(6.0, np.float32), extra_inputs=[vi("c", [])])
    out, changed = run_pass(div_to_mul.run, m)
    assert not changed and ops(out)["Div"] == 1


# ------------------------------------------------------------------------- HardSwish
def hswish_model(form, *, opset=13, bounds=(0.0, 6.0), shift=3.0, div=6.0, other=None, clip_out=False):
    """form "a": Mul(x, Clip(Add(x,3),0,6)) / 6 (paddle2onnx); "b": Mul(x, Clip(Add(x,3),0,6)/6);
    "b_mul": as b with Mul(1/6); "c": Mul(x, HardSigmoid(x, 1/6, 0.5)); "d": HardSwish."""
    inits = [sc("three", shift), sc("six", div), sc("sixth", 1.0 / div)]
    if opset >= 11:
        inits += [sc("lo", bounds[0]), sc("hi", bounds[1])]
        clip = helper.make_node("Clip", ["t", "lo", "hi"], ["c"], name="clip")
    else:
        clip = helper.make_node("Clip", ["t"], ["c"], name="clip", min=bounds[0], max=bounds[1])
    add = helper.make_node("Add", ["x", "three"], ["t"], name="add")
    mx = other or "x"
    if form == "a":
        nodes = [add, clip, helper.make_node("Mul", [mx, "c"], ["p"], name="mul"),
                 helper.make_node("Div", ["p", "six"], ["y"], name="div")]
    elif form in ("b", "b_mul"):
        scale = (helper.make_node("Div", ["c", "six"], ["h"], name="div") if form == "b"
                 else helper.make_node("Mul", ["c", "sixth"], ["h"], name="scale"))
        nodes = [add, clip, scale, helper.make_node("Mul", ["h", mx], ["y"], name="mul")]
    elif form == "c":
        nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], name="hsig", alpha=1.0 / 6.0, beta=0.5),
                 helper.make_node("Mul", [mx, "h"], ["y"], name="mul")]
    else:
        nodes = [helper.make_node("HardSwish", ["x"], ["y"], name="hswish")]
    ins = [vi("x", X4)] + ([vi(other, X4)] if other else [])
    outs = [vi("y", X4)] + ([vi("c", X4)] if clip_out else [])
    return make_model(nodes, ins, outs, inits, opset=opset)


BOUNDED = Counter({"Add": 1, "Clip": 1, "Mul": 2})


@pytest.mark.parametrize("form,opset", [("a", 13), ("a", 10), ("b", 13), ("c", 13), ("d", 14)])
def test_hardswish_becomes_bounded_form_without_platform(form, opset):
    m = hswish_model(form, opset=opset)
    out, changed = run_pass(fuse_hardswish.run, m)
    assert changed and ops(out) == BOUNDED
    g = out.graph
    prod = {o: n for n in g.node for o in n.output}
    last = prod["y"]
    assert last.op_type == "Mul" and "x" in last.input
    scale = prod[next(i for i in last.input if i != "x")]
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    assert scale.op_type == "Mul" and np.isclose(consts[scale.input[1]], 1 / 6)
    clip = prod[scale.input[0]]
    assert clip.op_type == "Clip"
    same_function(m, out, xs())
    _, changed2 = run_pass(fuse_hardswish.run, out)  # a fixed point
    assert not changed2


def test_hardswish_keeps_names_of_add_and_clip():
    out, _ = run_pass(fuse_hardswish.run, hswish_model("a"))
    names = {n.op_type + ":" + n.name for n in out.graph.node}
    assert {"Add:add", "Clip:clip", "Mul:mul"} <= names  # the product Mul keeps its name, the Div became a Mul
    assert all(n.name for n in out.graph.node) and len({n.name for n in out.graph.node}) == 4


def test_hardswish_already_bounded_is_left_alone():
    _, changed = run_pass(fuse_hardswish.run, hswish_model("b_mul"))
    assert not changed


@pytest.mark.parametrize("form", ["a", "b", "d"])
def test_hardswish_becomes_hardsigmoid_where_the_platform_has_it(form):
    m = hswish_model(form, opset=14)
    out, changed = run_pass(fuse_hardswish.run, m, platform=get_platform(730))
    assert changed and ops(out) == Counter({"HardSigmoid": 1, "Mul": 1})
    hs = next(n for n in out.graph.node if n.op_type == "HardSigmoid")
    assert {a.name: round(a.f, 6) for a in hs.attribute} == {"alpha": round(1 / 6, 6), "beta": 0.5}
    same_function(m, out, xs())
    _, changed2 = run_pass(fuse_hardswish.run, hswish_model("c"), platform=get_platform(730))
    assert not changed2


def test_hardswish_becomes_one_node_where_the_platform_has_it():
    plat = with_ops(720, HardSwish=True)
    m = hswish_model("a", opset=14)
    out, changed = run_pass(fuse_hardswish.run, m, platform=plat)
    assert changed and ops(out) == Counter({"HardSwish": 1})
    same_function(m, out, xs())
    # HardSwish needs opset 14: below it the bounded form
    out13, _ = run_pass(fuse_hardswish.run, hswish_model("a", opset=13), platform=plat)
    assert ops(out13) == BOUNDED


@pytest.mark.parametrize("kw", [{"bounds": (0.0, 5.0)}, {"bounds": (-1.0, 6.0)}, {"shift": 2.0}, {"div": 5.0},
                                {"other": "z"}, {"clip_out": True}])
def test_hardswish_near_misses_are_left_alone(kw):
    m = hswish_model("a", **kw)
    out, changed = run_pass(fuse_hardswish.run, m)
    assert not changed and ops(out) == ops(m)


def test_hardswish_with_runtime_clip_bound_is_left_alone():
    nodes = [helper.make_node("Add", ["x", "three"], ["t"]), helper.make_node("Clip", ["t", "lo", "hi"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["p"]), helper.make_node("Div", ["p", "six"], ["y"])]
    m = make_model(nodes, [vi("x", X4), vi("hi", [])], [vi("y", X4)], [sc("three", 3.0), sc("lo", 0.0), sc("six", 6.0)])
    assert not run_pass(fuse_hardswish.run, m)[1]


def test_hardsigmoid_with_other_parameters_is_not_a_hardswish():
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.2, beta=0.5), helper.make_node("Mul", ["x", "h"], ["y"])]
    m = make_model(nodes, [vi("x", X4)], [vi("y", X4)])
    assert not run_pass(fuse_hardswish.run, m)[1]


# ------------------------------------------------------------------------- HardSigmoid
def se_model(*, bias_add=None, conv_bias=True, extra_reader=False, alpha=0.2, beta=0.5):
    """Conv [-> Add(bias)] -> HardSigmoid -> Mul(features, gate)."""
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    inits = [init("w", w)]
    conv_in = ["f", "w"]
    if conv_bias:
        inits.append(init("b", RNG.standard_normal(4).astype(np.float32)))
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["s"], name="conv")]
    x = "s"
    if bias_add is not None:
        inits.append(init("ab", bias_add))
        nodes.append(helper.make_node("Add", ["s", "ab"], ["sb"], name="bias"))
        x = "sb"
    nodes.append(helper.make_node("HardSigmoid", [x], ["g"], name="hsig", alpha=alpha, beta=beta))
    nodes.append(helper.make_node("Mul", ["f", "g"], ["y"], name="gate"))
    outs = [vi("y", X4)]
    if extra_reader:
        nodes.append(helper.make_node("Relu", [x], ["r"], name="relu"))
        outs.append(vi("r", X4))
    return make_model(nodes, [vi("f", X4)], outs, inits)


def fs():
    return {"f": (RNG.standard_normal(X4) * 4).astype(np.float32)}


@pytest.mark.parametrize("platform", [None, 720, 730])
@pytest.mark.parametrize("bias", [None, "nchw", "chw", "scalar"])
def test_hardsigmoid_after_conv_is_folded_on_every_platform(platform, bias):
    ab = {None: None, "nchw": RNG.standard_normal((1, 4, 1, 1)), "chw": RNG.standard_normal((4, 1, 1)),
          "scalar": np.array([0.7])}[bias]
    m = se_model(bias_add=None if ab is None else ab.astype(np.float32), conv_bias=bias != "scalar")
    out, changed = run_pass(hard_sigmoid.run, m, platform=get_platform(platform) if platform else None)
    assert changed and ops(out) == Counter({"Conv": 1, "Clip": 1, "Mul": 1})
    clip = next(n for n in out.graph.node if n.op_type == "Clip")
    assert clip.name == "Clip_hsig" and clip.output[0] == "g"
    same_function(m, out, fs(), rtol=1e-6)


def test_hardsigmoid_without_foldable_conv():
    m = se_model(extra_reader=True)
    out, changed = run_pass(hard_sigmoid.run, m)
    assert changed and ops(out) == Counter({"Conv": 1, "Add": 1, "Clip": 1, "Mul": 2, "Relu": 1})
    g = out.graph
    clip = next(n for n in g.node if n.op_type == "Clip")
    consts = {t.name: float(onnx.numpy_helper.to_array(t)) for t in g.initializer if t.dims == []}
    assert consts[clip.input[1]] == 0.0 and np.isclose(consts[clip.input[2]], 5.0)
    same_function(m, out, fs())
    _, changed730 = run_pass(hard_sigmoid.run, m, platform=get_platform(730))  # 730 runs HardSigmoid
    assert not changed730


@pytest.mark.parametrize("case", ["last-axis bias", "alpha 0", "alpha negative"])
def test_hardsigmoid_near_misses(case):
    if case == "last-axis bias":  # [6] broadcasts over W, not over channels: no fold, bounded form instead
        m = se_model(bias_add=RNG.standard_normal(6).astype(np.float32))
        out, changed = run_pass(hard_sigmoid.run, m)
        assert changed and ops(out)["Add"] == 2 and ops(out)["HardSigmoid"] == 0
        same_function(m, out, fs())
    else:
        m = se_model(alpha=0.0 if case == "alpha 0" else -0.2)
        assert not run_pass(hard_sigmoid.run, m)[1]


# ------------------------------------------------------------------------- SiLU
def exp_sigmoid_nodes(x="x", neg="neg"):
    n = (helper.make_node("Neg", [x], ["nx"]) if neg == "neg" else helper.make_node("Mul", [x, "minus1"], ["nx"]))
    return [n, helper.make_node("Exp", ["nx"], ["e"]), helper.make_node("Add", ["e", "one"], ["d"])]


@pytest.mark.parametrize("neg", ["neg", "mul"])
def test_silu_written_with_exp_becomes_mul_sigmoid(neg):
    nodes = exp_sigmoid_nodes(neg=neg) + [helper.make_node("Div", ["x", "d"], ["y"], name="silu")]
    m = make_model(nodes, [vi("x", X4)], [vi("y", X4)], [sc("one", 1.0), sc("minus1", -1.0)])
    out, changed = run_pass(fuse_silu.run, m)
    assert changed and ops(out) == Counter({"Sigmoid": 1, "Mul": 1})
    same_function(m, out, xs(scale=3.0), rtol=1e-6)


@pytest.mark.parametrize("form", ["reciprocal", "div"])
def test_sigmoid_written_with_exp_becomes_sigmoid(form):
    last = (helper.make_node("Reciprocal", ["d"], ["y"]) if form == "reciprocal"
            else helper.make_node("Div", ["one", "d"], ["y"]))
    m = make_model(exp_sigmoid_nodes() + [last], [vi("x", X4)], [vi("y", X4)], [sc("one", 1.0)])
    out, changed = run_pass(fuse_silu.run, m)
    assert changed and ops(out) == Counter({"Sigmoid": 1})
    same_function(m, out, xs(scale=3.0), rtol=1e-6)


def test_shared_sigmoid_gets_its_own_copy_and_fuses_into_a_swish_step():
    from npuflow.analysis.graph import build_steps
    from npuflow.sim.kernels import KERNELS

    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sig"), helper.make_node("Mul", ["x", "s"], ["y"], name="mul"),
             helper.make_node("Relu", ["s"], ["r"], name="other")]
    m = make_model(nodes, [vi("x", X4)], [vi("y", X4), vi("r", X4)])
    out, changed = run_pass(fuse_silu.run, m)
    assert changed and ops(out) == Counter({"Sigmoid": 2, "Mul": 1, "Relu": 1})
    same_function(m, out, xs(), exact=True)
    steps = build_steps(out, place_model(out, 720), set(KERNELS))
    assert Counter(s.op_type for s in steps) == Counter({"Sigmoid": 1, "Swish": 1, "Relu": 1})


@pytest.mark.parametrize("case", ["canonical", "beta", "different x"])
def test_silu_near_misses_are_left_alone(case):
    if case == "canonical":
        nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["y"])]
    elif case == "beta":
        nodes = [helper.make_node("Mul", ["x", "two"], ["bx"]), helper.make_node("Sigmoid", ["bx"], ["s"]),
                 helper.make_node("Mul", ["x", "s"], ["y"])]
    else:
        nodes = exp_sigmoid_nodes(x="z") + [helper.make_node("Div", ["x", "d"], ["y"])]
    m = make_model(nodes, [vi("x", X4), vi("z", X4)], [vi("y", X4)], [sc("one", 1.0), sc("two", 2.0)])
    assert not run_pass(fuse_silu.run, m)[1]


# ------------------------------------------------------------------------- GELU
def gelu_model(f="Erf", *, order="torch", opset=13, arg_from_x=True, half_div=False):
    inits = [sc("sqrt2", np.sqrt(2.0)), sc("one", 1.0), sc("half", 0.5), sc("two", 2.0)]
    src = "x" if arg_from_x else "z"
    nodes = [helper.make_node("Div", [src, "sqrt2"], ["g"]), helper.make_node(f, ["g"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "torch":  # (x * (1 + f)) * 0.5
        nodes += [helper.make_node("Mul", ["x", "a"], ["u"], name="prod"),
                  helper.make_node("Div", ["u", "two"], ["y"], name="last") if half_div
                  else helper.make_node("Mul", ["u", "half"], ["y"], name="last")]
    else:  # (0.5 * x) * (1 + f): already bounded
        nodes += [helper.make_node("Mul", ["x", "half"], ["hx"]), helper.make_node("Mul", ["hx", "a"], ["y"])]
    return make_model(nodes, [vi("x", X4), vi("z", X4)], [vi("y", X4)], inits, opset=opset)


def gz():
    return {**xs(scale=2.0), "z": RNG.standard_normal(X4).astype(np.float32)}


@pytest.mark.parametrize("f,half_div", [("Erf", False), ("Erf", True), ("Tanh", False)])
def test_gelu_gate_is_reassociated_bit_identically(f, half_div):
    m = gelu_model(f, half_div=half_div)
    out, changed = run_pass(fuse_gelu.run, m)
    assert changed
    prod = {o: n for n in out.graph.node for o in n.output}
    last = prod["y"]
    assert last.op_type == "Mul" and last.name == ("Mul_last" if half_div else "last") and "x" in last.input
    gate = prod[next(i for i in last.input if i != "x")]
    assert gate.op_type == "Mul" and "a" in gate.input
    same_function(m, out, gz(), exact=True)
    assert not run_pass(fuse_gelu.run, out)[1]


def test_gelu_becomes_one_node_where_the_platform_has_it():
    m = gelu_model("Erf", opset=20)
    out, changed = run_pass(fuse_gelu.run, m, platform=with_ops(730, Gelu=True))
    assert changed and ops(out) == Counter({"Gelu": 1})
    same_function(m, out, gz(), rtol=1e-6)


@pytest.mark.parametrize("case", ["bounded order", "argument not from x", "sigmoid"])
def test_gelu_near_misses_are_left_alone(case):
    m = {"bounded order": lambda: gelu_model(order="bounded"), "argument not from x": lambda: gelu_model(arg_from_x=False),
         "sigmoid": lambda: gelu_model("Sigmoid")}[case]()
    assert not run_pass(fuse_gelu.run, m)[1]


# ------------------------------------------------------------------------- global pools
def pool_model(shape, op="GlobalAveragePool", opset=13):
    out = shape[:2] + [1] * (len(shape) - 2)
    return make_model([helper.make_node(op, ["x"], ["y"], name="gap")], [vi("x", shape)], [vi("y", out)], opset=opset)


def pos(shape):
    """Post-activation-like data (a mean well away from zero, where a relative bound means something)."""
    return {"x": np.abs(RNG.standard_normal(shape) * 6).astype(np.float32)}


def close_to_exact_mean(before, after, feeds):
    """The split mean is exactly the mean in real arithmetic: against the float64 mean it is at least
    as close as the original float32 GlobalAveragePool (whose own summation error dominates), and
    both are within 1e-5 relative."""
    x = feeds["x"].astype(np.float64)
    exact = x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    (a,), (b,) = ort_outputs(before, feeds), ort_outputs(after, feeds)
    ea, eb = np.max(np.abs(a - exact)), np.max(np.abs(b - exact))
    assert eb <= max(ea, 4 * 2.0**-24 * np.max(np.abs(exact)))
    assert max(ea, eb) <= 1e-5 * np.max(np.abs(exact))


def cpu(model, pid):
    return [p.op_type for p in place_model(model, pid) if p.placement == "CPU"]


@pytest.mark.parametrize("pid,shape,stages", [(720, [1, 8, 160, 160], ["AveragePool"]),
                                              (720, [1, 2, 240, 240], ["AveragePool"]),
                                              (520, [1, 4, 52, 40], ["AveragePool", "AveragePool"]),
                                              (520, [1, 4, 36, 36], ["AveragePool"])])
def test_global_average_pool_over_the_limit_becomes_pool_stages(pid, shape, stages):
    m = pool_model(shape)
    plat = get_platform(pid)
    assert cpu(m, pid) == ["GlobalAveragePool"]
    out, changed = run_pass(split_global_pool.run, m, platform=plat)
    assert changed and [n.op_type for n in out.graph.node] == stages + ["GlobalAveragePool"]
    assert out.graph.node[-1].name == "gap"
    out = onnx.shape_inference.infer_shapes(out)
    assert cpu(out, pid) == []
    close_to_exact_mean(m, out, pos(shape))


def test_global_pool_within_the_limit_or_without_platform_is_left_alone():
    assert not run_pass(split_global_pool.run, pool_model([1, 8, 128, 128]), platform=get_platform(720))[1]  # 16384
    assert not run_pass(split_global_pool.run, pool_model([1, 8, 160, 160]))[1]


@pytest.mark.parametrize("opset", [13, 18])
def test_prime_side_becomes_reducemean_split_where_the_platform_runs_it(opset):
    shape = [1, 3, 131, 131]  # 17161 pixels, 131 is prime
    m = pool_model(shape, opset=opset)
    out, changed = run_pass(split_global_pool.run, m, platform=get_platform(720))
    assert changed and [n.op_type for n in out.graph.node] == ["ReduceMean", "ReduceMean"]
    assert cpu(onnx.shape_inference.infer_shapes(out), 720) == []
    close_to_exact_mean(m, out, pos(shape))
    # the KL520 has no ReduceMean: left alone
    assert not run_pass(split_global_pool.run, pool_model([1, 3, 17, 17]), platform=get_platform(520))[1]


def test_global_max_pool_stages_are_bit_identical():
    m = pool_model([1, 4, 160, 160], op="GlobalMaxPool")
    out, changed = run_pass(split_global_pool.run, m, platform=get_platform(720))
    assert changed and [n.op_type for n in out.graph.node] == ["MaxPool", "GlobalMaxPool"]
    same_function(m, out, xs([1, 4, 160, 160]), exact=True)


# ------------------------------------------------------------------------- API
def test_candidate_node_has_the_fields_of_node_info():
    assert [f.name for f in dataclasses.fields(CandidateNode)] == [f.name for f in dataclasses.fields(NodeInfo)]


def test_pipeline_has_the_rewrites_and_platform_is_checked():
    assert set(REWRITES) <= set(PASSES) and set(REWRITES) <= set(PIPELINE[1])
    m = hswish_model("a")
    with pytest.raises(InvalidConfigError, match="get_platform"):
        optimize(m, platform=720)
    assert ops(optimize(m)) == BOUNDED
    assert ops(optimize(m, platform=get_platform(730))) == Counter({"HardSigmoid": 1, "Mul": 1})


# ------------------------------------------------------------------------- shared models
def without_rewrites():
    setup, rounds, final = PIPELINE
    return setup, tuple(p for p in rounds if p not in REWRITES), final


def _expose(model, names):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n not in have)
    return m


def rewritten_groups(before, after):
    """Connected groups of nodes of ``after`` that are not in ``before`` byte for byte:
    (nodes, runtime inputs, outputs read outside the group)."""
    old = {n.SerializeToString() for n in before.graph.node}
    changed = [n for n in after.graph.node if n.SerializeToString() not in old]
    made = {o: k for k, n in enumerate(changed) for o in n.output}
    parent = list(range(len(changed)))

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k, n in enumerate(changed):
        for i in n.input:
            if i in made:
                parent[find(k)] = find(made[i])
    inits = {t.name for t in after.graph.initializer}
    read_outside = {i for n in after.graph.node if n.SerializeToString() in old for i in n.input}
    read_outside |= {o.name for o in after.graph.output}
    groups: dict[int, list] = {}
    for k, n in enumerate(changed):
        groups.setdefault(find(k), []).append(n)
    out = []
    for nodes in groups.values():
        produced = {o for n in nodes for o in n.output}
        ins = sorted({i for n in nodes for i in n.input if i and i not in produced and i not in inits})
        outs = sorted(o for o in produced if o in read_outside)
        out.append((nodes, ins, outs))
    return out


def check_groups_locally(before, after, feeds, tol=1e-5):
    groups = rewritten_groups(before, after)
    names = sorted({t for _, ins, outs in groups for t in ins + outs} - set(feeds))
    b = _expose(before, names)
    vals = dict(zip([o.name for o in b.graph.output], ort_outputs(b, feeds)))
    vals.update(feeds)
    inits = {t.name: t for t in after.graph.initializer}
    worst = 0.0
    for nodes, ins, outs in groups:
        assert outs, [n.name for n in nodes]
        used = {i for n in nodes for i in n.input if i in inits}
        g = helper.make_graph(nodes, "group", [vi(i, list(vals[i].shape)) for i in ins],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                              [inits[i] for i in sorted(used)])
        sub = helper.make_model(g, opset_imports=list(after.opset_import))
        sub.ir_version = after.ir_version
        got = ort_outputs(sub, {i: vals[i] for i in ins})
        for o, y in zip(outs, got):
            ref = vals[o]
            err = float(np.max(np.abs(ref - y)) / max(float(np.max(np.abs(ref))), 1e-30))
            assert err <= tol, f"{[n.name for n in nodes]} -> {o}: {err:.2e}"
            worst = max(worst, err)
    return len(groups), worst


REAL = ["en_PP-OCRv3_det_infer", "ch_ppocr_mobile_v2.0_cls_infer", "pan_mnv3s_skin_clothes_hair"]


@pytest.fixture(scope="module")
def optimized_pair(shared, load_shared):
    cache: dict = {}

    def get(name, pid):
        if (name, pid) not in cache:
            import npuflow.passes as P

            feeds = real_inputs.real_input(shared, name)
            shapes = real_inputs.input_shapes(feeds)
            saved = P.PIPELINE
            P.PIPELINE = without_rewrites()
            try:
                before = optimize(load_shared(name), input_shapes=shapes)
            finally:
                P.PIPELINE = saved
            after = optimize(load_shared(name), input_shapes=shapes, platform=get_platform(pid) if pid else None)
            cache[(name, pid)] = (before, after, feeds)
        return cache[(name, pid)]

    return get


@pytest.mark.parametrize("name", REAL)
def test_shared_models_have_no_div_or_hardsigmoid_cpu_nodes_on_720(optimized_pair, name):
    before, after, _ = optimized_pair(name, 720)
    cb, ca = Counter(cpu(before, 720)), Counter(cpu(after, 720))
    assert cb["Div"] >= 18 and cb["HardSigmoid"] >= 8
    assert ca == (Counter({"Softmax": 1}) if name.startswith("ch_ppocr") else Counter())
    assert ops(after)["Div"] == ops(after)["HardSigmoid"] == 0


@pytest.mark.parametrize("pid", [None, 720, 730, 520])
@pytest.mark.parametrize("name", REAL)
def test_rewritten_groups_keep_the_float_function_on_real_activations(optimized_pair, name, pid):
    before, after, feeds = optimized_pair(name, pid)
    n, _ = check_groups_locally(before, after, feeds)
    assert n >= 17  # one group per HardSwish at least
    # whole model: float32 rounding amplified by the network, same bound as every other pass
    a, b = ort_outputs(before, feeds), ort_outputs(after, feeds)
    for x, y in zip(a, b):
        assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(x))


def test_gap_split_on_the_detector_at_640(load_shared):
    m = optimize(load_shared("en_PP-OCRv3_det_infer"), input_shapes={"x": [1, 3, 640, 640]},
                 platform=get_platform(720))
    assert cpu(m, 720) == []
    assert ops(m)["AveragePool"] == 2


def test_yolox_silu_is_already_the_fused_form(load_shared):
    m = load_shared("yolox_nano")
    out = optimize(m, platform=get_platform(720))
    assert ops(out) == ops(optimize(m))
    assert ops(out)["Sigmoid"] == 110 and ops(out)["Mul"] == 104
    assert not run_pass(fuse_silu.run, out)[1]
