"""``ModelConfig``: the ktc-compatible model object (a model for one platform; evaluate, analysis).

Signature and meaning follow the original ``ktc.ModelConfig`` (see docs/compatibility.md for every
difference). A thin layer: the constructor checks its arguments and loads the model; ``evaluate()``
and ``analysis()`` map the ktc signatures onto validated option objects and call the engines of
``npuflow.flow``, keeping the results on the object as ktc scripts expect.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Any

import onnx

from npuflow.errors import InvalidConfigError, OptionEffectWarning, warn_user
from npuflow.ir.load import load_model

_VERSION_RE = re.compile(r"^[0-9a-fA-F]{4}$")


#: the longest model name used in output file names (the BIE adds ".kdp720.scaled.bie")
MAX_NAME = 120


def _model_name(path: str | None, model: onnx.ModelProto) -> str:
    if path:
        name = Path(path).name
        for suffix in (".onnx", ".bie"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        return name  # the user's own file name: kept as it is
    return safe_name(model.graph.name)


def safe_name(name: str) -> str:
    """A model name from inside a file (a graph's name, a BIE's stored name: untrusted) as a plain
    file name inside ``output_dir``: every character but letters, digits and ``._+-`` (so path
    separators, control characters, NUL) becomes ``_``, leading dots are dropped, at most
    :data:`MAX_NAME` characters; nothing left -> ``"model"``. Nothing can lead outside ``output_dir``."""
    out = re.sub(r"[^\w.+-]", "_", str(name)).lstrip(".")[:MAX_NAME]
    return out if out.strip("._-") else "model"


#: ``input_fmt`` names of the original (KL730 only; they matter to compile(), which npuflow does not have yet)
INPUT_FORMATS = ("1W16C8B_CH_COMPACT", "1W16C8BHL_CH_COMPACT", "4W4C8B", "4W4C8BHL", "16W1C8B", "16W1C8BHL", "8W1C16B",
                 "PS_1W16C24B", "1W16C8B", "1W16C8BHL", "HW4C8B_KEEP_A", "HW4C8B_DROP_A", "HW1C8B", "HW1C16B_LE",
                 "HW1C16B_BE", "RAW8", "RAW16", "RAW_FLOAT")


class ModelConfig:
    """A model for one platform: ``ModelConfig(id, version, platform, onnx_model=None,
    onnx_path=None, bie_path=None, input_fmt=None, radix_json_path=None,
    compiler_config_path=None, debug=False)``.

    npuflow extension (keyword-only): ``input_shapes={"x": [1, 3, 32, 320]}`` fixes dynamic input
    dims for the optimizer.

    ``id``, ``version``, ``platform``, ``debug`` and ``input_fmt`` are checked the same way when a
    script assigns them later (``km.input_fmt = "4W4C8B"``) as in the constructor.
    """

    #: attributes whose assignment is checked (``_check_<name>`` returns the value to store)
    _CHECKED = ("id", "version", "platform", "debug", "input_fmt")

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
        self._from_bie = False  # the checks of platform/input_fmt read it
        self.id = id
        self.version = version
        self.platform = platform
        sources = {k: v for k, v in (("onnx_model", onnx_model), ("onnx_path", onnx_path), ("bie_path", bie_path)) if v is not None}
        if len(sources) != 1:
            raise InvalidConfigError(
                "give exactly one model source: onnx_model (an onnx.ModelProto), onnx_path or bie_path; "
                f"got {sorted(sources) or 'none'}"
            )
        self.debug = debug
        self.input_shapes = input_shapes
        self.bie_path: str | None = None
        self.onnx_path: str | None = None
        self.onnx_model: onnx.ModelProto | None = None
        if bie_path is not None:
            from npuflow.model import open_bie

            self.bie = open_bie(bie_path, platform=self.platform.id)
            self.bie_path = str(bie_path)
            self._from_bie = True
            self.onnx_model = self.bie.bie.float_model  # the optimized float graph stored in the BIE
        else:
            if onnx_model is not None and not isinstance(onnx_model, onnx.ModelProto):
                raise InvalidConfigError(
                    f"onnx_model must be an onnx.ModelProto (use onnx_path= for a file path), got {type(onnx_model).__name__}"
                )
            if onnx_path is not None:
                self.onnx_path = str(onnx_path)
            self.onnx_model = load_model(onnx_model if onnx_model is not None else onnx_path, what="onnx_path")
        self.name = (safe_name(self.bie.bie.model_name) if bie_path is not None
                     else _model_name(self.onnx_path, self.onnx_model))
        self.input_fmt = input_fmt
        for name, value in (("radix_json_path", radix_json_path), ("compiler_config_path", compiler_config_path)):
            if value is not None:
                warn_user(f"{name} is accepted but unused: it only affects compile(), which npuflow does not provide yet")
        self.radix_json_path = radix_json_path
        self.compiler_config_path = compiler_config_path
        self._optimized: onnx.ModelProto | None = None

    # -- checked attributes ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._CHECKED:
            value = getattr(self, f"_check_{name}")(value)
        object.__setattr__(self, name, value)
        if name == "platform":  # the optimizer's NPU-friendly rewrites depend on the platform
            object.__setattr__(self, "_optimized", None)

    @staticmethod
    def _check_id(id: Any) -> int:
        if isinstance(id, bool) or not isinstance(id, int):
            raise InvalidConfigError(f"id must be an int (the model ID; use one above 32768 for custom models), got {id!r}")
        if id < 0 or id > 0xFFFF:
            raise InvalidConfigError(f"id must be in 0..65535, got {id}")
        if id < 32768:
            warn_user(f"model id {id}: IDs below 32768 are reserved for Kneron models in the original toolchain; "
                      "use an ID of 32768 or more for custom models")
        return id

    @staticmethod
    def _check_version(version: Any) -> str:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise InvalidConfigError(f"version must be a four-digit hex string such as '0001' or '0a2f', got {version!r}")
        return version

    def _check_platform(self, platform: Any) -> Any:
        from npuflow.platforms import Platform, get_platform

        p = platform if isinstance(platform, Platform) else get_platform(platform)
        if self.__dict__.get("_from_bie") and p.id != self.bie.platform:
            raise InvalidConfigError(f"this ModelConfig holds a BIE quantized for platform {self.bie.platform}: it cannot "
                                     f"become a {p.id} model; re-run analysis() from the float model for {p.id}")
        if self.__dict__.get("input_fmt") is not None and p.id != 730:
            raise InvalidConfigError(f"input_fmt is set ({self.input_fmt!r}) and is supported on platform 730 only: "
                                     f"set km.input_fmt = None before changing the platform to {p.id}")
        return p

    @staticmethod
    def _check_debug(debug: Any) -> bool:
        if not isinstance(debug, bool):
            raise InvalidConfigError(f"debug must be True or False, got {debug!r}")
        return debug

    def _check_input_fmt(self, input_fmt: Any) -> Any:
        if input_fmt is None:
            return None
        if self.platform.id != 730:
            raise InvalidConfigError(f"input_fmt is supported on platform 730 only (this model is for {self.platform.id})")
        values = list(input_fmt.values()) if isinstance(input_fmt, dict) else [input_fmt]
        bad = [v for v in values if v not in INPUT_FORMATS]
        if bad:
            raise InvalidConfigError(f"input_fmt {bad[0]!r} is not one of the KL730 input formats: {', '.join(INPUT_FORMATS)} "
                                     "(a format name, or a dict {input name: format name})")
        warn_user("input_fmt is stored but unused: it only affects compile(), which npuflow does not provide yet")
        return input_fmt

    def __repr__(self) -> str:
        return f"ModelConfig(id={self.id}, version={self.version!r}, platform={self.platform.id}, model={self.name!r})"

    # ------------------------------------------------------------------------------------------
    def optimized_model(self, *, keep_bn: bool = False) -> onnx.ModelProto:
        """The model after npuflow's optimizer for this platform (cached for the default options)."""
        from npuflow.passes import optimize

        assert self.onnx_model is not None
        if keep_bn:
            return optimize(self.onnx_model, keep_bn=True, input_shapes=self.input_shapes, platform=self.platform)
        if self._optimized is None:
            self._optimized = optimize(self.onnx_model, input_shapes=self.input_shapes, platform=self.platform)
        return self._optimized

    def evaluate(
        self,
        output_dir: str | os.PathLike | None = None,
        datapath_bitwidth_mode: str = "int8",
        weight_bitwidth_mode: str = "int8",
        model_in_bitwidth_mode: str = "int8",
        model_out_bitwidth_mode: str = "int8",
        cpu_node_bitwidth_mode: str | None = None,
        weight_bandwidth: float | None = None,
        dma_bandwidth: float | None = None,
        compiler_tiling: str = "default",
        *,
        keep_bn: bool = False,
    ) -> str:
        """IP evaluator: placement and estimated speed per node; writes model_fx_report.{html,json,csv}
        into ``output_dir`` (default ``./npuflow_output``) and returns the text summary."""
        from npuflow.flow import EvaluateOptions, run_evaluate
        from npuflow.flow.engine import host_nodes_of, program_widths_of

        opts = EvaluateOptions(platform=self.platform, **_options_of(EvaluateOptions, locals()))
        # after analysis() (or from a BIE), the float tails it runs as host post-processing are CPU nodes
        source = self.bie if self._from_bie else getattr(self, "analysis_result", None)
        host = host_nodes_of(source, self.platform.id) if source is not None and not opts.keep_bn else None
        # a BIE fixes every tensor's and weight's width: the estimate uses those (the bit-width modes
        # given here would describe another program); after analysis() the modes given here count
        widths = program_widths_of(self.bie) if self._from_bie and not opts.keep_bn else None
        given = [f"{k}_bitwidth_mode={v!r}" for k, v in opts.bitwidths.items()
                 if v != "int8" and (k != "cpu_node" or cpu_node_bitwidth_mode is not None)]
        if widths is not None and given:
            warn_user(f"evaluate() of a BIE estimates with the BIE's own widths (every tensor and weight as quantized): "
                      f"{', '.join(given)} is ignored", OptionEffectWarning)
        return run_evaluate(lambda: self.optimized_model(keep_bn=opts.keep_bn), opts, model_name=self.name,
                            model_path=self.onnx_path, input_shapes=self.input_shapes, write_optimized=self.debug,
                            host=host, widths=widths)

    def analysis(
        self,
        input_mapping: Any,
        output_dir: str | os.PathLike | None = None,
        threads: int = 4,
        quantize_mode: str = "default",
        datapath_range_method: str = "auto",
        percentage: float = 0.999,
        percentage_16b: float = 0.999999,
        percentile: float = 0.001,
        outlier_factor: float = 1.0,
        datapath_bitwidth_mode: str = "int8",
        weight_bitwidth_mode: str = "int8",
        model_in_bitwidth_mode: str = "int8",
        model_out_bitwidth_mode: str = "int8",
        cpu_node_bitwidth_mode: str | None = None,
        compiler_tiling: str = "default",
        mode: int | None = None,
        optimize: int = 0,
        export_dynasty_dump: bool = False,
        weight_bandwidth: float | None = None,
        dma_bandwidth: float | None = None,
        flops_ratio: float | None = None,
        quan_config: dict[str, Any] | None = None,
        *,
        node_overrides: dict[str, Any] | None = None,
        preprocess: dict[str, Any] | None = None,
        progress: bool | None = None,
        report: bool = True,
        report_inputs: Any = None,
        report_samples: int = 8,
        weight_rounding: str = "compensated",
        auto_precision: bool = True,
        equalize: bool = True,
        executor: Any = None,
        **legacy: Any,
    ) -> str:
        """Fixed-point analysis: calibrate on ``input_mapping`` ({input name: list/iterable of arrays}),
        choose every tensor's format and write ``<model>.kdp<platform>.scaled.bie`` (plus the report)
        into ``output_dir`` (default ``./npuflow_output``). Returns the BIE path.

        ``quan_config={"node name": {"bitwidth": {"all": 16}}}`` (the original's per-node bit widths; also
        ``"output"``/``"weight"`` keys; docs/compatibility.md) is read as ``node_overrides``.

        npuflow extensions (keyword-only): ``node_overrides={"node name": {"bits": 16, "weight_bits": 16,
        "abs_max": 6.0}}`` (any subset), ``preprocess`` (a preprocessing spec dict recorded in the BIE),
        ``weight_rounding``: ``"compensated"`` (default: the weights of spatial convolutions are rounded
        with their errors compensated through the second moment of the layer's calibration inputs,
        docs/fixed-point.md §3.6) or ``"nearest"`` (every weight to its nearest grid point).
        ``auto_precision`` (default True): automatic precision choices measured on the calibration
        inputs: a float tail after the last MAC layer (e.g. a detector's box decode) that raises an
        output's SNR runs as float host post-processing inside the BIE (docs/fixed-point.md §10.1),
        listed in one warning and in the report; False keeps every tail quantized.
        ``equalize`` (default True): before calibration, the channels of a convolution's output that a
        depthwise convolution reads are rescaled to share the tensor's range (weights compensate; the
        float model computes the same; docs/fixed-point.md §3.8); False keeps the model's own scaling.
        ``executor``: a ``concurrent.futures.Executor`` (a process pool, a Dask ``Client.get_executor()``,
        a Ray executor) on which the mixbw search measures its candidates, ``threads`` at a time; the
        BIE is the same as without (docs/fixed-point.md §10.3, "Executors").

        The fixed-point report (docs/report.md): after the BIE, ``model_fx_report.{html,json,csv}`` are
        written into ``output_dir`` (``report=False`` skips them). Its SNR figures are measured on
        ``report_inputs`` (same form as ``input_mapping``; the first ``report_samples`` are used) or, by
        default, on the first ``report_samples`` (8) calibration inputs, kept in memory during
        calibration. ``export_dynasty_dump=True`` also writes every intermediate tensor, float and
        fixed, of the first report input into ``output_dir/layer_dump/`` (``npuflow.debug``).

        ``optimize`` 1-4 adds the sequential bias adjustment on the first 32 calibration inputs
        (docs/fixed-point.md §3.5): slower, better on efficientnet_lite0, worse on the detection and
        segmentation models measured (docs/compatibility.md); 0 (default) as ktc.

        Every option is validated by ``npuflow.flow.AnalysisOptions`` before any work starts; the
        pipeline is ``npuflow.flow.run_analysis``.
        """
        started = time.perf_counter()
        from npuflow.flow import AnalysisOptions, run_analysis
        from npuflow.flow.options import check_legacy_analysis

        check_legacy_analysis(legacy)
        if self._from_bie:
            raise InvalidConfigError("this ModelConfig was built from a BIE: analysis needs the float model (onnx_path/onnx_model)")
        opts = AnalysisOptions(platform=self.platform, **_options_of(AnalysisOptions, locals()))

        def keep_bie(outcome: Any) -> None:  # once the set (BIE, report, dump) is committed
            self.bie_path, self.analysis_result, self.analysis_timing = outcome.bie_path, outcome.result, outcome.timing
            self.report_paths = None

        outcome = run_analysis(self.optimized_model, opts, input_mapping, report_inputs=report_inputs,
                               model_name=self.name, model_path=self.onnx_path, started=started, on_bie=keep_bie)
        if opts.report:
            self.report, self.report_paths = outcome.report, outcome.report_paths
        return str(outcome.bie_path)


def _options_of(cls: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a ModelConfig method's call (its ``locals()``) that are fields of ``cls``."""
    return {f.name: call[f.name] for f in dataclasses.fields(cls) if f.name != "platform"}
