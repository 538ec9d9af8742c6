"""Small models for the BIE validator tests: one with many kernels and a CPU step, analysed in
seconds (``zoo_model``), and the shipped MNIST model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO / "examples" / "mnist" / "mnist_cntk_opt.onnx"
FIXTURES = REPO / "tests" / "fixtures"


def zoo_model(opset: int = 14) -> onnx.ModelProto:
    """1x3x8x8 -> two outputs, through Conv (+Relu, depthwise, strided), ConvTranspose, Add/Sub/Mul
    (runtime and constant operands), Div by a constant, Sigmoid, SiLU, Tanh, HardSwish, Clip,
    LeakyRelu, PRelu, an unfused BatchNormalization, MaxPool, AveragePool, GlobalAveragePool,
    ReduceMean, Resize (nearest, linear), Concat, Split, Slice, Transpose, Reshape, Flatten,
    Unsqueeze/Squeeze, Pad, Gather, Softmax, Gemm, MatMul and one CPU op (Sqrt of an Abs-free
    positive tensor: no NPU kernel)."""
    rng = np.random.default_rng(7)
    inits: list[onnx.TensorProto] = []

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def f32(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n: list[onnx.NodeProto] = []

    def node(op: str, ins: list[str], out: str | list[str], **attrs) -> str | list[str]:
        outs = [out] if isinstance(out, str) else out
        n.append(helper.make_node(op, ins, outs, name=f"n_{outs[0]}", **attrs))
        return out

    x = "x"
    node("Conv", [x, const("w1", f32(8, 3, 3, 3)), const("b1", f32(8))], "c1", pads=[1, 1, 1, 1])
    node("Relu", ["c1"], "r1")
    node("Conv", ["r1", const("wd", f32(8, 1, 3, 3)), const("bd", f32(8))], "dw", pads=[1, 1, 1, 1], group=8)
    node("Clip", ["dw", const("clo", np.array(-1.0, np.float32)), const("chi", np.array(2.0, np.float32))], "cl")
    node("Add", ["cl", "r1"], "a1")
    node("Mul", ["a1", const("mc", f32(1, 8, 1, 1, scale=1.0))], "m1")
    node("Sigmoid", ["m1"], "sg")
    node("Mul", ["m1", "sg"], "silu")
    node("Sub", ["silu", const("sc", np.array(0.25, np.float32))], "s1")
    node("Tanh", ["s1"], "th")
    node("Mul", ["th", "s1"], "m2")
    node("HardSwish", ["m2"], "hs")
    node("LeakyRelu", ["hs"], "lr", alpha=0.1)
    node("PRelu", ["lr", const("slope", np.abs(f32(8, 1, 1)))], "pr")
    node("Add", ["pr", const("one", np.array(1.0, np.float32))], "pr1")
    node("BatchNormalization", ["pr1", const("bns", f32(8) + 1), const("bnb", f32(8)), const("bnm", f32(8)),
                                const("bnv", np.abs(f32(8)) + 0.5)], "bn")
    node("Div", ["bn", const("dv", np.array(2.0, np.float32))], "dv1")
    node("MaxPool", ["dv1"], "mp", kernel_shape=[2, 2], strides=[2, 2])  # 4x4
    node("AveragePool", ["dv1"], "ap", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 4x4
    node("Concat", ["mp", "ap"], "cc", axis=1)  # 16 ch
    node("Split", ["cc", const("spl", np.array([6, 10], np.int64))], ["sp1", "sp2"], axis=1)
    node("Resize", ["sp1", "", const("rs", np.array([1, 1, 2, 2], np.float32))], "up", mode="nearest")  # 8x8
    node("Resize", ["sp2", "", const("rs2", np.array([1, 1, 2, 2], np.float32))], "upl", mode="linear")
    node("ConvTranspose", ["sp2", const("wt", f32(10, 4, 2, 2)), const("bt", f32(4))], "ct", strides=[2, 2])  # 4ch 8x8
    node("Concat", ["up", "ct"], "cc2", axis=1)  # 10 ch
    node("Mul", ["cc2", "upl"], "m3")
    node("Conv", ["m3", const("w2", f32(6, 10, 3, 3)), const("b2", f32(6))], "c2", strides=[2, 2], pads=[1, 1, 1, 1])
    node("Abs", ["c2"], "ab")
    node("Sqrt", ["ab"], "sq")  # no NPU kernel on any platform: a CPU step
    node("Slice", ["sq", const("st", np.array([0, 1], np.int64)), const("en", np.array([4, 4], np.int64)),
                   const("ax", np.array([1, 2], np.int64))], "sl")  # 1x4x3x4
    node("Pad", ["sl", const("pd", np.array([0, 0, 1, 0, 0, 0, 0, 0], np.int64))], "pd1")  # 1x4x4x4
    node("Transpose", ["pd1"], "tp", perm=[0, 2, 3, 1])
    node("Gather", ["tp", const("gi", np.array([0, 2], np.int64))], "ga", axis=1)  # 1x2x4x4
    node("Unsqueeze", ["ga", const("ua", np.array([0], np.int64))], "us")
    node("Squeeze", ["us", const("sa", np.array([0], np.int64))], "sqz")
    node("ReduceMean", ["sqz"], "rm", axes=[3], keepdims=1)  # 1x2x4x1
    node("Flatten", ["rm"], "fl", axis=1)  # 1x8
    node("Gemm", ["fl", const("gw", f32(8, 5)), const("gb", f32(5))], "gm")
    node("Softmax", ["gm"], "y1", axis=-1)
    node("GlobalAveragePool", ["c2"], "gap")
    node("Reshape", ["gap", const("shp", np.array([1, 6], np.int64))], "rsh")
    node("MatMul", ["rsh", const("mw", f32(6, 3))], "y2")
    g = helper.make_graph(n, "zoo", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 5]),
                           helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 3])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="npuflow-tests")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def zoo_inputs(k: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(k)]


def analyse(model: onnx.ModelProto | Path, out: Path, platform: int = 720, inputs: dict | None = None, **kw) -> Path:
    import ktc

    src = {"onnx_model": model} if isinstance(model, onnx.ModelProto) else {"onnx_path": str(model)}
    km = ktc.ModelConfig(40000, "0001", platform, **src)
    if inputs is None:
        inputs = {"x": zoo_inputs()}
    return Path(km.analysis(inputs, output_dir=str(out), threads=1, report=False, **kw))
