"""The extra models of benchmarks/assets/ (u2netp_salient_320, retinaface_mnet025_5pt from issue 14
part 2; ch_PP-OCRv4_det_infer, a second text detector): their decode/metric helpers on hand-made
values, and their preprocessing and float results on the shared data (pinned to the numbers their
READMEs state)."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.tasks import (
    _retinaface_anchors,
    get_task,
    match_detections,
    match_pairs,
    rembg_mask,
    retinaface_decode,
)


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------- pure helpers
def test_retinaface_anchors_layout():
    a = _retinaface_anchors(64, 32)
    # stride 8: 8 x 4 cells x 2 sizes; 16: 4 x 2 x 2; 32: 2 x 1 x 2
    assert a.shape == (64 + 16 + 4, 4)
    np.testing.assert_allclose(a[0], [4 / 64, 4 / 32, 16 / 64, 16 / 32])  # first cell, size 16
    np.testing.assert_allclose(a[1], [4 / 64, 4 / 32, 32 / 64, 32 / 32])  # same cell, size 32
    np.testing.assert_allclose(a[2, :2], [12 / 64, 4 / 32])  # next cell along x
    np.testing.assert_allclose(a[-1], [48 / 64, 16 / 32, 512 / 64, 512 / 32])


def test_retinaface_decode_hand_made():
    w, h = 64, 32
    a = _retinaface_anchors(w, h)
    n = len(a)
    loc = np.zeros((1, n, 4), np.float32)
    conf = np.tile(np.array([1.0, 0.0], np.float32), (1, n, 1))
    lm = np.zeros((1, n, 10), np.float32)
    conf[0, 1] = [0.02, 0.98]  # prior 1: centre (4, 4) px, size 32 x 32
    lm[0, 1, :2] = [1.0, -1.0]  # first landmark moves by 0.1 x size: (+3.2, -3.2) px
    loc[0, 1, 2:] = [math.log(2) / 0.2, 0.0]  # width doubled
    conf[0, 3] = [0.5, 0.5]  # under the 0.9 threshold
    conf[0, 0] = [0.05, 0.95]  # prior 0: same centre, size 16: overlaps prior 1's box by IoU 1/8 -> kept
    d = retinaface_decode(loc, conf, lm, width=w, height=h)
    assert list(d["scores"]) == pytest.approx([0.98, 0.95])
    np.testing.assert_allclose(d["boxes"][0], [4 - 32, 4 - 16, 4 + 32, 4 + 16])
    np.testing.assert_allclose(d["landmarks"][0, 0], [4 + 3.2, 4 - 3.2])
    np.testing.assert_allclose(d["landmarks"][0, 1:], np.full((4, 2), 4.0))
    np.testing.assert_allclose(d["boxes"][1], [-4, -4, 12, 12])
    # a duplicate of the best box is suppressed (IoU 1 > 0.4)
    conf[0, 0] = [0.1, 0.9]
    loc[0, 0, 2:] = [math.log(4) / 0.2, math.log(2) / 0.2]  # prior 0 (16 px) scaled to prior 1's 64 x 32 box
    assert len(retinaface_decode(loc, conf, lm, width=w, height=h, score_threshold=0.85)["boxes"]) == 1
    with pytest.raises(ValueError, match="priors"):
        retinaface_decode(loc[:, :-1], conf[:, :-1], lm[:, :-1], width=w, height=h)


def test_match_pairs_agrees_with_match_detections():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref = rng.uniform(0, 50, (6, 2))
        ref = np.hstack([ref, ref + rng.uniform(5, 20, (6, 2))])
        det = ref[rng.permutation(6)[:4]] + rng.normal(0, 3, (4, 4))
        sc = rng.uniform(0, 1, 4)
        pairs = match_pairs(ref, det, sc)
        assert len(pairs) == match_detections(ref, np.zeros(6), det, np.zeros(4), sc)
        assert len({j for _, j in pairs}) == len(pairs) and len({i for i, _ in pairs}) == len(pairs)
    assert match_pairs(np.zeros((0, 4)), np.ones((2, 4)), [1, 1]) == []


def test_rembg_mask():
    d = np.array([[[[1.0, 3.0], [2.0, 5.0]]]], np.float32)
    np.testing.assert_allclose(rembg_mask(d), [[0.0, 0.5], [0.25, 1.0]])
    assert not rembg_mask(np.full((1, 1, 2, 2), 0.7)).any()  # a constant map: no foreground, no nan


# ---------------------------------------------------------------------------- on the shared data
def test_retinaface_float_faces(shared):
    task = get_task("retinaface_mnet025_5pt", shared)
    s = _session(task.model_path)
    x = task.load("5.jpg")  # 1024 x 769, scaled by min(640/1024, 480/769) to 639 x 480, top-left
    assert x.shape == (1, 3, 480, 640)
    assert not x[0, :, :, 639].any() and x[0, :, 479, :639].any()  # the last column is padding (0 after the mean)
    faces = [task.decode(s.run(None, f)) for f in task.eval_inputs()]
    # README: 239 faces in the evaluation photos at p > 0.9
    assert [len(f["boxes"]) for f in faces] == [35, 56, 59, 5, 1, 14, 61, 8]
    for f in faces:  # the 5 landmarks lie in (a margin around) their face box
        b, p = f["boxes"], f["landmarks"]
        m = 0.25 * (b[:, 2:] - b[:, :2])
        assert np.all(p >= (b[:, None, :2] - m[:, None])) and np.all(p <= (b[:, None, 2:] + m[:, None]))
    out = task.compare([s.run(None, f) for f in task.eval_inputs(2)], [s.run(None, f) for f in task.eval_inputs(2)],
                       task.eval_meta(2))
    assert out["landmark_nme"] == 0 and out["landmark_pck@0.05"] == 1.0 and out["matched_faces"] == 35 + 56


def test_u2netp_preprocessing_and_mask(shared):
    from PIL import Image

    task = get_task("u2netp_salient_320", shared)
    item = task.eval_items()[0]
    assert task.eval_items() == [l.strip() for l in (shared / "data/imagenet_samples/eval.txt").read_text().splitlines() if l.strip()][::8]
    x = task.load(item)
    with Image.open(task.image_path(item)) as im:  # rembg: LANCZOS 320x320, / max, ImageNet mean / std
        a = np.asarray(im.convert("RGB").resize((320, 320), Image.LANCZOS), np.float64)
    ref = ((a / a.max() - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(x, ref, atol=1e-6)
    outs = _session(task.model_path).run(None, {"input.1": x})
    assert len(outs) == 7 and all(o.shape == (1, 1, 320, 320) for o in outs)
    m = rembg_mask(outs[0])
    assert m.min() == 0 and m.max() == 1 and 0.02 < np.mean(m > 0.5) < 0.9  # a goldfish, not the whole frame


def test_ppocrv4_det_preprocessing_and_float_masks(shared):
    """The package's normalisation ((x / 255 - 0.5) / 0.5, BGR) on a 640 letterbox padded black;
    README: text fraction of the float mask 0.090 (ch_en_num.jpg) and 0.030 (en.jpg)."""
    task = get_task("ch_PP-OCRv4_det_infer", shared)
    s = _session(task.model_path)
    feeds = list(task.eval_inputs())
    x = feeds[0]["x"]
    assert x.shape == (1, 3, 640, 640) and x.min() >= -1.0 and x.max() <= 1.0
    assert (x[0, :, -1, -1] == -1.0).all(), "the letterbox padding is black: -1 after the normalisation"
    fractions = [float((s.run(None, f)[0] > 0.3).mean()) for f in feeds]
    assert fractions == pytest.approx([0.090, 0.030], abs=0.0015)
    out = task.compare([s.run(None, f) for f in feeds], [s.run(None, f) for f in feeds], task.eval_meta())
    assert out["mask_iou_q_vs_float"] == 1.0
