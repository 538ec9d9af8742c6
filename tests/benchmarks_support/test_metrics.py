"""The pure metric helpers of benchmarks/tasks.py on hand-made values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.tasks import (
    classification_metrics,
    ctc_greedy_decode,
    detection_agreement,
    edit_distance,
    iou_matrix,
    mask_iou,
    match_detections,
    nms,
    paired_drop_ci,
    snr_db,
    ultraface_decode,
    wilson_interval,
    yolox_decode,
)


def test_snr_db_pooled():
    assert snr_db([np.array([1.0, 2.0])], [np.array([1.0, 2.0])]) == math.inf
    assert snr_db([np.array([3.0, 4.0])], [np.array([3.0, 3.0])]) == pytest.approx(10 * math.log10(25.0))
    # pooled: signal 1 + 1, noise 1 + 0 (not the mean of per-item SNRs, which would be +inf)
    assert snr_db([np.array([1.0]), np.array([1.0])], [np.array([0.0]), np.array([1.0])]) == pytest.approx(10 * math.log10(2.0))
    assert snr_db([np.zeros(2)], [np.ones(2)]) == -math.inf
    assert snr_db([np.float32([1e20])], [np.float32([0])]) == pytest.approx(0.0)  # float64 accumulation, no overflow
    with pytest.raises(ValueError, match="1 reference arrays but 2"):
        snr_db([np.zeros(1)], [np.zeros(1), np.zeros(1)])
    with pytest.raises(ValueError, match="shapes differ"):
        snr_db([np.zeros(2)], [np.zeros(3)])


def test_wilson_interval_known_value():
    # Newcombe (1998) worked example: 81/263 -> 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_paired_drop_ci_published_example():
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8, Cavo et al. 2012:
    # table [[59, 6], [16, 80]]: Newcombe square-and-add -0.0621 (95 % CI -0.1186 to -0.0046)
    a, b, c, d = 59, 6, 16, 80
    ref = [True] * a + [True] * b + [False] * c + [False] * d
    x = [True] * a + [False] * b + [True] * c + [False] * d
    r = paired_drop_ci(ref, x)
    assert (r["a"], r["b"], r["c"], r["d"], r["n"]) == (a, b, c, d, 161)
    assert round(r["drop"], 4) == -0.0621
    assert (round(r["lo"], 4), round(r["hi"], 4)) == (-0.1186, -0.0046)


def test_paired_drop_ci_edges():
    same = paired_drop_ci([True, False, True, True], [True, False, True, True])
    assert same["drop"] == 0 and same["lo"] < 0 < same["hi"]
    allright = paired_drop_ci([True] * 50, [True] * 50)
    assert allright["drop"] == 0 and allright["lo"] <= 0 <= allright["hi"]
    assert math.isnan(paired_drop_ci([], [])["drop"])
    with pytest.raises(ValueError):
        paired_drop_ci([True], [True, False])


def test_iou_matrix():
    a = np.array([[0, 0, 2, 2], [10, 10, 11, 11]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 5, 9]])
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(1 / 7) and m[0, 1] == 1.0 and m[1, 0] == 0.0
    assert m[0, 2] == 0.0  # empty box
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 = 0.68; box 3 equals box 0 and scores highest
    assert nms(boxes, scores, 0.5) == [3, 2]
    assert nms(boxes, scores, 0.7) == [3, 1, 2]
    assert nms(boxes[:3], scores[:3], 0.7) == [0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5) == []
    # ties keep the lower index first
    assert nms(np.array([[0, 0, 1, 1], [5, 5, 6, 6]]), np.array([0.5, 0.5]), 0.5) == [0, 1]


def test_match_detections():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    # two detections on ref 0 (only one may match), one of the wrong class on ref 1
    det = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    assert match_detections(ref, [0, 1], det, [0, 0, 0], [0.5, 0.9, 0.8]) == 1
    assert match_detections(ref, [0, 1], det, [0, 0, 1], [0.5, 0.9, 0.8]) == 2
    # below the IoU threshold: [0,0,10,4] vs [0,0,10,10] has IoU 0.4
    assert match_detections(ref[:1], [0], np.array([[0, 0, 10, 4]]), [0], [1.0], 0.5) == 0
    assert match_detections(ref[:1], [0], np.array([[0, 0, 10, 4]]), [0], [1.0], 0.4) == 1
    assert match_detections(np.zeros((0, 4)), [], det, [0, 0, 0], [1, 1, 1]) == 0


def test_detection_agreement():
    r = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), "classes": np.array([0, 0]), "scores": np.array([1, 1])}
    d = {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [70, 70, 80, 80]]), "classes": np.array([0, 0, 0]),
         "scores": np.array([0.9, 0.8, 0.7])}
    e = {"boxes": np.zeros((0, 4)), "classes": np.zeros(0), "scores": np.zeros(0)}
    out = detection_agreement([r, e], [d, e])
    assert out["recall_vs_float"] == 0.5 and out["precision_vs_float"] == pytest.approx(1 / 3)
    assert (out["matched"], out["float_detections"], out["quant_detections"]) == (1, 2, 3)
    assert detection_agreement([e], [e])["recall_vs_float"] == 1.0


def _yolox_out():
    out = np.zeros((3549, 85), np.float32)
    k = 2 * 52 + 3  # stride-8 grid cell x=3, y=2
    out[k, :4] = [0.5, 0.5, math.log(2), math.log(2)]  # centre (28, 20), 16 x 16
    out[k, 4], out[k, 5 + 5] = 0.9, 0.8                # score 0.72, class 5
    out[k + 1, :4] = [0.0, 0.5, math.log(2), math.log(2)]  # centre (32, 20): IoU with the first 0.6
    out[k + 1, 4], out[k + 1, 5 + 5] = 0.9, 0.5        # same class, 0.45: suppressed at NMS 0.45
    out[k + 2, :4] = out[k + 1, :4]
    out[k + 2, :2] = [-0.5, 0.5]                        # cell x=5: centre ((-0.5 + 5) * 8, 20) = (36, 20)
    out[k + 2, 4], out[k + 2, 5 + 7] = 0.9, 0.5        # other class: kept (NMS is per class)
    out[3000, 4], out[3000, 5] = 0.5, 0.5              # 0.25 < 0.3: dropped
    return out


def test_yolox_decode():
    d = yolox_decode(_yolox_out()[None])
    order = np.argsort(-d["scores"])
    np.testing.assert_allclose(d["boxes"][order[0]], [20, 12, 36, 28], atol=1e-5)
    assert list(d["classes"][order]) == [5, 7]
    np.testing.assert_allclose(np.sort(d["scores"])[::-1], [0.72, 0.45], rtol=1e-6)
    with pytest.raises(ValueError, match="anchors"):
        yolox_decode(np.zeros((10, 85)))


def test_ultraface_decode():
    scores = np.array([[[0.1, 0.9], [0.2, 0.8], [0.5, 0.5], [0.05, 0.95]]])
    boxes = np.array([[[0, 0, 0.5, 0.5], [0.01, 0.01, 0.5, 0.5], [0, 0, 1, 1], [0.6, 0.6, 0.9, 0.9]]])
    d = ultraface_decode(scores, boxes)
    np.testing.assert_allclose(d["scores"], [0.95, 0.9])
    np.testing.assert_allclose(d["boxes"], [[0.6, 0.6, 0.9, 0.9], [0, 0, 0.5, 0.5]])


def test_ctc_greedy_decode():
    chars = ["<blank>", "a", "b"]
    ids = [0, 1, 1, 0, 1, 2, 2, 0, 2]
    prob = np.eye(3)[ids]
    assert ctc_greedy_decode(prob, chars) == "aabb"
    assert ctc_greedy_decode(prob[None], chars) == "aabb"
    assert ctc_greedy_decode(np.eye(3)[[0, 0]], chars) == ""


def test_edit_distance_and_mask_iou():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [1, 0]], bool)
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert math.isnan(mask_iou(np.zeros(3, bool), np.zeros(3, bool)))


def test_classification_metrics():
    f = [np.array([[0.1, 0.9]]), np.array([[0.8, 0.2]]), np.array([[0.3, 0.7]])]
    q = [np.array([[0.1, 0.9]]), np.array([[0.4, 0.6]]), np.array([[0.3, 0.7]])]
    m = classification_metrics(f, q, [1, 0, 0])
    assert m["n"] == 3 and m["float_top1"] == pytest.approx(2 / 3) and m["quant_top1"] == pytest.approx(1 / 3)
    assert m["top1_agreement"] == pytest.approx(2 / 3) and m["top1_drop"] == pytest.approx(1 / 3)
    assert m["paired_counts"] == {"both_right": 1, "only_float_right": 1, "only_quant_right": 0, "both_wrong": 1}
    lo, hi = m["top1_drop_ci95"]
    assert lo < m["top1_drop"] < hi
    assert m["logits_snr_db"] == pytest.approx(snr_db(f, q))
    with pytest.raises(ValueError, match="3 float, 3 quantized outputs and 2 labels"):
        classification_metrics(f, q, [1, 0])


def test_f1_binary_and_psnr():
    from benchmarks.tasks import f1_binary, psnr_db

    ref = np.array([[1, 1, 0, 0]], bool)
    r = f1_binary(ref, np.array([[1, 0, 1, 0]], bool))
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1) and r["f1"] == pytest.approx(0.5)
    assert f1_binary(np.zeros(3, bool), np.zeros(3, bool))["f1"] == 1.0
    assert f1_binary(ref, ref)["f1"] == 1.0
    assert psnr_db([np.ones(4)], [np.ones(4)]) == math.inf
    # mse 0.01 over all elements, peak 1 -> 20 dB; pooled over both arrays
    assert psnr_db([np.zeros(2), np.zeros(2)], [np.full(2, 0.1), np.full(2, 0.1)]) == pytest.approx(20.0)
