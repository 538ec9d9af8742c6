"""From an optimized ONNX graph to the steps the fixed-point simulator runs.

A *step* is one quantized node after fusion (spec docs/fixed-point.md, section 2):

1. A MAC op (Conv, ConvTranspose, Gemm, MatMul) or Add/Sub followed by Relu, Clip or (MAC ops
   only) LeakyRelu is one step with the activation fused: one output format, no format for the
   pre-activation tensor. The activation must be the only consumer, not a graph output, and on
   the NPU.
2. SiLU written as ``Mul(x, Sigmoid(x))`` becomes one Swish step (the Sigmoid output is used only
   by that Mul; both on the NPU).
3. Every other NPU node with an integer kernel is a step of its own.
4. CPU nodes (placement CPU), and NPU nodes without an integer kernel for their op or for their
   attributes (:func:`integer_form`), are float steps: their inputs are dequantized, the node runs
   in float (onnxruntime, the model's opset), its float outputs are quantized at
   ``cpu_node_bitwidth_mode`` (``model_out`` for model outputs and the tensors they carry:
   :mod:`npuflow.analysis.effects`).
5. Older-opset nodes get the attributes of the kernel's (opset-13) form (:func:`integer_form`):
   Softmax before opset 13 (axis default 1, input coerced to 2-D: ``coerce_2d = 1``), Resize-10
   and Upsample (``asymmetric`` coordinates, onnxruntime's ``simple`` nearest rounding).
Constant inputs (initializers) of a step are its ``weights``, keyed by the ONNX schema input name.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.evaluate.placement import CPU, Placement

MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FUSABLE_ACT = {"Relu", "Clip", "LeakyRelu"}
#: ops whose output keeps the input's format (spec: data movement and max selection)
PASS_THROUGH = {"Reshape", "Flatten", "Transpose", "Slice", "Squeeze", "Unsqueeze", "Gather", "Split", "Pad",
                "Identity", "MaxPool", "GlobalMaxPool"}


@dataclass
class Step:
    name: str  # name of the first ONNX node of the group
    op_type: str  # kernel op type ("Conv", "Swish", ...) or the ONNX op for float steps
    nodes: tuple[str, ...]  # ONNX node names in the group
    inputs: list[str | None]  # one entry per ONNX input position ("" / None for constants and absent inputs)
    outputs: list[str]
    attrs: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    weight_names: dict[str, str] = field(default_factory=dict)  # schema name -> initializer name
    float_step: bool = False  # runs in float between dequantize/quantize
    reason: str = ""  # why a float step (CPU placement, or no integer kernel)
    onnx_node: onnx.NodeProto | None = None  # the original node, for float steps
    #: a float step of a float tail (host post-processing, :mod:`npuflow.analysis.tails`): its
    #: float outputs are not quantized (docs/fixed-point.md section 10.1)
    host: bool = False
    #: derived values that only depend on the step's own constants (e.g. weight formats), kept
    #: across the report's program rebuilds; keys name the constants they used
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def runtime_inputs(self) -> list[str]:
        return [i for i in self.inputs if i]


def components(members: Iterable[int], links: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The connected parts of ``members`` joined by ``links`` (pairs; a pair with an end outside
    ``members`` is ignored), each sorted, ordered by their first member."""
    parent = {i: i for i in members}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        if a in parent and b in parent:
            parent[find(b)] = find(a)
    comps: dict[int, list[int]] = {}
    for i in sorted(parent):
        comps.setdefault(find(i), []).append(i)
    return sorted(comps.values(), key=lambda m: m[0])


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = list(v)
        out[a.name] = v
    return out


def schema_input_names(node: onnx.NodeProto, opset: int) -> list[str]:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return [f"in{i}" for i in range(len(node.input))]
    names = [p.name for p in schema.inputs]
    if len(names) < len(node.input):  # variadic last input
        names += [names[-1]] * (len(node.input) - len(names))
    return names[: len(node.input)]


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return onnx.defs.onnx_opset_version()


#: Resize attributes the integer kernel implements (spec section 9)
RESIZE_MODES = ("nearest", "linear")
RESIZE_CTMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
               "half_pixel_symmetric")
RESIZE_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
FLOAT_NOTE = "simulated in float between quantize/dequantize"


def _s(v: Any, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def integer_form(
    op: str, attrs: dict[str, Any], weights: dict[str, np.ndarray], inputs: list[str | None], opset: int,
    kernel_ops: set[str],
) -> tuple[str | None, dict[str, Any], dict[str, np.ndarray], str]:
    """The kernel op type, attributes and weights that compute this ONNX node in integers, or
    ``(None, attrs, weights, reason)`` when no integer kernel does (the node becomes a float step).

    Older opsets are rewritten to the kernels' (opset-13) semantics:

    * Softmax, opset < 13: ``axis`` defaults to 1 and the input is coerced to 2-D there, so the
      normalisation runs over every axis from ``axis`` on: ``coerce_2d = 1`` (unless ``axis = -1``,
      which is the same in every opset).
    * Resize-10 (inputs X, scales) and Upsample-7/9 (scales attribute / input): kernel ``Resize``
      with ``coordinate_transformation_mode = asymmetric`` and ``nearest_mode = simple``
      (onnxruntime: floor on axes that upsample, ceil on axes that downsample).
    * Resize (any opset): cubic mode, ``tf_crop_and_resize``, antialias, a
      ``keep_aspect_ratio_policy`` other than ``stretch`` or runtime scales/sizes have no kernel.
    """
    if op == "Softmax" and opset < 13 and op in kernel_ops:
        axis = int(attrs.get("axis", 1))
        return op, ({**attrs, "axis": -1} if axis == -1 else {**attrs, "axis": axis, "coerce_2d": 1}), weights, ""
    if op in ("Upsample", "Resize") and "Resize" in kernel_ops:
        mode = _s(attrs.get("mode"), "nearest")
        if op == "Upsample" or opset < 11:
            w = dict(weights)
            if op == "Upsample" and "scales" in attrs and "scales" not in w:  # Upsample-7
                w["scales"] = np.asarray(attrs["scales"], dtype=np.float32)
            if "scales" not in w or any(inputs[1:]):
                return None, attrs, weights, f"{op} with runtime scales has no integer kernel: {FLOAT_NOTE}"
            if mode not in RESIZE_MODES:
                return None, attrs, weights, f"{op} mode {mode!r} has no integer kernel: {FLOAT_NOTE}"
            a = {"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "simple"}
            return "Resize", a, {"scales": w["scales"]}, ""
        ctm = _s(attrs.get("coordinate_transformation_mode"), "half_pixel")
        nm = _s(attrs.get("nearest_mode"), "round_prefer_floor")
        kar = _s(attrs.get("keep_aspect_ratio_policy"), "stretch")
        has_sizes = "sizes" in weights and np.size(weights["sizes"]) > 0
        has_scales = "scales" in weights and np.size(weights["scales"]) > 0
        why = ""
        if mode not in RESIZE_MODES:
            why = f"mode {mode!r}"
        elif ctm not in RESIZE_CTMS:
            why = f"coordinate_transformation_mode {ctm!r}"
        elif mode == "nearest" and nm not in RESIZE_NEAREST:
            why = f"nearest_mode {nm!r}"
        elif int(attrs.get("antialias", 0) or 0):
            why = "antialias"
        elif kar != "stretch":
            why = f"keep_aspect_ratio_policy {kar!r}"
        elif not (has_sizes or has_scales) or any(inputs[1:]):
            why = "runtime roi/scales/sizes"
        if why:
            return None, attrs, weights, f"Resize with {why} has no integer kernel: {FLOAT_NOTE}"
        return "Resize", attrs, weights, ""
    if op not in kernel_ops:
        return None, attrs, weights, f"no integer kernel for {op}: {FLOAT_NOTE}"
    return op, attrs, weights, ""


def build_steps(model: onnx.ModelProto, placements: list[Placement], kernel_ops: set[str]) -> list[Step]:
    """Group the (topologically sorted) nodes of ``model`` into steps; see the module docstring."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    opset = default_opset(model)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        for x in n.input:
            if x:
                consumers.setdefault(x, []).append(i)
    graph_outputs = {o.name for o in g.output}
    place = {p.name: p for p in placements}
    nodes = list(g.node)
    used = [False] * len(nodes)

    def only_consumer(tensor: str) -> int | None:
        c = consumers.get(tensor, [])
        if len(c) == 1 and tensor not in graph_outputs:
            return c[0]
        return None

    def is_cpu(n: onnx.NodeProto) -> bool:
        p = place.get(n.name)
        return p is not None and p.placement == CPU

    def const_value(name: str) -> np.ndarray | None:
        t = inits.get(name)
        return numpy_helper.to_array(t) if t is not None else None

    steps: list[Step] = []
    for i, n in enumerate(nodes):
        if used[i]:
            continue
        used[i] = True
        names = schema_input_names(n, opset)
        weights: dict[str, np.ndarray] = {}
        weight_names: dict[str, str] = {}
        inputs: list[str | None] = []
        for sname, x in zip(names, n.input):
            if x and x in inits:
                weights[sname] = const_value(x)
                weight_names[sname] = x
                inputs.append(None)
            else:
                inputs.append(x or None)
        attrs = node_attrs(n)
        op = n.op_type
        group = [n.name]
        outputs = list(n.output)
        cpu = is_cpu(n)
        refusal = ""
        if not cpu:
            kop, k_attrs, k_weights, refusal = integer_form(op, attrs, weights, inputs, opset, kernel_ops)
            if kop is not None:
                op, attrs, weights = kop, k_attrs, k_weights
        if not cpu and not refusal:
            nxt = only_consumer(n.output[0]) if len(n.output) == 1 else None
            if nxt is not None and not used[nxt] and not is_cpu(nodes[nxt]):
                a = nodes[nxt]
                const_bounds = a.op_type != "Clip" or all(not x or x in inits for x in a.input[1:])
                if (a.op_type in FUSABLE_ACT and const_bounds
                        and (op in MAC_OPS or (op in ("Add", "Sub") and a.op_type != "LeakyRelu"))):
                    aa = node_attrs(a)
                    attrs["activation"] = a.op_type
                    if a.op_type == "Clip":
                        lo = const_value(a.input[1]) if len(a.input) > 1 and a.input[1] else aa.get("min")
                        hi = const_value(a.input[2]) if len(a.input) > 2 and a.input[2] else aa.get("max")
                        attrs["activation_min"] = float(np.asarray(lo).ravel()[0]) if lo is not None else -np.inf
                        attrs["activation_max"] = float(np.asarray(hi).ravel()[0]) if hi is not None else np.inf
                    elif a.op_type == "LeakyRelu":
                        attrs["activation_alpha"] = float(aa.get("alpha", 0.01))
                    used[nxt] = True
                    group.append(a.name)
                    outputs = list(a.output)
            if op == "Sigmoid" and "Swish" in kernel_ops:
                nxt = only_consumer(n.output[0])
                if nxt is not None and not used[nxt] and nodes[nxt].op_type == "Mul" and not is_cpu(nodes[nxt]):
                    m = nodes[nxt]
                    if set(m.input) == {n.input[0], n.output[0]}:
                        used[nxt] = True
                        steps.append(Step(n.name, "Swish", (n.name, m.name), [n.input[0]], list(m.output),
                                          {"alpha": 1.0}))
                        continue
        float_step = cpu or bool(refusal)
        reason = place[n.name].reason if cpu else refusal
        steps.append(Step(n.name, op, tuple(group), inputs, outputs, attrs, weights, weight_names,
                          float_step, reason, n if float_step else None))
    return steps
