"""The integer program: steps with prepared kernel params and every tensor's format.

``build_program`` runs each kernel's ``prepare`` once (floats allowed there); ``Program.run``
executes the steps with integers only, except float steps (CPU nodes), which dequantize their
inputs, run the ONNX node on onnxruntime and quantize their outputs (spec: "CPU nodes").
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

import numpy as np
import onnx

from npuflow.analysis.effects import FormatNotes, output_chains, post_sigmoid_targets
from npuflow.analysis.graph import MAC_OPS, PASS_THROUGH, Step
from npuflow.analysis.ranges import NodeOverride, QuantOptions, choose_abs_max, output_bound, range_rule
from npuflow.calibration.histogram import AbsHistogram
from npuflow.errors import NpuflowError
from npuflow.quant.formats import weight_format
from npuflow.quant.weight_rounding import compensated_round
from npuflow.sim.fixed_point import MultiplierRangeError, QFormat
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
    _fast_plans: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # npuflow.sim.fast.runner
    #: why each format was chosen (``build_program`` only; None for a program read from a BIE)
    notes: FormatNotes | None = field(default=None, repr=False, compare=False)

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
                   for x in dict.fromkeys(st.runtime_inputs)]  # Mul(x, x) reads x once
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
        from npuflow.sim.fast.elementwise import quantize_array  # the same integers as QFormat.quantize

        return {n: quantize_array(feeds[n], self.formats[n]) for n in self.input_names}

    def run(
        self,
        feeds_q: dict[str, np.ndarray],
        *,
        keep_all: bool = False,
        stats: list[KernelStats] | None = None,
        on_step: Callable[[int], None] | None = None,
        batch: int | None = None,
        keep: tuple[str, ...] = (),
    ) -> dict[str, np.ndarray]:
        """Run on quantized inputs. Returns the output tensors and the tensors named in ``keep``
        (every tensor with ``keep_all``).

        Steps run on the fast kernels of :mod:`npuflow.sim.fast` (identical integers; the
        reference kernels with ``NPUFLOW_SIM=reference``). ``batch``: the feeds hold that many
        samples concatenated on axis 0; steps that cannot take them at once run per sample
        (:mod:`npuflow.sim.fast.batching`), so every tensor comes back concatenated likewise.
        """
        from npuflow.sim.fast.runner import execute

        return execute(self, feeds_q, keep_all=keep_all, stats=stats, on_step=on_step, batch=batch, keep=tuple(keep))


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


def mac_inputs(steps: list[Step]) -> list[str]:
    """Runtime inputs of MAC steps with a constant weight (their channel means drive bias correction)."""
    return [st.runtime_inputs[0] for st in steps
            if not st.float_step and st.op_type in ("Conv", "Gemm") and _weight_input(st) in st.weights and st.runtime_inputs]


def corrected_bias(st: Step, w_fmt: QFormat, mean_x: np.ndarray | None,
                   w_q: np.ndarray | None = None) -> np.ndarray | None:
    """Analytical bias correction (spec "Bias correction"): remove the expected output shift that
    weight quantization causes, ``E[(W_q - W) x] = (W_q - W) . E[x]``, per output channel.
    ``w_q``: the integer weights when they are not the nearest rounding (spec 3.6).
    Returns the new float bias, or None when it does not apply."""
    if mean_x is None:
        return None
    if st.op_type == "Conv":
        w = st.weights["W"].astype(np.float64)
        wq = w_fmt.quantize(w) if w_q is None else w_q
        delta = (w_fmt.dequantize(wq) - w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
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


def _mac_bias(st: Step, weights: dict[str, np.ndarray]) -> np.ndarray | None:
    """Float bias of a MAC step in accumulator units (Gemm: ``beta * C / alpha``), or None."""
    if st.op_type in ("Conv", "ConvTranspose"):
        b = weights.get("B")
    elif st.op_type == "Gemm" and weights.get("C") is not None:
        alpha, beta = float(st.attrs.get("alpha", 1.0)), float(st.attrs.get("beta", 1.0))
        b = None if alpha == 0.0 else np.asarray(weights["C"], dtype=np.float64) * (beta / alpha)
    else:
        b = None
    return None if b is None else np.asarray(b, dtype=np.float64).ravel()


def mac_weight_format(st: Step, in_fmt: QFormat | None, bits: int) -> QFormat | None:
    """The weight format ``build_program`` gives MAC step ``st`` (None: no constant weight):
    per output channel, widened so the float bias fits (``quant.weight_format(..., bias=)``)."""
    wname = _weight_input(st)
    if st.op_type not in MAC_OPS or wname not in st.weights:
        return None
    # the same constants, input format and width give the same format: computed once per step
    # (the report rebuilds the program once per measured suggestion)
    arrays = (st.weights[wname], st.weights.get("B"), st.weights.get("C"))
    key = ("weight_format", *map(id, arrays), in_fmt, bits, tuple(sorted((k, repr(v)) for k, v in st.attrs.items())))

    def compute() -> QFormat:
        bias = _mac_bias(st, st.weights) if in_fmt is not None else None
        return weight_format(st.weights[wname], bits, weight_axis(st), bias=bias, in_format=in_fmt)

    return _memo(st, key, arrays, compute)


def _memo(st: Step, key: tuple, arrays: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``key`` in ``st.memo``. The entry also holds ``arrays`` (those whose
    ids are in the key) so that no id can be reused; an unhashable key is computed every time."""
    try:
        entry = st.memo.get(key)
    except TypeError:
        return compute()
    if entry is None:
        entry = st.memo[key] = (compute(), arrays)
    return entry[0]


def lower_radix(fmt: QFormat, k: int) -> QFormat:
    """``fmt`` with its radix lowered by ``k`` (range times 2**k, same scale)."""
    return QFormat(fmt.bits, fmt.tensor_radix - k, fmt.tensor_scale, fmt.axis)


#: largest radix lowering the multiplier cap tries (far beyond any pair of formats in [-128, 127])
MAX_RADIX_LOWERING = 1024


def prepare_capped(kernel: Any, attrs: dict[str, Any], in_formats: list[QFormat | None], out_fmts: list[QFormat],
                   weights: dict[str, np.ndarray]) -> tuple[Any, list[QFormat], int]:
    """``kernel.prepare`` with the multiplier cap (spec section 3): when a requantization multiplier
    would reach 2**31 (the output format is more than 2**31 times finer than an input's: a
    near-constant or nearly dead tensor), every output's radix is lowered by the smallest ``k``
    for which the kernel prepares. Returns ``(params, output formats, k)``."""

    def prep(fmts: list[QFormat]) -> Any:
        return kernel.prepare(attrs, in_formats, fmts if len(fmts) > 1 else fmts[0], weights)

    try:
        return prep(out_fmts), out_fmts, 0
    except MultiplierRangeError:
        pass
    lo, hi = 0, 1  # prep fails at lo; find the smallest hi that works (success is monotone in k)
    while True:
        try:
            prep([lower_radix(f, hi) for f in out_fmts])
            break
        except MultiplierRangeError:
            lo, hi = hi, hi * 2
            if hi > MAX_RADIX_LOWERING:
                raise
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            prep([lower_radix(f, mid) for f in out_fmts])
            hi = mid
        except MultiplierRangeError:
            lo = mid
    fmts = [lower_radix(f, hi) for f in out_fmts]
    return prep(fmts), fmts, hi


def as_float_step(st: Step, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], opset: int, reason: str) -> None:
    """Turn ``st`` (one ONNX node) into a float step of ``node`` with ``reason`` (in place)."""
    from onnx import numpy_helper

    from npuflow.analysis.graph import node_attrs, schema_input_names

    weights: dict[str, np.ndarray] = {}
    weight_names: dict[str, str] = {}
    inputs: list[str | None] = []
    for sname, x in zip(schema_input_names(node, opset), node.input):
        if x and x in inits:
            weights[sname] = numpy_helper.to_array(inits[x])
            weight_names[sname] = x
            inputs.append(None)
        else:
            inputs.append(x or None)
    st.op_type, st.attrs, st.inputs, st.outputs = node.op_type, node_attrs(node), inputs, list(node.output)
    st.weights, st.weight_names = weights, weight_names
    st.float_step, st.reason, st.onnx_node = True, reason, node


#: numerics version of a program without host steps: its BIE can be read by npuflow versions that
#: implement 1.1 (every 1.1 rule is a 1.2 rule)
BASE_NUMERICS_VERSION = "1.1"


def required_numerics_version(program: Program) -> str:
    """The numerics version a BIE of ``program`` records: the lowest whose rules it uses.
    ``NUMERICS_VERSION`` (1.2) when a float step leaves a float output unquantized (host
    post-processing, spec 10.1), else 1.1, so that BIEs of models without a float tail are the
    files they were (and older readers open them)."""
    from npuflow.sim.fixed_point import NUMERICS_VERSION

    for st in program.steps:
        if st.float_step and any(y and y not in program.formats and program.float_dtypes.get(y, True)
                                 for y in st.outputs):
            return NUMERICS_VERSION
    return BASE_NUMERICS_VERSION


def override_key(st: Step, opts: QuantOptions) -> str:
    """The name ``opts.overrides`` is looked up under for step ``st``: the first of its ONNX nodes
    that has an override (a fused MAC: the MAC's, else the activation's), else the step's name."""
    return next((n for n in st.nodes if n in opts.overrides), st.name)


def step_override(st: Step, opts: QuantOptions) -> NodeOverride | None:
    """The user's override of step ``st`` (spec 3.4), or None."""
    return opts.overrides.get(override_key(st, opts))


def weight_bits(ov: NodeOverride | None, opts: QuantOptions) -> int:
    """Width of a MAC step's weights: its override's ``weight_bits``, else ``weight_bitwidth_mode``."""
    return ov.weight_bits if (ov is not None and ov.weight_bits) else opts.weight_bits


def compensated_weights(st: Step, w_fmt: QFormat, moment: np.ndarray | None) -> np.ndarray | None:
    """Integer weights of Conv step ``st`` by error-compensating rounding (spec 3.6) with its
    input's second moment, once per (weights, format, moment); None without a moment."""
    if moment is None or st.op_type != "Conv" or "W" not in st.weights:
        return None
    arrays = (st.weights["W"], moment)
    key = ("compensated", *map(id, arrays), w_fmt)
    return _memo(st, key, arrays, lambda: compensated_round(st.weights["W"], w_fmt, moment))


def mac_weights(st: Step, in_formats: list[QFormat | None], ov: NodeOverride | None, opts: QuantOptions,
                channel_means: Callable[[str], np.ndarray | None] | None = None,
                bias_deltas: Mapping[str, np.ndarray] | None = None,
                weight_moments: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-channel weight format of MAC step ``st`` into ``in_formats`` (widened for the float
    bias), and its weights: compensated rounding (spec 3.6, with ``weight_moments[st.name]``)
    given to the kernel as the exactly representable float weights, and the corrected bias: the
    analytical correction (spec "Bias correction", with ``channel_means``) minus the measured
    ``bias_deltas[st.name]`` of the sequential bias adjustment (:mod:`npuflow.analysis.bias_adjust`),
    in float output units."""
    w_fmt = mac_weight_format(st, in_formats[0], weight_bits(ov, opts))
    if w_fmt is None:
        return st.weights
    wname = _weight_input(st)
    pos = ["X", "W", "B"].index(wname) if st.op_type.startswith("Conv") else ["A", "B", "C"].index(wname)
    in_formats[pos] = w_fmt
    weights = st.weights
    w_q = None
    if opts.weight_rounding == "compensated" and weight_moments:
        w_q = compensated_weights(st, w_fmt, weight_moments.get(st.name))
        if w_q is not None:
            # dequantized in float64 then float32: the kernel's RNE(w * factor) gives w_q back
            # (relative error 2**-24 on |w_q| <= 2**15 is far below half an LSB)
            weights = {**weights, wname: w_fmt.dequantize(w_q).astype(np.float32)}
    bname = "B" if st.op_type == "Conv" else "C"
    if opts.bias_correction and channel_means is not None and st.op_type in ("Conv", "Gemm"):
        mean_x = channel_means(st.runtime_inputs[0])
        arrays = (st.weights[wname], st.weights.get(bname))
        key = ("corrected_bias", *map(id, arrays), w_fmt, w_q is not None,
               None if mean_x is None else np.asarray(mean_x, np.float64).tobytes())
        nb = _memo(st, key, arrays, lambda: corrected_bias(st, w_fmt, mean_x, w_q))
        if nb is not None:
            weights = {**weights, bname: nb}
    if bias_deltas and st.name in bias_deltas and st.op_type == "Conv":
        d = np.asarray(bias_deltas[st.name], dtype=np.float64).ravel()
        b = weights.get(bname)
        base = np.zeros(d.shape) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64).ravel(), d.shape)
        weights = {**weights, bname: (base - d).astype(np.float32)}
    return weights


def _prepared_step(st: Step, in_formats: list[QFormat | None], out_fmts: list[QFormat], ov: NodeOverride | None,
                   opts: QuantOptions, channel_means: Callable[[str], np.ndarray | None] | None,
                   bias_deltas: Mapping[str, np.ndarray] | None,
                   weight_moments: Mapping[str, np.ndarray] | None) -> tuple[Any, list[QFormat]]:
    """``mac_weights`` + ``prepare_capped`` of one step, once per everything they depend on (the
    report rebuilds the program once per measured suggestion and most steps do not change: they
    get the same parameter object back, so the simulator's per-parameter caches carry over too).

    The key holds the step's input and output formats, its override, every option but the
    overrides, the channel means' bytes and the identity of its moment and bias delta (kept alive
    by the entry). ``in_formats`` gets the weight format filled in, as ``mac_weights`` does."""
    moment = weight_moments.get(st.name) if weight_moments else None
    delta = bias_deltas.get(st.name) if bias_deltas else None
    mean_x = None
    if opts.bias_correction and channel_means is not None and st.op_type in ("Conv", "Gemm") and st.runtime_inputs:
        mean_x = channel_means(st.runtime_inputs[0])
    # the overrides are keyed per step (ov); range_choice only acts through the formats in the key
    option_values = tuple(getattr(opts, f.name) for f in fields(opts) if f.name not in ("overrides", "range_choice"))
    key = ("prepared", tuple(in_formats), tuple(out_fmts), ov, option_values,
           None if mean_x is None else np.asarray(mean_x, np.float64).tobytes(), id(moment), id(delta))

    def compute() -> tuple[Any, list[QFormat], list[QFormat | None]]:
        fmts_in = list(in_formats)
        weights = mac_weights(st, fmts_in, ov, opts, channel_means, bias_deltas, weight_moments)
        p, fmts_out, _ = prepare_capped(KERNELS[st.op_type], st.attrs, fmts_in, out_fmts, weights)
        return p, fmts_out, fmts_in

    p, fmts_out, fmts_in = _memo(st, key, (moment, delta), compute)
    in_formats[:] = fmts_in
    return p, list(fmts_out)


def forget_prepared(steps: list[Step], keep: list[Any]) -> None:
    """Drop the memoised prepared parameters of ``steps`` (see :func:`_prepared_step`) except the
    parameter objects in ``keep`` (the program that stays): the report's rebuilt programs would
    otherwise live as long as the steps, with the simulator's sessions and plans attached."""
    ids = {id(p) for p in keep if p is not None}
    for st in steps:
        for key in [k for k, v in st.memo.items() if k and k[0] == "prepared" and id(v[0][0]) not in ids]:
            del st.memo[key]


def build_program(
    model: onnx.ModelProto,
    steps: list[Step],
    stats: dict[str, AbsHistogram],
    opts: QuantOptions,
    input_names: list[str],
    output_names: list[str],
    channel_means: Callable[[str], np.ndarray | None] | None = None,
    bias_deltas: Mapping[str, np.ndarray] | None = None,
    weight_moments: Mapping[str, np.ndarray] | None = None,
) -> Program:
    """Choose every tensor's format and prepare every integer step (spec sections 2, 3, 10).

    Formats follow the steps in order: model inputs (power of two, exact range), then each step's
    outputs (pass-through ops keep their input's format; others get a calibrated range,
    :func:`npuflow.analysis.ranges.choose_abs_max`, at the bits of their role or override; every
    tensor a model output carries through pass-through ops and Concats gets the model-output width,
    :func:`npuflow.analysis.effects.output_chains`; with post_sigmoid the tensors of
    :func:`npuflow.analysis.effects.post_sigmoid_targets` are capped). ``Program.notes`` records
    which rule gave each width and range (:class:`npuflow.analysis.effects.FormatNotes`). MAC
    weights get per-channel formats widened so the float bias fits a quarter of the accumulator
    (:func:`npuflow.quant.formats.weight_format`); Conv/Gemm biases are then corrected for the
    weight rounding (:func:`corrected_bias`); spatial convolutions with a second moment in
    ``weight_moments`` get compensated rounding (:func:`compensated_weights`). Kernels prepare under the multiplier cap
    (:func:`prepare_capped`). A single-node step whose kernel refuses its attributes or constants
    (``ValueError`` in prepare) becomes a float step whose reason quotes the kernel (``steps`` is
    updated in place).
    """
    is_float = _float_tensors(model)
    graph_outputs = set(output_names)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 13)
    inits = {t.name: t for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    formats: dict[str, QFormat] = {}
    # the tensors each model output carries through pass-through steps and Concats (spec 3.7); a
    # float tail's host steps carry nothing (spec 10.1: the head is the same program either way)
    chains = output_chains(steps, output_names)
    targets, skipped = post_sigmoid_targets(steps, list(output_names), chains) if opts.post_sigmoid else ({}, [])
    notes = FormatNotes(chains=chains, sigmoid_skipped=skipped)
    for n in input_names:
        formats[n] = QFormat.from_abs_max(choose_abs_max(stats[n], opts.model_in_bits, opts, "input"),
                                          opts.model_in_bits, power_of_two=True)
        notes.width[n], notes.range[n] = "model_in", "input"

    def calibrated(tensor: str, bits: int, node: str, op_type: str | None = None) -> QFormat:
        ov = opts.overrides.get(node)
        if ov is not None and ov.abs_max is not None:
            notes.range[tensor] = "abs_max"
            return QFormat.from_abs_max(float(ov.abs_max), bits)
        role = "output" if tensor in graph_outputs else "internal"
        notes.range[tensor] = range_rule(bits, opts, role, tensor)
        # the op's own bound (spec 3.1), not for a post_sigmoid target: its cap applies instead
        bounded = op_type if (role == "output" and tensor not in targets) else None
        a = choose_abs_max(stats[tensor], bits, opts, role, tensor=tensor, op_type=bounded)
        if bounded is not None and output_bound(bounded, stats[tensor]) is not None:
            notes.range[tensor] = "output bound"
        if tensor in targets:
            capped = choose_abs_max(stats[tensor], bits, opts, role, capped=True, tensor=tensor)
            notes.capped[tensor] = (a, capped, targets[tensor])
            a = capped
        return QFormat.from_abs_max(a, bits)

    def out_bits(y: str, default: str, ov: Any) -> int:
        if ov is not None and ov.bits is not None:
            notes.width[y] = "auto_precision" if ov.auto else "override"
            return int(ov.bits)
        notes.width[y] = "model_out" if y in chains else default
        return {"model_out": opts.model_out_bits, "datapath": opts.datapath_bits, "cpu_node": opts.cpu_bits}[notes.width[y]]

    def inherit(y: str, x: str) -> QFormat:
        notes.width[y] = "inherit"
        notes.inherits[y] = x
        return formats[x]

    def float_step_formats(st: Step, key: str, ov: Any) -> None:
        src = next((x for x in st.runtime_inputs if x in formats), None)
        for y in st.outputs:
            if y and is_float.get(y, True):
                notes.producer[y] = st.name
                if st.host and y not in npu_reads:  # host steps' float outputs stay float (spec 10.1) ...
                    continue
                # ... except where an NPU step reads them (the border of a float island, spec 10.4)
                if (st.op_type in PASS_THROUGH and src is not None and not (ov is not None and ov.abs_max is not None)
                        and formats[src].bits == out_bits(y, "cpu_node", ov)):
                    # data movement on the CPU moves the values it reads: its input's format is exact
                    # (a calibrated one would round them again; a Pad's zeros would lower its quantiles)
                    formats[y] = inherit(y, src)
                elif y in stats:
                    formats[y] = calibrated(y, out_bits(y, "cpu_node", ov), key, st.op_type)
                elif src is not None:  # a data-movement op that fell back to float: its input's format
                    formats[y] = inherit(y, src)
                else:
                    raise NpuflowError(f"internal: no calibration statistics for {y} (float step {st.name})")

    npu_reads = {x for st in steps if not st.float_step for x in st.runtime_inputs}
    params: list[Any] = []
    for st in steps:
        key = override_key(st, opts)
        ov = opts.overrides.get(key)
        for x in st.runtime_inputs:
            if x not in formats and is_float.get(x, True) and not st.float_step:
                raise NpuflowError(f"internal: tensor {x} of step {st.name} has no format")
        if st.float_step:
            float_step_formats(st, key, ov)
            params.append(None)
            continue
        if st.op_type in PASS_THROUGH:
            out_fmts = [inherit(y, st.runtime_inputs[0]) for y in st.outputs]
        else:
            out_fmts = [calibrated(y, out_bits(y, "datapath", ov), key, st.op_type) for y in st.outputs]
        for y in st.outputs:
            notes.producer[y] = st.name
        in_formats: list[QFormat | None] = [formats.get(x) if x else None for x in st.inputs]
        try:
            p, out_fmts = _prepared_step(st, in_formats, out_fmts, ov, opts, channel_means, bias_deltas,
                                         weight_moments)
        except MultiplierRangeError as exc:
            raise NpuflowError(f"cannot quantize node {st.name} ({st.op_type}): {exc}") from exc
        except (ValueError, TypeError) as exc:
            node = by_name.get(st.name)
            if isinstance(exc, TypeError) or len(st.nodes) != 1 or node is None:
                raise NpuflowError(f"cannot quantize node {st.name} ({st.op_type}): {exc}") from exc
            as_float_step(st, node, inits, opset,
                          f"the integer {st.op_type} kernel refuses this node ({exc}): simulated in float "
                          "between quantize/dequantize")
            float_step_formats(st, key, ov)
            params.append(None)
            continue
        for y, f in zip(st.outputs, out_fmts):
            formats[y] = f
        if st.op_type in MAC_OPS and _weight_input(st) in st.weights:
            notes.weight[st.name] = "override" if (ov is not None and ov.weight_bits) else "weight"
        params.append(p)
    for t in [t for t in notes.width if t not in formats]:  # outputs that are not quantized (shapes, indices)
        del notes.width[t]
    return Program(steps, params, formats, list(input_names), list(output_names), is_float, opset=opset, notes=notes)
