"""Image preprocessing: a small, versioned, documented specification and its reference implementation.

``npuflow analysis MODEL --input NAME=FOLDER --preprocess SPEC`` turns a folder of images into model
inputs with a :class:`PreprocessSpec`; the spec is recorded (``to_dict()``) in the quantized model
file so that ``npuflow infer`` on raw images later applies exactly the same steps. The full
specification, every key and every preset is in docs/preprocessing.md; this package is its reference.

Steps, always in this order (each is optional):

1. open the file with Pillow; apply the EXIF orientation when ``exif_transpose``;
2. convert to 8-bit RGB (``channel_order`` RGB/BGR) or 8-bit luma (GRAY, ITU-R 601-2, Pillow ``L``);
3. resize (Pillow, filter ``resample``): ``shorter`` side to N, ``exact`` (H, W), or ``letterbox``
   into (H, W) keeping the aspect ratio, placed top-left, the rest filled with ``pad_value``;
4. centre ``crop`` (H, W);
5. reorder channels (BGR);
6. normalise in float64: ``x = pixel / 255`` when ``pixel_range == 1`` (else ``x = pixel``), then
   ``(x - mean) / std`` or ``x * scale + offset``; one rounding to float32 at the end;
7. ``layout`` NCHW or NHWC, with a batch axis of 1 in front.

``.npy``/``.npz`` files in a folder are model inputs already: they are loaded with
``allow_pickle=False`` and not preprocessed.

Layout of this package, by concern: ``spec.py`` (the spec, its checks and forms, the presets),
``parse.py`` (the compact text form), ``image.py`` (image -> array), ``folder.py`` (folders of
images and arrays, shape checks).
"""
from __future__ import annotations

from npuflow.preprocess.folder import check_shape, folder_files, iter_folder
from npuflow.preprocess.image import load_image, preprocess_image
from npuflow.preprocess.parse import parse
from npuflow.preprocess.spec import (
    ARRAY_EXTENSIONS,
    CHANNEL_ORDERS,  # noqa: F401  (the allowed values, importable from here as before)
    DTYPES,  # noqa: F401  (the allowed values, importable from here as before)
    IMAGE_EXTENSIONS,
    LAYOUTS,  # noqa: F401  (the allowed values, importable from here as before)
    PIXEL_RANGES,  # noqa: F401  (the allowed values, importable from here as before)
    PREPROCESS_VERSION,
    PRESET_NOTES,
    PRESETS,
    RESAMPLE_FILTERS,  # noqa: F401  (the allowed values, importable from here as before)
    RESIZE_MODES,  # noqa: F401  (the allowed values, importable from here as before)
    PreprocessSpec,
)

__all__ = [
    "PREPROCESS_VERSION",
    "PRESETS",
    "PRESET_NOTES",
    "IMAGE_EXTENSIONS",
    "ARRAY_EXTENSIONS",
    "PreprocessSpec",
    "parse",
    "preprocess_image",
    "load_image",
    "folder_files",
    "iter_folder",
    "check_shape",
]
