"""Image operations: one Pillow image (or image file) -> one model input, by a spec."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from npuflow.errors import InputError
from npuflow.preprocess.spec import ARRAY_EXTENSIONS, PreprocessSpec

# ----------------------------------------------------------------------------- images
def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a test dependency
        raise InputError("reading images needs Pillow: pip install 'npuflow[images]'") from None
    return Image


def _filter(name: str) -> Any:
    Image = _pil()
    return {
        "bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC,
        "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING,
    }[name]


_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def preprocess_image(image: Any, spec: PreprocessSpec, *, name: str = "<image>") -> np.ndarray:
    """Apply ``spec`` to a Pillow image (or an 8-bit HxW / HxWx3 RGB array); returns a float32
    array of :meth:`PreprocessSpec.output_shape` (batch axis 1 in front). ``name`` labels errors."""
    Image = _pil()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise InputError(f"{name}: an array image must be uint8 HxW or HxWx3 (RGB), got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise InputError(f"{name}: expected a PIL image or a uint8 array, got {type(image).__name__}")
    img = image
    if spec.exif_transpose:
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
    if img.mode in _UNSUPPORTED_MODES:
        raise InputError(f"{name}: Pillow mode {img.mode!r} (16-bit or float pixels) is not supported; save it as 8-bit, "
                         "or give a preprocessed .npy array instead")
    img = img.convert("L" if spec.channel_order == "GRAY" else "RGB")
    filt = _filter(spec.resample)
    w, h = img.size
    if spec.resize == "shorter":
        s = spec.size[0] / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), filt)
    elif spec.resize == "exact":
        img = img.resize((spec.size[1], spec.size[0]), filt)
    elif spec.resize == "letterbox":
        th, tw = spec.size
        r = min(th / h, tw / w)
        img = img.resize((max(1, int(w * r)), max(1, int(h * r))), filt)
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    if spec.channel_order == "BGR":
        a = a[:, :, ::-1]
    if spec.resize == "letterbox":
        th, tw = spec.size
        canvas = np.full((th, tw, a.shape[2]), spec.pad_value, np.float64)
        canvas[: a.shape[0], : a.shape[1]] = a
        a = canvas
    if spec.crop is not None:
        ch, cw = spec.crop
        ih, iw = a.shape[:2]
        if ih < ch or iw < cw:
            raise InputError(
                f"{name}: the image is {ih}x{iw} (HxW) after resize, smaller than crop={ch}x{cw}; "
                f"resize it to at least that first (e.g. resize={max(ch, cw)})"
            )
        top, left = (ih - ch) // 2, (iw - cw) // 2
        a = a[top: top + ch, left: left + cw]
    if spec.pixel_range == 1.0:
        a = a / 255.0
    if spec.mean is not None or spec.std is not None:
        if spec.mean is not None:
            a = a - np.asarray(spec.mean, np.float64)
        if spec.std is not None:
            a = a / np.asarray(spec.std, np.float64)
    elif spec.scale is not None or spec.offset is not None:
        if spec.scale is not None:
            a = a * np.asarray(spec.scale, np.float64)
        if spec.offset is not None:
            a = a + np.asarray(spec.offset, np.float64)
    a = a.astype(np.float32)
    if spec.layout == "NCHW":
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a[None])


def load_image(path: str | os.PathLike[str], spec: PreprocessSpec) -> np.ndarray:
    """Read one image file and apply ``spec`` (shape [1, C, H, W] for NCHW, float32).

    Raises InputError naming the file when it is missing, not a readable image, or an array file
    (``.npy``/``.npz`` are inputs already: read them with :func:`iter_folder` or numpy.load)."""
    p = Path(path)
    if p.suffix.lower() in ARRAY_EXTENSIONS:
        raise InputError(f"{p} is a {p.suffix} array, not an image: arrays are used as they are (iter_folder reads them)")
    Image = _pil()
    if not p.is_file():
        raise InputError(f"image file not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            return preprocess_image(im, spec, name=str(p))
    except InputError:
        raise
    except Exception as e:  # Pillow raises many types for broken files (OSError, SyntaxError, ValueError ...)
        raise InputError(f"{p} is not a readable image ({type(e).__name__}: {e})") from None
