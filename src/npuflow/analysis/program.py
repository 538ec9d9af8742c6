"""The integer program: steps with prepared kernel params and every tensor's format.

``build_program`` runs each kernel's ``prepare`` once (floats allowed there); ``Program.run``
executes the steps with integers only, except float steps (CPU nodes), which dequantize their
inputs, run the ONNX node on onnxruntime and quantize their outputs (spec: "CPU nodes").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from npuflow.analysis.graph import MAC_OPS, PASS_THROUGH, Step
from npuflow.analysis.ranges import QuantOptions, choose_abs_max
from npuflow.calibration.histogram import AbsHistogram
from npuflow.errors import NpuflowError
from npuflow.quant.formats import weight_format
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats


def weight_axis(step: Step) -> int | None:
    """Output-channel axis of the weight of a MAC step (None: no constant weight)."""
    if step.op_type == "Conv":
        return 0
    if step.op_type == "ConvTranspose":
        return 1
    if step.op_type == "Gemm":
        return 0 if int(step.attrs.get("transB", 0)) else 1
    if step.op_type == "MatMul":
        w = step.weights.get("B")
        return None if w is None else w.ndim - 1
    return None


def _weight_input(step: Step) -> str | None:
    return {"Conv": "W", "ConvTranspose": "W", "Gemm": "B", "MatMul": "B"}.get(step.op_type)


@dataclass
class Program:
    steps: list[Step]
    params: list[Any]  # kernel params per step (None for float steps)
    formats: dict[str, QFormat]  # every quantized tensor's format
    input_names: list[str]
    output_names: list[str]
    float_dtypes: dict[str, bool] = field(default_factory=dict)  # tensor -> is float (quantizable)
    _sessions: dict[int, Any] = field(default_factory=dict, repr=False)
    opset: int = 13

    # ------------------------------------------------------------------------------------------
    def _float_session(self, k: int, feeds: dict[str, np.ndarray] | None = None):
        """onnxruntime session of float step ``k`` (built on first use; input types from ``feeds``)."""
        sess = self._sessions.get(k)
        if sess is None:
            import onnxruntime as ort

            st = self.steps[k]
            node = st.onnx_node
            assert node is not None
            inits = [onnx.numpy_helper.from_array(v, st.weight_names[n]) for n, v in st.weights.items()]
            ins = [onnx.helper.make_tensor_value_info(
                       x, onnx.helper.np_dtype_to_tensor_dtype(feeds[x].dtype) if feeds else onnx.TensorProto.FLOAT, None)
                   for x in st.runtime_inputs]
            outs = [onnx.helper.make_empty_tensor_value_info(y) for y in node.output if y]
            g = onnx.helper.make_graph([node], f"cpu_{k}", ins, outs, initializer=inits)
            m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", self.opset)])
            m.ir_version = 8
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            self._sessions[k] = sess
        return sess

    def quantize_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: self.formats[n].quantize(feeds[n]) for n in self.input_names}

    def run(
        self,
        feeds_q: dict[str, np.ndarray],
        *,
        keep_all: bool = False,
        stats: list[KernelStats] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run on quantized inputs. Returns the output tensors (every tensor with ``keep_all``)."""
        env: dict[str, np.ndarray] = dict(feeds_q)
        last_use: dict[str, int] = {}
        if not keep_all:
            for k, st in enumerate(self.steps):
                for x in st.runtime_inputs:
                    last_use[x] = k
        outputs = set(self.output_names)
        for k, st in enumerate(self.steps):
            args = [env[x] for x in st.runtime_inputs]
            if st.float_step:
                fl = {x: (self.formats[x].dequantize(a).astype(np.float32) if x in self.formats else a)
                      for x, a in zip(st.runtime_inputs, args)}
                res = self._float_session(k, fl).run(None, fl)
                names = [y for y in st.onnx_node.output if y]
                for y, v in zip(names, res):
                    env[y] = self.formats[y].quantize(v) if y in self.formats else v
            else:
                s = stats[k] if stats is not None else None
                res = KERNELS[st.op_type].eval(self.params[k], *args, stats=s)
                if not isinstance(res, tuple):
                    res = (res,)
                for y, v in zip(st.outputs, res):
                    env[y] = v
            if not keep_all:
                for x in st.runtime_inputs:
                    if last_use.get(x) == k and x not in outputs:
                        env.pop(x, None)
            if on_step is not None:
                on_step(k)
        return env if keep_all else {n: env[n] for n in self.output_names}


def _float_tensors(model: onnx.ModelProto) -> dict[str, bool]:
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        et = vi.type.tensor_type.elem_type
        out[vi.name] = et in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, 0)
    return out


def needed_stats(model: onnx.ModelProto, steps: list[Step], input_names: list[str]) -> list[str]:
    """Tensors whose calibrated range is needed: model inputs and every output of a step that
    does not pass its input's format through."""
    is_float = _float_tensors(model)
    names = list(input_names)
    for st in steps:
        if not st.float_step and st.op_type in PASS_THROUGH:
            continue
        names += [y for y in st.outputs if y and is_float.get(y, True)]
    return names


BIAS_HEADROOM_BITS = 2  # the quantized bias uses at most 1/4 of the accumulator range


def fit_bias(w_fmt: QFormat, in_fmt: QFormat, bias: np.ndarray | None) -> QFormat:
    """Lower the weight radix of output channels whose bias would not fit the accumulator.

    A channel with tiny weights gets a large weight radix; its bias, quantized at
    ``r_in + r_w[c]``, can then exceed int32 (spec "Bias"). Such a channel gives up weight
    precision (radix lowered by the excess bits) so that ``|b_q| < 2**(acc_bits - 1 - 2)``.
    """
    if bias is None or not w_fmt.per_channel:
        return w_fmt
    from npuflow.sim.fixed_point import accumulator_bits

    acc = accumulator_bits(in_fmt.bits, w_fmt.bits)
    limit = 2.0 ** (acc - 1 - BIAS_HEADROOM_BITS)
    r = w_fmt.radix_array().astype(np.int64)
    sc = w_fmt.scale_array().astype(np.float64)
    f_in = float(in_fmt.factor()[0])
    b = np.broadcast_to(np.abs(bias.astype(np.float64)).ravel(), r.shape) if np.size(bias) in (1, r.size) else None
    if b is None:
        return w_fmt
    need = b * f_in * sc * np.exp2(r.astype(np.float64))
    over = need > limit
    if not over.any():
        return w_fmt
    drop = np.where(over, np.ceil(np.log2(np.maximum(need, 1.0) / limit)).astype(np.int64), 0)
    return QFormat(w_fmt.bits, tuple(int(v) for v in r - drop), tuple(float(v) for v in sc), w_fmt.axis)


def mac_inputs(steps: list[Step]) -> list[str]:
    """Runtime inputs of MAC steps with a constant weight (their channel means drive bias correction)."""
    return [st.runtime_inputs[0] for st in steps
            if not st.float_step and st.op_type in ("Conv", "Gemm") and _weight_input(st) in st.weights and st.runtime_inputs]


def corrected_bias(st: Step, w_fmt: QFormat, mean_x: np.ndarray | None) -> np.ndarray | None:
    """Analytical bias correction (spec "Bias correction"): remove the expected output shift that
    weight quantization causes, ``E[(W_q - W) x] = (W_q - W) . E[x]``, per output channel.
    Returns the new float bias, or None when it does not apply."""
    if mean_x is None:
        return None
    if st.op_type == "Conv":
        w = st.weights["W"].astype(np.float64)
        delta = (w_fmt.dequantize(w_fmt.quantize(w)) - w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
        g = int(st.attrs.get("group", 1))
        cin_g = w.shape[1]
        if mean_x.size != cin_g * g:
            return None
        cout_g = w.shape[0] // g
        mx = mean_x.reshape(g, cin_g)
        corr = np.einsum("gok,gk->go", delta.reshape(g, cout_g, cin_g), mx).reshape(-1)
        b = st.weights.get("B")
    elif st.op_type == "Gemm":
        if float(st.attrs.get("alpha", 1.0)) != 1.0 or float(st.attrs.get("beta", 1.0)) != 1.0 or int(st.attrs.get("transA", 0)):
            return None
        w = st.weights["B"].astype(np.float64)
        delta = w_fmt.dequantize(w_fmt.quantize(w)) - w
        if int(st.attrs.get("transB", 0)) == 0:
            delta = delta.T  # (N, K)
        if mean_x.size != delta.shape[1]:
            return None
        corr = delta @ mean_x
        b = st.weights.get("C")
    else:
        return None
    if b is None or b.size == 1:
        base = np.full(corr.shape, 0.0 if b is None else float(np.asarray(b).ravel()[0]))
        return (base - corr).astype(np.float32)
    if b.size != corr.size:
        return None
    return (b.astype(np.float64) - corr.reshape(b.shape)).astype(np.float32)


def build_program(
    model: onnx.ModelProto,
    steps: list[Step],
    stats: dict[str, AbsHistogram],
    opts: QuantOptions,
    input_names: list[str],
    output_names: list[str],
    channel_means: Callable[[str], np.ndarray | None] | None = None,
) -> Program:
    is_float = _float_tensors(model)
    graph_outputs = set(output_names)
    formats: dict[str, QFormat] = {}
    for n in input_names:
        formats[n] = QFormat.from_abs_max(choose_abs_max(stats[n], opts.model_in_bits, opts, "input"),
                                          opts.model_in_bits, power_of_two=True)

    def calibrated(tensor: str, bits: int, node: str) -> QFormat:
        ov = opts.overrides.get(node)
        if ov is not None and ov.abs_max is not None:
            return QFormat.from_abs_max(float(ov.abs_max), bits)
        role = "output" if tensor in graph_outputs else "internal"
        return QFormat.from_abs_max(choose_abs_max(stats[tensor], bits, opts, role), bits)

    params: list[Any] = []
    for st in steps:
        key = next((n for n in st.nodes if n in opts.overrides), st.name)
        ov = opts.overrides.get(key)
        for x in st.runtime_inputs:
            if x not in formats and is_float.get(x, True) and not st.float_step:
                raise NpuflowError(f"internal: tensor {x} of step {st.name} has no format")
        if st.float_step:
            for y in st.outputs:
                if y and is_float.get(y, True):
                    bits = opts.model_out_bits if y in graph_outputs else opts.cpu_bits
                    formats[y] = calibrated(y, bits, key)
            params.append(None)
            continue
        if st.op_type in PASS_THROUGH:
            src = formats[st.runtime_inputs[0]]
            out_fmts = [src for _ in st.outputs]
        else:
            out_fmts = []
            for y in st.outputs:
                bits = opts.model_out_bits if y in graph_outputs else opts.datapath_bits
                if ov is not None and ov.bits is not None:
                    bits = ov.bits
                out_fmts.append(calibrated(y, bits, key))
        for y, f in zip(st.outputs, out_fmts):
            formats[y] = f
        in_formats: list[QFormat | None] = [formats.get(x) if x else None for x in st.inputs]
        wname = _weight_input(st)
        pos = 0
        if st.op_type in MAC_OPS and wname in st.weights:
            pos = ["X", "W", "B"].index(wname) if st.op_type.startswith("Conv") else ["A", "B", "C"].index(wname)
            wbits = ov.weight_bits if (ov is not None and ov.weight_bits) else opts.weight_bits
            in_formats[pos] = weight_format(st.weights[wname], wbits, weight_axis(st))
        weights = st.weights
        if opts.bias_correction and channel_means is not None and st.op_type in ("Conv", "Gemm") and in_formats[pos] is not None:
            nb = corrected_bias(st, in_formats[pos], channel_means(st.runtime_inputs[0]))
            if nb is not None:
                weights = {**st.weights, ("B" if st.op_type == "Conv" else "C"): nb}
        if st.op_type in MAC_OPS and in_formats[pos] is not None and in_formats[0] is not None:
            bias = weights.get("B" if st.op_type.startswith("Conv") else "C")
            in_formats[pos] = fit_bias(in_formats[pos], in_formats[0], bias)
        try:
            p = KERNELS[st.op_type].prepare(st.attrs, in_formats, out_fmts if len(out_fmts) > 1 else out_fmts[0], weights)
        except (ValueError, TypeError) as exc:
            raise NpuflowError(f"cannot quantize node {st.name} ({st.op_type}): {exc}") from exc
        params.append(p)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 13)
    return Program(steps, params, formats, list(input_names), list(output_names), is_float, opset=opset)
