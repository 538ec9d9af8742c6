"""npuflow.preprocess: exact arrays on hand-made images, the spec's text/dict forms, error messages,
and the MANIFEST.md reproductions (efficientnet, yolox) on the shared images."""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from npuflow import preprocess as P
from npuflow.errors import InputError, InvalidConfigError
from npuflow.preprocess import PREPROCESS_VERSION, PRESETS, PreprocessSpec, parse


def _real_inputs():
    path = Path(__file__).resolve().parents[1] / "passes" / "real_inputs.py"
    spec = importlib.util.spec_from_file_location("real_inputs_for_preprocess", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path)
    return path


def _rgb(h: int, w: int) -> np.ndarray:
    """HxWx3 uint8 with distinct values: R = 10*y + x, G = R + 100, B = R + 200 (mod 256)."""
    r = (10 * np.arange(h)[:, None] + np.arange(w)[None, :]).astype(np.int64)
    return np.stack([r, r + 100, r + 200], 2) % 256


# ------------------------------------------------------------------ exact arrays on tiny images
def test_no_resize_mean_std_nchw_exact(tmp_path):
    px = _rgb(2, 3)
    x = P.load_image(_png(tmp_path / "a.png", px), parse("order=RGB,mean=127,std=128"))
    want = ((px.astype(np.float32) - 127) / 128).transpose(2, 0, 1)[None]
    assert x.dtype == np.float32 and x.shape == (1, 3, 2, 3)
    np.testing.assert_array_equal(x, want)


def test_nhwc_and_bgr(tmp_path):
    px = _rgb(2, 3)
    x = P.load_image(_png(tmp_path / "a.png", px), parse("order=BGR,layout=NHWC"))
    assert x.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(x[0], px[:, :, ::-1].astype(np.float32))


def test_per_channel_mean_std_in_output_channel_order(tmp_path):
    px = _rgb(2, 2)
    x = P.load_image(_png(tmp_path / "a.png", px), parse("order=BGR,mean=1/2/3,std=2/4/8"))
    bgr = px[:, :, ::-1].astype(np.float64)
    want = ((bgr - [1, 2, 3]) / [2, 4, 8]).astype(np.float32).transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(x, want)


def test_scale_offset_and_pixel_range(tmp_path):
    px = _rgb(2, 2)
    f = _png(tmp_path / "a.png", px)
    x = P.load_image(f, parse("scale=0.5,offset=-3"))
    np.testing.assert_array_equal(x, (px * 0.5 - 3).astype(np.float32).transpose(2, 0, 1)[None])
    y = P.load_image(f, parse("range=1,mean=0.5,std=0.25"))
    np.testing.assert_array_equal(y, ((px / 255.0 - 0.5) / 0.25).astype(np.float32).transpose(2, 0, 1)[None])


def test_gray(tmp_path):
    px = np.array([[0, 17], [128, 255]], np.uint8)
    x = P.load_image(_png(tmp_path / "g.png", px), parse("order=GRAY,std=255"))
    assert x.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(x[0, 0], px.astype(np.float32) / np.float32(255))
    # RGB -> GRAY: Pillow's ITU-R 601-2 luma, (19595 R + 38470 G + 7471 B + 32768) >> 16
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    y = P.load_image(_png(tmp_path / "c.png", rgb), parse("order=GRAY"))
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    want = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16
    np.testing.assert_array_equal(y[0, 0], want.astype(np.float32))


def test_center_crop_exact(tmp_path):
    px = _rgb(5, 6)
    x = P.load_image(_png(tmp_path / "a.png", px), parse("crop=2x3,layout=NHWC"))
    np.testing.assert_array_equal(x[0], px[1:3, 1:4].astype(np.float32))  # top (5-2)//2, left (6-3)//2
    y = P.load_image(tmp_path / "a.png", parse("crop=4,layout=NHWC"))
    np.testing.assert_array_equal(y[0], px[0:4, 1:5].astype(np.float32))


def test_resize_exact_and_shorter_nearest(tmp_path):
    px = _rgb(2, 4)
    f = _png(tmp_path / "a.png", px)
    x = P.load_image(f, parse("resize=4x8,resample=nearest,layout=NHWC"))
    np.testing.assert_array_equal(x[0], np.repeat(np.repeat(px, 2, 0), 2, 1).astype(np.float32))
    y = P.load_image(f, parse("resize=4,resample=nearest,layout=NHWC"))  # shorter side (H=2) -> 4
    assert y.shape == (1, 4, 8, 3)
    np.testing.assert_array_equal(y, x)


def test_letterbox_top_left_pad_before_normalisation(tmp_path):
    px = _rgb(2, 4)
    f = _png(tmp_path / "a.png", px)
    x = P.load_image(f, parse("letterbox=4,pad=114,order=BGR,resample=nearest,layout=NHWC"))
    want = np.full((4, 4, 3), 114.0, np.float32)
    want[:2] = px[:, :, ::-1]
    np.testing.assert_array_equal(x[0], want)
    # not an integer ratio: r = min(4/3, 4/5) = 0.8 -> int(5*0.8) x int(3*0.8) = 4 x 2 pixels placed top-left
    g = _png(tmp_path / "b.png", _rgb(3, 5))
    y = P.load_image(g, parse("letterbox=4x4,pad=10,mean=10,std=2,layout=NHWC"))
    assert y.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(y[0, 2:], np.zeros((2, 4, 3), np.float32))  # pad 10 -> (10-10)/2


def test_resample_filters_are_pillows(tmp_path):
    px = _rgb(7, 9)
    f = _png(tmp_path / "a.png", px)
    for name, filt in [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)]:
        x = P.load_image(f, parse(f"resize=5x4,resample={name},layout=NHWC"))
        want = np.asarray(Image.fromarray(px.astype(np.uint8)).resize((4, 5), filt), np.float32)
        np.testing.assert_array_equal(x[0], want)


def test_preprocess_image_on_array_and_rgba(tmp_path):
    px = _rgb(3, 3).astype(np.uint8)
    a = P.preprocess_image(px, parse("kneron"))
    np.testing.assert_array_equal(a, ((px / 256.0) - 0.5).astype(np.float32).transpose(2, 0, 1)[None])
    rgba = np.concatenate([px, np.full((3, 3, 1), 7, np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    np.testing.assert_array_equal(P.load_image(tmp_path / "t.png", parse("tf")),
                                  ((px - 127.5) / 127.5).astype(np.float32).transpose(2, 0, 1)[None])
    with pytest.raises(InputError, match="uint8"):
        P.preprocess_image(px.astype(np.float32), parse("tf"))


def test_exif_orientation(tmp_path):
    px = _rgb(2, 3).astype(np.uint8)
    im = Image.fromarray(px)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    assert P.load_image(tmp_path / "r.jpg", parse("order=RGB")).shape == (1, 3, 2, 3)
    assert P.load_image(tmp_path / "r.jpg", parse("order=RGB,exif=true")).shape == (1, 3, 3, 2)


# ------------------------------------------------------------------ parse / to_dict / to_text
def test_presets_round_trip():
    for name, spec in PRESETS.items():
        assert parse(name) == spec
        assert parse(spec.to_text()) == spec, name
        assert PreprocessSpec.from_dict(spec.to_dict()) == spec
        assert parse(spec.to_json()) == spec
        d = json.loads(json.dumps(spec.to_dict()))
        assert d["version"] == PREPROCESS_VERSION and PreprocessSpec.from_dict(d) == spec


def test_brief_example_is_the_efficientnet_preset():
    assert parse("resize=256,crop=224,order=RGB,mean=127,std=128,layout=NCHW") == PRESETS["efficientnet"]


def test_preset_overrides():
    assert parse("yolox,letterbox=640").pad_value == 114.0 and parse("yolox,letterbox=640").size == (640, 640)
    assert parse("yolox,resize=416x416").pad_value == 0.0
    s = parse("efficientnet,scale=0.5")
    assert s.mean is None and s.std is None and s.scale == (0.5,)
    assert parse("imagenet,layout=NHWC").layout == "NHWC"
    assert parse(" Imagenet , crop = none ").crop is None
    assert parse("mnist").output_shape() == (1, 1, 28, 28)
    assert parse("efficientnet").output_shape() == (1, 3, 224, 224)
    assert parse("resize=256").output_shape() == (1, 3, None, None)


_sizes = st.integers(1, 2000)
_vals = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False).filter(lambda v: v != 0), min_size=1, max_size=1)


@st.composite
def _specs(draw):
    mode = draw(st.sampled_from(["none", "shorter", "exact", "letterbox"]))
    size = () if mode == "none" else (draw(_sizes),) if mode == "shorter" else (draw(_sizes), draw(_sizes))
    order = draw(st.sampled_from(["RGB", "BGR", "GRAY"]))
    n = 1 if order == "GRAY" else draw(st.sampled_from([1, 3]))
    norm = draw(st.sampled_from(["none", "meanstd", "scale"]))
    chan = st.lists(st.floats(0.01, 300, allow_nan=False), min_size=n, max_size=n).map(tuple)
    kw = dict(mean=draw(chan), std=draw(chan)) if norm == "meanstd" else (
        dict(scale=draw(chan), offset=draw(chan)) if norm == "scale" else {})
    return PreprocessSpec(
        resize=mode, size=size, pad_value=draw(st.floats(0, 255)) if mode == "letterbox" else 0.0,
        crop=draw(st.none() | st.tuples(_sizes, _sizes)), channel_order=order,
        pixel_range=draw(st.sampled_from([255.0, 1.0])), layout=draw(st.sampled_from(["NCHW", "NHWC"])),
        resample=draw(st.sampled_from(P.RESAMPLE_FILTERS)), exif_transpose=draw(st.booleans()), **kw)


@settings(max_examples=60, deadline=None)
@given(_specs())
def test_round_trips_property(spec):
    assert parse(spec.to_text()) == spec
    assert PreprocessSpec.from_dict(json.loads(spec.to_json())) == spec


@pytest.mark.parametrize("text, match", [
    ("", "empty spec"),
    ("resize=256,,crop=224", "empty item"),
    ("resnet", "unknown preset 'resnet'.*imagenet"),
    ("crop=224,efficientnet", "not key=value"),
    ("size=224", "unknown key 'size'.*resize=N"),
    ("crop=224,crop=200", "given twice"),
    ("resize=224x", "HxW"),
    ("resize=0", "positive"),
    ("resize=256,letterbox=416", "not both"),
    ("resize=256,pad=114", "only to resize 'letterbox'"),
    ("mean=1/2", "2 values; give 1 or 3"),
    ("order=GRAY,mean=1/2/3", "3 values; give 1 or 1"),
    ("std=0", "must not be 0"),
    ("mean=127,scale=2", "not both"),
    ("range=2", "255.*or 1"),
    ("order=RGBA", "RGB, BGR, GRAY"),
    ("layout=CHW", "NCHW, NHWC"),
    ("dtype=uint8", "float32"),
    ("resample=area", "bilinear"),
    ("exif=maybe", "true or false"),
    ("mean=a", "numbers separated by '/'"),
    ("mean=nan", "finite"),
    ("{not json", "not valid JSON"),
])
def test_parse_errors(text, match):
    with pytest.raises(InvalidConfigError, match=match):
        parse(text)


def test_from_dict_version_and_key_errors():
    d = PRESETS["efficientnet"].to_dict()
    with pytest.raises(InvalidConfigError, match="version '2' is not known.*reads version '1'"):
        PreprocessSpec.from_dict({**d, "version": "2"})
    with pytest.raises(InvalidConfigError, match="no 'version'"):
        PreprocessSpec.from_dict({k: v for k, v in d.items() if k != "version"})
    with pytest.raises(InvalidConfigError, match="unknown key.*'gamma'.*known keys: resize"):
        PreprocessSpec.from_dict({**d, "gamma": 2.2})
    with pytest.raises(InvalidConfigError, match="expected a dict"):
        PreprocessSpec.from_dict([1])
    assert PreprocessSpec.from_dict({"version": "1"}) == PreprocessSpec()


# ------------------------------------------------------------------ files and folders
def test_load_image_errors(tmp_path):
    with pytest.raises(InputError, match="not found.*nope.png"):
        P.load_image(tmp_path / "nope.png", parse("tf"))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match=r"bad\.png is not a readable image"):
        P.load_image(tmp_path / "bad.png", parse("tf"))
    good = _png(tmp_path / "good.png", _rgb(30, 30))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(InputError, match=r"cut\.png is not a readable image"):
        P.load_image(tmp_path / "cut.png", parse("tf"))
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(InputError, match="array, not an image"):
        P.load_image(tmp_path / "a.npy", parse("tf"))
    with pytest.raises(InputError, match=r"good\.png.*30x30.*smaller than crop=40x40"):
        P.load_image(good, parse("crop=40"))
    Image.fromarray(np.full((2, 2), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(InputError, match="16-bit or float"):
        P.load_image(tmp_path / "deep.png", parse("tf"))


def test_iter_folder_sorted_mixed_and_skips(tmp_path, caplog):
    d = tmp_path / "imgs"
    d.mkdir()
    _png(d / "b.png", np.full((2, 2, 3), 2))
    _png(d / "a.BMP", np.full((2, 2, 3), 1))  # extensions are case-insensitive
    np.save(d / "c.npy", np.full((3, 2, 2), 3.0, np.float32))              # no batch axis: one is added
    np.savez(d / "d.npz", first=np.full((1, 3, 2, 2), 4.0), second=np.full((1, 3, 2, 2), 5.0))
    (d / "notes.txt").write_text("x")
    (d / ".hidden").write_text("x")
    (d / "sub").mkdir()
    with caplog.at_level(logging.WARNING, logger="npuflow.preprocess"):
        out = list(P.iter_folder(d, parse("order=RGB"), model_shape=[1, 3, 2, 2]))
    assert [float(o.flat[0]) for o in out] == [1, 2, 3, 4, 5]
    assert all(o.shape == (1, 3, 2, 2) for o in out)
    assert [p.name for p in P.folder_files(d)] == ["a.BMP", "b.png", "c.npy", "d.npz"]
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 2 entries" in msg and "notes.txt" in msg and "sub/" in msg and ".hidden" not in msg


def test_iter_folder_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        P.iter_folder(tmp_path / "missing", parse("tf"), model_shape=[1, 3, 2, 2])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"input folder {empty} is empty"):
        P.iter_folder(empty, parse("tf"), model_shape=[1, 3, 2, 2])
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="has no image.*skipped: x.gif"):
        P.iter_folder(other, parse("tf"), model_shape=[1, 3, 2, 2])
    pick = tmp_path / "pickle"
    pick.mkdir()
    np.save(pick / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="o.npy holds Python objects"):
        list(P.iter_folder(pick, parse("tf"), model_shape=[1]))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "z.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(InputError, match=r"z\.jpg is not a readable image"):
        list(P.iter_folder(broken, parse("tf,resize=2x2"), model_shape=[1, 3, 2, 2]))


@pytest.mark.parametrize("spec, shape, match", [
    ("resize=256", [1, 3, 224, 224], r"shape \[1, 3, 256, 256\].*expects \[1, 3, 224, 224\]; add crop=224x224 after resize=256"),
    ("resize=240x320", [1, 3, 320, 240], r"set resize=320x240 \(sizes are HxW"),
    ("efficientnet", [1, 224, 224, 3], "set layout=NHWC"),
    ("efficientnet", [1, 1, 224, 224], "set order=GRAY"),
    ("mnist", [1, 3, 28, 28], "set order=RGB or order=BGR"),
    ("yolox", [1, 3, 640, 640], "set letterbox=640x640"),
    ("efficientnet", [1, 3, 300, 300], "set crop=300x300"),
    ("tf", [1, 3, 8, 8], "add resize=8x8"),
    ("tf,resize=2x2", [4, 3, 2, 2], "the model's batch is 4"),
    ("tf,resize=2x2", [1, 3, 2], "3-D"),
])
def test_shape_mismatch_messages(tmp_path, spec, shape, match):
    d = tmp_path / "f"
    d.mkdir()
    _png(d / "p.png", _rgb(256, 256))
    with pytest.raises(InputError, match=match):
        list(P.iter_folder(d, parse(spec), model_shape=shape))


def test_fixed_spec_shape_checked_before_reading_files(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    (d / "z.jpg").write_bytes(b"broken")
    with pytest.raises(InputError, match="preprocess spec 'resize=4x4.*expects"):
        P.iter_folder(d, parse("resize=4x4"), model_shape=[1, 3, 8, 8])  # raised at call time, not on next()


def test_array_shape_mismatch_and_dynamic_dims(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"a\.npy: the input has shape \[1, 3, 4, 4\].*\[1, 3, 8, 8\]; arrays are used as they are"):
        list(P.iter_folder(d, parse("tf"), model_shape=[1, 3, 8, 8]))
    assert next(P.iter_folder(d, parse("tf"), model_shape=[None, 3, "h", -1])).shape == (1, 3, 4, 4)


# ------------------------------------------------------------------ MANIFEST.md reproductions
def test_manifest_efficientnet_zebra(shared):
    ri = _real_inputs()
    with open(shared / "data" / "imagenet_samples" / "labels.csv", newline="") as f:
        row = list(csv.DictReader(f))[340]
    x = P.load_image(shared / "data" / "imagenet_samples" / row["file"], parse("efficientnet"))
    np.testing.assert_array_equal(x, ri.efficientnet_lite0(shared, 340)["input"])


def test_manifest_yolox_letterbox(shared):
    ri = _real_inputs()
    x = P.load_image(shared / "data" / "coco_val2017" / "000000000285.jpg", parse("yolox"))
    np.testing.assert_array_equal(x, ri.yolox_nano(shared, "000000000285.jpg")["images"])


def test_manifest_ultraface_and_pan_close(shared):
    ri = _real_inputs()
    x = P.load_image(shared / "data" / "faces" / "1.jpg", parse("resize=240x320,mean=127,std=128"))
    np.testing.assert_array_equal(x, ri.ultraface_rfb_320(shared, "1.jpg")["input"])
    y = P.load_image(shared / "data" / "seg_skin_clothes_hair" / "image" / "0.png", parse("imagenet,resize=512x512,crop=none"))
    # float64 chain here, float32 chain there: equal to ~1 ulp
    np.testing.assert_allclose(y, ri.pan_mnv3s_skin_clothes_hair(shared, 0)["x.1"], rtol=0, atol=1e-6)
