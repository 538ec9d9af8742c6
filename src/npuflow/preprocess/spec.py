"""The preprocessing specification (version :data:`PREPROCESS_VERSION`): :class:`PreprocessSpec`, its
checks, its dict/JSON/text forms and the named presets. docs/preprocessing.md is its prose form."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from npuflow.errors import InvalidConfigError

#: Version of the specification (docs/preprocessing.md). A reader accepts only versions it knows.
PREPROCESS_VERSION = "1"

RESIZE_MODES = ("none", "shorter", "exact", "letterbox")
CHANNEL_ORDERS = ("RGB", "BGR", "GRAY")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32",)
#: Pillow resampling filters by name.
RESAMPLE_FILTERS = ("bilinear", "nearest", "bicubic", "lanczos", "box", "hamming")
PIXEL_RANGES = (255.0, 1.0)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
ARRAY_EXTENSIONS = (".npy", ".npz")

_PREFIX = "preprocess spec"


def _err(msg: str) -> InvalidConfigError:
    return InvalidConfigError(f"{_PREFIX}: {msg}")


# ----------------------------------------------------------------------------- value checks
def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _size(key: str, v: Any, n: int | None) -> tuple[int, ...]:
    """Positive int sizes; an int alone means (N,) when n == 1, (N, N) when n == 2."""
    if _is_int(v):
        v = (v,) if n == 1 else (v, v)
    if not isinstance(v, (list, tuple)) or not all(_is_int(x) for x in v):
        raise _err(f"{key} must be a list of positive integers, got {v!r}")
    if n is not None and len(v) != n:
        want = "[N]" if n == 1 else "[H, W]"
        raise _err(f"{key} must be {want}, got {list(v)!r}")
    if any(int(x) <= 0 for x in v):
        raise _err(f"{key} must be positive, got {list(v)!r}")
    return tuple(int(x) for x in v)


def _floats(key: str, v: Any) -> tuple[float, ...] | None:
    if v is None:
        return None
    if _is_num(v):
        v = (v,)
    if not isinstance(v, (list, tuple)) or not v or not all(_is_num(x) for x in v):
        raise _err(f"{key} must be a number or a list of numbers (one per channel), got {v!r}")
    out = tuple(float(x) for x in v)
    if not all(math.isfinite(x) for x in out):
        raise _err(f"{key} must be finite, got {list(out)!r}")
    return out


# ----------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class PreprocessSpec:
    """How one image becomes one model input (version :data:`PREPROCESS_VERSION`).

    Sizes are (height, width), as in NCHW shapes. ``mean``/``std`` and ``scale``/``offset`` hold one
    value (all channels) or one per output channel, in output channel order (for BGR: B, G, R);
    give either the mean/std pair or the scale/offset pair, not both (neither: no normalisation).
    ``pixel_range`` 1.0 divides the pixels by 255 before mean/std or scale/offset apply (the
    torchvision convention), 255.0 keeps 0..255. ``pad_value`` (letterbox only) is in 0..255
    pixel units and is filled in before normalisation. See docs/preprocessing.md.
    """

    resize: str = "none"
    size: tuple[int, ...] = ()
    pad_value: float = 0.0
    crop: tuple[int, int] | None = None
    channel_order: str = "RGB"
    pixel_range: float = 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    offset: tuple[float, ...] | None = None
    layout: str = "NCHW"
    dtype: str = "float32"
    resample: str = "bilinear"
    exif_transpose: bool = False

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalise in place)

        def choice(key: str, value: Any, allowed: Sequence[str], upper: bool) -> str:
            if not isinstance(value, str):
                raise _err(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
            v = value.upper() if upper else value.lower()
            if v not in allowed:
                raise _err(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
            return v

        set_("resize", choice("resize", self.resize, RESIZE_MODES, False))
        want = {"none": 0, "shorter": 1, "exact": 2, "letterbox": 2}[self.resize]
        if want == 0:
            if self.size not in ((), [], None):
                raise _err(f"size {self.size!r} given but resize is 'none'")
            set_("size", ())
        else:
            set_("size", _size("size", self.size, want))
        if not _is_num(self.pad_value) or not math.isfinite(float(self.pad_value)):
            raise _err(f"pad_value must be a finite number, got {self.pad_value!r}")
        set_("pad_value", float(self.pad_value))
        if self.resize != "letterbox" and self.pad_value != 0.0:
            raise _err(f"pad_value {self.pad_value:g} applies only to resize 'letterbox' (resize is {self.resize!r})")
        if self.crop is not None:
            set_("crop", _size("crop", self.crop, 2))
        set_("channel_order", choice("channel_order", self.channel_order, CHANNEL_ORDERS, True))
        if not _is_num(self.pixel_range) or float(self.pixel_range) not in PIXEL_RANGES:
            raise _err(f"pixel_range must be 255 (pixels 0..255) or 1 (pixels / 255), got {self.pixel_range!r}")
        set_("pixel_range", float(self.pixel_range))
        channels = self.channels
        for key in ("mean", "std", "scale", "offset"):
            v = _floats(key, getattr(self, key))
            if v is not None and len(v) not in (1, channels):
                raise _err(f"{key} has {len(v)} values; give 1 or {channels} (one per {self.channel_order} channel)")
            set_(key, v)
        if (self.mean is not None or self.std is not None) and (self.scale is not None or self.offset is not None):
            raise _err("give either mean/std or scale/offset, not both")
        if self.std is not None and any(s == 0.0 for s in self.std):
            raise _err(f"std must not be 0, got {list(self.std)!r}")
        set_("layout", choice("layout", self.layout, LAYOUTS, True))
        set_("dtype", choice("dtype", self.dtype, DTYPES, False))
        set_("resample", choice("resample", self.resample, RESAMPLE_FILTERS, False))
        if not isinstance(self.exif_transpose, (bool, np.bool_)):
            raise _err(f"exif_transpose must be true or false, got {self.exif_transpose!r}")
        set_("exif_transpose", bool(self.exif_transpose))

    # -- derived
    @property
    def channels(self) -> int:
        """1 for GRAY, 3 for RGB/BGR."""
        return 1 if self.channel_order == "GRAY" else 3

    def spatial_size(self) -> tuple[int, int] | None:
        """(H, W) of every result, or None when it depends on the image (shorter side, no crop)."""
        if self.crop is not None:
            return self.crop
        if self.resize in ("exact", "letterbox"):
            return (self.size[0], self.size[1])
        return None

    def output_shape(self) -> tuple[int | None, ...]:
        """Shape of every result, with None for the dims that depend on the image."""
        hw = self.spatial_size() or (None, None)
        if self.layout == "NCHW":
            return (1, self.channels, hw[0], hw[1])
        return (1, hw[0], hw[1], self.channels)

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with every key and ``"version"``; :meth:`from_dict` reads it back."""
        d: dict[str, Any] = {"version": PREPROCESS_VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`. ``version`` is required; unknown keys are errors; missing
        keys take their version-1 defaults."""
        if not isinstance(data, Mapping):
            raise _err(f"expected a dict, got {type(data).__name__}")
        if "version" not in data:
            raise _err(f"the dict has no 'version' (this npuflow reads version {PREPROCESS_VERSION!r})")
        version = data["version"]
        if version != PREPROCESS_VERSION:
            raise _err(
                f"version {version!r} is not known to this npuflow, which reads version {PREPROCESS_VERSION!r} only; "
                "upgrade npuflow to read this spec"
            )
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k != "version" and k not in known]
        if unknown:
            raise _err(f"unknown key(s) {', '.join(map(repr, unknown))} for version {PREPROCESS_VERSION}; known keys: {', '.join(known)}")
        kwargs = {k: v for k, v in data.items() if k != "version"}
        for key in ("size", "crop", "mean", "std", "scale", "offset"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    def to_text(self) -> str:
        """Canonical compact form; ``parse(spec.to_text()) == spec``."""
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))

        def hw(v: Sequence[int]) -> str:
            return "x".join(str(i) for i in v)

        items = []
        if self.resize == "shorter":
            items.append(f"resize={self.size[0]}")
        elif self.resize == "exact":
            items.append(f"resize={hw(self.size)}")
        elif self.resize == "letterbox":
            items.append(f"letterbox={hw(self.size)}")
            items.append(f"pad={num(self.pad_value)}")
        if self.crop is not None:
            items.append(f"crop={hw(self.crop)}")
        items.append(f"order={self.channel_order}")
        items.append(f"range={num(self.pixel_range)}")
        for key in ("mean", "std", "scale", "offset"):
            v = getattr(self, key)
            if v is not None:
                items.append(f"{key}=" + "/".join(num(x) for x in v))
        items += [f"layout={self.layout}", f"dtype={self.dtype}", f"resample={self.resample}",
                  f"exif={'true' if self.exif_transpose else 'false'}"]
        return ",".join(items)

    def __str__(self) -> str:
        return self.to_text()


# ----------------------------------------------------------------------------- presets
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: Named presets for ``parse()`` (see docs/preprocessing.md for where each comes from).
PRESETS: dict[str, PreprocessSpec] = {
    "imagenet": PreprocessSpec(resize="shorter", size=(256,), crop=(224, 224), pixel_range=1.0,
                               mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
    "efficientnet": PreprocessSpec(resize="shorter", size=(256,), crop=(224, 224), mean=(127.0,), std=(128.0,)),
    "yolox": PreprocessSpec(resize="letterbox", size=(416, 416), pad_value=114.0, channel_order="BGR"),
    "mnist": PreprocessSpec(resize="exact", size=(28, 28), channel_order="GRAY", std=(255.0,)),
    "kneron": PreprocessSpec(mean=(128.0,), std=(256.0,)),
    "tf": PreprocessSpec(mean=(127.5,), std=(127.5,)),
}

#: One line per preset, for help texts.
PRESET_NOTES: dict[str, str] = {
    "imagenet": "torchvision: shorter side 256, centre crop 224, RGB, pixels/255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
    "efficientnet": "EfficientNet-Lite: shorter side 256 (bilinear), centre crop 224, RGB, (pixel - 127) / 128",
    "yolox": "YOLOX: letterbox into 416x416 placed top-left, pad 114, BGR, 0..255 (no normalisation)",
    "mnist": "MNIST: gray, resize to 28x28, pixel / 255",
    "kneron": "Kneron: RGB, pixel / 256 - 0.5 (= (pixel - 128) / 256); no resize: add resize=HxW",
    "tf": "TensorFlow: RGB, pixel / 127.5 - 1 (= (pixel - 127.5) / 127.5); no resize: add resize=HxW",
}
