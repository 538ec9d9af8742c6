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
        if bie_path is not None:
            from npuflow.bie import open_bie

            self.bie = open_bie(bie_path, platform=self.platform.id)
            self.bie_path = str(bie_path)
            self.onnx_model = None
        else:
            if onnx_model is not None and not isinstance(onnx_model, onnx.ModelProto):
                raise InvalidConfigError(
                    f"onnx_model must be an onnx.ModelProto (use onnx_path= for a file path), got {type(onnx_model).__name__}"
                )
            if onnx_path is not None:
                self.onnx_path = str(onnx_path)
            self.onnx_model = load_model(onnx_model if onnx_model is not None else onnx_path, what="onnx_path")
        self.name = _model_name(self.onnx_path or self.bie_path, self.onnx_model) if self.onnx_model is not None else Path(str(bie_path)).stem
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

        if self.onnx_model is None:
            raise NotAvailableError("this ModelConfig was built from a BIE; evaluating a BIE is not available yet")
        if keep_bn:
            return optimize(self.onnx_model, keep_bn=True, input_shapes=self.input_shapes)
        if self._optimized is None:
            self._optimized = optimize(self.onnx_model, input_shapes=self.input_shapes)
        return self._optimized

    def _check_bitwidths(self, modes: dict[str, str]) -> dict[str, str]:
        return check_bitwidth_modes(self.platform, modes)

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

        bitwidths = self._check_bitwidths({
            "datapath": datapath_bitwidth_mode, "weight": weight_bitwidth_mode, "model_in": model_in_bitwidth_mode,
            "model_out": model_out_bitwidth_mode, "cpu_node": cpu_node_bitwidth_mode,
        })
        for name, bw in (("weight_bandwidth", weight_bandwidth), ("dma_bandwidth", dma_bandwidth)):
            if bw is not None and (isinstance(bw, bool) or not isinstance(bw, (int, float)) or bw <= 0):
                raise InvalidConfigError(f"{name} must be a positive number in Gbps, got {bw!r}")
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

    def analysis(self, input_mapping: Any, output_dir: str | os.PathLike | None = None, threads: int = 4,
                 quantize_mode: str = "default", **kwargs: Any) -> str:
        raise NotAvailableError(
            "analysis (fixed-point quantization) is not available in this npuflow version yet; "
            "evaluate() and float kneron_inference(onnx_file=...) work today"
        )


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
