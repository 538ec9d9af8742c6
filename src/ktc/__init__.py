"""Compatibility facade with the original Kneron toolchain's names (``import ktc``).

No logic lives here: every name maps to npuflow's own API. Differences are listed in
docs/compatibility.md.
"""
from __future__ import annotations

from typing import Any

from npuflow.api import kneron_inference
from npuflow.config import ModelConfig
from npuflow.errors import NotAvailableError
from npuflow.helpers import convert_channel_last_to_first, get_radix

from ktc import onnx_optimizer  # noqa: F401  (ktc.onnx_optimizer.onnx2onnx_flow)

__all__ = [
    "ModelConfig", "kneron_inference", "get_radix", "convert_channel_last_to_first",
    "compile", "encrypt_compile", "combine_nef", "onnx_optimizer",
]


def compile(model_list: Any, output_dir: str | None = None, dedicated_output_buffer: bool = True,
            weight_compress: bool = False, flatbuffer: bool = True, compiler_tiling: str = "default",
            weight_bandwidth: float | None = None, dma_bandwidth: float | None = None, **kwargs: Any) -> str:
    raise NotAvailableError("ktc.compile (NEF generation) is not available in npuflow yet; "
                            "evaluate() gives the speed estimate and kneron_inference(bie_file=...) the fixed-point results")


def encrypt_compile(model_list: Any, *args: Any, **kwargs: Any) -> str:
    raise NotAvailableError("ktc.encrypt_compile is not available in npuflow (no compiler yet, and npuflow's files are open by design)")


def combine_nef(nef_path_list: Any, output_path: str | None = None) -> str:
    raise NotAvailableError("ktc.combine_nef is not available in npuflow yet (no NEF compiler)")
