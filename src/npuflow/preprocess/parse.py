"""The compact text form of a spec (``"imagenet,layout=NHWC"``, ``"resize=256,crop=224,..."``), a
preset name or JSON -> :class:`~npuflow.preprocess.spec.PreprocessSpec`."""
from __future__ import annotations

import json
from typing import Any

from npuflow.preprocess.spec import PRESETS, PreprocessSpec, _err

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
