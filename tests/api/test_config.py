"""ModelConfig validation, evaluate() end to end, and the ktc facade's refusals and warnings."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import onnx
import pytest

import ktc
from npuflow.errors import (CompatibilityWarning, DynamicShapeError, InvalidConfigError, ModelLoadError,
                            NotAvailableError, OutputError)

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(id="1", version="0001", platform=720, onnx_path=MNIST), "id must be an int"),
        (dict(id=True, version="0001", platform=720, onnx_path=MNIST), "id must be an int"),
        (dict(id=40000, version="1", platform=720, onnx_path=MNIST), "four-digit hex"),
        (dict(id=40000, version="zzzz", platform=720, onnx_path=MNIST), "four-digit hex"),
        (dict(id=40000, version="0001", platform=820, onnx_path=MNIST), "520"),
        (dict(id=40000, version="0001", platform=720), "exactly one model source"),
        (dict(id=40000, version="0001", platform=720, onnx_path=MNIST, onnx_model=onnx.ModelProto()), "exactly one model source"),
        (dict(id=40000, version="0001", platform=720, onnx_model=MNIST), "onnx_model must be an onnx.ModelProto"),
        (dict(id=40000, version="0001", platform=720, onnx_path=MNIST, input_fmt="4W4C8B"), "730 only"),
    ],
)
def test_modelconfig_validation(kwargs, match):
    with pytest.raises(InvalidConfigError, match=match):
        ktc.ModelConfig(**kwargs)


def test_modelconfig_accepts_str_and_int_platform():
    assert ktc.ModelConfig(40000, "0a2f", "720", onnx_path=MNIST).platform.id == 720
    assert ktc.ModelConfig(40000, "0A2F", 530, onnx_path=MNIST).platform.id == 530


def test_reserved_id_warns():
    with pytest.warns(CompatibilityWarning, match="reserved for Kneron"):
        ktc.ModelConfig(1, "0001", 720, onnx_path=MNIST)


def test_compile_only_parameters_warn():
    with pytest.warns(CompatibilityWarning, match="radix_json_path"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST, radix_json_path="r.json")
    with pytest.warns(CompatibilityWarning, match="input_fmt"):
        ktc.ModelConfig(40000, "0001", 730, onnx_path=MNIST, input_fmt="4W4C8B")


def test_evaluate_writes_report_and_returns_key_lines(tmp_path):
    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=MNIST, debug=True)
    text = km.evaluate(output_dir=tmp_path / "out")
    lines = text.splitlines()
    fps_line = [l for l in lines if l.startswith("kdp720/ip_eval/fps: ")]
    assert len(fps_line) == 1 and float(fps_line[0].split(": ")[1]) > 0
    assert any(l.startswith("kdp720/ip_eval/ITC(ms): ") for l in lines)
    assert "kdp720/cpu_node: N/A" in lines
    assert f"gen fx model report: {tmp_path / 'out' / 'model_fx_report.html'}" in lines
    for f in ("model_fx_report.html", "model_fx_report.json", "model_fx_report.csv", "mnist_cntk_opt.opt.onnx"):
        assert (tmp_path / "out" / f).is_file()
    doc = json.loads((tmp_path / "out" / "model_fx_report.json").read_text())
    assert doc["platform"]["id"] == 720 and doc["summary"]["cpu_node_count"] == 0
    assert {n["op_type"] for n in doc["nodes"]} >= {"Conv", "MaxPool"}
    # nothing but our files (no temporaries left behind): the set and its manifest
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["model_fx_report.html", "model_fx_report.json", "model_fx_report.csv", "mnist_cntk_opt.opt.onnx",
         "npuflow_manifest.json"])


def test_evaluate_bitwidth_rules(tmp_path):
    km520 = ktc.ModelConfig(40000, "0001", 520, onnx_path=MNIST)
    with pytest.raises(InvalidConfigError, match=r"int16.*not allowed on platform 520.*720"):
        km520.evaluate(output_dir=tmp_path, datapath_bitwidth_mode="int16")
    km720 = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with pytest.raises(InvalidConfigError, match=r"int4.*platforms that allow it: 730"):
        km720.evaluate(output_dir=tmp_path, weight_bitwidth_mode="int4")
    with pytest.raises(InvalidConfigError, match="mixed modes .* are chosen per tensor by analysis"):
        km720.evaluate(output_dir=tmp_path, datapath_bitwidth_mode="mix light")
    with pytest.warns(CompatibilityWarning, match="deep_search"):
        km720.evaluate(output_dir=tmp_path, compiler_tiling="deep_search")
    text16 = km720.evaluate(output_dir=tmp_path, datapath_bitwidth_mode="int16")
    assert "kdp720/datapath bitwidth: int16" in text16
    km730 = ktc.ModelConfig(40000, "0001", 730, onnx_path=MNIST)
    assert "kdp730/weight bitwidth: int4" in km730.evaluate(output_dir=tmp_path, weight_bitwidth_mode="int4")


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with pytest.raises(OutputError, match="not a folder"):
        km.evaluate(output_dir=blocker)
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputError, match="not writable"):
            km.evaluate(output_dir=ro)


def test_bad_model_files(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="notes.onnx"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=text)
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(open(MNIST, "rb").read()[:5000])
    with pytest.raises(ModelLoadError, match="trunc.onnx.*(truncated|not an ONNX)"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=truncated)
    with pytest.raises(ModelLoadError, match="not found"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=tmp_path / "missing.onnx")
    zipped = tmp_path / "model.pt"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelLoadError, match="zip archive"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=zipped)


def test_unknown_opset_is_refused(tmp_path):
    m = onnx.load(MNIST)
    for imp in m.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 99
    p = tmp_path / "future.onnx"
    onnx.save(m, p)
    with pytest.raises(ModelLoadError, match="opset 99"):
        ktc.ModelConfig(40000, "0001", 720, onnx_path=p)


def test_encrypted_or_foreign_bie(tmp_path):
    enc = tmp_path / "model.bie"
    enc.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match="(encrypted Kneron|not an npuflow BIE)"):
        ktc.ModelConfig(40000, "0001", 720, bie_path=enc)
    plain = tmp_path / "plain.bie"
    plain.write_bytes(open(MNIST, "rb").read())
    with pytest.raises(ModelLoadError, match="plain ONNX model, not an npuflow BIE"):
        ktc.ModelConfig(40000, "0001", 720, bie_path=plain)
    with pytest.raises(ModelLoadError, match="not an npuflow BIE|encrypted"):
        ktc.kneron_inference([np.zeros((1, 1, 28, 28), np.float32)], input_names=["Input3"], bie_file=str(enc), platform=720)


def test_dynamic_dims_without_override_fail_clearly(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, "H", "W"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"], name="relu0")], "g", [x], [y])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)])
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=m)
    with pytest.raises(DynamicShapeError, match="'x'.*dim 2"):
        km.evaluate(output_dir=tmp_path / "o")
    assert not (tmp_path / "o" / "model_fx_report.json").exists()
    km2 = ktc.ModelConfig(40000, "0001", 720, onnx_model=m, input_shapes={"x": [1, 3, 8, 8]})
    assert "kdp720/ip_eval/fps" in km2.evaluate(output_dir=tmp_path / "o2")


def test_not_built_yet_features_fail_clearly():
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with pytest.raises(NotAvailableError, match="compile"):
        ktc.compile([km])
    with pytest.raises(NotAvailableError):
        ktc.encrypt_compile([km])
    with pytest.raises(NotAvailableError):
        ktc.combine_nef(["a.nef"])
    # eliminate_tail is implemented (tests/api/test_cut_cli.py); MNIST has no trailing node to remove
    assert len(ktc.onnx_optimizer.onnx2onnx_flow(onnx.load(MNIST), eliminate_tail=True).graph.node) == len(
        ktc.onnx_optimizer.onnx2onnx_flow(onnx.load(MNIST)).graph.node)
    with pytest.raises(NotAvailableError, match="keras2onnx_flow"):
        ktc.onnx_optimizer.keras2onnx_flow("m.h5")


def test_onnx2onnx_flow_legacy_flags():
    m = onnx.load(MNIST)
    with pytest.warns(CompatibilityWarning, match="opt_matmul"):
        out = ktc.onnx_optimizer.onnx2onnx_flow(m, opt_matmul=True)
    assert isinstance(out, onnx.ModelProto)
    with pytest.raises(InvalidConfigError, match="unknown parameter"):
        ktc.onnx_optimizer.onnx2onnx_flow(m, frobnicate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ktc.onnx_optimizer.onnx2onnx_flow(m, disable_fuse_bn=True)


def test_get_radix():
    assert ktc.get_radix([np.array([0.5, -0.25])]) == 8  # RGB/256-0.5 -> radix 8 (inventory 2.1)
    assert ktc.get_radix(np.array([1.0])) == 7
    assert ktc.get_radix([np.array([127.0])]) == 0
    with pytest.raises(ValueError, match="above 128"):
        ktc.get_radix([np.array([300.0])])
    with pytest.raises(ValueError, match="every input value is 0"):
        ktc.get_radix([np.zeros(4)])
    with pytest.raises(ValueError, match="NaN"):
        ktc.get_radix([np.array([np.nan])])
    with pytest.raises(ValueError, match="empty"):
        ktc.get_radix([])


def test_channel_last_to_first():
    img = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = ktc.convert_channel_last_to_first(img)
    assert out.shape == (1, 4, 2, 3) and out[0, 1, 0, 2] == img[0, 2, 1]
