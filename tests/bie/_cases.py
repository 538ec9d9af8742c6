"""The edited-BIE cases of issue 18 (item 7 and the structurally edited BIEs of "Unclear today"),
as data: each edits a valid BIE and says what loading it must do. ``test_cases.py`` runs them;
the same list gave the before/after table of the closing note.

``expect``: fragments the ModelLoadError message must contain (besides the file name), or
``ACCEPT`` for an edit that stays inside the spec (it must load and run, outputs in range).
"""
from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ._edit import Bie

ACCEPT = None

# MNIST (tests/fixtures, written before the validator): 0 Convolution28 (Conv+Relu), 1 Pooling66
# (MaxPool), 2 Convolution110, 3 Pooling160, 4 Times212_reshape0 (Reshape), 5 Gemm_7 (Gemm)
CONV, POOL, RESHAPE, GEMM = "Convolution28", "Pooling66", "Times212_reshape0", "Gemm_7"


@dataclass(frozen=True)
class Case:
    id: str
    what: str  # the case, as in the issue
    src: str  # "mnist" (the fixture) or "zoo" (tests/bie/_models.zoo_model, with CPU steps)
    edit: Callable[[Bie], Any]
    expect: tuple[str, ...] | None


def _params(step: str, *path: Any) -> Callable[[Bie], dict]:
    def get(b: Bie) -> Any:
        v = b.step(step)["params"]
        for k in path:
            v = v[k]
        return v
    return get


def _set_data(step: str, field: tuple, i: int, value: int) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        _params(step, *field)(b)["data"][i] = value
    return fn


def _set_init_array(name: str, make: Callable[[np.ndarray], Any]) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        b.set_init(name, numpy_helper.from_array(make(b.array(name)), name))
    return fn


def _scale_everywhere(b: Bie) -> None:
    b.plan["formats"]["Plus214_Output_0"]["scale"] = 1e308
    b.step(GEMM)["params"]["out"]["out_format"]["__qformat__"]["scale"] = 1e308


def _radix_plus_one(b: Bie) -> None:
    b.plan["formats"]["ReLU32_Output_0"]["radix"] += 1


def _cpu_node(op: str) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        st = b.step("n_ab")
        node = onnx.NodeProto()
        node.ParseFromString(base64.b64decode(st["onnx_node"]))
        node.op_type = op
        st["onnx_node"] = base64.b64encode(node.SerializeToString()).decode()
    return fn


def _meta(key: str, value: str) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        b.meta[key] = value
    return fn


def _weights_shape(b: Bie) -> None:
    w = b.array("s0.Convolution28.w_q")
    b.set_init("s0.Convolution28.w_q", np.concatenate([w, w], axis=1))  # (8, 2, 5, 5): 2 input channels


def _bias_short(b: Bie) -> None:
    bias = b.step(CONV)["params"]["out"]["bias"]
    bias["data"] = bias["data"][:-1]
    bias["shape"] = [len(bias["data"])]


def _conv_attr(field: str, value: Any) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        b.step(CONV)["params"][field] = value
    return fn


def _pool_attr(field: str, value: Any) -> Callable[[Bie], None]:
    def fn(b: Bie) -> None:
        b.step(POOL)["params"][field] = value
    return fn


def _deep_plan(b: Bie) -> None:
    b.plan_text = "[" * 100_000 + "]" * 100_000


def _deep_param(b: Bie) -> None:
    v: Any = 0
    for _ in range(500):
        v = [v]
    b.step(CONV)["params"]["group"] = v


def _garbage_float_model(b: Bie) -> None:
    rng = np.random.default_rng(1)
    b.set_init("npuflow.float_model", rng.integers(0, 256, 4096, dtype=np.uint8))


def _garbage_cpu_node(b: Bie) -> None:
    b.step("n_ab")["onnx_node"] = base64.b64encode(bytes(range(7, 250))).decode()


def _reverse(b: Bie) -> None:
    b.plan["steps"].reverse()


def _no_steps(b: Bie) -> None:
    b.plan["steps"] = []
    del b.model.graph.node[:]


def _unknown_tensor(b: Bie) -> None:
    b.step("Convolution110")["inputs"][0] = "no_such_tensor"


def _unknown_op(b: Bie) -> None:
    b.step(POOL)["op_type"] = "FancyPool"


def _nan_json(b: Bie) -> None:
    import json

    b.plan_text = json.dumps(b.plan).replace('"scale": 1.0', '"scale": NaN', 1)


def _foreign_type(b: Bie) -> None:
    b.step(POOL)["params"]["__type__"] = "os:system"


def _table_short(b: Bie) -> None:
    b.set_init("s5.n_sg.table", b.array("s5.n_sg.table")[:100])


def _reshape_shape(b: Bie) -> None:
    b.step(RESHAPE)["params"]["config"]["shape"] = [1, 255]


def _gather_index(b: Bie) -> None:
    idx = b.step("n_ga")["params"]["config"]["indices"]
    idx["data"][1] = 40


def _external(b: Bie) -> None:
    t = b.init("s0.Convolution28.w_q")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", os.path.join("..", "..", "etc", "passwd")


def _written_twice(b: Bie) -> None:
    b.step("Convolution110")["outputs"] = ["ReLU32_Output_0"]


def _platform(b: Bie) -> None:
    b.meta["npuflow.platform"] = "999"


def _identity_lie(b: Bie) -> None:
    b.step(POOL)["params"]["rq"]["identity"] = False


CASES: list[Case] = [
    # --- item 7: spec bounds and consistency ---
    Case("shift70_gemm", "requant shift 70 (a Gemm: its stored formats give the shift)", "mnist",
         _set_data(GEMM, ("out", "shift"), 0, 70), ("Gemm_7", "params.out.mult")),
    Case("shift-3_gemm", "requant shift -3 (a Gemm)", "mnist", _set_data(GEMM, ("out", "shift"), 0, -3),
         ("Gemm_7", "params.out.mult")),
    Case("shift70_conv", "requant shift 70 (a Conv: no weight format stored; implies a weight radix of 69, in "
                         "the spec's range: outputs 0, in range)", "mnist",
         _set_data(CONV, ("out", "shift"), 0, 70), ACCEPT),
    Case("shift-40_conv", "requant shift -40 (a Conv: below the spec's -31)", "mnist",
         _set_data(CONV, ("out", "shift"), 0, -40), ("Convolution28", "params.out.mult", "outside [-31")),
    Case("shift200_conv", "requant shift 200 (a Conv: implied weight radix 199 > 127)", "mnist",
         _set_data(CONV, ("out", "shift"), 0, 200), ("Convolution28", "params.out.shift", "weight radix range")),
    Case("mult0", "multiplier 0 (a Conv)", "mnist", _set_data(CONV, ("out", "mult"), 0, 0),
         ("Convolution28", "params.out.mult", "cannot be zero")),
    Case("mult-5", "multiplier -5", "mnist", _set_data(CONV, ("out", "mult"), 0, -5),
         ("Convolution28", "params.out.mult", "outside +-[2**30, 2**31)")),
    Case("mult2^40", "multiplier 2^40", "mnist", _set_data(CONV, ("out", "mult"), 0, 1 << 40),
         ("Convolution28", "params.out.mult", "outside +-[2**30, 2**31)")),
    Case("bias2^62", "bias 2^62", "mnist", _set_data(CONV, ("out", "bias"), 0, 1 << 62),
         ("Convolution28", "params.out.bias", "int32 accumulator")),
    Case("w_int32", "weights stored as INT32 where int8 is declared", "mnist",
         _set_init_array("s0.Convolution28.w_q", lambda w: w.astype(np.int32) * 3),
         ("Convolution28", "params.w_q", "INT32 where INT8 is declared")),
    Case("w_float", "weights stored as FLOAT with fractions", "mnist",
         _set_init_array("s0.Convolution28.w_q", lambda w: w.astype(np.float32) + 0.4),
         ("Convolution28", "params.w_q", "FLOAT where INT8 is declared")),
    Case("scale1e308", "an output scale of 1e308 (plan.formats and the step)", "mnist", _scale_everywhere,
         ("Plus214_Output_0", "scale", "1e+308")),
    Case("cpu_node_op", "a CPU step whose stored node contradicts its op_type", "zoo", _cpu_node("Relu"),
         ("n_ab", "onnx_node", "'Relu'", "'Abs'")),
    Case("formats_contradict", "plan.formats contradicting the step parameters", "mnist", _radix_plus_one,
         ("Convolution28", "params.out.out_format", "ReLU32_Output_0")),
    Case("version_1.09", "format version 1.09 (newer than 1.0 as a version)", "mnist",
         _meta("npuflow.bie.format_version", "1.09"), ("format version 1.09", "newer", "upgrade")),
    Case("numerics_1.09", "numerics version 1.09 (newer than 1.1 as a version)", "mnist",
         _meta("npuflow.numerics_version", "1.09"), ("numerics version 1.09", "newer", "upgrade")),
    Case("version_older", "format version 0.9 (older)", "mnist", _meta("npuflow.bie.format_version", "0.9"),
         ("format version 0.9", "older", "re-run analysis")),
    Case("version_malformed", "numerics version 'one.two' (malformed)", "mnist",
         _meta("npuflow.numerics_version", "one.two"), ("numerics version 'one.two'", "malformed")),
    # --- structurally edited BIEs (Unclear today) ---
    Case("unknown_op", "unknown op_type", "mnist", _unknown_op, ("Pooling66", "op_type", "'FancyPool'")),
    Case("unknown_tensor", "unknown tensor name", "mnist", _unknown_tensor,
         ("Convolution110", "inputs", "no_such_tensor")),
    Case("reversed", "reversed steps", "mnist", _reverse, ("step 0 'Gemm_7'", "inputs", "out of order")),
    Case("zero_steps", "zero steps", "mnist", _no_steps, ("npuflow.plan.steps", "no steps")),
    Case("bias_length", "bias length mismatch", "mnist", _bias_short,
         ("Convolution28", "params.out.bias", "7 values for 8 output channels")),
    Case("weight_shape", "weight shape mismatch", "mnist", _weights_shape,
         ("Convolution28", "params.group", "input has 1 channels")),
    Case("kernel5000", "kernel 5000x5000 (a Conv)", "mnist", _conv_attr("kernel_shape", [5000, 5000]),
         ("Convolution28", "params.kernel_shape", "[5000, 5000]")),
    Case("pool5000", "kernel 5000x5000 (a MaxPool)", "mnist", _pool_attr("kernel_shape", [5000, 5000]),
         ("Pooling66", "params", "does not fit input")),
    Case("strides0", "strides 0 (a Conv)", "mnist", _conv_attr("strides", [0, 0]),
         ("Convolution28", "params.strides", "[0, 0]")),
    Case("pool_strides0", "strides 0 (a MaxPool)", "mnist", _pool_attr("strides", [0, 0]),
         ("Pooling66", "params.strides", "[0, 0]")),
    Case("deep_plan", "a 100000-deep JSON plan", "mnist", _deep_plan, ("npuflow.plan", "nested")),
    Case("deep_param", "a 500-deep value inside a step's parameters", "mnist", _deep_param,
         ("Convolution28", "params.group", "expected an integer, got a list")),
    Case("garbage_float_model", "garbage protobuf as the stored float model", "mnist", _garbage_float_model,
         ("npuflow.float_model", "not a readable ONNX model")),
    Case("garbage_cpu_node", "garbage protobuf as a CPU node", "zoo", _garbage_cpu_node,
         ("n_ab", "onnx_node")),
    # --- further edits of the same classes ---
    Case("nan_json", "NaN in the JSON plan", "mnist", _nan_json, ("npuflow.plan", "NaN")),
    Case("foreign_type", "params of a class npuflow does not store (os:system)", "mnist", _foreign_type,
         ("Pooling66", "params.__type__", "os:system")),
    Case("table_short", "a table of 100 entries for an int8 input", "zoo", _table_short,
         ("n_sg", "params.table", "100 entries")),
    Case("reshape_shape", "a Reshape to a shape of another size", "mnist", _reshape_shape,
         ("Times212_reshape0", "params.config.shape", "cannot hold")),
    Case("gather_index", "a Gather index out of range", "zoo", _gather_index, ("n_ga", "params.config.indices")),
    Case("external_data", "a weight pointing to an external file", "mnist", _external,
         ("Convolution28", "params.w_q", "external data")),
    Case("written_twice", "a tensor written by two steps", "mnist", _written_twice,
         ("Convolution110", "outputs", "ReLU32_Output_0")),
    Case("platform", "platform 999", "mnist", _platform, ("npuflow.platform", "'999'")),
    Case("platform_unicode", "platform '²' (a digit to str.isdigit, not to int(): found by the long fuzz run)",
         "mnist", _meta("npuflow.platform", "\u00b2"), ("npuflow.platform", "'²'")),
    Case("identity_lie", "a requantization that says it is not the identity between equal formats", "mnist",
         _identity_lie, ("Pooling66", "params.rq.identity")),
    # --- in-spec edits: must load and run ---
    Case("other_mult", "another valid multiplier (Conv)", "mnist",
         _set_data(CONV, ("out", "mult"), 3, (1 << 30) + 12345), ACCEPT),
    Case("other_shift", "another valid shift (Conv)", "mnist", _set_data(CONV, ("out", "shift"), 2, 5), ACCEPT),
    Case("other_weights", "other int8 weights", "mnist",
         _set_init_array("s2.Convolution110.w_q", lambda w: (-w).clip(-128, 127).astype(np.int8)), ACCEPT),
    Case("other_bias", "another bias inside the accumulator", "mnist",
         _set_data(CONV, ("out", "bias"), 1, (1 << 31) - 1), ACCEPT),
]
