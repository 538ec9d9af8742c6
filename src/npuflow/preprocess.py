"""Image preprocessing: a small, versioned, documented specification and its reference implementation.

``npuflow analysis MODEL --input NAME=FOLDER --preprocess SPEC`` turns a folder of images into model
inputs with a :class:`PreprocessSpec`; the spec is recorded (``to_dict()``) in the quantized model
file so that ``npuflow infer`` on raw images later applies exactly the same steps. The full
specification, every key and every preset is in docs/preprocessing.md; this module is its reference.

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
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from npuflow.errors import InputError, InvalidConfigError

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

log = logging.getLogger(__name__)

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
        return json.dumps(self.to_dict(), sort_keys=True)

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

_KEYS = {
    "resize": "resize=N (shorter side to N), resize=HxW (exact), resize=none",
    "letterbox": "letterbox=N or HxW (keep aspect ratio, top-left, fill with pad)",
    "pad": "pad=V letterbox fill value in 0..255 pixel units",
    "crop": "crop=N or HxW (centre crop), crop=none",
    "order": "order=RGB|BGR|GRAY",
    "range": "range=255 (pixels 0..255) or range=1 (pixels / 255 first)",
    "mean": "mean=V or V1/V2/V3",
    "std": "std=V or V1/V2/V3",
    "scale": "scale=V or V1/V2/V3 (x * scale + offset)",
    "offset": "offset=V or V1/V2/V3",
    "layout": "layout=NCHW|NHWC",
    "dtype": "dtype=float32",
    "resample": "resample=bilinear|nearest|bicubic|lanczos|box|hamming",
    "exif": "exif=true|false (apply the EXIF orientation)",
}
_ALIASES = {"channel_order": "order", "filter": "resample", "pixel_range": "range", "pad_value": "pad",
            "exif_transpose": "exif"}


def _parse_hw(key: str, text: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise _err(f"{key}={text!r}: expected N or HxW (height x width, e.g. 224x224)") from None
    if len(vals) not in (1, 2) or any(v <= 0 for v in vals):
        raise _err(f"{key}={text!r}: expected N or HxW with positive integers (height x width)")
    return vals


def _parse_floats(key: str, text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(p) for p in text.split("/"))
    except ValueError:
        raise _err(f"{key}={text!r}: expected a number or numbers separated by '/' (e.g. {key}=0.485/0.456/0.406)") from None
    return vals


def _parse_bool(key: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise _err(f"{key}={text!r}: expected true or false")


def parse(text: str) -> PreprocessSpec:
    """A spec from its compact CLI form, a preset name, or JSON (``to_json()``).

    ``"efficientnet"``, ``"imagenet,layout=NHWC"``, ``"resize=256,crop=224,order=RGB,mean=127,std=128"``,
    ``"letterbox=416,pad=114,order=BGR"``. Items are comma-separated ``key=value``; an optional preset
    name comes first and later keys replace the preset's value of that step (setting ``mean``/``std``
    drops the preset's ``scale``/``offset`` and the other way round; ``resize``/``letterbox`` replace
    each other). Sizes are N or HxW (height first); per-channel values are separated by ``/``.
    """
    if not isinstance(text, str):
        raise _err(f"expected a string, got {type(text).__name__}")
    src = text.strip()
    if not src:
        raise _err(f"empty spec; give a preset ({', '.join(PRESETS)}) or key=value items ({', '.join(_KEYS)})")
    if src.startswith("{"):
        try:
            data = json.loads(src)
        except json.JSONDecodeError as e:
            raise _err(f"not valid JSON: {e}") from None
        return PreprocessSpec.from_dict(data)
    items = [i.strip() for i in src.split(",")]
    if any(not i for i in items):
        raise _err(f"{text!r} has an empty item (two commas in a row, or a trailing comma)")
    base: dict[str, Any] = {}
    if "=" not in items[0]:
        name = items[0].lower()
        if name not in PRESETS:
            raise _err(f"unknown preset {items[0]!r}; presets: {', '.join(PRESETS)}")
        base = PRESETS[name].to_dict()
        del base["version"]
        items = items[1:]
    user: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise _err(f"item {item!r} is not key=value (a preset name may only come first)")
        key, _, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        key = _ALIASES.get(key, key)
        if key not in _KEYS:
            raise _err(f"unknown key {key!r}; known keys: " + "; ".join(_KEYS.values()))
        if key in user:
            raise _err(f"key {key!r} given twice")
        user[key] = value
    if "resize" in user and "letterbox" in user:
        raise _err("give resize= or letterbox=, not both")
    preset_letterbox = base.get("resize") == "letterbox"
    if "resize" in user:
        value = user["resize"]
        if value.lower() == "none":
            base.update(resize="none", size=())
        else:
            hw = _parse_hw("resize", value)
            base.update(resize="shorter" if len(hw) == 1 else "exact", size=hw)
    if "letterbox" in user:
        hw = _parse_hw("letterbox", user["letterbox"])
        base.update(resize="letterbox", size=hw * 2 if len(hw) == 1 else hw)
    if "pad" in user:
        try:
            base["pad_value"] = float(user["pad"])
        except ValueError:
            raise _err(f"pad={user['pad']!r}: expected a number") from None
    elif not (preset_letterbox and base.get("resize") == "letterbox"):
        base["pad_value"] = 0.0  # the preset's pad belongs to its letterbox only
    if "crop" in user:
        if user["crop"].lower() == "none":
            base["crop"] = None
        else:
            hw = _parse_hw("crop", user["crop"])
            base["crop"] = hw * 2 if len(hw) == 1 else hw
    if "order" in user:
        base["channel_order"] = user["order"]
    if "range" in user:
        try:
            base["pixel_range"] = float(user["range"])
        except ValueError:
            raise _err(f"range={user['range']!r}: expected 255 or 1") from None
    norm = [k for k in ("mean", "std", "scale", "offset") if k in user]
    if norm:
        for k in ("mean", "std", "scale", "offset"):  # the user's normalisation replaces the preset's
            base[k] = _parse_floats(k, user[k]) if k in user else None
    if "exif" in user:
        base["exif_transpose"] = _parse_bool("exif", user["exif"])
    for k in ("layout", "dtype", "resample"):
        if k in user:
            base[k] = user[k]
    return PreprocessSpec(**base)


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


# ----------------------------------------------------------------------------- folders
def folder_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Files of ``folder`` that :func:`iter_folder` reads, sorted by name (code-point order).

    Images (.jpg .jpeg .png .bmp) and arrays (.npy .npz), case-insensitive. Other files and
    sub-folders are skipped with one logged warning; hidden files (name starting with '.') are
    skipped silently. Raises InputError when the folder is missing or has no usable file."""
    d = Path(folder)
    if not d.exists():
        raise InputError(f"input folder not found: {d}")
    if not d.is_dir():
        raise InputError(f"{d} is not a folder; give a folder of images or .npy/.npz arrays")
    names = sorted(os.listdir(d))
    if not names:
        raise InputError(f"input folder {d} is empty; put images ({' '.join(IMAGE_EXTENSIONS)}) or arrays "
                         f"({' '.join(ARRAY_EXTENSIONS)}) in it")
    use: list[Path] = []
    skipped: list[str] = []
    for n in names:
        p = d / n
        if n.startswith("."):
            log.debug("skipping hidden file %s", p)
        elif p.is_dir():
            skipped.append(n + "/")
        elif p.suffix.lower() in IMAGE_EXTENSIONS + ARRAY_EXTENSIONS:
            use.append(p)
        else:
            skipped.append(n)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        log.warning("%s: skipped %d entr%s that %s not an image (%s) or array (%s): %s", d, len(skipped),
                    "y" if len(skipped) == 1 else "ies", "is" if len(skipped) == 1 else "are",
                    " ".join(IMAGE_EXTENSIONS), " ".join(ARRAY_EXTENSIONS), shown)
    if not use:
        raise InputError(f"input folder {d} has no image ({' '.join(IMAGE_EXTENSIONS)}) or array "
                         f"({' '.join(ARRAY_EXTENSIONS)}) file" + (f"; skipped: {', '.join(skipped[:10])}" if skipped else ""))
    return use


def _dims_match(expected: Sequence[Any], given: Sequence[Any]) -> bool:
    return len(expected) == len(given) and all(
        not _is_int(e) or int(e) < 0 or g is None or int(e) == int(g) for e, g in zip(expected, given)
    )


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if (d is None or not _is_int(d) or int(d) < 0) else str(int(d)) for d in shape) + "]"


def check_shape(spec: PreprocessSpec | None, model_shape: Sequence[Any], given: Sequence[Any], *, where: str) -> None:
    """Raise InputError when ``given`` (a result's shape; None = depends on the image) does not fit
    ``model_shape`` (ints; None, a string or a negative int = any). The message gives both shapes and
    the spec step to change (``spec`` None: an array file used as is)."""
    expected = list(model_shape)
    given = list(given)
    if _dims_match(expected, given):
        return
    hints: list[str] = []
    if spec is None:
        hints.append("arrays are used as they are: save them in the model's shape (or without its batch axis of 1)")
    elif len(expected) != 4:
        hints.append(f"images give a 4-D [1, C, H, W] / [1, H, W, C] input but this model input is {len(expected)}-D; "
                     "give preprocessed .npy arrays instead")
    else:
        other = "NHWC" if spec.layout == "NCHW" else "NCHW"
        swapped = [given[0], given[3], given[1], given[2]] if spec.layout == "NHWC" else [given[0], given[2], given[3], given[1]]
        c_axis, hw_axes = (1, (2, 3)) if spec.layout == "NCHW" else (3, (1, 2))
        e_c, e_hw = expected[c_axis], (expected[hw_axes[0]], expected[hw_axes[1]])
        if _dims_match(expected, swapped) and given[c_axis] != given[hw_axes[0]]:
            hints.append(f"set layout={other}")
        else:
            if _is_int(expected[0]) and int(expected[0]) > 1:
                hints.append(f"images give a batch of 1 but the model's batch is {expected[0]}: fix the batch dim to 1")
            if not _dims_match([e_c], [given[c_axis]]):
                if _is_int(e_c) and int(e_c) == 1:
                    hints.append("set order=GRAY (the model wants 1 channel)")
                elif _is_int(e_c) and int(e_c) == 3:
                    hints.append("set order=RGB or order=BGR (the model wants 3 channels)")
                else:
                    hints.append(f"the model wants {e_c} channels; images give 1 (GRAY) or 3 (RGB/BGR): give .npy arrays, "
                                 f"or check layout (now {spec.layout})")
            if not _dims_match(list(e_hw), [given[hw_axes[0]], given[hw_axes[1]]]):
                want = "x".join(str(d) for d in e_hw)
                if spec.crop is not None:
                    hints.append(f"set crop={want} (HxW)")
                elif spec.resize == "letterbox":
                    hints.append(f"set letterbox={want} (HxW)")
                elif spec.resize == "exact":
                    hints.append(f"set resize={want} (sizes are HxW, height first)")
                elif spec.resize == "shorter":
                    hints.append(f"add crop={want} after resize={spec.size[0]}, or use resize={want}")
                else:
                    hints.append(f"add resize={want} (or resize=N,crop={want})")
    raise InputError(
        f"{where}: the input has shape {_fmt(given)}, but the model input expects {_fmt(expected)}"
        + ("; " + "; ".join(hints) if hints else "")
    )


def _load_arrays(p: Path, model_shape: Sequence[Any]) -> Iterator[np.ndarray]:
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"{p} holds Python objects (pickle), which npuflow never loads; save a numeric array") from None
        raise InputError(f"{p} is not a readable {p.suffix} file ({e})") from None
    except Exception as e:
        raise InputError(f"{p} is not a readable {p.suffix} file ({type(e).__name__}: {e})") from None
    if isinstance(loaded, np.ndarray):
        arrays = [(str(p), loaded)]
    else:
        with loaded:
            try:
                arrays = [(f"{p}[{k}]", loaded[k]) for k in loaded.files]
            except ValueError as e:
                raise InputError(f"{p}: {e} (npuflow loads arrays with allow_pickle=False)") from None
        if not arrays:
            raise InputError(f"{p} holds no arrays")
    expected = list(model_shape)
    for where, a in arrays:
        if a.dtype.kind not in "fiub":
            raise InputError(f"{where}: dtype {a.dtype} is not numeric")
        if len(expected) >= 1 and a.ndim == len(expected) - 1 and (not _is_int(expected[0]) or int(expected[0]) in (1, -1)):
            a = a[None]  # saved without the batch axis of 1
        check_shape(None, expected, a.shape, where=where)
        yield a


def iter_folder(
    folder: str | os.PathLike[str], spec: PreprocessSpec, *, model_shape: Sequence[Any]
) -> Iterator[np.ndarray]:
    """One model input per image (and per array in .npy/.npz files) of ``folder``, files sorted by name.

    Images go through ``spec``; ``.npy`` holds one input, ``.npz`` one input per array in its stored
    order; arrays are loaded with ``allow_pickle=False``, not preprocessed, and may omit the batch
    axis of 1. Every result must match ``model_shape`` (None/-1/a name: any size) or InputError says
    which file, both shapes and which spec key to change. The folder is listed (and the spec's fixed
    output shape checked) when this is called; files are read lazily as the iterator advances.
    """
    files = folder_files(folder)
    expected = list(model_shape)
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
        check_shape(spec, expected, spec.output_shape(), where=f"preprocess spec {spec.to_text()!r}")

    def gen() -> Iterator[np.ndarray]:
        for p in files:
            if p.suffix.lower() in ARRAY_EXTENSIONS:
                yield from _load_arrays(p, expected)
            else:
                x = load_image(p, spec)
                check_shape(spec, expected, x.shape, where=str(p))
                yield x

    return gen()

