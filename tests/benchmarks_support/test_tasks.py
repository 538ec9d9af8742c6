"""benchmarks/tasks.py on the shared data: split sizes, disjointness, input shapes, and each task's
compare() on real float outputs (float vs itself must agree perfectly)."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.tasks import OCR_IMAGES, TASKS, get_task

#: task -> (calibration items, evaluation items)
COUNTS = {
    "efficientnet_lite0": (200, 800),
    "mnist_cntk_opt": (1000, 4000),
    "yolox_nano": (60, 40),
    "ultraface_rfb_320": (16, 8),
    "pan_mnv3s_skin_clothes_hair": (4, 3),
    "ch_ppocr_mobile_v2.0_cls_infer": (6, 2),
    "en_PP-OCRv3_det_infer": (6, 2),
    "en_number_mobile_v2.0_rec_infer": (6, 2),
    # the zoo (MANIFEST.md "Zoo"): face crops found by UltraFace in faces/calib.txt / eval.txt; audio halves
    "open_nsfw": (200, 800),
    "ddddocr_common_det": (5, 3),
    "dlib_age_v1": (92, 27),
    "dlib_gender_v1": (92, 27),
    "basic_pitch_nmp": (19, 19),
    "gtcrn_simple": (1876, 1876),
    # extra models kept in benchmarks/assets/
    "waifu2x_upconv7_photo_2x": (60, 40),
    "waifu2x_cunet_art_2x": (60, 40),
    "u2netp_salient_320": (200, 100),
    "retinaface_mnet025_5pt": (16, 8),
    "ch_PP-OCRv4_det_infer": (6, 2),
}


def test_every_model_has_a_task(shared):
    assert set(TASKS) == set(COUNTS)
    with pytest.raises(KeyError, match="unknown task 'resnet'"):
        get_task("resnet")
    # every real model of the shared folder (top level and zoo) has a task
    files = {p.stem for p in (shared / "models").glob("*.onnx")} | {p.stem for p in (shared / "models" / "zoo").glob("*.onnx")}
    assert files == {n for n in TASKS if not getattr(TASKS[n], "extra", False)}
    extra = [n for n in TASKS if getattr(TASKS[n], "extra", False)]
    for n in extra:  # kept in the repository with their licence and provenance
        d = get_task(n, shared).model_path.parent
        assert d.parent.name == "assets" and (d / "LICENSE").is_file() and (d / "README.md").is_file()
        assert d.joinpath("model.onnx").stat().st_size <= 10 * 2**20
        import hashlib

        assert hashlib.sha256(d.joinpath("model.onnx").read_bytes()).hexdigest() in d.joinpath("README.md").read_text()


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_splits_and_shapes(shared, name):
    task = get_task(name, shared)
    assert task.model_path.is_file()
    calib, ev = task.calib_items(), task.eval_items()
    assert (len(calib), len(ev)) == COUNTS[name]
    assert not set(calib) & set(ev), "calibration and evaluation items overlap"
    assert len(set(calib)) == len(calib) and len(set(ev)) == len(ev)
    if name.startswith(("ch_ppocr", "ch_PP-OCR", "en_", "ddddocr")):
        assert sorted(calib + ev) == sorted(OCR_IMAGES)
    for feeds in (next(task.calib_inputs(2)), next(task.eval_inputs(2))):
        assert list(feeds) == list(task.input_shapes)
        for name, shape in task.input_shapes.items():
            x = feeds[name]
            assert x.dtype == np.float32 and list(x.shape) == shape and np.isfinite(x).all()
    assert len(list(task.eval_inputs(2))) == 2 and len(task.eval_meta(2)) == 2
    if name != "gtcrn_simple":  # 1876 frames: enough to count the items
        assert len(task.eval_meta()) == len(ev)


def test_labels(shared):
    eff = get_task("efficientnet_lite0", shared)
    meta = eff.eval_meta()
    assert all(m["label"] % 5 != 0 for m in meta)  # MANIFEST: calibration = class index divisible by 5
    assert {m["label"] for m in meta} | {eff.labels[i] for i in eff.calib_items()} == set(range(1000))
    mn = get_task("mnist_cntk_opt", shared)
    assert [m["item"] for m in mn.eval_meta(3)] == [1000, 1001, 1002]
    x = next(mn.calib_inputs())["Input3"]
    assert x.shape == (1, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert [m["label"] for m in get_task("ch_ppocr_mobile_v2.0_cls_infer", shared).eval_meta()] == ["180", "0"]
    rec = get_task("en_number_mobile_v2.0_rec_infer", shared).eval_meta()
    assert rec[1]["label"] == "TEST" and len(rec[0]["chars"]) == 97
    seg = get_task("pan_mnv3s_skin_clothes_hair", shared).eval_meta()
    assert seg[0]["mask"].shape == (512, 512) and set(np.unique(seg[0]["mask"])) <= {0, 1, 2, 3}


def _float_outputs(task, count):
    s = ort.InferenceSession(str(task.model_path), providers=["CPUExecutionProvider"])
    if getattr(task, "stateful", False):
        return task.rollout(lambda f: s.run(None, f), "eval", count)[0]
    return [s.run(None, x) for x in task.eval_inputs(count)]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_compare_float_against_itself(shared, name):
    task = get_task(name, shared)
    count = {"efficientnet_lite0": 20, "mnist_cntk_opt": 20, "gtcrn_simple": 40, "dlib_age_v1": 10,
             "dlib_gender_v1": 10}.get(name, 2)
    ref = _float_outputs(task, count)
    meta = task.eval_meta(count)
    out = task.compare(ref, ref, meta)
    assert out["n"] == count
    snrs = [v for k, v in out.items() if k.endswith("snr_db")]
    assert snrs and all(v == math.inf for v in snrs)
    for key in ("top1_agreement", "agreement", "recall_vs_float", "precision_vs_float"):
        if key in out:
            assert out[key] == 1.0, key
    if name == "pan_mnv3s_skin_clothes_hair":
        iou = out["iou_q_vs_float"]
        assert iou["skin"] == iou["clothes"] == 1.0
        # no eval image has hair, in the masks or predicted: IoU 0/0 is reported as nan
        assert math.isnan(iou["hair"]) and math.isnan(out["iou_float_vs_gt"]["hair"])
        assert out["iou_float_vs_gt"]["skin"] > 0.5 and out["iou_float_vs_gt"]["clothes"] > 0.5
    if name == "en_PP-OCRv3_det_infer":
        assert out["mask_iou_q_vs_float"] == 1.0
    if name == "en_number_mobile_v2.0_rec_infer":
        assert out["float_exact"] == 2 and out["quant_equals_float"] == 2  # width 800 reads both labels
    if name == "ch_ppocr_mobile_v2.0_cls_infer":
        assert out["float_correct"] == 2
    if name == "efficientnet_lite0":
        assert out["top1_drop"] == 0 and out["float_top1"] > 0.7
    if name == "ddddocr_common_det":
        assert out["float_detections"] == 16 + 31  # MANIFEST (verify_zoo.py): ch_en_num 16, en 31 boxes
    if name == "dlib_age_v1":
        assert out["mean_abs_age_diff_years"] == 0 and 10 < out["float_mean_age"] < 60
    if name == "basic_pitch_nmp":
        assert out["note_f1"] == 1.0 and out["frames"] == 2 * (172 - 30)
    if name == "gtcrn_simple":
        assert out["waveform_snr_vs_float_db"] == math.inf
        assert out["float_snr_vs_clean_db"] > out["noisy_snr_vs_clean_db"]  # the float model denoises
    if name.startswith("waifu2x_"):
        assert out["psnr_vs_float_db"] == math.inf and out["float_psnr_vs_gt_db"] > 20
    # a perturbed copy is measurably worse
    noisy = [[o + np.float32(0.05) * np.abs(o).max() * np.sin(np.arange(o.size, dtype=np.float32)).reshape(o.shape)
              for o in outs] for outs in ref]
    worse = task.compare(ref, noisy, meta)
    assert all(math.isfinite(v) for k, v in worse.items() if k.endswith("snr_db"))
    with pytest.raises(ValueError, match="aligned"):
        task.compare(ref, ref[:1], meta)


def test_gtcrn_rollout_feeds_each_model_its_own_states(shared):
    """A stateful task: frame t gets the caches the *same* model returned at t-1 (zeros at t = 0), so a
    quantized model never runs on float states."""
    task = get_task("gtcrn_simple", shared)
    seen = []

    def fake(feed):  # returns caches = input caches + 1, enh = the mix
        seen.append({k: v.copy() for k, v in feed.items()})
        return [feed["mix"]] + [feed[k] + 1 for k, _ in task.STATES]

    outs, feeds = task.rollout(fake, "eval", 4, keep_feeds=True)
    assert len(outs) == 4 and len(feeds) == 4
    for t, f in enumerate(seen):
        for k, _ in task.STATES:
            assert f[k].shape == tuple(task.input_shapes[k]) and np.all(f[k] == t)
    np.testing.assert_array_equal(outs[2][0], seen[2]["mix"])
    # calibration feeds are the float model's own rollout over the first half: states not all zero
    calib = list(task.calib_inputs(5))
    assert len(calib) == 5 and not np.any(calib[0]["conv_cache"]) and np.any(calib[4]["conv_cache"])
    assert not np.array_equal(calib[0]["mix"], next(task.eval_inputs(1))["mix"])  # the two halves differ


def test_rec_calibration_items_have_no_text_label(shared):
    """benchmarks/folds.py evaluates the recogniser's calibration images too: they carry no text
    label, so they are measured against float only (the exact-text counts skip them)."""
    task = get_task("en_number_mobile_v2.0_rec_infer", shared)
    item = task.calib_items()[0]
    meta = task.meta(item)
    assert meta["label"] is None
    s = ort.InferenceSession(str(task.model_path), providers=["CPUExecutionProvider"])
    ref = [s.run(None, {"x": task.load(item)})]
    out = task.compare(ref, ref, [meta])
    assert out["quant_equals_float"] == 1 and out["float_exact"] == 0 and out["quant_exact"] == 0
    assert out["per_image"][item]["edit_float_vs_label"] is None
