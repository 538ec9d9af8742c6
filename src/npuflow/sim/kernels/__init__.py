"""Reference integer kernels: the executable form of ``docs/fixed-point.md``.

``KERNELS`` maps an ONNX op type to its kernel object. Every kernel has
``prepare(node_attrs, in_formats, out_format, weights=None) -> params`` (floats allowed, run
once) and ``eval(params, *inputs_q, stats=None) -> ndarray | tuple`` (integers only); see
:mod:`npuflow.sim.kernels.base`. Adding an op: its kernel, one line here, its test module
(``tests/sim/test_kernel_*.py`` lists it in ``TESTED_OPS``).

``Swish`` is the fused SiLU (``x * Sigmoid(x)``, ONNX ``Swish`` with ``alpha = 1``).
"""

from __future__ import annotations

from npuflow.sim.kernels import activation, batchnorm, conv, elementwise, lut, matmul, movement, pool, resize, softmax
from npuflow.sim.kernels.base import Kernel, KernelStats, params_from_dict, params_to_dict

KERNELS: dict[str, Kernel] = {
    # multiply-accumulate
    "Conv": conv.CONV,
    "ConvTranspose": conv.CONV_TRANSPOSE,
    "Gemm": matmul.GEMM,
    "MatMul": matmul.MATMUL,
    # elementwise arithmetic
    "Add": elementwise.ADD,
    "Sub": elementwise.SUB,
    "Mul": elementwise.MUL,
    "Div": elementwise.DIV,
    "BatchNormalization": batchnorm.BATCH_NORMALIZATION,
    # piecewise-linear activations
    "Relu": activation.RELU,
    "Clip": activation.CLIP,
    "LeakyRelu": activation.LEAKY_RELU,
    "PRelu": activation.PRELU,
    # table nonlinearities
    "Sigmoid": lut.SIGMOID,
    "Tanh": lut.TANH,
    "Exp": lut.EXP,
    "HardSigmoid": lut.HARD_SIGMOID,
    "HardSwish": lut.HARD_SWISH,
    "Swish": lut.SWISH,
    "Softmax": softmax.SOFTMAX,
    # pooling and reductions
    "MaxPool": pool.MAX_POOL,
    "GlobalMaxPool": pool.GLOBAL_MAX_POOL,
    "AveragePool": pool.AVERAGE_POOL,
    "GlobalAveragePool": pool.GLOBAL_AVERAGE_POOL,
    "ReduceMean": pool.REDUCE_MEAN,
    "Resize": resize.RESIZE,
    # data movement (format passes through)
    "Concat": movement.CONCAT,
    "Identity": movement.IDENTITY,
    "Reshape": movement.RESHAPE,
    "Flatten": movement.FLATTEN,
    "Transpose": movement.TRANSPOSE,
    "Slice": movement.SLICE,
    "Squeeze": movement.SQUEEZE,
    "Unsqueeze": movement.UNSQUEEZE,
    "Gather": movement.GATHER,
    "Split": movement.SPLIT,
    "Pad": movement.PAD,
}

__all__ = ["KERNELS", "Kernel", "KernelStats", "params_from_dict", "params_to_dict"]
