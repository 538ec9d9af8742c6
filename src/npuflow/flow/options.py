"""The options of ``evaluate()`` and ``analysis()``, each validated in one place into a frozen dataclass.

``ModelConfig.evaluate`` / ``ModelConfig.analysis`` (``npuflow.config``) map the original ktc
signatures onto :class:`EvaluateOptions` / :class:`AnalysisOptions`; the engines
(``npuflow.flow.engine``) take only these objects. A new option is a new field here, with its check
in ``__post_init__`` (and a parameter of the ModelConfig method that passes it on; a test checks the
two lists agree). Fields keep the values as the user gave them (they are recorded in the report and
the BIE as given); derived values (bit counts, ``QuantOptions``) are properties.

Warnings raised here point at the user's call (``npuflow.errors.warn_user``), however deep the call chain.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from npuflow.analysis.bias_adjust import DEFAULT_SAMPLES
from npuflow.analysis.ranges import RANGE_METHODS, NodeOverride, QuantOptions
from npuflow.errors import InvalidConfigError, warn_user
from npuflow.platforms import PLATFORMS, Platform, get_platform

BITWIDTH_MODES = ("datapath", "weight", "model_in", "model_out", "cpu_node")
MIX_MODES = ("mix balance", "mix light", "mixbw")
#: the roles the mixed modes apply to, and the pairs (datapath, weight) the original accepts with mixbw
MIX_ROLES = ("datapath", "weight")
MIXBW_PAIRS = (("mixbw", "int16"), ("int16", "mixbw"), ("mixbw", "mixbw"))
#: the bits a mode starts from: a mixed mode's base width (docs/fixed-point.md section 10.3)
MODE_BASE_BITS = {"mix light": 8, "mix balance": 16, "mixbw": 8}
#: flops_ratio when mixbw is chosen and none is given (the original's default)
DEFAULT_FLOPS_RATIO = 0.2


def mode_bits(mode: str) -> int:
    """The bit count of a ``*_bitwidth_mode`` value: ``int8`` -> 8; a mixed mode's base width."""
    return MODE_BASE_BITS[mode] if mode in MODE_BASE_BITS else int(mode[3:])


def check_mix_pairs(modes: Mapping[str, str]) -> None:
    """The original's valid combinations with mixbw: (mixbw, int16), (int16, mixbw), (mixbw, mixbw)."""
    pair = (modes["datapath"], modes["weight"])
    if "mixbw" in pair and pair not in MIXBW_PAIRS:
        raise InvalidConfigError(
            f"datapath_bitwidth_mode={pair[0]!r} with weight_bitwidth_mode={pair[1]!r} is not a valid mixbw combination; "
            "valid ones (as in the original): " + ", ".join(f"({d!r}, {w!r})" for d, w in MIXBW_PAIRS))
TILINGS = ("default", "deep_search", "partial_graph_search")

def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def check_bitwidth_modes(platform: Platform, modes: Mapping[str, Any]) -> dict[str, str]:
    """Validate ``{"datapath": "int8", ...}`` against the platform's allowed bit widths."""
    out = {}
    for key, mode in modes.items():
        if not isinstance(mode, str):
            raise InvalidConfigError(f"{key}_bitwidth_mode must be a string such as 'int8', got {mode!r}")
        if mode in MIX_MODES:
            if key not in MIX_ROLES:
                raise InvalidConfigError(f"{key}_bitwidth_mode={mode!r}: the mixed modes apply to datapath_bitwidth_mode and "
                                         f"weight_bitwidth_mode only; {key}_bitwidth_mode takes 'int8' or 'int16'")
            if 16 not in platform.bitwidths[key]:
                raise InvalidConfigError(f"{key}_bitwidth_mode={mode!r} is not allowed on platform {platform.id}: it has no "
                                         f"16-bit {key} (allowed there: "
                                         + ", ".join(f"int{b}" for b in platform.bitwidths[key]) + ")")
            out[key] = mode
            continue
        m = re.fullmatch(r"int(\d+)", mode)
        bits = int(m.group(1)) if m else None
        if bits is None or bits not in platform.bitwidths[key]:
            allowed = [p for p in PLATFORMS if bits is not None and bits in get_platform(p).bitwidths[key]]
            raise InvalidConfigError(
                f"{key}_bitwidth_mode={mode!r} is not allowed on platform {platform.id} (allowed there: "
                + ", ".join(f"int{b}" for b in platform.bitwidths[key]) + ")"
                + (f"; platforms that allow it: {', '.join(map(str, allowed))}" if allowed else "")
            )
        out[key] = mode
    return out


def check_tiling(compiler_tiling: Any, platform: int) -> None:
    if compiler_tiling not in TILINGS:
        raise InvalidConfigError(f"compiler_tiling must be one of {list(TILINGS)}, got {compiler_tiling!r}")
    if compiler_tiling != "default":
        note = " (the 520 always uses default tiling)" if platform == 520 else ""
        warn_user(f"compiler_tiling={compiler_tiling!r}: npuflow's cost model has no tiling search; the estimate "
                  f"assumes default tiling{note}")


def check_bandwidths(weight_bandwidth: Any, dma_bandwidth: Any) -> None:
    for name, bw in (("weight_bandwidth", weight_bandwidth), ("dma_bandwidth", dma_bandwidth)):
        if bw is not None and (not _is_number(bw) or bw <= 0):
            raise InvalidConfigError(f"{name} must be a positive number in GB/s, got {bw!r}")


def parse_overrides(node_overrides: Any, platform: Platform) -> dict[str, NodeOverride]:
    """``{"node": {"bits": 16, "weight_bits": 16, "abs_max": x}}`` -> ``{"node": NodeOverride}``, checked."""
    if node_overrides is None:
        return {}
    if not isinstance(node_overrides, dict):
        raise InvalidConfigError("node_overrides must be a dict {node name: {'bits': 16, 'weight_bits': 16, 'abs_max': x}}")
    out = {}
    for name, spec in node_overrides.items():
        if isinstance(spec, NodeOverride):
            out[name] = spec
            continue
        if not isinstance(spec, dict) or set(spec) - {"bits", "weight_bits", "abs_max"}:
            raise InvalidConfigError(f"node_overrides[{name!r}] must be a dict with keys among bits, weight_bits, abs_max; got {spec!r}")
        ov = NodeOverride(**spec)
        for key in ("bits", "weight_bits"):
            if isinstance(getattr(ov, key), bool):
                raise InvalidConfigError(f"node_overrides[{name!r}]: {key} must be an int such as 8 or 16, got {getattr(ov, key)!r}")
        if ov.bits is not None and ov.bits not in platform.bitwidths["datapath"]:
            raise InvalidConfigError(f"node_overrides[{name!r}]: bits={ov.bits} not allowed on {platform.name} "
                                     f"(allowed: {list(platform.bitwidths['datapath'])})")
        if ov.weight_bits is not None and ov.weight_bits not in platform.bitwidths["weight"]:
            raise InvalidConfigError(f"node_overrides[{name!r}]: weight_bits={ov.weight_bits} not allowed on {platform.name} "
                                     f"(allowed: {list(platform.bitwidths['weight'])})")
        if ov.abs_max is not None and not (_is_number(ov.abs_max) and 0 < ov.abs_max < float("inf")):
            raise InvalidConfigError(f"node_overrides[{name!r}]: abs_max must be a positive finite number, got {ov.abs_max!r}")
        out[name] = ov
    return out


def parse_quan_config(quan_config: Any, platform: Platform) -> dict[str, NodeOverride]:
    """The original's per-node ``quan_config`` (``{"523_kn": {"bitwidth": {"all": 8}}}``) as node overrides.

    Read as: ``"bitwidth": {"all": B}`` sets the node's output and its weights to B bits, B 8 or
    15/16 (the original's example writes 15 for its 16-bit formats, which keep 15 significant bits);
    ``"output": B`` / ``"weight": B`` set one of the two (weights may be 4 on the 730). Other keys
    (the original's manual lists ``scale``, ``min``, ``max``, ``radix`` as planned) are refused:
    ``node_overrides={"node": {"abs_max": x}}`` fixes a node's range."""
    if not isinstance(quan_config, dict):
        raise InvalidConfigError('quan_config must be a dict {node name: {"bitwidth": {"all": 8 or 16}}}, got '
                                 f"{type(quan_config).__name__}")
    out = {}
    for name, spec in quan_config.items():
        where = f"quan_config[{name!r}]"
        if not isinstance(spec, dict) or set(spec) != {"bitwidth"} or not isinstance(spec["bitwidth"], dict):
            extra = sorted(set(spec) - {"bitwidth"}) if isinstance(spec, dict) else []
            raise InvalidConfigError(
                f'{where} must be {{"bitwidth": {{"all": 8}}}} (keys among all, output, weight)'
                + (f"; {extra} are not supported (a fixed range is node_overrides={{{name!r}: {{'abs_max': x}}}})" if extra else "")
                + f", got {spec!r}")
        bw = spec["bitwidth"]
        unknown = sorted(set(bw) - {"all", "output", "weight"})
        if unknown or not bw:
            raise InvalidConfigError(f"{where}['bitwidth'] keys must be among all, output, weight; got {sorted(bw)}")
        if "all" in bw and len(bw) > 1:
            raise InvalidConfigError(f"{where}['bitwidth'] gives 'all' and {sorted(set(bw) - {'all'})}: give 'all' alone, "
                                     "or 'output'/'weight'")

        def bits(key: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value not in (4, 8, 15, 16):
                raise InvalidConfigError(f"{where}['bitwidth'][{key!r}] must be 8 or 16 (15 means 16-bit, as in the "
                                         f"original's example; 4 for weights on the 730), got {value!r}")
            if value == 4 and key != "weight":
                raise InvalidConfigError(f"{where}['bitwidth'][{key!r}] = 4: only weights can be 4-bit; use "
                                         '{"weight": 4}')
            return 16 if value == 15 else value

        out_bits = bits("all", bw["all"]) if "all" in bw else (bits("output", bw["output"]) if "output" in bw else None)
        w_bits = bits("all", bw["all"]) if "all" in bw else (bits("weight", bw["weight"]) if "weight" in bw else None)
        out[name] = {k: v for k, v in (("bits", out_bits), ("weight_bits", w_bits)) if v is not None}
    return parse_overrides(out, platform)


def merge_overrides(a: Mapping[str, NodeOverride], b: Mapping[str, NodeOverride]) -> dict[str, NodeOverride]:
    """``node_overrides`` and ``quan_config`` together; a field both set to different values is refused."""
    out = dict(a)
    for name, ov in b.items():
        if name not in out:
            out[name] = ov
            continue
        merged = {}
        for f in ("bits", "weight_bits", "abs_max"):
            x, y = getattr(out[name], f), getattr(ov, f)
            if x is not None and y is not None and x != y:
                raise InvalidConfigError(f"node {name!r}: node_overrides sets {f}={x} but quan_config sets {y}; "
                                         "give one value (or drop the node from one of them)")
            merged[f] = x if x is not None else y
        out[name] = NodeOverride(**merged)
    return out


def check_preprocess(preprocess: Any) -> dict[str, Any] | None:
    """``analysis(preprocess=...)``: a spec dict (``PreprocessSpec.to_dict()``; ``version`` may be
    left out), a ``PreprocessSpec`` or its text form (``"imagenet"``, ``"resize=256,crop=224,..."``),
    checked now (not first at ``npuflow infer``) and recorded in the BIE as the full dict."""
    if preprocess is None:
        return None
    from npuflow.preprocess import PREPROCESS_VERSION, PreprocessSpec, parse

    if isinstance(preprocess, PreprocessSpec):
        return preprocess.to_dict()
    if isinstance(preprocess, str):
        return parse(preprocess).to_dict()
    if not isinstance(preprocess, Mapping):
        raise InvalidConfigError("preprocess must be a preprocessing spec: a dict (docs/preprocessing.md), a "
                                 f"PreprocessSpec or its text form such as 'imagenet'; got {type(preprocess).__name__}")
    return PreprocessSpec.from_dict({"version": PREPROCESS_VERSION, **preprocess}).to_dict()


_REMOVED_ANALYSIS_PARAMETERS = {
    "outlier": "removed in ktc v0.22; use percentage",
    "bitwidth_mode": "removed; use datapath_bitwidth_mode / weight_bitwidth_mode",
    "skip_verify": "removed in ktc v0.22",
    "output_bie": "removed in ktc v0.22; use output_dir (the BIE is named <model>.kdp<platform>.scaled.bie)",
    "km_cut": "not available in npuflow",
}


def check_legacy_analysis(legacy: Mapping[str, Any]) -> None:
    """Parameters of older ktc versions passed to ``analysis()``: refused, or (``fm_cut``) warned."""
    for name in legacy:
        if name == "fm_cut":
            warn_user("fm_cut was renamed compiler_tiling (ktc v0.24); npuflow has no tiling search, ignored")
        elif name in _REMOVED_ANALYSIS_PARAMETERS:
            raise InvalidConfigError(f"analysis({name}=...): {_REMOVED_ANALYSIS_PARAMETERS[name]}")
        else:
            raise InvalidConfigError(f"analysis got unknown parameter {name!r}")


@dataclass(frozen=True)
class _Bitwidths:
    """The five ``*_bitwidth_mode`` values, checked against the platform."""

    platform: Platform
    datapath_bitwidth_mode: str = "int8"
    weight_bitwidth_mode: str = "int8"
    model_in_bitwidth_mode: str = "int8"
    model_out_bitwidth_mode: str = "int8"
    #: None (the default): as the datapath (its base width under a mixed mode); ktc's default is
    #: int8 whatever the datapath (docs/compatibility.md)
    cpu_node_bitwidth_mode: str | None = None

    def _check_bitwidths(self) -> None:
        if self.cpu_node_bitwidth_mode is None:
            # a 16-bit datapath with 8-bit CPU-node boundaries is almost never what is meant: measured on
            # gtcrn_simple (157 CPU steps) the int16 waveform SNR is 12.5 dB with them 8-bit, 39.8 dB 16-bit
            dp = self.datapath_bitwidth_mode
            object.__setattr__(self, "cpu_node_bitwidth_mode", dp if dp in ("int8", "int16") else "int8")
        check_bitwidth_modes(self.platform, self.bitwidths)

    @property
    def bitwidths(self) -> dict[str, str]:
        """``{"datapath": "int8", "weight": ..., "model_in": ..., "model_out": ..., "cpu_node": ...}``"""
        return {k: getattr(self, f"{k}_bitwidth_mode") for k in BITWIDTH_MODES}

    @property
    def bits(self) -> dict[str, int]:
        """The same as bit counts: ``{"datapath": 8, ...}`` (a mixed mode: its base width,
        :data:`MODE_BASE_BITS`; under mixbw model input, output and CPU nodes are 16-bit)."""
        out = {k: mode_bits(v) for k, v in self.bitwidths.items()}
        if "mixbw" in (self.datapath_bitwidth_mode, self.weight_bitwidth_mode):
            out.update(model_in=16, model_out=16, cpu_node=16)
        return out

    @property
    def mixed(self) -> bool:
        return any(v in MIX_MODES for v in self.bitwidths.values())


@dataclass(frozen=True)
class EvaluateOptions(_Bitwidths):
    """``ModelConfig.evaluate()``'s options, validated on construction."""

    output_dir: str | os.PathLike | None = None
    weight_bandwidth: float | None = None
    dma_bandwidth: float | None = None
    compiler_tiling: str = "default"
    keep_bn: bool = False

    def __post_init__(self) -> None:
        self._check_bitwidths()
        if self.mixed:
            raise InvalidConfigError("evaluate(): the mixed modes ('mix light', 'mix balance', 'mixbw') are chosen per "
                                     "tensor by analysis(); its fixed-point report gives the estimate with the widths "
                                     "chosen (summary.fps in model_fx_report.json); evaluate() takes 'int8' or 'int16'")
        check_bandwidths(self.weight_bandwidth, self.dma_bandwidth)
        check_tiling(self.compiler_tiling, self.platform.id)
        if not isinstance(self.keep_bn, bool):
            raise InvalidConfigError(f"keep_bn must be True or False, got {self.keep_bn!r}")

    def report_options(self, input_shapes: Any) -> dict[str, Any]:
        """The ``options`` section of the evaluation report (key order is part of the report)."""
        return {**{f"{k}_bitwidth_mode": v for k, v in self.bitwidths.items()}, "weight_bandwidth": self.weight_bandwidth,
                "dma_bandwidth": self.dma_bandwidth, "compiler_tiling": self.compiler_tiling, "keep_bn": self.keep_bn,
                "input_shapes": input_shapes}


@dataclass(frozen=True)
class AnalysisOptions(_Bitwidths):
    """``ModelConfig.analysis()``'s options (the ktc parameters and npuflow's keyword-only
    extensions), validated on construction, in the order ktc's signature lists them."""

    output_dir: str | os.PathLike | None = None
    threads: int = 4
    quantize_mode: str = "default"
    datapath_range_method: str = "auto"
    percentage: float = 0.999
    percentage_16b: float = 0.999999
    percentile: float = 0.001
    outlier_factor: float = 1.0
    compiler_tiling: str = "default"
    mode: int | None = None
    optimize: int = 0
    export_dynasty_dump: bool = False
    weight_bandwidth: float | None = None
    dma_bandwidth: float | None = None
    flops_ratio: float | None = None
    quan_config: Mapping[str, Any] | None = None
    # npuflow extensions (keyword-only in ModelConfig.analysis)
    node_overrides: Mapping[str, NodeOverride] = field(default_factory=dict)
    preprocess: Mapping[str, Any] | None = None
    progress: bool | None = None
    report: bool = True
    report_samples: int = 8
    weight_rounding: str = "compensated"
    auto_precision: bool = True
    equalize: bool = True
    #: a concurrent.futures.Executor for the mixbw search's candidates (None: in this process)
    executor: Any = None

    def __post_init__(self) -> None:
        if self.quantize_mode not in ("default", "post_sigmoid"):
            raise InvalidConfigError(f"quantize_mode must be 'default' or 'post_sigmoid', got {self.quantize_mode!r}")
        if self.datapath_range_method not in RANGE_METHODS:
            raise InvalidConfigError(f"datapath_range_method must be 'auto', 'percentage' or 'mmse', got "
                                     f"{self.datapath_range_method!r}")
        for name, lo, hi in (("percentage", 0.5, 1.0), ("percentage_16b", 0.5, 1.0), ("percentile", 0.0, 0.5),
                             ("outlier_factor", 0.1, 100.0)):
            v = getattr(self, name)
            if not _is_number(v) or not (lo <= v <= hi) or (name == "percentile" and v <= 0):
                raise InvalidConfigError(f"{name} must be a number in {'(' if name == 'percentile' else '['}{lo}, {hi}], got {v!r}")
        if self.percentage > self.percentage_16b:
            raise InvalidConfigError(f"percentage ({self.percentage}) must be <= percentage_16b ({self.percentage_16b})")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise InvalidConfigError(f"threads must be a positive int, got {self.threads!r}")
        if self.mode is not None:
            if isinstance(self.mode, bool):
                raise InvalidConfigError(f"mode must be 1, 2 or 3, got {self.mode!r}")
            if self.mode == 0:
                raise InvalidConfigError("analysis(mode=0) means 'IP evaluator only' in the original: call evaluate() instead")
            if self.mode not in (1, 2, 3):
                raise InvalidConfigError(f"mode must be 1, 2 or 3, got {self.mode!r}")
            if self.mode in (2, 3):
                warn_user(f"analysis(mode={self.mode}): npuflow has no csim/bit-true-match stage; the report always carries "
                          "per-layer SNR, so mode is ignored")
        if isinstance(self.optimize, bool) or self.optimize not in (0, 1, 2, 3, 4):
            raise InvalidConfigError(f"optimize must be 0..4, got {self.optimize!r}")
        if self.optimize in (2, 4):
            warn_user(f"analysis(optimize={self.optimize}): the feature-map-cut search belongs to the compiler, which npuflow "
                      "does not have yet; running the sequential bias adjustment only (as optimize=3)")
        if self.weight_rounding not in ("compensated", "nearest"):
            raise InvalidConfigError(f"weight_rounding must be 'compensated' or 'nearest', got {self.weight_rounding!r}")
        if not isinstance(self.auto_precision, bool):
            raise InvalidConfigError(f"auto_precision must be True or False (False: no automatic float tails, "
                                     f"docs/fixed-point.md section 10.1), got {self.auto_precision!r}")
        from npuflow.analysis.executors import check_executor

        check_executor(self.executor)
        if not isinstance(self.equalize, bool):
            raise InvalidConfigError(f"equalize must be True or False (False: no channel equalization into depthwise "
                                     f"convolutions, docs/fixed-point.md section 3.8), got {self.equalize!r}")
        if not isinstance(self.report, bool):
            raise InvalidConfigError(f"report must be True or False, got {self.report!r}")
        if isinstance(self.report_samples, bool) or not isinstance(self.report_samples, int) or self.report_samples < 1:
            raise InvalidConfigError(f"report_samples must be a positive int (inputs the report measures SNR on), got {self.report_samples!r}")
        if not isinstance(self.export_dynasty_dump, bool):
            raise InvalidConfigError(f"export_dynasty_dump must be True or False, got {self.export_dynasty_dump!r}")
        self._check_bitwidths()
        check_mix_pairs(self.bitwidths)
        mixbw = "mixbw" in (self.datapath_bitwidth_mode, self.weight_bitwidth_mode)
        if self.flops_ratio is not None:
            if not _is_number(self.flops_ratio) or not 0 < self.flops_ratio <= 1:
                raise InvalidConfigError(f"flops_ratio must be a number in (0, 1] (the extra estimated time mixbw may "
                                         f"spend: t <= (1 + flops_ratio) * t_int8), got {self.flops_ratio!r}")
            if not mixbw:
                warn_user(f"flops_ratio={self.flops_ratio} only applies to datapath_bitwidth_mode or weight_bitwidth_mode "
                          "'mixbw'; it changes nothing here")
        if mixbw:
            given = [f"{k}_bitwidth_mode={getattr(self, f'{k}_bitwidth_mode')!r}" for k in ("model_in", "model_out", "cpu_node")
                     if getattr(self, f"{k}_bitwidth_mode") != "int8"]
            if given:
                warn_user(f"under mixbw the model input, output and CPU nodes are 16-bit (as in the original): "
                          f"{', '.join(given)} is ignored")
        check_bandwidths(self.weight_bandwidth, self.dma_bandwidth)
        check_tiling(self.compiler_tiling, self.platform.id)
        object.__setattr__(self, "preprocess", check_preprocess(self.preprocess))
        overrides = parse_overrides(self.node_overrides, self.platform)
        if self.quan_config is not None:
            if self.platform.id != 730:
                warn_user(f"quan_config is documented for the KL730 only in the original; npuflow applies it on "
                          f"{self.platform.name} too (as node_overrides)")
            overrides = merge_overrides(overrides, parse_quan_config(self.quan_config, self.platform))
        object.__setattr__(self, "node_overrides", MappingProxyType(overrides))

    @property
    def quant(self) -> QuantOptions:
        """The numerics' options (``npuflow.analysis``)."""
        bits = self.bits
        return QuantOptions(
            datapath_bits=bits["datapath"], weight_bits=bits["weight"], model_in_bits=bits["model_in"],
            model_out_bits=bits["model_out"], cpu_bits=bits["cpu_node"], range_method=self.datapath_range_method,
            percentage=float(self.percentage), percentage_16b=float(self.percentage_16b), percentile=float(self.percentile),
            outlier_factor=float(self.outlier_factor), post_sigmoid=self.quantize_mode == "post_sigmoid",
            overrides=dict(self.node_overrides), bias_adjust=DEFAULT_SAMPLES if self.optimize else 0,
            weight_rounding=self.weight_rounding, auto_precision=self.auto_precision, equalize=self.equalize,
            mix_datapath=self.datapath_bitwidth_mode if self.datapath_bitwidth_mode in MIX_MODES else "",
            mix_weight=self.weight_bitwidth_mode if self.weight_bitwidth_mode in MIX_MODES else "",
            flops_ratio=float(self.flops_ratio) if self.flops_ratio is not None else DEFAULT_FLOPS_RATIO,
        )

    def record(self, *, bias_adjusted_steps: int, compensated_steps: int, calibration_samples: int,
               float_tails: list[dict[str, Any]] | None = None,
               promotions: list[dict[str, Any]] | None = None,
               ranges: dict[str, Any] | None = None,
               float_islands: dict[str, Any] | None = None,
               equalized: dict[str, Any] | None = None,
               search: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``options`` recorded in the BIE and the report (key order is part of the file).
        ``auto_precision`` is recorded when False and ``float_tails`` (the kept tails: outputs and
        nodes) when there is one, ``auto_promotions`` (the kept 16-bit promotions: tensor and
        steps) likewise, so that the BIE of a model without either is unchanged; ``auto_ranges``
        (``datapath_range_method="auto"``: each searched tensor's quantile) when the search ran;
        ``float_islands`` (each kept island's seeds and nodes) when islands were kept; ``equalize:
        false`` when it was turned off and ``equalized`` (each pair's nodes, tensor and per-channel
        scales) when a pair was equalized; ``auto_search`` (the budgeted precision search's moves: labels
        and step overrides) when it moved something."""
        extra: dict[str, Any] = {}
        if not self.auto_precision:
            extra["auto_precision"] = False
        if float_tails:
            extra["float_tails"] = [{"outputs": list(t["outputs"]), "nodes": list(t["nodes"])} for t in float_tails]
        if self.flops_ratio is not None or "mixbw" in (self.datapath_bitwidth_mode, self.weight_bitwidth_mode):
            extra["flops_ratio"] = float(self.flops_ratio) if self.flops_ratio is not None else DEFAULT_FLOPS_RATIO
        if not self.equalize:
            extra["equalize"] = False
        if equalized and equalized.get("pairs"):
            extra["equalized"] = [{k: p[k] for k in ("producer", "activation", "gate", "consumer", "tensor", "scales")
                                   if k in p} for p in equalized["pairs"]]
        if float_islands and float_islands.get("kept"):
            extra["float_islands"] = [{"seeds": list(i["seeds"]), "nodes": list(i["nodes"])}
                                      for i in float_islands["islands"]]
        if promotions:
            extra["auto_promotions"] = [{"tensor": p["tensor"], "steps": list(p["steps"])} for p in promotions]
        if search and search.get("overrides"):
            extra["auto_search"] = {"moved": list(search["front"][-1]["moved"]), "overrides": dict(search["overrides"])}
        if ranges and ranges.get("chosen"):
            extra["auto_ranges"] = dict(ranges["chosen"])
        return {
            "optimize": self.optimize, "bias_adjusted_steps": bias_adjusted_steps,
            "weight_rounding": self.weight_rounding, "compensated_steps": compensated_steps,
            "quantize_mode": self.quantize_mode, "datapath_range_method": self.datapath_range_method,
            "percentage": self.percentage, "percentage_16b": self.percentage_16b, "percentile": self.percentile,
            "outlier_factor": self.outlier_factor,
            **{f"{k}_bitwidth_mode": v for k, v in self.bitwidths.items()}, "compiler_tiling": self.compiler_tiling,
            "node_overrides": {k: {f: getattr(v, f) for f in ("bits", "weight_bits", "abs_max") if getattr(v, f) is not None}
                               for k, v in sorted(self.node_overrides.items())},
            "calibration_samples": calibration_samples,
            **extra,
        }
