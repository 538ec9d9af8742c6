"""Orchestration: the ktc-compatible entry points over npuflow's own objects.

``kneron_inference`` keeps a small least-recently-used cache of loaded models so that calling it
once per image (as ktc scripts do) does not re-load and re-prepare the model each time. The cache
key is the model file's resolved path, size, modification and change times (ns) and inode
(``npuflow.model.file_key``: one ``stat``, nothing read), plus the kind of model and the platform; a changed file is loaded afresh,
also one replaced with the same size and mtime (``cp -p``, ``rsync -t``, tar). At most ``CACHE_SIZE`` models are
kept; ``clear_cache()`` empties it.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from npuflow.errors import CompatibilityWarning, InputError, InvalidConfigError, NotAvailableError
from npuflow.model import FloatModel, file_key, open_bie

CACHE_SIZE = 8
_cache: "OrderedDict[tuple, Any]" = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _cached(kind: str, path: str, platform: int | None):
    from npuflow.errors import ModelLoadError

    try:
        key = (kind, *file_key(path), platform)
    except FileNotFoundError:
        raise ModelLoadError(f"{kind} file not found: {path}") from None
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    # the argument names the kind: a float ONNX passed as bie_file (or a BIE as onnx_file) is refused
    model = open_bie(path, platform=platform) if kind == "bie" else FloatModel(path)
    with _cache_lock:
        _cache[key] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def cache_info() -> list[tuple]:
    """Keys of the models currently cached (for tests and debugging)."""
    with _cache_lock:
        return list(_cache)


def _platform_int(platform: Any) -> int:
    from npuflow.platforms import get_platform

    return get_platform(platform).id


def kneron_inference(
    pre_results: Sequence[np.ndarray],
    input_names: Sequence[str] | None = None,
    nef_file: str = "",
    onnx_file: str = "",
    bie_file: str = "",
    model_id: int | None = None,
    data_type: str = "float",
    reordering: Sequence[str] | None = None,
    platform: int | str = 520,
    *,
    batch: bool = False,
    **legacy: Any,
) -> list[np.ndarray]:
    """Run a model on one set of preprocessed inputs, as ``ktc.kneron_inference`` does.

    Priority when several files are given is the original's: NEF, then ONNX, then BIE.
    Returns the outputs in model order or in ``reordering`` order.

    ``batch=True`` (npuflow only): each array holds N inputs stacked on a new first axis (e.g.
    ``[N, 1, 3, 224, 224]`` for a ``[1, 3, 224, 224]`` input) and the outputs come back
    concatenated on axis 0, as the loaded model's ``run_batch``; one call instead of N.
    """
    for name in ("radix", "ioinfo_file", "dump", "platform_version"):
        if name in legacy:
            if name == "radix":
                warnings.warn("kneron_inference(radix=...) is from ktc <= 0.16 and is ignored: inputs are float arrays; "
                              "npuflow quantizes them itself", CompatibilityWarning, stacklevel=2)
            else:
                raise NotAvailableError(f"kneron_inference({name}=...) is a ktc <= 0.16 parameter that npuflow does not support")
            legacy.pop(name)
    if legacy:
        raise InvalidConfigError(f"kneron_inference got unknown parameters {sorted(legacy)}")
    if data_type not in ("float", "fixed"):
        raise InvalidConfigError(f"data_type must be 'float' or 'fixed', got {data_type!r}")
    if not isinstance(batch, bool):
        raise InvalidConfigError(f"batch must be True or False, got {batch!r}")
    if nef_file:
        raise NotAvailableError(
            "nef_file: NEF simulation is not available yet in npuflow (ktc.compile is not built yet); "
            "use onnx_file= for float or bie_file= for fixed-point results"
        )
    if model_id is not None:
        warnings.warn("model_id only selects a model inside a multi-model NEF; ignored for ONNX/BIE",
                      CompatibilityWarning, stacklevel=2)
    if onnx_file:
        if bie_file:
            warnings.warn("both onnx_file and bie_file given: running onnx_file (the original's priority: NEF, ONNX, BIE)",
                          CompatibilityWarning, stacklevel=2)
        if data_type == "fixed":
            raise InvalidConfigError("data_type='fixed' needs a quantized model (bie_file=...); an ONNX file runs in float")
        if platform is not None:  # a float model runs the same on every platform, but an invalid value is refused
            _platform_int(platform)
        model = _cached("onnx", str(onnx_file), None)
        run = model.run_batch if batch else model.run
        return run(pre_results, input_names, reordering=reordering)
    if bie_file:
        model = _cached("bie", str(bie_file), _platform_int(platform))
        run = model.run_batch if batch else model.run
        return run(pre_results, input_names, reordering=reordering, data_type=data_type)
    raise InputError("kneron_inference needs a model: pass onnx_file=..., bie_file=... (or nef_file=...)")
