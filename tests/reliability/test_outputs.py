"""Issue 18, cases 3, 6, 9, 11 and the write errors: safe CSV cells, standard JSON with null
figures, options that used to be ignored, the model cache keyed on content, and clear errors when
an output cannot be written."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile

import jsonschema
import numpy as np
import onnx
import pytest

import ktc
import npuflow
from npuflow import api
from npuflow._io import atomic_write_bytes, csv_cell, finite_or_null, json_dumps
from npuflow.errors import InvalidConfigError, OutputError
from npuflow.model import file_key
from npuflow.report.document import REPORT_SCHEMA, report_json

from tests.reliability import _models as M

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EVIL = {"conv": '=HYPERLINK("http://evil","x")', "relu": "@SUM(1+1)", "tensor": "-2+3+cmd|' /C calc'!A0"}


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- CSV injection (case 3)
@pytest.mark.parametrize("text, out", [
    ("=1+2", "'=1+2"), ("+x", "'+x"), ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("conv1", "conv1"), ("", ""), ("a=b", "a=b"),
    ("-0.5", "-0.5"), ("-1e-05", "-1e-05"), ("-3 -2", "-3 -2"), ("-2..5", "-2..5"), ("-inf", "-inf"), (-3, -3), (1.5, 1.5),
])
def test_csv_cell(text, out):
    assert csv_cell(text) == out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_csv_escaped_json_exact(tmp_path):
    path = M.save(M.conv(EVIL["conv"], EVIL["relu"], EVIL["tensor"]), tmp_path / "evil.onnx")
    out = tmp_path / "out"
    ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path)).evaluate(output_dir=str(out))
    names = [r["name"] for r in _rows(out / "model_fx_report.csv")]
    assert names == ["'" + EVIL["conv"], "'" + EVIL["relu"]]
    doc = _strict_json((out / "model_fx_report.json").read_text())
    assert [n["name"] for n in doc["nodes"]] == [EVIL["conv"], EVIL["relu"]]


def test_analysis_csv_and_layer_dump_escaped(tmp_path):
    path = M.save(M.conv(EVIL["conv"], EVIL["relu"], EVIL["tensor"]), tmp_path / "evil.onnx")
    out = tmp_path / "out"
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 2, 6, 6)).astype(np.float32) for _ in range(4)]
    km = ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path))
    km.analysis({"x": xs}, output_dir=str(out), export_dynasty_dump=True)
    steps = _rows(out / "model_fx_report.csv")
    assert steps[0]["name"] == "'" + EVIL["conv"] and steps[0]["nodes"] == f"'{EVIL['conv']} {EVIL['relu']}"
    layers = _rows(out / "layer_dump" / "layers.csv")
    assert {r["step"] for r in layers} == {"", "'" + EVIL["conv"]}
    assert all(not v.startswith(("=", "+", "@", "\t", "\r")) for r in layers for v in r.values())
    # numeric cells are untouched (a negative minimum stays a number)
    assert any(r["float_min"].startswith("-") and float(r["float_min"]) < 0 for r in layers)
    doc = _strict_json((out / "model_fx_report.json").read_text())
    assert doc["quantization"]["steps"][0]["name"] == EVIL["conv"]


# ----------------------------------------------------------------------------- standard JSON (case 9)
def test_no_npu_work_fps_is_null_with_reason(tmp_path):
    path = M.save(M.no_inputs(), tmp_path / "constant_only.onnx")
    out = tmp_path / "out"
    text = ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path)).evaluate(output_dir=str(out))
    assert "kdp720/ip_eval/fps: inf" in text  # the ktc-style text line stays parseable
    raw = (out / "model_fx_report.json").read_text()
    assert "Infinity" not in raw and "NaN" not in raw
    doc = _strict_json(raw)
    assert doc["summary"]["fps"] is None
    assert "no NPU work on KL720" in doc["null_reasons"]["summary.fps"]
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert "inf" in (out / "model_fx_report.html").read_text()


def test_report_json_nulls_every_non_finite_figure():
    doc = {"summary": {"fps": 1.0}, "nodes": [{"time_ms": float("nan")}, {"time_ms": np.float32("-inf")}],
           "null_reasons": {}}
    out = _strict_json(report_json(doc))
    assert out["nodes"][0]["time_ms"] is None and out["nodes"][1]["time_ms"] is None
    assert out["null_reasons"] == {"nodes[0].time_ms": "not finite (nan)", "nodes[1].time_ms": "not finite (-inf)"}
    assert math.isnan(doc["nodes"][0]["time_ms"])  # the caller's document is not changed


def test_json_dumps_refuses_non_finite_and_non_json():
    assert json_dumps({"a": [1.5, None]}, what="x") == '{"a": [1.5, null]}'
    with pytest.raises(InvalidConfigError, match=r"preprocess: mean\[1\] is nan, which standard JSON cannot store"):
        json_dumps({"mean": [0.5, float("nan")]}, what="preprocess")
    with pytest.raises(InvalidConfigError, match=r"preprocess cannot be written as JSON .*set"):
        json_dumps({"mean": {1, 2}}, what="preprocess")
    assert finite_or_null({"a": (1.0, float("inf"))}) == ({"a": [1.0, None]}, {"a[1]": "inf"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bie_preprocess_non_finite_refused(tmp_path, bad):
    path = M.save(M.conv(), tmp_path / "tiny.onnx")
    xs = [np.ones((1, 2, 6, 6), np.float32)] * 2
    km = ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path))
    # checked with the other options, before any work (the JSON writer refuses it too: test above)
    with pytest.raises(InvalidConfigError, match=r"preprocess spec: mean must be finite"):
        km.analysis({"x": xs}, output_dir=str(tmp_path / "out"), preprocess={"mean": bad}, report=False)
    assert not (tmp_path / "out").exists()


def test_analysis_preprocess_forms_checked_and_recorded(tmp_path):
    from npuflow.preprocess import PRESETS

    path = M.save(M.conv(), tmp_path / "tiny.onnx")
    xs = [np.ones((1, 2, 6, 6), np.float32)] * 2
    km = ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path))
    for form in ("kneron", PRESETS["kneron"], PRESETS["kneron"].to_dict(), {"mean": [128.0], "std": [256.0]}):
        bie = km.analysis({"x": xs}, output_dir=str(tmp_path / "o"), preprocess=form, report=False)
        assert npuflow.load(bie).bie.preprocess == PRESETS["kneron"].to_dict()
    for bad, match in ((42, "preprocess must be a preprocessing spec"), ({"colour": "red"}, "unknown key"),
                       ("resize=0", "positive")):
        with pytest.raises(InvalidConfigError, match=match):
            km.analysis({"x": xs}, output_dir=str(tmp_path / "x"), preprocess=bad)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- options (case 6)
@pytest.mark.parametrize("platform", ["999", 999, [1, 2], "kl999", 720.5])
def test_kneron_inference_onnx_invalid_platform(mnist_example, platform):
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(InvalidConfigError, match=re.escape(f"unknown platform {platform!r}")):
        ktc.kneron_inference([x], input_names=["Input3"], onnx_file=str(mnist_example), platform=platform)


@pytest.mark.parametrize("platform", [720, "720", "kl530", 520, None])
def test_kneron_inference_onnx_valid_platform(mnist_example, platform):
    x = np.zeros((1, 1, 28, 28), np.float32)
    out = ktc.kneron_inference([x], input_names=["Input3"], onnx_file=str(mnist_example), platform=platform)
    assert out[0].shape == (1, 10)


# ----------------------------------------------------------------------------- cache (case 11)
def _same_size_pair(tmp_path):
    a = M.relu(name="act")
    b = M.relu(name="act")
    b.graph.node[0].op_type = "Tanh"  # same length as "Relu": same file size
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    pa.write_bytes(a.SerializeToString())
    pb.write_bytes(b.SerializeToString())
    assert pa.stat().st_size == pb.stat().st_size
    return pa, pb


def test_cache_sees_a_file_replaced_with_same_size_and_mtime(tmp_path):
    api.clear_cache()
    pa, pb = _same_size_pair(tmp_path)
    model = tmp_path / "m.onnx"
    shutil.copy2(pa, model)
    x = np.full((1, 2, 6, 6), -1.0, np.float32)
    st = os.stat(model)
    assert ktc.kneron_inference([x], input_names=["x"], onnx_file=str(model))[0].max() == 0.0  # Relu(-1)
    shutil.copyfile(pb, model)  # cp -p: same size, same mtime
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(model).st_mtime_ns == st.st_mtime_ns and os.stat(model).st_size == st.st_size
    y = ktc.kneron_inference([x], input_names=["x"], onnx_file=str(model))[0]
    np.testing.assert_allclose(y, np.tanh(-1.0), rtol=1e-6)
    assert len(api.cache_info()) == 2
    api.clear_cache()


def test_file_key_content(tmp_path):
    pa, pb = _same_size_pair(tmp_path)
    assert file_key(pa) != file_key(pb)
    assert file_key(pa) == file_key(pa)
    st = os.stat(pa)
    shutil.copyfile(pb, pa)  # replaced in place, mtime then set back: the change time moves
    os.utime(pa, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_key(pa)[:3] == (str(pa.resolve()), st.st_size, st.st_mtime_ns) and file_key(pa)[3] != st.st_ctime_ns


# ----------------------------------------------------------------------------- write errors
def test_atomic_write_missing_folder(tmp_path):
    target = tmp_path / "missing" / "a.bin"
    with pytest.raises(OutputError, match=f"cannot write {target}: the folder {target.parent} does not exist"):
        atomic_write_bytes(target, b"x")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_atomic_write_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=f"cannot write {ro / 'a.bin'}: Permission denied"):
            atomic_write_bytes(ro / "a.bin", b"x")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_atomic_write_refused_by_the_os(tmp_path, monkeypatch):
    """What a read-only folder gives a non-root user (root writes anyway, so the OS refusal is simulated)."""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'a.bin'}: Permission denied; choose a writable"):
        atomic_write_bytes(tmp_path / "a.bin", b"x")


def test_atomic_write_bad_names(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_bytes(tmp_path / "a\0b", b"x")
    with pytest.raises(OutputError, match="File name too long"):
        atomic_write_bytes(tmp_path / ("n" * 5000), b"x")
    assert list(tmp_path.iterdir()) == []


def test_model_with_cpu_only_work_reports_null(tmp_path):
    """An evaluate() of a model whose one node runs on the CPU: no NPU time, fps null in the JSON."""
    m = M.model([onnx.helper.make_node("TopK", ["x", "k"], ["y", "i"], name="topk", axis=-1)],
                inits=[onnx.numpy_helper.from_array(np.array([2], np.int64), "k")],
                outputs=[onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = M.save(m, tmp_path / "topk.onnx")
    out = tmp_path / "out"
    ktc.ModelConfig(32769, "0001", "720", onnx_path=str(path)).evaluate(output_dir=str(out))
    doc = _strict_json((out / "model_fx_report.json").read_text())
    if doc["summary"]["npu_node_count"] == 0:
        assert doc["summary"]["fps"] is None and "summary.fps" in doc["null_reasons"]
    else:
        assert isinstance(doc["summary"]["fps"], float)
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert io.StringIO((out / "model_fx_report.csv").read_text()).readline().startswith("index,name")
