"""Precision of a fixed-point program against its float model: the data of the report's
``quantization`` section (docs/report.md).

Everything is measured on a small list of *report inputs* (by default the first calibration
inputs; see ``ModelConfig.analysis(report_inputs=, report_samples=)``), one input at a time, so
memory stays bounded by one input's tensors whatever the number of inputs:

* pass 1, per input: the float model with every quantized tensor exposed (onnxruntime); the
  **isolated** error of every step (the step alone quantized: its float inputs quantized to the
  step's input formats, its integer kernel, its output dequantized, compared with the float
  output); the error of quantizing each float output alone (split into clipping and rounding);
  the full fixed-point run and the **cumulative** error of every tensor (everything before it
  quantized too). Per-layer statistics use a fixed pseudo-random subset of at most ``SAMPLE``
  values per tensor and input (the same values on both sides); model outputs use every value.
* shortlist: the steps with the lowest isolated SNR and with the largest cumulative drop (the
  worst input's cumulative SNR minus the output's), each with a cause and suggestions.
* pass 2: for each shortlisted step, the program rebuilt with its first suggestion applied (same
  calibration statistics, no recalibration) and re-run from the first step it changes, giving the
  model-output SNR with the suggestion applied; the shortlist is ranked by that measured gain.
  Also measured: int16 everywhere (a reference) and the top suggestions together.

Pooled metrics over all report inputs: ``SNR = 10 log10(sum ref^2 / sum (ref - x)^2)`` (``None``:
no error at all), ``cosine = sum ref x / sqrt(sum ref^2 sum x^2)``. The model-output SNR that the
ranking and every measured suggestion use is the analysis' measure: the lowest output, an output read
part by part (docs/fixed-point.md 3.1) counting as its lowest part (``lowest`` says which).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from npuflow.analysis.graph import PASS_THROUGH, Step
from npuflow.analysis.islands import find_islands
from npuflow.analysis.parts import PartsSnr, output_parts
from npuflow.analysis.precision import FpsModel
from npuflow.analysis.program import Program, build_program, mac_weight_format, step_override, weight_axis, weight_bits
from npuflow.analysis.ranges import NodeOverride, QuantOptions, mmse_clip
from npuflow.analysis.tails import ISLAND_REASON, with_host_steps
from npuflow.analysis.flat import describe as describe_bound
from npuflow.calibration.collector import clip_to, expose_tensors
from npuflow.quant.formats import weight_format
from npuflow.reference.float_runner import FloatRunner
from npuflow.sim.fast.elementwise import quantize_array
from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels import KERNELS, KernelStats

log = logging.getLogger(__name__)

#: SNR given to a tensor whose float reference is all zeros but whose fixed value is not
SNR_FLOOR_DB = -300.0
#: how many ranked steps the report lists, and for how many it measures the suggestion
RANKED = 6
MEASURED = 3
#: histogram bins drawn per activation histogram
HIST_BINS = 96


def _kernel(op_type: str) -> Callable[..., Any]:
    """What runs one step: the simulator's fast path when present, else the reference kernel."""
    try:
        from npuflow.sim.fast import kernel_for  # type: ignore[attr-defined]

        return kernel_for(op_type)
    except ImportError:  # pragma: no cover - fast path not installed
        return KERNELS[op_type].eval


class ErrAcc:
    """Pooled error statistics of one tensor (float reference ``r`` vs fixed ``x``)."""

    __slots__ = ("sig", "noise", "dot", "xx", "n")

    def __init__(self) -> None:
        self.sig = self.noise = self.dot = self.xx = 0.0
        self.n = 0

    def add(self, ref: np.ndarray, x: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64).ravel()
        v = np.asarray(x, dtype=np.float64).ravel()
        d = r - v
        sig, noise, xx = _dot(r, r), _dot(d, d), _dot(v, v)
        self.sig += sig
        self.noise += noise
        self.xx += xx
        self.dot += 0.5 * (sig + xx - noise)  # sum r.x, from |r - x|^2 = |r|^2 - 2 r.x + |x|^2
        self.n += r.size

    def merge(self, other: "ErrAcc") -> None:
        self.sig += other.sig
        self.noise += other.noise
        self.dot += other.dot
        self.xx += other.xx
        self.n += other.n

    def snr(self) -> float | None:
        return snr_db(self.sig, self.noise)

    def cosine(self) -> float:
        if self.sig == 0.0 or self.xx == 0.0:
            return 1.0 if self.sig == self.xx else 0.0
        return float(min(1.0, self.dot / math.sqrt(self.sig * self.xx)))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a*b in float64 without BLAS (a multithreaded BLAS dot is very slow on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


def snr_db(signal: float, noise: float) -> float | None:
    """``10 log10(signal / noise)``; None when there is no error (exact)."""
    if noise <= 0.0:
        return None
    if signal <= 0.0:
        return SNR_FLOOR_DB
    return max(SNR_FLOOR_DB, 10.0 * math.log10(signal / noise))


#: per-layer statistics use at most this many values of a tensor per input (a fixed pseudo-random
#: subset, the same on the float and the fixed side); model outputs always use every value
SAMPLE = 1 << 16
_PICKS: dict[int, np.ndarray] = {}


def _pick(size: int) -> np.ndarray | None:
    """Deterministic sorted index subset for a flat tensor of ``size`` values (None: all)."""
    if size <= SAMPLE:
        return None
    idx = _PICKS.get(size)
    if idx is None:
        idx = np.sort(np.random.default_rng(size).choice(size, SAMPLE, replace=False))
        _PICKS[size] = idx
    return idx


def _sampled(a: np.ndarray, full: bool = False) -> np.ndarray:
    flat = np.asarray(a).reshape(-1)
    idx = None if full else _pick(flat.size)
    return flat if idx is None else flat[idx]


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


def chosen_range(fmt: QFormat) -> float:
    """The largest magnitude a per-tensor format represents (``qmax / factor``)."""
    return float(fmt.qmax / float(fmt.factor().max()))


def clipped_fraction(h: Any, clip: float) -> float:
    """Fraction of the calibration values (histogram of |x|) beyond ``clip`` (bin resolution)."""
    if h is None or h.count == 0 or h.abs_max <= clip or not h.edge:
        return 0.0
    width = h.edge / len(h.counts)
    first = int(math.floor(clip / width))  # the bin holding clip counts as clipped above its centre
    centers_above = (np.arange(len(h.counts)) + 0.5) * width > clip
    centers_above[:first] = False
    total = int(h.counts.sum())
    return float(h.counts[centers_above].sum()) / total if total else 0.0


def _fmt_desc(fmt: QFormat | None) -> dict[str, Any] | None:
    if fmt is None:
        return None
    if fmt.per_channel:
        r = fmt.radix_array()
        s = fmt.scale_array()
        return {"bits": fmt.bits, "per_channel": True, "channels": int(r.size), "radix_min": int(r.min()),
                "radix_max": int(r.max()), "scale_min": round(float(s.min()), 6), "scale_max": round(float(s.max()), 6)}
    return {"bits": fmt.bits, "per_channel": False, "radix": int(fmt.tensor_radix), "scale": round(float(fmt.tensor_scale), 6),
            "range": float(f"{chosen_range(fmt):.6g}")}


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------
def _weight_key(st: Step) -> str | None:
    return {"Conv": "W", "ConvTranspose": "W", "Gemm": "B", "MatMul": "B"}.get(st.op_type)


def weight_info(st: Step, params: Any, formats: dict[str, QFormat], opts: QuantOptions) -> dict[str, Any] | None:
    """Format and quantization SNR of a MAC step's constant weight (None: no constant weight): the
    program's own integer weights (compensated rounding, docs/fixed-point.md §3.6, included)
    against the float ones."""
    key = _weight_key(st)
    if st.float_step or key is None or key not in st.weights:
        return None
    w = np.asarray(st.weights[key])
    if not np.issubdtype(w.dtype, np.floating):
        return None
    fmt = getattr(params, "b_format", None) if st.op_type in ("Gemm", "MatMul") else None
    if fmt is None:
        axis = weight_axis(st)
        bits = weight_bits(step_override(st, opts), opts)
        in_fmt = formats.get(st.runtime_inputs[0]) if st.runtime_inputs else None
        fmt = mac_weight_format(st, in_fmt, bits) or weight_format(w, bits, axis)
    if fmt.per_channel and w.ndim >= 2 and w.shape[fmt.axis] != fmt.channels:
        w = np.swapaxes(w, -1, -2)  # Gemm's transB: the kernel keeps B as (K, N)
    w_q = getattr(params, "w_q", None)
    q = np.asarray(w_q) if w_q is not None and np.shape(w_q) == w.shape else fmt.quantize(w)
    acc = ErrAcc()
    acc.add(w, fmt.dequantize(q))
    d = _fmt_desc(fmt) or {}
    d["snr_db"] = _r(acc.snr())
    return d


# ------------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------------
class _TensorStats:
    """Per step output: isolated error, output-quantization error split, range seen on report inputs."""

    __slots__ = ("sig", "clip_err", "round_err", "n_clip", "n", "abs_max")

    def __init__(self) -> None:
        self.sig = self.clip_err = self.round_err = 0.0
        self.n_clip = self.n = 0
        self.abs_max = 0.0

    def add(self, x: np.ndarray, xs: np.ndarray, fmt: QFormat) -> None:
        """``x``: the whole float tensor (for its max); ``xs``: the values the statistics use."""
        x = np.asarray(x)
        if not x.size:
            return
        x64 = np.asarray(xs, dtype=np.float64).ravel()
        c = chosen_range(fmt)
        f = float(fmt.factor().max())
        d = x64 - np.clip(np.rint(x64 * f), fmt.qmin, fmt.qmax) / f  # quantize + dequantize (per-tensor format)
        total = _dot(d, d)
        nc, ec = 0, 0.0
        if float(x64.max()) > c or -float(x64.min()) > c:
            clip = np.abs(x64) > c
            dc = d[clip]
            nc, ec = int(dc.size), _dot(dc, dc)
        self.clip_err += ec
        self.round_err += total - ec
        self.n_clip += nc
        self.n += x64.size
        self.sig += _dot(x64, x64)
        self.abs_max = max(self.abs_max, float(x.max()), -float(x.min()))


def _is_float(program: Program, name: str) -> bool:
    return bool(program.float_dtypes.get(name, True))


def _deq(program: Program, name: str, v: np.ndarray) -> np.ndarray:
    """A tensor's value: dequantized, or as it is for a float tail's float output (no format)."""
    f = program.formats.get(name)
    return f.dequantize(v) if f is not None else np.asarray(v, dtype=np.float64)


def _compared(program: Program) -> list[str]:
    """Every quantized float tensor the report compares: model inputs, then step outputs in order."""
    names = [n for n in program.input_names if n in program.formats]
    seen = set(names)
    for st in program.steps:
        for y in st.outputs:
            if y and y in program.formats and _is_float(program, y) and y not in seen:
                names.append(y)
                seen.add(y)
    return names


def _isolated(program: Program, k: int, st: Step, fl: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Step ``k`` alone quantized on the exact float inputs: its integer outputs."""
    fmts = program.formats
    args = []
    for x in st.runtime_inputs:
        v = fl[x]
        f = fmts.get(x)
        args.append(quantize_array(v, f) if (f is not None and _is_float(program, x)) else v)
    if st.float_step:
        feeds = {x: (fmts[x].dequantize(a).astype(np.float32) if (x in fmts and _is_float(program, x)) else a)
                 for x, a in zip(st.runtime_inputs, args)}
        res = program._float_session(k, feeds).run(None, feeds)
        names = [y for y in st.onnx_node.output if y] if st.onnx_node is not None else st.outputs
        return [(y, quantize_array(v, fmts[y])) for y, v in zip(names, res) if y in fmts and _is_float(program, y)]
    res = _kernel(st.op_type)(program.params[k], *args)
    if not isinstance(res, (tuple, list)):
        res = (res,)
    return [(y, v) for y, v in zip(st.outputs, res) if y in fmts and _is_float(program, y)]


@dataclasses.dataclass
class Suggestion:
    #: "int16", "weights16", "range", "cpu16", "input16", "data" (not measurable); for the extra
    #: measurements: "combined", "region16", "all16"
    kind: str
    text: str
    overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    start: int = 0  # first step the change affects
    measurable: bool = True
    #: the steps to build on instead of the analysis' (the int16 reference with the float islands
    #: run in float); measured from the first step, as a program of its own
    steps: list[Step] | None = dataclasses.field(default=None, repr=False, compare=False)

    def key(self) -> str:
        return repr((sorted(self.overrides.items()), sorted(self.options.items()), self.steps is not None))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "node_overrides": self.overrides, "options": self.options}


def _current_override(opts: QuantOptions, st: Step) -> dict[str, Any]:
    """The user's own override of a step (keyed by any of its ONNX nodes), as a dict; an automatic
    one (``NodeOverride.auto``: a 16-bit promotion, a mixed mode's choice) is not the user's: a
    suggestion pasted into ``node_overrides`` replaces it, and the suggestion is measured so."""
    ov = step_override(st, opts)
    if ov is None or ov.auto:
        return {}
    return {f: getattr(ov, f) for f in ("bits", "weight_bits", "abs_max") if getattr(ov, f) is not None}


def _override_text(node: str, spec: dict[str, Any]) -> str:
    api = f"node_overrides={{{node!r}: {spec!r}}}"
    if set(spec) == {"bits"}:
        return f"{api} (CLI: --override {node}={spec['bits']})"
    return api


def _producer(program: Program, tensor: str) -> int | None:
    for k, st in enumerate(program.steps):
        if tensor in st.outputs:
            return k
    return None


def _suggest(program: Program, k: int, st: Step, row: dict[str, Any], ts: _TensorStats | None, iso: ErrAcc,
             stats: dict[str, Any], opts: QuantOptions, platform: Any, samples: int,
             user_inputs: bool) -> tuple[str, list[Suggestion]]:
    """Why step ``k`` loses precision and what to do, most promising first."""
    allowed_dp = tuple(platform.bitwidths["datapath"])
    allowed_w = tuple(platform.bitwidths["weight"])
    allowed_cpu = tuple(platform.bitwidths["cpu_node"])
    out = [y for y in st.outputs if y in program.formats]
    fmt = program.formats[out[0]] if out else None
    h = stats.get(out[0]) if out else None
    e_clip = ts.clip_err if ts else 0.0
    e_round = ts.round_err if ts else 0.0
    e_rest = max(0.0, iso.noise - e_clip - e_round)
    parts = {"clipping": e_clip, "rounding": e_round, "inputs/weights": e_rest}
    cause = max(parts, key=lambda c: parts[c])
    wsnr = (row.get("weight") or {}).get("snr_db")
    osnr = row["isolated"]["snr_db"]
    if cause == "inputs/weights" and wsnr is not None and osnr is not None and wsnr <= osnr + 6.0:
        cause = "weights"
    elif cause == "inputs/weights":
        cause = "inputs"
    sugg: list[Suggestion] = []

    def node_override(kind: str, spec: dict[str, Any], why: str, target: Step = st, start: int = k) -> Suggestion:
        full = {**_current_override(opts, target), **spec}  # keep what the user already overrides there
        return Suggestion(kind, f"{why}: {_override_text(target.name, full)}", {target.name: full}, start=start)

    if st.float_step:
        if fmt is not None and fmt.bits < 16 and 16 in allowed_cpu and cause in ("rounding", "clipping"):
            sugg.append(Suggestion("cpu16", "quantize CPU-node inputs/outputs to 16 bits: cpu_node_bitwidth_mode='int16'",
                                   options={"cpu_node_bitwidth_mode": "int16"}, start=k))
    elif cause in ("rounding", "clipping"):
        if fmt is not None and fmt.bits < 16 and 16 in allowed_dp:
            why = ("its output range is clipped" if cause == "clipping" else "its output's int8 rounding dominates")
            sugg.append(node_override("int16", {"bits": 16}, f"move this node's output to int16 ({why})"))
        if h is not None and fmt is not None:
            m = mmse_clip(h, fmt.bits, opts.percentile)
            c = chosen_range(fmt)
            if m > 0 and abs(m - c) / c > 0.05:
                sugg.append(node_override("range", {"abs_max": float(f"{m:.6g}")},
                                          f"use the MMSE range of its calibration histogram ({m:.4g} instead of {c:.4g}; "
                                          "datapath_range_method='mmse' does this for every node)"))
    elif cause == "weights":
        wb = (row.get("weight") or {}).get("bits", 8)
        if wb < 16 and 16 in allowed_w:
            sugg.append(node_override("weights16", {"weight_bits": 16}, "quantize this node's weights to int16"))
    if cause == "inputs" or not sugg:
        # the precision is lost in the inputs it is given: widen the producers' outputs (below); for a
        # MAC node, int16 weights are the other half of that error
        wb = (row.get("weight") or {}).get("bits")
        if cause == "inputs" and wb is not None and wb < 16 and 16 in allowed_w:
            sugg.append(node_override("weights16", {"weight_bits": 16}, "quantize this node's weights to int16"))
        for x in st.runtime_inputs:
            if x not in program.formats or not _is_float(program, x):
                continue
            f = program.formats[x]
            if f.bits >= 16:
                continue
            if x in program.input_names:
                if 16 in tuple(platform.bitwidths["model_in"]):
                    sugg.append(Suggestion("input16", f"its input {x} is the model input: model_in_bitwidth_mode='int16'",
                                           options={"model_in_bitwidth_mode": "int16"}, start=0))
                break
            p = _producer(program, x)
            while p is not None and program.steps[p].op_type in PASS_THROUGH and not program.steps[p].float_step:
                # a pass-through keeps its input's format: the format comes from further up
                src = program.steps[p].runtime_inputs
                p = _producer(program, src[0]) if src else None
            if p is None:
                continue
            pst = program.steps[p]
            if not pst.float_step and 16 in allowed_dp:
                sugg.insert(0, node_override("int16", {"bits": 16},
                                             f"its input {x} is too coarse: move its producer {pst.name} to int16",
                                             target=pst, start=p))
                break
            if pst.float_step and 16 in allowed_cpu:
                sugg.insert(0, Suggestion("cpu16", f"its input {x} comes from the CPU node {pst.name}: "
                                                   "cpu_node_bitwidth_mode='int16'",
                                          options={"cpu_node_bitwidth_mode": "int16"}, start=p))
                break
    if ts is not None and fmt is not None and ts.n:
        rep = ts.n_clip / ts.n
        cal = clipped_fraction(h, chosen_range(fmt)) if h is not None else 0.0
        if (rep > 0.005 and rep > 4 * max(cal, 1e-4)) or (samples < 32 and cause == "clipping"):
            src = "the report inputs" if user_inputs else "these inputs"
            sugg.append(Suggestion("data", f"calibrate on more (representative) data: {src} exceed the calibrated range "
                                           f"on {100 * rep:.3g} % of values (calibration: {100 * cal:.3g} %, "
                                           f"{samples} calibration inputs)", measurable=False))
    return cause, sugg


def _suggested_options(opts: QuantOptions, sugg: Suggestion) -> QuantOptions:
    """``opts`` with the suggestion's node overrides and bit-width options applied."""
    ov = dict(opts.overrides)
    for node, spec in sugg.overrides.items():
        ov[node] = NodeOverride(**spec)
    changes: dict[str, Any] = {"overrides": ov}
    bits = {"cpu_node_bitwidth_mode": "cpu_bits", "model_in_bitwidth_mode": "model_in_bits",
            "datapath_bitwidth_mode": "datapath_bits", "model_out_bitwidth_mode": "model_out_bits"}
    for k, v in sugg.options.items():
        changes[bits[k]] = int(str(v)[3:])
    return dataclasses.replace(opts, **changes)


def _rebuild(result: Any, o2: QuantOptions, sugg: Suggestion) -> Program:
    """The program of ``result`` rebuilt with ``o2`` (:func:`_suggested_options`) and the
    suggestion's steps."""
    p = result.program
    means = getattr(result, "channel_means", None) or {}
    return build_program(result.optimized, sugg.steps if sugg.steps is not None else result.steps, result.stats, o2,
                         p.input_names, p.output_names,
                         channel_means=means.get if means else None,
                         weight_moments=getattr(result, "weight_moments", None),
                         # the adjustment was measured for these formats: a local override keeps it,
                         # a model-wide bit-width change (the int16 reference) would be skewed by it
                         bias_deltas=None if sugg.options else getattr(result, "bias_deltas", None))


def _first_change(p: Program, p2: Program, sugg: Suggestion) -> int:
    """First step whose formats or parameters the suggestion changes (everything before it is
    identical: the program is built in step order)."""
    if any(p.formats.get(n) != p2.formats.get(n) for n in p.input_names):
        return 0
    for k, st in enumerate(p.steps):
        if any(n in sugg.overrides for n in st.nodes):
            return k
        if any(p.formats.get(y) != p2.formats.get(y) for y in st.outputs if y):
            return k
    return len(p.steps)


def _share_params(p: Program, p2: Program, sugg: Suggestion) -> None:
    """Give ``p2`` the base program's parameter objects wherever a step is unchanged (same formats
    in and out, not overridden), so the simulator's per-parameter caches are reused."""
    for k, st in enumerate(p2.steps):
        if p.params[k] is None or any(n in sugg.overrides for n in st.nodes):
            continue
        tensors = [x for x in st.inputs if x] + [y for y in st.outputs if y]
        if all(p.formats.get(t) == p2.formats.get(t) for t in tensors):
            p2.params[k] = p.params[k]


def _suffix(program: Program, start: int) -> Program:
    """The steps from ``start`` on, as a program of their own (fresh caches)."""
    changes: dict[str, Any] = {"steps": program.steps[start:], "params": program.params[start:]}
    for f in dataclasses.fields(program):
        if f.name.startswith("_") and f.init:  # per-program caches (float sessions, execution plans)
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                changes[f.name] = f.default_factory()  # type: ignore[misc]
            elif f.default is not dataclasses.MISSING:
                changes[f.name] = f.default
    return dataclasses.replace(program, **changes)


def _concurrent_ok() -> bool:
    """Whether two simulations may run at once: numba's threading layer must be thread-safe
    (OpenMP or TBB; its default fallback, workqueue, aborts on concurrent parallel launches)."""
    from npuflow.sim.fast._nb import HAVE_NUMBA

    if not HAVE_NUMBA:
        return True
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return False


def _output_snrs(accs: dict[str, ErrAcc], parts: Mapping[str, PartsSnr] | None = None,
                 ) -> tuple[float | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """The measure of the ranking and the suggestions, where it is, and each output's entry.

    The measure is the analysis' own (docs/fixed-point.md 3.1, "Outputs read part by part"): the
    lowest SNR over the model outputs, an output whose graph joins parts along its last axis
    (``parts``) counting as its lowest part whose float values are not all zero; None when every
    output is exact. Where: ``{"output": name}``, with ``first`` / ``last`` (columns) for a part.
    Each output's entry: its pooled SNR and cosine, and each part's SNR."""
    parts = parts or {}
    worst: float | None = None
    where: dict[str, Any] | None = None
    per: list[dict[str, Any]] = []
    for n, a in accs.items():
        entry: dict[str, Any] = {"name": n, "snr_db": _r(a.snr()), "cosine": round(a.cosine(), 6)}
        p = parts.get(n)
        cands: list[tuple[float | None, dict[str, Any]]] = [(a.snr(), {"output": n})]
        if p is not None and any(x.sig > 0.0 or x.noise > 0.0 for x in p.parts):
            bounds = list(zip(p.bounds, p.bounds[1:], p.parts))
            entry["parts"] = [{"first": lo, "last": hi - 1, "snr_db": _r(snr_db(x.sig, x.noise))} for lo, hi, x in bounds]
            live = [(snr_db(x.sig, x.noise), {"output": n, "first": lo, "last": hi - 1}) for lo, hi, x in bounds if x.sig > 0.0]
            if live:  # every part all zero in float: the pooled SNR
                cands = live
        per.append(entry)
        for v, w in cands:
            if v is not None and (worst is None or v < worst):
                worst, where = v, w
    return worst, where, per


def _hist(h: Any, clip: float, bins: int = HIST_BINS) -> dict[str, Any] | None:
    """Rebinned |x| histogram over [0, hi] for the chart (counts of the calibration values)."""
    if h is None or h.count == 0 or not h.edge:
        return None
    hi = max(h.abs_max, clip) * 1.04 or 1.0
    n = len(h.counts)
    width = h.edge / n
    centers = (np.arange(n) + 0.5) * width
    idx = np.minimum((centers / hi * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, weights=h.counts.astype(np.float64), minlength=bins)
    return {"hi": float(f"{hi:.6g}"), "counts": [int(c) for c in counts], "chosen": float(f"{clip:.6g}"),
            "abs_max": float(f"{h.abs_max:.6g}"), "total": int(h.counts.sum())}


#: memory for the base run's tensors kept between pass 1 and the suggestions (beyond it they are recomputed)
KEEP_BYTES = 256 << 20
#: fractions of the quantized steps (in graph order) whose outputs go to int16 in the region suggestions
REGIONS = (0.1, 0.25, 0.5)


def _regions(program: Program, rows: list[dict[str, Any]], opts: QuantOptions) -> list[tuple[Suggestion, dict[str, Any]]]:
    """int16 for the first 10 %, 25 % and 50 % of the quantized steps: precision lost early is
    amplified by everything after it, so a prefix often gains far more than any single node."""
    cand = [k for k, r in enumerate(rows) if not r["float_step"] and not r["pass_through"] and r["outputs"]
            and all(o["bits"] < 16 for o in r["outputs"])]
    total_macs = sum(r["macs"] for r in rows) or 1
    out = []
    seen = set()
    for frac in REGIONS:
        n = max(1, int(round(frac * len(cand))))
        if n in seen or n >= len(cand):
            continue
        seen.add(n)
        ks = cand[:n]
        names = [program.steps[k].name for k in ks]
        ov = {}
        for k in ks:
            st = program.steps[k]
            ov[st.name] = {**_current_override(opts, st), "bits": 16}
        last = program.steps[ks[-1]]
        macs = sum(rows[k]["macs"] for k in ks)
        text = (f"int16 outputs for the first {n} quantized nodes (#{ks[0]} {names[0]} to #{ks[-1]} {last.name}; "
                f"node_overrides={{name: {{'bits': 16}}}} for each, listed in the JSON)")
        out.append((Suggestion("region16", text, overrides=ov),
                    {"fraction": frac, "nodes": n, "first": names[0], "last": last.name, "last_index": ks[-1],
                     "macs_fraction": round(macs / total_macs, 4)}))
    return out


class _Measurer:
    """Model-output SNR with suggestions applied: each one rebuilds the program from the same
    calibration statistics and re-runs it from the first step it changes (the base run's tensors
    before it are reused). ``add`` returns the result dict, filled in by ``run``."""

    def __init__(self, result: Any, opts: QuantOptions, feeds: Sequence[dict[str, np.ndarray]],
                 ref_out: list[dict[str, np.ndarray]], out_names: list[str], base: float | None,
                 envs: Sequence[dict[str, np.ndarray] | None] = (), threads: int = 1,
                 parts: Mapping[str, Sequence[int]] | None = None,
                 fps: Callable[[Program, QuantOptions], float] | None = None) -> None:
        """``fps``: the IP evaluator's estimated FPS of a program built with given options
        (:class:`npuflow.analysis.precision.FpsModel`); each measurement then records ``fps_ratio``,
        the suggestion's estimated FPS over the analysed program's."""
        self.result, self.opts, self.feeds, self.ref_out, self.out_names, self.base = result, opts, feeds, ref_out, out_names, base
        self.fps = fps
        self.fps_base: float | None = None
        #: output -> the boundaries of its parts (measured part by part, see :func:`_output_snrs`)
        self.parts = {n: list(b) for n, b in (parts or {}).items()}
        self.envs = list(envs)
        self.threads = threads
        self.pending: list[tuple[dict[str, Any], Suggestion, Program, Program]] = []
        self.done: dict[str, dict[str, Any]] = {}
        self.seconds = 0.0

    def add(self, g: Suggestion) -> dict[str, Any]:
        key = g.key()
        if key in self.done:  # the same change suggested for another node: measured once
            return self.done[key]
        out: dict[str, Any] = {"suggestion": g.as_dict(), "model_output_snr_db": _r(self.base)}
        self.done[key] = out
        o2 = _suggested_options(self.opts, g)
        try:
            p2 = _rebuild(self.result, o2, g)
        except Exception as exc:  # noqa: BLE001 - a suggestion the program cannot take is reported, not fatal
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
        ratio = self._fps_ratio(p2, o2, g)
        if ratio is not None:
            out["fps_ratio"] = ratio
        if g.steps is None:
            g.start = _first_change(self.result.program, p2, g)
            _share_params(self.result.program, p2, g)
        else:  # other steps: nothing of the base run lines up with them
            g.start = 0
        self.pending.append((out, g, p2, _suffix(p2, g.start)))
        return out

    def _fps_ratio(self, p2: Program, o2: QuantOptions, g: Suggestion) -> float | None:
        """The suggestion's estimated FPS over the analysed program's (None without a cost model, or
        where it cannot price a program: the report goes on without the column)."""
        if self.fps is None:
            return None
        try:
            if self.fps_base is None:
                self.fps_base = self.fps(self.result.program, self.opts)
            ratio = self.fps(p2, o2) / self.fps_base
        except Exception as exc:  # noqa: BLE001 - an estimate is extra information, never fatal
            log.warning("report: no FPS estimate for the suggestion %r: %s", g.text, exc)
            self.fps = None
            return None
        return round(ratio, 4) if math.isfinite(ratio) else None

    def run(self, progress: Callable[[str], None] | None = None) -> None:
        if not self.pending:
            return
        t0 = time.perf_counter()
        program = self.result.program
        accs = [{n: ErrAcc() for n in self.out_names} for _ in self.pending]
        paccs = [{n: PartsSnr(b) for n, b in self.parts.items()} for _ in self.pending]

        def add(j: int, i: int, p2: Program, res: dict[str, np.ndarray]) -> None:
            for n in self.out_names:
                value = _deq(p2, n, res[n])
                accs[j][n].add(self.ref_out[i][n], value)
                if n in paccs[j]:
                    paccs[j][n].add(self.ref_out[i][n], value)
        need_base = any(g.start > 0 for _, g, _, _ in self.pending)
        count = len(self.feeds)
        envs = self.envs[:count]
        if (self.threads > 1 and len(self.pending) > 1 and len(envs) == count and all(e is not None for e in envs)
                and _concurrent_ok()):
            # every base run is kept: two variants at a time (each one's sums in input order, so
            # the same numbers; a simulation at batch 1 keeps about 1.3 of 2 cores busy)
            def measure(j: int) -> None:
                _, g, p2, sub = self.pending[j]
                for i, feed in enumerate(self.feeds):
                    add(j, i, p2, sub.run(envs[i] if g.start > 0 else p2.quantize_inputs(feed)))

            with ThreadPoolExecutor(max_workers=2) as pool:
                for j, _ in enumerate(pool.map(measure, range(len(self.pending)))):
                    if progress:
                        progress(f"suggestions {j + 1}/{len(self.pending)}")
            count = 0
        for i, feed in enumerate(self.feeds[:count]):
            env = self.envs[i] if i < len(self.envs) else None
            if env is None and need_base:
                env = program.run(program.quantize_inputs(feed), keep_all=True)
            for j, (_, g, p2, sub) in enumerate(self.pending):
                add(j, i, p2, sub.run(env if g.start > 0 else p2.quantize_inputs(feed)))
            del env
            if progress:
                progress(f"suggestions {i + 1}/{len(self.feeds)}")
        for (out, _, _, _), acc, pacc in zip(self.pending, accs, paccs):
            after, _, per = _output_snrs(acc, pacc)
            out.update({"with_suggestion_snr_db": _r(after), "outputs": per,
                        "gain_db": _r(after - self.base) if (after is not None and self.base is not None) else None})
        self.pending = []
        self.seconds += time.perf_counter() - t0


def _better(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Whether measurement ``a`` reached a higher model-output SNR than ``b`` (None: exact, highest)."""
    if "error" in a:
        return False
    if b is None or "error" in b:
        return True
    sa, sb = a.get("with_suggestion_snr_db"), b.get("with_suggestion_snr_db")
    return sb is not None and (sa is None or sa > sb)


def _together(entries: Sequence[dict[str, Any]], kind: str) -> Suggestion:
    """One suggestion applying the measured suggestions of ranked ``entries`` together."""
    ov: dict[str, dict[str, Any]] = {}
    opt: dict[str, Any] = {}
    for e in entries:
        sg = e["measured"]["suggestion"]
        for node, spec in sg["node_overrides"].items():
            ov[node] = {**ov.get(node, {}), **spec}
        opt.update(sg["options"])
    return Suggestion(kind, "the suggestions of ranks " + ", ".join(str(e["rank"]) for e in entries) + " together",
                      overrides=ov, options=opt)


#: a suggestion joins the joint list when it adds at least this much (dB) to the ones before it
JOINT_MIN_GAIN_DB = 0.1
#: the joint list draws on the first this many ranked suggestions that gain, in at most
#: JOINT_ROUNDS rounds after the first (at most 3 + 2 extra measurements)
JOINT_POOL = 4
JOINT_ROUNDS = 2


def _joint(top: Sequence[dict[str, Any]], measurer: _Measurer,
           progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """The joint suggestion list (docs/report.md): the best measured suggestion of ``top`` (the
    first :data:`JOINT_POOL` ranked ones that gain), then, measured on top of those accepted, the
    one of the rest that raises the model-output SNR most, while it adds at least
    :data:`JOINT_MIN_GAIN_DB`, for at most :data:`JOINT_ROUNDS` rounds. Suggestions that help only together (yolox_nano's Conv_41 and its
    SiLU) show here; each entry: ``ranks`` so far, ``model_output_snr_db``, ``gain_db`` (over the
    program as built) and ``added_db`` (over the previous entry)."""
    if not top:
        return []
    first = top[0]["measured"]
    chosen = [top[0]]
    best = first.get("with_suggestion_snr_db")
    out = [{"ranks": [top[0]["rank"]], "model_output_snr_db": best, "gain_db": first.get("gain_db"),
            "added_db": first.get("gain_db"), "fps_ratio": first.get("fps_ratio")}]
    rest = list(top[1:])
    for _ in range(JOINT_ROUNDS):
        if not rest or best is None:
            break
        trials = [(e, measurer.add(_together([*chosen, e], "joint"))) for e in rest]
        measurer.run(progress)
        scored = [(e, m) for e, m in trials if m.get("with_suggestion_snr_db") is not None]
        if not scored:
            break
        e, m = max(scored, key=lambda em: em[1]["with_suggestion_snr_db"])
        added = m["with_suggestion_snr_db"] - best
        if added < JOINT_MIN_GAIN_DB:
            break
        chosen.append(e)
        rest.remove(e)
        best = m["with_suggestion_snr_db"]
        out.append({"ranks": [c["rank"] for c in chosen], "model_output_snr_db": best, "gain_db": m.get("gain_db"),
                    "added_db": _r(added), "fps_ratio": m.get("fps_ratio")})
    return out


#: the keys of the report's ``option_effects`` (npuflow.analysis.effects.option_effects)
EFFECT_KEYS = ("no_effect", "stays_8bit", "post_sigmoid", "post_sigmoid_skipped", "model_out")


def _option_effects(result: Any) -> dict[str, Any]:
    """What the options did (the analysis' ``effects``), with every key present."""
    eff = getattr(result, "effects", None) or {}
    return {k: list(eff.get(k) or []) for k in EFFECT_KEYS}


def _auto_precision(result: Any) -> dict[str, Any]:
    """The automatic precision choices of the analysis (docs/fixed-point.md 10.1): ``enabled`` and
    ``float_tails`` (every candidate measured, kept or not) and ``promotions`` (every
    ill-conditioned tensor found, 10.2: measured and kept or not, with why) and ``float_islands``
    (10.4: the islands' measurement; None without a candidate) and ``search`` (10.2: the budgeted
    precision search's record; None when it was not considered)."""
    ap = getattr(result, "auto_precision", None) or {}
    return {"enabled": bool(ap.get("enabled", True)), "float_tails": list(ap.get("float_tails") or []),
            "promotions": list(ap.get("promotions") or []), "float_islands": ap.get("float_islands") or None,
            "search": ap.get("search") or None}


def _width_note(program: Program, tensor: str, stays: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``width_rule`` (which rule gave the tensor's width, docs/fixed-point.md 3.7) and, under a
    16-bit datapath, ``stays_8bit`` (the option that keeps it at 8 bits)."""
    notes = getattr(program, "notes", None)
    out: dict[str, Any] = {}
    if notes is not None and tensor in notes.width:
        out["width_rule"] = notes.width[tensor]
    if tensor in stays:
        e = stays[tensor]
        out["stays_8bit"] = e["option"] + (f" (copies {e['via']})" if e.get("via") else "")
    return out


def measure_precision(
    result: Any,
    opts: QuantOptions,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    platform: Any,
    eval_nodes: dict[str, Any] | None = None,
    user_inputs: bool = False,
    measured: int = MEASURED,
    shortlisted: int = RANKED,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The ``quantization`` section of the report (see the module docstring).

    ``result``: an ``AnalysisResult``; ``feeds``: validated input dicts; ``eval_nodes``: the
    evaluator's ``NodeEval`` per ONNX node name (placement, MACs, time). For the ``measured`` worst
    steps, up to ``per_node`` suggestions each are applied and measured; the best comes first.
    """
    t_start = time.perf_counter()
    program: Program = result.program
    steps = program.steps
    fmts = program.formats
    stats = result.stats
    names = _compared(program)
    # model outputs: quantized ones, and the float outputs of float tails (spec 10.1)
    out_names = [n for n in program.output_names if _is_float(program, n) and n not in program.input_names]
    inner = [n for n in names if n not in program.input_names]
    inner += [n for n in out_names if n not in names]
    # the other tensors the measured steps read (a Where's bool condition, indices): from the float model too
    have = set(inner) | set(program.input_names)
    made = {y for node in result.optimized.graph.node for y in node.output}
    inner += list(dict.fromkeys(x for st in steps if not st.host for x in st.runtime_inputs
                                if x and x not in have and x in made))
    runner = FloatRunner(expose_tensors(result.optimized, inner), label="report float model", threads=threads)

    # a tensor whose readers cannot tell values apart outside an interval (docs/fixed-point.md 3.1,
    # "Consumer bounds") is compared as its readers see it: float and quantized values both clipped
    # there (a saturation beyond it changes nothing downstream and is no error)
    bounds = getattr(result, "bounds", None) or {}

    def seen(name: str, q: np.ndarray) -> np.ndarray:
        """The sampled dequantized values of ``name`` as its readers see them."""
        if name not in bounds:
            return fmts[name].dequantize(_sampled(q))
        return _sampled(clip_to(fmts[name].dequantize(q), bounds[name]))

    def float_run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fl = dict(zip(inner, runner.run(feed, inner))) if inner else {}
        for n in program.input_names:
            fl[n] = feed[n]
        for n, b in bounds.items():
            if n in fl:
                fl[n] = clip_to(fl[n], b)
        return fl

    # ---- pass 1: isolated and cumulative error, output-quantization error, ranges on the report inputs
    iso = [ErrAcc() for _ in steps]
    tstats: dict[str, _TensorStats] = {}
    cum = {n: ErrAcc() for n in names}
    base_out = {n: ErrAcc() for n in out_names}
    # the parts an output's graph joins along its last axis (docs/fixed-point.md 3.1): each part's SNR too
    part_out = {n: PartsSnr(b) for n, b in output_parts(result.optimized, out_names).items()}
    part_off: set[str] = set()
    ref_out: list[dict[str, np.ndarray]] = []  # float model outputs per input (small), for pass 2
    kstats = [KernelStats() for _ in steps]
    kept_env: list[dict[str, np.ndarray] | None] = []
    kept_bytes = 0
    t_iso = 0.0
    for i, feed in enumerate(feeds):
        fl = float_run(feed)
        ref_out.append({n: fl[n] for n in out_names})
        t0 = time.perf_counter()
        # non-float runtime tensors (shapes, indices) come from the float model too
        sfl = {n: _sampled(fl[n]) for n in names}  # per-layer statistics on a fixed subset (SAMPLE)
        for k, st in enumerate(steps):
            if st.host:  # a float tail's step: nothing quantized to measure (its float inputs are not exposed)
                continue
            for y, q in _isolated(program, k, st, fl):
                iso[k].add(sfl[y], seen(y, q))
        t_iso += time.perf_counter() - t0
        for n in names:
            tstats.setdefault(n, _TensorStats()).add(fl[n], sfl[n], fmts[n])
        env = program.run(program.quantize_inputs(feed), keep_all=True, stats=kstats)
        for n in names:
            cum[n].add(sfl[n], seen(n, env[n]))
        for n in out_names:
            value = _deq(program, n, env[n])
            base_out[n].add(fl[n], value)
            if n in part_out and np.shape(fl[n])[-1:] == (part_out[n].bounds[-1],):
                part_out[n].add(fl[n], value)
            elif n in part_out:  # rows not as wide as the graph said: measured pooled
                part_off.add(n)
        size = sum(v.nbytes for v in env.values() if isinstance(v, np.ndarray))
        if kept_bytes + size <= KEEP_BYTES:  # the suggestions re-run from these tensors (else recomputed)
            kept_env.append(env)
            kept_bytes += size
        else:
            kept_env.append(None)
        del fl, sfl, env
        if progress:
            progress(f"report inputs {i + 1}/{len(feeds)}")
    t_pass1 = time.perf_counter()

    # ---- rows
    effects = _option_effects(result)
    stays = {e["tensor"]: e for e in effects["stays_8bit"]}
    rules = getattr(getattr(program, "notes", None), "range", None) or {}
    rows: list[dict[str, Any]] = []
    for k, st in enumerate(steps):
        outs = [y for y in st.outputs if y in fmts and _is_float(program, y)]
        ins = [x for x in st.runtime_inputs if x in fmts and _is_float(program, x)]
        ev = [eval_nodes[n] for n in st.nodes if eval_nodes and n in eval_nodes]
        cpu = [e for e in ev if e.placement == "CPU"]
        placement = "CPU" if (cpu or (st.float_step and not ev and st.reason)) else "NPU"
        reason = st.reason or "; ".join(dict.fromkeys(e.reason for e in cpu if e.reason))
        o_fmt = fmts.get(outs[0]) if outs else None
        h = stats.get(outs[0]) if outs else None
        ts = tstats.get(outs[0]) if outs else None
        chosen = chosen_range(o_fmt) if o_fmt is not None else None
        cum_row: dict[str, Any] = {"snr_db": None, "cosine": None, "drop_db": None}
        if outs:
            acc = ErrAcc()  # pooled over every output of the step
            for y in outs:
                acc.merge(cum[y])
            out_snr = acc.snr()
            in_snrs = [cum[x].snr() for x in ins if x in cum]
            # SNR lost at this node in the full run: worst input's cumulative SNR minus its output's
            drop = None
            if out_snr is not None:
                finite = [v for v in in_snrs if v is not None]
                if finite:
                    drop = min(finite) - out_snr
                elif not ins:
                    drop = None
            cum_row = {"snr_db": _r(out_snr), "cosine": round(acc.cosine(), 6), "drop_db": _r(drop)}
        row: dict[str, Any] = {
            "index": k, "name": st.name, "op_type": st.op_type, "nodes": list(st.nodes), "placement": placement,
            "float_step": bool(st.float_step), "reason": reason, "host": bool(st.host),
            "pass_through": (not st.float_step) and st.op_type in PASS_THROUGH,
            "inputs": [{"tensor": x, **(_fmt_desc(fmts[x]) or {})} for x in ins],
            "outputs": [{"tensor": y, **(_fmt_desc(fmts[y]) or {}), **_width_note(program, y, stays)} for y in outs],
            "weight": None if st.float_step else weight_info(st, program.params[k], fmts, opts),
            "range": {
                "rule": rules.get(outs[0]) if outs else None,  # which rule gave the range (spec 3.1)
                # the interval its readers tell apart (spec 3.1, "Consumer bounds"), or None
                "read_between": describe_bound(bounds[outs[0]]) if outs and outs[0] in bounds else None,
                "read_max": None if (h is None or h.read_max is None) else float(f"{h.read_max:.6g}"),
                "calib_abs_max": None if h is None else float(f"{h.abs_max:.6g}"),
                "report_abs_max": None if ts is None else float(f"{ts.abs_max:.6g}"),
                "chosen": None if chosen is None else float(f"{chosen:.6g}"),
                "clipped_calib": None if (h is None or chosen is None) else float(f"{clipped_fraction(h, chosen):.4g}"),
                "clipped_report": None if (ts is None or not ts.n) else float(f"{ts.n_clip / ts.n:.4g}"),
            },
            "isolated": {"snr_db": _r(iso[k].snr()) if outs else None},
            "out_quant_snr_db": None if (ts is None or not outs) else _r(snr_db(ts.sig, ts.clip_err + ts.round_err)),
            "cumulative": cum_row,
            "saturated": {"acc": int(kstats[k].acc_saturated), "out": int(kstats[k].out_saturated)},
            "macs": int(sum(e.macs for e in ev)),
            "time_ms": float(sum(e.time_ms for e in ev)),
        }
        rows.append(row)
    part_out = {n: a for n, a in part_out.items() if n not in part_off}
    worst, lowest, per_out = _output_snrs(base_out, part_out)

    # ---- shortlist: the steps with the lowest isolated SNR and the largest cumulative drop
    samples = int(getattr(result, "samples", 0))
    by_iso, by_drop = [], []
    for k, st in enumerate(steps):
        r = rows[k]
        if r["pass_through"] or not r["outputs"] or iso[k].n == 0:
            continue
        s_iso = iso[k].snr()
        if s_iso is None:
            continue
        by_iso.append((s_iso, k))
        d = r["cumulative"]["drop_db"]
        if d is not None:
            by_drop.append((-d, k))
    by_iso.sort()
    by_drop.sort()
    shortlist: list[int] = []
    for pair in zip(by_iso + [None] * len(by_drop), by_drop + [None] * len(by_iso)):
        for item in pair:
            if item is not None and item[1] not in shortlist and len(shortlist) < shortlisted:
                shortlist.append(item[1])
    shortlist = shortlist[:shortlisted]
    entries: list[dict[str, Any]] = []
    for k in shortlist:
        st = steps[k]
        outs = [y for y in st.outputs if y in fmts]
        cause, sugg = _suggest(program, k, st, rows[k], tstats.get(outs[0]) if outs else None, iso[k], stats, opts,
                               platform, samples, user_inputs)
        entries.append({"index": k, "name": st.name, "op_type": st.op_type, "isolated_snr_db": _r(iso[k].snr()),
                        "cumulative_drop_db": rows[k]["cumulative"]["drop_db"], "cause": cause,
                        "suggestions": [g.as_dict() for g in sugg], "measured": None, "_sugg": sugg})
    # each entry's measured suggestion: its first one that no earlier entry already measures
    used: set[str] = set()
    for e in entries:
        gs = [g for g in e.pop("_sugg") if g.measurable]
        pick = next((g for g in gs if g.key() not in used), gs[0] if gs else None)
        if pick is not None:
            used.add(pick.key())
            e["suggestions"].sort(key=lambda d: d != pick.as_dict())
        e["_primary"] = pick

    # ---- measure: each shortlisted step's first suggestion, and int16 everywhere as a reference
    try:  # the estimated FPS of each measured suggestion (cheap: one cost-model pass per program)
        fps = FpsModel(result.optimized, platform, opts).fps
    except Exception as exc:  # noqa: BLE001 - an estimate is extra information, never fatal
        log.warning("report: no FPS estimates for the suggestions: %s", exc)
        fps = None
    measurer = _Measurer(result, opts, feeds, ref_out, out_names, worst, kept_env, threads,
                         parts={n: a.bounds for n, a in part_out.items()}, fps=fps)
    for e in entries:
        if e["_primary"] is not None:
            e["measured"] = measurer.add(e["_primary"])
    reference = reference_islands = None
    if opts.datapath_bits < 16 and 16 in tuple(platform.bitwidths["datapath"]):
        # the model outputs and the tensors they carry follow model_out_bitwidth_mode (spec 3.7)
        wide = {"datapath_bitwidth_mode": "int16"}
        if opts.model_out_bits < 16 and 16 in tuple(platform.bitwidths["model_out"]):
            wide["model_out_bitwidth_mode"] = "int16"
        # the CPU nodes' boundaries too, as analysis(datapath_bitwidth_mode="int16") sets them by default
        if opts.cpu_bits < 16 and 16 in tuple(platform.bitwidths["cpu_node"]):
            wide["cpu_node_bitwidth_mode"] = "int16"
        text = "every activation in int16: " + ", ".join(f"{k}={v!r}" for k, v in wide.items())
        reference = measurer.add(Suggestion("all16", text, options=wide))
        # float islands the analysis measured at 8 bits and did not keep (spec 10.4): an analysis at
        # 16 bits measures them again and keeps them where they help (basic_pitch's log of its CQT,
        # first 6 calibration inputs, lowest output: 4.2 dB without its island, 17.8 dB with it), so
        # the reference is measured both ways and shows the better
        isl = (getattr(result, "auto_precision", None) or {}).get("float_islands") or {}
        if opts.auto_precision and isl.get("islands") and not isl.get("kept"):
            found = find_islands(result.optimized, result.steps, stats)
            if found:
                with_islands = with_host_steps(result.optimized, result.steps, found,
                                               reason=f"{ISLAND_REASON}: the int16 reference's")
                reference_islands = measurer.add(Suggestion(
                    "all16", text + ", with the float islands run in float (docs/fixed-point.md 10.4)",
                    options=wide, steps=with_islands))
    regions = []
    if opts.datapath_bits < 16 and 16 in tuple(platform.bitwidths["datapath"]):
        for g, info in _regions(program, rows, opts):
            regions.append({**info, "measured": measurer.add(g)})
    measurer.run(progress)
    if reference_islands is not None and _better(reference_islands, reference):
        reference = reference_islands

    # ---- ranking: by measured model-output gain (unmeasured last, by isolated SNR)
    def gain_key(e: dict[str, Any]) -> tuple[float, float]:
        m = e["measured"]
        g = m.get("gain_db") if m else None
        return (-(g if g is not None else -math.inf), e["isolated_snr_db"] if e["isolated_snr_db"] is not None else math.inf)

    for e in entries:
        pick = e.pop("_primary")
        if e["measured"] is not None and e["measured"]["suggestion"] != pick.as_dict():
            e["measured"] = {**e["measured"], "suggestion": pick.as_dict()}  # same change, measured once
    entries.sort(key=gain_key)
    ranking = [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    combined = None
    top = [e for e in ranking[:measured] if e["measured"] and e["measured"].get("gain_db") is not None
           and e["measured"]["gain_db"] > 0]
    if len(top) > 1:
        combined = measurer.add(_together(top, "combined"))
        combined["ranks"] = [e["rank"] for e in top]
        measurer.run(progress)
    joint = _joint([e for e in ranking if e["measured"] and (e["measured"].get("gain_db") or 0) > 0][:JOINT_POOL],
                   measurer, progress)

    measurer.envs = []
    kept_env.clear()

    # ---- histograms of the worst layers (by isolated SNR) and the model inputs
    hists = []
    for r in ranking[:6]:
        k = r["index"]
        y = rows[k]["outputs"][0]["tensor"]
        hd = _hist(stats.get(y), chosen_range(fmts[y]))
        if hd is not None:
            hists.append({"rank": r["rank"], "index": k, "name": r["name"], "tensor": y,
                          "bits": fmts[y].bits, **hd,
                          "clipped_calib": rows[k]["range"]["clipped_calib"]})
    inputs = []
    for n in program.input_names:
        if n not in fmts:
            continue
        h = stats.get(n)
        inputs.append({"name": n, **(_fmt_desc(fmts[n]) or {}), **_width_note(program, n, stays),
                       "calib_abs_max": None if h is None else float(f"{h.abs_max:.6g}"),
                       "snr_db": _r(cum[n].snr()) if n in cum else None})
    return {
        "report_inputs": {"count": len(feeds), "source": "user" if user_inputs else "calibration"},
        "calibration_samples": samples,
        "model_output_snr_db": _r(worst),
        "lowest": lowest,
        "outputs": per_out,
        "inputs": inputs,
        "steps": rows,
        "ranking": ranking,
        "combined": combined,
        "joint": joint,
        "reference_int16": reference,
        "regions_int16": regions,
        "histograms": hists,
        "option_effects": effects,
        "auto_precision": _auto_precision(result),
        "ranges": dict(getattr(result, "ranges", None) or {}) or None,
        # the mixed modes (docs/fixed-point.md 10.3): the rule's overrides or the mixbw search (front, chosen point)
        "mixed_precision": dict(getattr(result, "mixed", None) or {}) or None,
        "timing_s": {"measure": round(t_pass1 - t_start, 3), "isolated": round(t_iso, 3),
                     "suggestions": round(measurer.seconds, 3), "total": round(time.perf_counter() - t_start, 3)},
    }
