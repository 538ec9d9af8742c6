"""``ModelConfig``: the ktc-compatible model object (validate, evaluate, later analysis).

Signature and meaning follow the original ``ktc.ModelConfig`` (see docs/compatibility.md for every
difference). Arguments are validated up front with messages that say what is wrong and what is
allowed.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import onnx

from npuflow.errors import CompatibilityWarning, InvalidConfigError, NotAvailableError
from npuflow.ir.load import load_model

_VERSION_RE = re.compile(r"^[0-9a-fA-F]{4}$")
BITWIDTH_MODES = ("datapath", "weight", "model_in", "model_out", "cpu_node")
_MIX_MODES = ("mix balance", "mix light", "mixbw")


def _model_name(path: str | None, model: onnx.ModelProto) -> str:
    if path:
        name = Path(path).name
        for suffix in (".onnx", ".bie"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        return name
    return model.graph.name or "model"


class ModelConfig:
    """A model for one platform: ``ModelConfig(id, version, platform, onnx_model=None,
    onnx_path=None, bie_path=None, input_fmt=None, radix_json_path=None,
    compiler_config_path=None, debug=False)``.

    npuflow extension (keyword-only): ``input_shapes={"x": [1, 3, 32, 320]}`` fixes dynamic input
    dims for the optimizer.
    """

    def __init__(
        self,
        id: int,
        version: str,
        platform: int | str,
        onnx_model: onnx.ModelProto | None = None,
        onnx_path: str | os.PathLike | None = None,
        bie_path: str | os.PathLike | None = None,
        input_fmt: Any = None,
        radix_json_path: str | None = None,
        compiler_config_path: str | None = None,
        debug: bool = False,
        *,
        input_shapes: dict[str, list[int]] | None = None,
    ) -> None:
        from npuflow.platforms import get_platform

        if isinstance(id, bool) or not isinstance(id, int):
            raise InvalidConfigError(f"id must be an int (the model ID; use one above 32768 for custom models), got {id!r}")
        if id < 0 or id > 0xFFFF:
            raise InvalidConfigError(f"id must be in 0..65535, got {id}")
        if id < 32768:
            warnings.warn(f"model id {id}: IDs below 32768 are reserved for Kneron models in the original toolchain; "
                          "use an ID of 32768 or more for custom models", CompatibilityWarning, stacklevel=2)
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise InvalidConfigError(f"version must be a four-digit hex string such as '0001' or '0a2f', got {version!r}")
        self.platform = get_platform(platform)
        sources = {k: v for k, v in (("onnx_model", onnx_model), ("onnx_path", onnx_path), ("bie_path", bie_path)) if v is not None}
        if len(sources) != 1:
            raise InvalidConfigError(
                "give exactly one model source: onnx_model (an onnx.ModelProto), onnx_path or bie_path; "
                f"got {sorted(sources) or 'none'}"
            )
        if not isinstance(debug, bool):
            raise InvalidConfigError(f"debug must be True or False, got {debug!r}")
        self.id = id
        self.version = version
        self.debug = debug
        self.input_shapes = input_shapes
        self.bie_path: str | None = None
        self.onnx_path: str | None = None
        self.onnx_model: onnx.ModelProto | None = None
        if bie_path is not None:
            from npuflow.bie import open_bie

            self.bie = open_bie(bie_path, platform=self.platform.id)
            self.bie_path = str(bie_path)
            self.onnx_model = self.bie.bie.float_model  # the optimized float graph stored in the BIE
        else:
            if onnx_model is not None and not isinstance(onnx_model, onnx.ModelProto):
                raise InvalidConfigError(
                    f"onnx_model must be an onnx.ModelProto (use onnx_path= for a file path), got {type(onnx_model).__name__}"
                )
            if onnx_path is not None:
                self.onnx_path = str(onnx_path)
            self.onnx_model = load_model(onnx_model if onnx_model is not None else onnx_path, what="onnx_path")
        self.name = (self.bie.bie.model_name if bie_path is not None else _model_name(self.onnx_path, self.onnx_model))
        self.input_fmt = None
        if input_fmt is not None:
            if self.platform.id != 730:
                raise InvalidConfigError(f"input_fmt is supported on platform 730 only (this model is for {self.platform.id})")
            warnings.warn("input_fmt is stored but unused: it only affects compile(), which npuflow does not provide yet",
                          CompatibilityWarning, stacklevel=2)
            self.input_fmt = input_fmt
        for name, value in (("radix_json_path", radix_json_path), ("compiler_config_path", compiler_config_path)):
            if value is not None:
                warnings.warn(f"{name} is accepted but unused: it only affects compile(), which npuflow does not provide yet",
                              CompatibilityWarning, stacklevel=2)
        self.radix_json_path = radix_json_path
        self.compiler_config_path = compiler_config_path
        self._optimized: onnx.ModelProto | None = None

    def __repr__(self) -> str:
        return f"ModelConfig(id={self.id}, version={self.version!r}, platform={self.platform.id}, model={self.name!r})"

    # ------------------------------------------------------------------------------------------
    def optimized_model(self, *, keep_bn: bool = False) -> onnx.ModelProto:
        """The model after npuflow's optimizer (cached for the default options)."""
        from npuflow.passes import optimize

        assert self.onnx_model is not None
        if keep_bn:
            return optimize(self.onnx_model, keep_bn=True, input_shapes=self.input_shapes)
        if self._optimized is None:
            self._optimized = optimize(self.onnx_model, input_shapes=self.input_shapes)
        return self._optimized

    def _check_bitwidths(self, datapath: str, weight: str, model_in: str, model_out: str, cpu_node: str) -> dict[str, str]:
        """The five ``*_bitwidth_mode`` arguments of evaluate()/analysis(), validated for this platform."""
        return check_bitwidth_modes(self.platform, {"datapath": datapath, "weight": weight, "model_in": model_in,
                                                    "model_out": model_out, "cpu_node": cpu_node})

    def evaluate(
        self,
        output_dir: str | os.PathLike | None = None,
        datapath_bitwidth_mode: str = "int8",
        weight_bitwidth_mode: str = "int8",
        model_in_bitwidth_mode: str = "int8",
        model_out_bitwidth_mode: str = "int8",
        cpu_node_bitwidth_mode: str = "int8",
        weight_bandwidth: float | None = None,
        dma_bandwidth: float | None = None,
        compiler_tiling: str = "default",
        *,
        keep_bn: bool = False,
    ) -> str:
        """IP evaluator: placement and estimated speed per node; writes model_fx_report.{html,json,csv}
        into ``output_dir`` (default ``./npuflow_output``) and returns the text summary."""
        from npuflow.evaluate import evaluate_model
        from npuflow.report import build_evaluation_report, summary_text, write_report
        from npuflow._io import atomic_write_bytes, ensure_output_dir

        bitwidths = self._check_bitwidths(datapath_bitwidth_mode, weight_bitwidth_mode, model_in_bitwidth_mode,
                                          model_out_bitwidth_mode, cpu_node_bitwidth_mode)
        for name, bw in (("weight_bandwidth", weight_bandwidth), ("dma_bandwidth", dma_bandwidth)):
            if bw is not None and (isinstance(bw, bool) or not isinstance(bw, (int, float)) or bw <= 0):
                raise InvalidConfigError(f"{name} must be a positive number in GB/s, got {bw!r}")
        _check_tiling(compiler_tiling, self.platform.id)
        out_dir = ensure_output_dir(output_dir)
        model = self.optimized_model(keep_bn=keep_bn)
        result = evaluate_model(
            model, self.platform, model_name=self.name,
            datapath_bits=int(bitwidths["datapath"][3:]), weight_bits=int(bitwidths["weight"][3:]),
            weight_bandwidth=weight_bandwidth, dma_bandwidth=dma_bandwidth,
        )
        result = type(result)(**{**result.__dict__, "bitwidths": bitwidths})
        options = {
            "datapath_bitwidth_mode": datapath_bitwidth_mode, "weight_bitwidth_mode": weight_bitwidth_mode,
            "model_in_bitwidth_mode": model_in_bitwidth_mode, "model_out_bitwidth_mode": model_out_bitwidth_mode,
            "cpu_node_bitwidth_mode": cpu_node_bitwidth_mode, "weight_bandwidth": weight_bandwidth,
            "dma_bandwidth": dma_bandwidth, "compiler_tiling": compiler_tiling, "keep_bn": keep_bn,
            "input_shapes": self.input_shapes,
        }
        doc = build_evaluation_report(result, model_path=self.onnx_path, options=options, platform_name=self.platform.name)
        if self.debug:
            atomic_write_bytes(out_dir / f"{self.name}.opt.onnx", model.SerializeToString())
        paths = write_report(doc, out_dir)
        return summary_text(doc, str(paths["html"]))

    def analysis(
        self,
        input_mapping: Any,
        output_dir: str | os.PathLike | None = None,
        threads: int = 4,
        quantize_mode: str = "default",
        datapath_range_method: str = "percentage",
        percentage: float = 0.999,
        percentage_16b: float = 0.999999,
        percentile: float = 0.001,
        outlier_factor: float = 1.0,
        datapath_bitwidth_mode: str = "int8",
        weight_bitwidth_mode: str = "int8",
        model_in_bitwidth_mode: str = "int8",
        model_out_bitwidth_mode: str = "int8",
        cpu_node_bitwidth_mode: str = "int8",
        compiler_tiling: str = "default",
        mode: int | None = None,
        optimize: int = 0,
        export_dynasty_dump: bool = False,
        weight_bandwidth: float | None = None,
        dma_bandwidth: float | None = None,
        flops_ratio: float | None = None,
        *,
        node_overrides: dict[str, Any] | None = None,
        preprocess: dict[str, Any] | None = None,
        progress: bool | None = None,
        report: bool = True,
        report_inputs: Any = None,
        report_samples: int = 8,
        weight_rounding: str = "compensated",
        **legacy: Any,
    ) -> str:
        """Fixed-point analysis: calibrate on ``input_mapping`` ({input name: list/iterable of arrays}),
        choose every tensor's format and write ``<model>.kdp<platform>.scaled.bie`` (plus the report)
        into ``output_dir`` (default ``./npuflow_output``). Returns the BIE path.

        npuflow extensions (keyword-only): ``node_overrides={"node name": {"bits": 16, "weight_bits": 16,
        "abs_max": 6.0}}`` (any subset), ``preprocess`` (a preprocessing spec dict recorded in the BIE),
        ``weight_rounding``: ``"compensated"`` (default: the weights of spatial convolutions are rounded
        with their errors compensated through the second moment of the layer's calibration inputs,
        docs/fixed-point.md §3.6) or ``"nearest"`` (every weight to its nearest grid point).

        The fixed-point report (docs/report.md): after the BIE, ``model_fx_report.{html,json,csv}`` are
        written into ``output_dir`` (``report=False`` skips them). Its SNR figures are measured on
        ``report_inputs`` (same form as ``input_mapping``; the first ``report_samples`` are used) or, by
        default, on the first ``report_samples`` (8) calibration inputs, kept in memory during
        calibration. ``export_dynasty_dump=True`` also writes every intermediate tensor, float and
        fixed, of the first report input into ``output_dir/layer_dump/`` (``npuflow.debug``).

        ``optimize`` 1-4 adds the sequential bias adjustment on the first 32 calibration inputs
        (docs/fixed-point.md §3.5): slower, better on efficientnet_lite0, worse on the detection and
        segmentation models measured (docs/compatibility.md); 0 (default) as ktc.
        """
        import time

        t_start = time.perf_counter()
        from npuflow._io import atomic_write_bytes, ensure_output_dir
        from npuflow.analysis.bias_adjust import DEFAULT_SAMPLES
        from npuflow.analysis.ranges import QuantOptions
        from npuflow.analysis.run import analyse
        from npuflow.bie import build_bie

        _check_legacy_analysis(legacy)
        if self.bie_path is not None and self.onnx_path is None:
            raise InvalidConfigError("this ModelConfig was built from a BIE: analysis needs the float model (onnx_path/onnx_model)")
        if quantize_mode not in ("default", "post_sigmoid"):
            raise InvalidConfigError(f"quantize_mode must be 'default' or 'post_sigmoid', got {quantize_mode!r}")
        if datapath_range_method not in ("percentage", "mmse"):
            raise InvalidConfigError(f"datapath_range_method must be 'percentage' or 'mmse', got {datapath_range_method!r}")
        for name, v, lo, hi in (("percentage", percentage, 0.5, 1.0), ("percentage_16b", percentage_16b, 0.5, 1.0),
                                ("percentile", percentile, 0.0, 0.5), ("outlier_factor", outlier_factor, 0.1, 100.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi) or (name == "percentile" and v <= 0):
                raise InvalidConfigError(f"{name} must be a number in {'(' if name == 'percentile' else '['}{lo}, {hi}], got {v!r}")
        if percentage > percentage_16b:
            raise InvalidConfigError(f"percentage ({percentage}) must be <= percentage_16b ({percentage_16b})")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidConfigError(f"threads must be a positive int, got {threads!r}")
        if mode is not None:
            if mode == 0:
                raise InvalidConfigError("analysis(mode=0) means 'IP evaluator only' in the original: call evaluate() instead")
            if mode not in (1, 2, 3):
                raise InvalidConfigError(f"mode must be 1, 2 or 3, got {mode!r}")
            if mode in (2, 3):
                warnings.warn(f"analysis(mode={mode}): npuflow has no csim/bit-true-match stage; the report always carries "
                              "per-layer SNR, so mode is ignored", CompatibilityWarning, stacklevel=2)
        if optimize not in (0, 1, 2, 3, 4):
            raise InvalidConfigError(f"optimize must be 0..4, got {optimize!r}")
        if optimize in (2, 4):
            warnings.warn(f"analysis(optimize={optimize}): the feature-map-cut search belongs to the compiler, which npuflow "
                          "does not have yet; running the sequential bias adjustment only (as optimize=3)",
                          CompatibilityWarning, stacklevel=2)
        if weight_rounding not in ("compensated", "nearest"):
            raise InvalidConfigError(f"weight_rounding must be 'compensated' or 'nearest', got {weight_rounding!r}")
        if not isinstance(report, bool):
            raise InvalidConfigError(f"report must be True or False, got {report!r}")
        if isinstance(report_samples, bool) or not isinstance(report_samples, int) or report_samples < 1:
            raise InvalidConfigError(f"report_samples must be a positive int (inputs the report measures SNR on), got {report_samples!r}")
        if not isinstance(export_dynasty_dump, bool):
            raise InvalidConfigError(f"export_dynasty_dump must be True or False, got {export_dynasty_dump!r}")
        if flops_ratio is not None:
            raise NotAvailableError("flops_ratio only applies to the 'mixbw' mode, which is not available in npuflow yet")
        bitwidths = self._check_bitwidths(datapath_bitwidth_mode, weight_bitwidth_mode, model_in_bitwidth_mode,
                                          model_out_bitwidth_mode, cpu_node_bitwidth_mode)
        _check_tiling(compiler_tiling, self.platform.id)
        overrides = _parse_overrides(node_overrides, self.platform)
        bits = {k: int(v[3:]) for k, v in bitwidths.items()}
        opts = QuantOptions(
            datapath_bits=bits["datapath"], weight_bits=bits["weight"], model_in_bits=bits["model_in"],
            model_out_bits=bits["model_out"], cpu_bits=bits["cpu_node"], range_method=datapath_range_method,
            percentage=float(percentage), percentage_16b=float(percentage_16b), percentile=float(percentile),
            outlier_factor=float(outlier_factor), post_sigmoid=quantize_mode == "post_sigmoid", overrides=overrides,
            bias_adjust=DEFAULT_SAMPLES if optimize else 0, weight_rounding=weight_rounding,
        )
        out_dir = ensure_output_dir(output_dir)
        model = self.optimized_model()
        unknown = sorted(set(overrides) - {n.name for n in model.graph.node})
        if unknown:
            raise InvalidConfigError(f"node_overrides names {unknown} are not nodes of the optimized model; "
                                     "node names are listed in the evaluate() report")
        user_feeds = None
        if report_inputs is not None:  # validated like calibration inputs, before any work is done
            import itertools

            from npuflow.calibration.inputs import iter_calibration_inputs
            from npuflow.errors import InputError
            from npuflow.reference.float_runner import input_specs

            try:
                user_feeds = list(itertools.islice(iter_calibration_inputs(input_specs(model), report_inputs), report_samples))
            except InputError as exc:
                msg = str(exc).replace("input_mapping", "report_inputs").replace("calibration array", "report input")
                raise InputError(f"report_inputs: {msg}") from None
        keep = 0 if user_feeds is not None else (report_samples if (report or export_dynasty_dump) else 0)
        result = analyse(model, self.platform, input_mapping, opts, threads=threads, progress=progress, keep_inputs=keep)
        options = {
            "optimize": optimize, "bias_adjusted_steps": len(result.bias_deltas),
            "weight_rounding": weight_rounding, "compensated_steps": len(result.weight_moments),
            "quantize_mode": quantize_mode, "datapath_range_method": datapath_range_method, "percentage": percentage,
            "percentage_16b": percentage_16b, "percentile": percentile, "outlier_factor": outlier_factor,
            **{f"{k}_bitwidth_mode": v for k, v in bitwidths.items()}, "compiler_tiling": compiler_tiling,
            "node_overrides": {k: {f: getattr(v, f) for f in ("bits", "weight_bits", "abs_max") if getattr(v, f) is not None}
                               for k, v in sorted(overrides.items())},
            "calibration_samples": result.samples,
        }
        data = build_bie(result.program, model, platform=self.platform.id, model_name=self.name, options=options,
                         preprocess=preprocess)
        bie_path = out_dir / f"{self.name}.kdp{self.platform.id}.scaled.bie"
        atomic_write_bytes(bie_path, data)
        self.bie_path = str(bie_path)
        self.analysis_result = result
        analysis_s = time.perf_counter() - t_start
        self.analysis_timing = {"analysis": analysis_s}
        feeds = user_feeds if user_feeds is not None else result.kept_inputs
        self.report_paths = None
        if report:
            from npuflow.report.analysis_report import write_analysis_report

            t0 = time.perf_counter()
            self.report, self.report_paths = write_analysis_report(
                result, platform=self.platform, opts=opts, bitwidths=bitwidths, options=options, model_name=self.name,
                model_path=self.onnx_path, feeds=feeds, user_inputs=user_feeds is not None, output_dir=out_dir,
                bie_path=str(bie_path), analysis_s=analysis_s, threads=threads,
                weight_bandwidth=weight_bandwidth, dma_bandwidth=dma_bandwidth)
            self.analysis_timing["report"] = time.perf_counter() - t0
        if export_dynasty_dump and feeds:
            from npuflow.debug import compare_layers

            compare_layers(self, feeds[0]).dump(out_dir / "layer_dump")
        return str(bie_path)


def _check_legacy_analysis(legacy: dict[str, Any]) -> None:
    removed = {
        "outlier": "removed in ktc v0.22; use percentage",
        "bitwidth_mode": "removed; use datapath_bitwidth_mode / weight_bitwidth_mode",
        "skip_verify": "removed in ktc v0.22",
        "output_bie": "removed in ktc v0.22; use output_dir (the BIE is named <model>.kdp<platform>.scaled.bie)",
        "km_cut": "not available in npuflow",
    }
    for name, value in legacy.items():
        if name == "fm_cut":
            warnings.warn("fm_cut was renamed compiler_tiling (ktc v0.24); npuflow has no tiling search, ignored",
                          CompatibilityWarning, stacklevel=3)
        elif name in removed:
            raise InvalidConfigError(f"analysis({name}=...): {removed[name]}")
        else:
            raise InvalidConfigError(f"analysis got unknown parameter {name!r}")


def _parse_overrides(node_overrides: Any, platform: Any) -> dict[str, Any]:
    from npuflow.analysis.ranges import NodeOverride

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
        if ov.bits is not None and ov.bits not in platform.bitwidths["datapath"]:
            raise InvalidConfigError(f"node_overrides[{name!r}]: bits={ov.bits} not allowed on {platform.name} "
                                     f"(allowed: {list(platform.bitwidths['datapath'])})")
        if ov.weight_bits is not None and ov.weight_bits not in platform.bitwidths["weight"]:
            raise InvalidConfigError(f"node_overrides[{name!r}]: weight_bits={ov.weight_bits} not allowed on {platform.name} "
                                     f"(allowed: {list(platform.bitwidths['weight'])})")
        if ov.abs_max is not None and not (isinstance(ov.abs_max, (int, float)) and ov.abs_max > 0):
            raise InvalidConfigError(f"node_overrides[{name!r}]: abs_max must be a positive number")
        out[name] = ov
    return out


def check_bitwidth_modes(platform: Any, modes: dict[str, str]) -> dict[str, str]:
    """Validate ``{"datapath": "int8", ...}`` against the platform's allowed bit widths."""
    from npuflow.platforms import PLATFORMS, get_platform

    out = {}
    for key, mode in modes.items():
        if not isinstance(mode, str):
            raise InvalidConfigError(f"{key}_bitwidth_mode must be a string such as 'int8', got {mode!r}")
        if mode in _MIX_MODES:
            raise NotAvailableError(f"{key}_bitwidth_mode={mode!r}: mixed-precision modes are not available in npuflow yet; "
                                    "use 'int8' or 'int16' (and per-node overrides)")
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


_TILINGS = ("default", "deep_search", "partial_graph_search")


def _check_tiling(compiler_tiling: str, platform: int) -> None:
    if compiler_tiling not in _TILINGS:
        raise InvalidConfigError(f"compiler_tiling must be one of {list(_TILINGS)}, got {compiler_tiling!r}")
    if compiler_tiling != "default":
        note = " (the 520 always uses default tiling)" if platform == 520 else ""
        warnings.warn(f"compiler_tiling={compiler_tiling!r}: npuflow's cost model has no tiling search; the estimate "
                      f"assumes default tiling{note}", CompatibilityWarning, stacklevel=3)
