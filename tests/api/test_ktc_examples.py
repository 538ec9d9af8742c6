"""Calls from the original toolchain's published examples (issue 19), written from the documented usage
(docs/compatibility.md lists them): the quantization ladder on one ModelConfig, ``quan_config``,
BIEs wherever a model path is accepted (recognized by content), checked attribute assignment, the
channel-last message and the converters' refusals."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import onnx
import pytest

import ktc
import npuflow
from npuflow.errors import CompatibilityWarning, InputError, InvalidConfigError, ModelLoadError, NotAvailableError

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.fixture(scope="module")
def digits(mnist_digits):
    return mnist_digits


@pytest.fixture(scope="module")
def bie(tmp_path_factory, digits):
    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=MNIST)
    return km.analysis({"Input3": list(digits["calib_x"][:8])}, output_dir=tmp_path_factory.mktemp("b"), threads=1,
                       report=False)


def test_quantization_ladder_on_one_model_config(digits, tmp_path):
    """The quantization page: int8, then int16, on the same km built with onnx_model= (a ModelProto)."""
    km = ktc.ModelConfig(40000, "0001", "720", onnx_model=onnx.load(MNIST))
    cal = {"Input3": list(digits["calib_x"][:8])}
    b8 = km.analysis(cal, output_dir=str(tmp_path / "int8"), report=False)
    assert km.bie_path == b8
    b16 = km.analysis(cal, output_dir=str(tmp_path / "int16"), datapath_bitwidth_mode="int16",
                      weight_bitwidth_mode="int16", report=False)
    assert km.bie_path == b16 and b16 != b8
    f8, f16 = npuflow.load(b8).program.formats, npuflow.load(b16).program.formats
    assert {f.bits for f in f8.values()} == {8} and 16 in {f.bits for f in f16.values()}
    x = digits["calib_x"][0]  # inside the calibrated range: int16 is closer to float
    y8 = ktc.kneron_inference([x], input_names=["Input3"], bie_file=b8, platform=720)[0]
    y16 = ktc.kneron_inference([x], input_names=["Input3"], bie_file=b16, platform=720)[0]
    ref = ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MNIST)[0]
    assert np.abs(y16 - ref).max() < np.abs(y8 - ref).max()


def test_quan_config_becomes_node_overrides(digits, tmp_path):
    km = ktc.ModelConfig(40000, "0001", "730", onnx_path=MNIST)
    cal = {"Input3": list(digits["calib_x"][:8])}
    bie = km.analysis(cal, output_dir=tmp_path, report=False, quan_config={"Convolution28": {"bitwidth": {"all": 15}}})
    m = npuflow.load(bie)
    conv = next(st for st in m.program.steps if "Convolution28" in st.nodes)
    assert m.program.formats[conv.outputs[0]].bits == 16
    import json

    meta = {p.key: p.value for p in onnx.load(bie).metadata_props}
    assert json.loads(meta["npuflow.options"])["node_overrides"] == {"Convolution28": {"bits": 16, "weight_bits": 16}}
    # the same request through node_overrides gives the same file
    bie2 = km.analysis(cal, output_dir=tmp_path / "n", report=False,
                       node_overrides={"Convolution28": {"bits": 16, "weight_bits": 16}})
    assert open(bie, "rb").read() == open(bie2, "rb").read()


@pytest.mark.parametrize("quan_config, match", [
    ([("Convolution28", 8)], "quan_config must be a dict"),
    ({"Convolution28": {"bits": 8}}, r'must be \{"bitwidth"'),
    ({"Convolution28": {"bitwidth": {"all": 8}, "scale": 2.0}}, r"\['scale'\] are not supported.*abs_max"),
    ({"Convolution28": {"bitwidth": {"input": 8}}}, "keys must be among all, output, weight"),
    ({"Convolution28": {"bitwidth": {"all": 8, "weight": 4}}}, "give 'all' alone"),
    ({"Convolution28": {"bitwidth": {"all": 12}}}, "must be 8 or 16"),
    ({"Convolution28": {"bitwidth": {"output": 4}}}, "only weights can be 4-bit"),
    ({"nope": {"bitwidth": {"all": 16}}}, r"node_overrides/quan_config names \['nope'\] are not nodes"),
])
def test_quan_config_refusals(quan_config, match, tmp_path):
    km = ktc.ModelConfig(40000, "0001", "730", onnx_path=MNIST)
    with pytest.raises(InvalidConfigError, match=match):
        km.analysis({"Input3": []}, output_dir=tmp_path / "o", quan_config=quan_config)


def test_quan_config_conflicts_and_other_platforms(tmp_path):
    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=MNIST)
    with pytest.raises(InvalidConfigError, match="node_overrides sets bits=8 but quan_config sets 16"):
        km.analysis({"Input3": []}, node_overrides={"Convolution28": {"bits": 8}},
                    quan_config={"Convolution28": {"bitwidth": {"all": 16}}})
    with pytest.raises(InvalidConfigError, match=r"weight_bits=4 not allowed on KL720"):
        km.analysis({"Input3": []}, quan_config={"Convolution28": {"bitwidth": {"weight": 4}}})
    with pytest.warns(CompatibilityWarning, match="KL730 only in the original"), \
            pytest.raises(InvalidConfigError, match="are not nodes"):
        km.analysis({"Input3": []}, output_dir=tmp_path, quan_config={"nope": {"bitwidth": {"all": 16}}})


def test_bie_accepted_by_content_where_a_model_path_is(bie, tmp_path, capsys):
    from ktc import opt_and_eval
    from npuflow.cli import main

    renamed = tmp_path / "model_copy.bin"
    shutil.copy(bie, renamed)
    for path in (bie, str(renamed)):
        assert main(["evaluate", path, "-p", "720", "-o", str(tmp_path / "e")]) == 0
        assert "kdp720/ip_eval/fps" in capsys.readouterr().out
        assert isinstance(npuflow.load(path), npuflow.model.FixedModel)
    assert opt_and_eval.main(["720", str(renamed), "-E", str(tmp_path / "o")]) == 0
    assert "kdp720/ip_eval/fps" in capsys.readouterr().out
    assert main(["evaluate", str(renamed), "-p", "530", "-o", str(tmp_path / "x")]) == 2
    assert "quantized for platform 720, not 530" in capsys.readouterr().err


def test_content_that_contradicts_the_argument_is_refused(bie, tmp_path):
    with pytest.raises(ModelLoadError, match=r"is an npuflow BIE \(a quantized model\), not a float ONNX model: pass it as a BIE"):
        ktc.ModelConfig(40000, "0001", "720", onnx_path=bie)
    with pytest.raises(ModelLoadError, match="is an npuflow BIE"):
        ktc.kneron_inference([np.zeros((1, 1, 28, 28), np.float32)], input_names=["Input3"], onnx_file=bie)
    with pytest.raises(ModelLoadError, match="plain ONNX model, not an npuflow BIE.*onnx_path/onnx_file"):
        ktc.ModelConfig(40000, "0001", "720", bie_path=MNIST)
    with pytest.raises(ModelLoadError, match="plain ONNX model"):
        ktc.kneron_inference([np.zeros((1, 1, 28, 28), np.float32)], input_names=["Input3"], bie_file=MNIST, platform=720)
    float_as_bin = tmp_path / "float.bin"
    shutil.copy(MNIST, float_as_bin)
    assert isinstance(npuflow.load(str(float_as_bin)), npuflow.FloatModel)


def test_attribute_assignment_is_checked_like_the_constructor(bie):
    km = ktc.ModelConfig(40000, "0001", "720", onnx_path=MNIST)
    with pytest.raises(InvalidConfigError, match="input_fmt is supported on platform 730 only"):
        km.input_fmt = "4W4C8B"
    assert km.input_fmt is None
    km730 = ktc.ModelConfig(40000, "0001", "730", onnx_path=MNIST)
    with pytest.warns(CompatibilityWarning, match="input_fmt is stored but unused"):
        km730.input_fmt = "4W4C8B"
    assert km730.input_fmt == "4W4C8B"
    with pytest.raises(InvalidConfigError, match="not one of the KL730 input formats"):
        km730.input_fmt = "4W4C9B"
    with pytest.raises(InvalidConfigError, match="input_fmt is set"):
        km730.platform = "720"
    with pytest.raises(InvalidConfigError, match="id must be an int"):
        km.id = "7"
    with pytest.raises(InvalidConfigError, match="four-digit hex"):
        km.version = "1"
    with pytest.raises(InvalidConfigError, match="debug must be True or False"):
        km.debug = "yes"
    with pytest.raises(InvalidConfigError, match="520, 720, 530, 630, 730"):
        km.platform = 820
    km.platform = 530
    assert km.platform.id == 530
    kb = ktc.ModelConfig(40000, "0001", "720", bie_path=bie)
    with pytest.raises(InvalidConfigError, match="holds a BIE quantized for platform 720"):
        kb.platform = 530
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        km.id, km.version, km.debug = 40001, "0a2f", True  # valid values: no warning, stored
    assert (km.id, km.version, km.debug) == (40001, "0a2f", True)


def test_channel_last_input_names_the_converter(bie):
    x = np.zeros((1, 28, 28, 1), np.float32)
    for kw in (dict(onnx_file=MNIST), dict(bie_file=bie, platform=720)):
        with pytest.raises(InputError, match=r"looks channel-last.*ktc.convert_channel_last_to_first"):
            ktc.kneron_inference([x], input_names=["Input3"], **kw)
    with pytest.raises(InputError, match="looks channel-last"):
        ktc.kneron_inference([np.zeros((28, 28, 1), np.float32)], input_names=["Input3"], onnx_file=MNIST)
    with pytest.raises(InputError) as e:  # a shape that is wrong in another way gets no such hint
        ktc.kneron_inference([np.zeros((1, 1, 27, 28), np.float32)], input_names=["Input3"], onnx_file=MNIST)
    assert "channel-last" not in str(e.value)
    y = ktc.kneron_inference([ktc.convert_channel_last_to_first(x[0])], input_names=["Input3"], onnx_file=MNIST)
    assert y[0].shape == (1, 10)


@pytest.mark.parametrize("name, exporter", [("keras2onnx_flow", "tf2onnx"), ("tflite2onnx_flow", "--tflite"),
                                            ("caffe2onnx_flow", "caffe2onnx")])
def test_converters_refused_naming_the_exporter(name, exporter):
    with pytest.raises(NotAvailableError, match=exporter):
        getattr(ktc.onnx_optimizer, name)("model.h5")
