"""One real, preprocessed input per shared model, exactly as ``/work/shared/MANIFEST.md`` says.

Every function takes the shared assets folder (the ``shared`` fixture of tests/conftest.py) and
returns ``{input name: float32 array}`` ready for ``onnxruntime.InferenceSession.run``.
``MODELS`` maps each model file (without ``.onnx``) to its function; ``input_shapes(feeds)``
turns the arrays into the ``input_shapes=`` option of ``npuflow.passes.optimize``.

Needs numpy and Pillow only. To reuse it from another test folder::

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location(
        "real_inputs", pathlib.Path(__file__).parents[1] / "passes" / "real_inputs.py")
    real_inputs = importlib.util.module_from_spec(spec); spec.loader.exec_module(real_inputs)

(from a test file directly in tests/passes, ``import real_inputs`` is enough).
"""
from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Feeds = dict[str, np.ndarray]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Fixed shapes the dynamic PaddleOCR models are compiled for in the tests (batch 1).
OCR_CLS_SHAPE = (1, 3, 48, 192)
OCR_REC_SHAPE = (1, 3, 32, 320)


def _data(shared: Path, *parts: str) -> Path:
    return Path(shared, "data", *parts)


def efficientnet_lite0(shared: Path, index: int = 340) -> Feeds:
    """ImageNet sample of class ``index`` (340: zebra): short side to 256, centre crop 224,
    ``(pixel - 127) / 128`` on RGB, NCHW."""
    with open(_data(shared, "imagenet_samples", "labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    im = Image.open(_data(shared, "imagenet_samples", rows[index]["file"])).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    a = (np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) - 127.0) / 128.0
    return {"input": np.ascontiguousarray(a.transpose(2, 0, 1)[None])}


def mnist_cntk_opt(shared: Path, row: int = 0) -> Feeds:
    """Digit ``row`` of mnist_5k.csv.gz (0: the first), pixels / 255, shape [1, 1, 28, 28]."""
    with gzip.open(_data(shared, "mnist", "mnist_5k.csv.gz"), "rt") as f:
        for k, line in enumerate(f):
            if k == row:
                break
    pixels = np.array(line.strip().split(",")[:784], np.float32)
    return {"Input3": (pixels / 255.0).reshape(1, 1, 28, 28)}


def yolox_nano(shared: Path, image: str = "000000000285.jpg") -> Feeds:
    """COCO val2017 image (285: a bear), letterboxed top-left into 416x416 filled with 114,
    BGR, 0..255 floats, NCHW."""
    img = Image.open(_data(shared, "coco_val2017", image)).convert("RGB")
    w, h = img.size
    r = min(416 / h, 416 / w)
    rs = img.resize((int(w * r), int(h * r)), Image.BILINEAR)
    pad = np.full((416, 416, 3), 114, np.uint8)
    pad[: rs.size[1], : rs.size[0]] = np.asarray(rs)[:, :, ::-1]
    return {"images": np.ascontiguousarray(pad.transpose(2, 0, 1)[None].astype(np.float32))}


def ultraface_rfb_320(shared: Path, image: str = "1.jpg") -> Feeds:
    """faces/1.jpg resized to 320x240, ``(pixel - 127) / 128`` on RGB, NCHW."""
    img = Image.open(_data(shared, "faces", image)).convert("RGB")
    a = (np.asarray(img.resize((320, 240), Image.BILINEAR), np.float32) - 127.0) / 128.0
    return {"input": np.ascontiguousarray(a.transpose(2, 0, 1)[None])}


def pan_mnv3s_skin_clothes_hair(shared: Path, index: int = 0) -> Feeds:
    """Segmentation image ``index``.png resized to 512x512, /255, ImageNet mean/std, NCHW."""
    img = Image.open(_data(shared, "seg_skin_clothes_hair", "image", f"{index}.png")).convert("RGB")
    a = np.asarray(img.resize((512, 512), Image.BILINEAR), np.float32) / 255.0
    x = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
    return {"x.1": np.ascontiguousarray(x.astype(np.float32))}


def _ocr_norm(img: Image.Image) -> np.ndarray:
    """``(pixel / 255 - 0.5) / 0.5`` on RGB, CHW."""
    return ((np.asarray(img, np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def ch_ppocr_mobile_v2_0_cls_infer(shared: Path, image: str = "text_cls.jpg") -> Feeds:
    """Text crop resized to height 48 and width min(192, ceil(48 * w / h)), OCR-normalised,
    zero-padded on the right to [1, 3, 48, 192]."""
    img = Image.open(_data(shared, "ocr", image)).convert("RGB")
    _, _, hh, ww = OCR_CLS_SHAPE
    w = min(ww, int(math.ceil(hh * img.size[0] / img.size[1])))
    x = np.zeros(OCR_CLS_SHAPE, np.float32)
    x[0, :, :, :w] = _ocr_norm(img.resize((w, hh), Image.BILINEAR))
    return {"x": x}


def en_number_mobile_v2_0_rec_infer(
    shared: Path, image: str = "en_rec.jpg", width: int | None = OCR_REC_SHAPE[3]
) -> Feeds:
    """Text line resized to height 32 and width ceil(32 * w / h), OCR-normalised.

    With ``width`` (default 320, the fixed shape the tests compile for) the line is resized to
    min(width, natural width) and zero-padded on the right to ``width``, as PaddleOCR's own
    recogniser does for a fixed input width. ``width=None`` keeps the natural width (MANIFEST)."""
    img = Image.open(_data(shared, "ocr", image)).convert("RGB")
    h = OCR_REC_SHAPE[2]
    natural = max(8, int(math.ceil(h * img.size[0] / img.size[1])))
    if width is None:
        return {"x": np.ascontiguousarray(_ocr_norm(img.resize((natural, h), Image.BILINEAR))[None])}
    w = min(width, natural)
    x = np.zeros((1, 3, h, width), np.float32)
    x[0, :, :, :w] = _ocr_norm(img.resize((w, h), Image.BILINEAR))
    return {"x": x}


def en_pp_ocrv3_det_infer(shared: Path, image: str = "ch_en_num.jpg") -> Feeds:
    """Whole image resized so that each side is rounded to a multiple of 32 (at least 32), /255,
    ImageNet mean/std, NCHW. For ch_en_num.jpg (323x430) that is [1, 3, 416, 320]."""
    img = Image.open(_data(shared, "ocr", image)).convert("RGB")
    w, h = img.size
    W, H = max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)
    a = np.asarray(img.resize((W, H), Image.BILINEAR), np.float32) / 255.0
    x = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
    return {"x": np.ascontiguousarray(x.astype(np.float32))}


#: model file name without ``.onnx`` -> function returning its real input.
MODELS: dict[str, Callable[[Path], Feeds]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "mnist_cntk_opt": mnist_cntk_opt,
    "yolox_nano": yolox_nano,
    "ultraface_rfb_320": ultraface_rfb_320,
    "pan_mnv3s_skin_clothes_hair": pan_mnv3s_skin_clothes_hair,
    "ch_ppocr_mobile_v2.0_cls_infer": ch_ppocr_mobile_v2_0_cls_infer,
    "en_PP-OCRv3_det_infer": en_pp_ocrv3_det_infer,
    "en_number_mobile_v2.0_rec_infer": en_number_mobile_v2_0_rec_infer,
}


def model_path(shared: Path, model: str) -> Path:
    return Path(shared, "models", f"{model}.onnx")


def input_shapes(feeds: Feeds) -> dict[str, list[int]]:
    """``{name: list(array.shape)}``: the ``input_shapes=`` option matching these feeds."""
    return {name: [int(d) for d in a.shape] for name, a in feeds.items()}


def real_input(shared: Path, model: str) -> Feeds:
    """The default real input of ``model`` (a key of ``MODELS``)."""
    try:
        fn = MODELS[model]
    except KeyError:
        raise KeyError(f"no real input defined for {model!r}; known: {', '.join(MODELS)}") from None
    return fn(shared)
