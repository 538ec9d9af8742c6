"""analysis() end to end on the shipped MNIST model: BIE, simulator, determinism, bad input."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest

import ktc
import npuflow
from npuflow.errors import CompatibilityWarning, InputError, InvalidConfigError, ModelLoadError

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.fixture(scope="module")
def digits():
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def km(platform=720, **kw):
    return ktc.ModelConfig(40000, "0001", platform, onnx_path=MNIST, **kw)


@pytest.fixture(scope="module")
def bie_int8(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("int8")
    return km().analysis({"Input3": list(digits["calib_x"])}, output_dir=out, threads=1)


def snr(ref, x):
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    return 10 * np.log10((ref ** 2).sum() / ((ref - x) ** 2).sum())


def test_bie_name_and_valid_onnx(bie_int8):
    assert os.path.basename(bie_int8) == "mnist_cntk_opt.kdp720.scaled.bie"
    m = onnx.load(bie_int8)
    onnx.checker.check_model(m)
    assert {n.domain for n in m.graph.node} == {"ai.npuflow"}
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["npuflow.platform"] == "720" and meta["npuflow.numerics_version"]
    assert len(meta["npuflow.checksum"]) == 64


def test_fixed_simulation_accuracy_and_types(bie_int8, digits):
    ref, fx, correct = [], [], 0
    for x, y in zip(digits["eval_x"], digits["eval_y"]):
        f = ktc.kneron_inference([x], input_names=["Input3"], bie_file=bie_int8, platform=720)[0]
        r = ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MNIST)[0]
        fx.append(f)
        ref.append(r)
        correct += int(f.argmax() == y)
    assert correct / len(fx) >= 0.95
    assert snr(ref, fx) > 20
    q = ktc.kneron_inference([digits["eval_x"][0]], input_names=["Input3"], bie_file=bie_int8, platform=720, data_type="fixed")[0]
    assert q.dtype == np.int8
    m = npuflow.load(bie_int8)
    f = m.run({"Input3": digits["eval_x"][0]})[0]
    fmt = m.program.formats[m.output_names[0]]
    np.testing.assert_array_equal(f, fmt.dequantize(q).astype(np.float32))
    batch = m.run_batch({"Input3": digits["eval_x"][:5]})[0]
    np.testing.assert_array_equal(batch, np.concatenate([m.run({"Input3": x})[0] for x in digits["eval_x"][:5]]))


def test_platform_mismatch_refused(bie_int8, digits):
    with pytest.raises(InvalidConfigError, match="quantized for platform 720, not 530"):
        ktc.kneron_inference([digits["eval_x"][0]], input_names=["Input3"], bie_file=bie_int8, platform=530)


def test_deterministic_across_threads_and_folders(tmp_path, digits):
    digests = set()
    for threads in (1, 2, 4):
        p = km().analysis({"Input3": list(digits["calib_x"][:16])}, output_dir=tmp_path / f"t{threads}", threads=threads)
        digests.add(hashlib.sha256(open(p, "rb").read()).hexdigest())
    assert len(digests) == 1


def test_generator_consumed_once(tmp_path, digits):
    seen = []

    def gen():
        for x in digits["calib_x"][:10]:
            seen.append(1)
            yield x

    p = km().analysis({"Input3": gen()}, output_dir=tmp_path)
    assert len(seen) == 10 and os.path.isfile(p)


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({}, "Cannot find the corresponding input data of model input Input3"),
        ({"Input3": [np.zeros((1, 1, 28, 28), np.float32)], "extra": []}, "key 'extra' which is not a model input"),
        ({"Input3": [np.zeros((1, 28, 28), np.float32)]}, r"calibration array #0.*shape \(1, 28, 28\).*expects \(1, 1, 28, 28\)"),
        ({"Input3": [np.zeros((1, 1, 28, 28), np.float32), np.full((1, 1, 28, 28), np.nan, np.float32)]}, "calibration array #1.*NaN"),
        ({"Input3": []}, "is empty"),
        ({"Input3": np.zeros((4, 1, 1, 28, 28), np.float32)}, "single numpy array"),
        ({"Input3": 5}, "must be a list or iterable"),
        ([np.zeros((1, 1, 28, 28), np.float32)], "must be a dict"),
    ],
)
def test_bad_calibration_inputs_write_nothing(tmp_path, mapping, match):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match):
        km().analysis(mapping, output_dir=out)
    assert not out.exists() or os.listdir(out) == []


def test_bitwidth_modes_per_platform(tmp_path, digits):
    cal = {"Input3": list(digits["calib_x"][:8])}
    with pytest.raises(InvalidConfigError, match=r"int16.*platform 520.*platforms that allow it: 720"):
        km(520).analysis(cal, output_dir=tmp_path, datapath_bitwidth_mode="int16")
    with pytest.raises(InvalidConfigError, match="platforms that allow it: 730"):
        km(720).analysis(cal, output_dir=tmp_path, weight_bitwidth_mode="int4")
    p8 = km(730).analysis(cal, output_dir=tmp_path / "w8")
    p4 = km(730).analysis(cal, output_dir=tmp_path / "w4", weight_bitwidth_mode="int4")
    assert os.path.getsize(p4) < os.path.getsize(p8)  # int4 weights are packed two per byte
    m4 = npuflow.load(p4)
    w = m4.program.params[0].w_q
    assert w.min() >= -8 and w.max() <= 7


def test_int16_is_more_precise(tmp_path, digits):
    cal = {"Input3": list(digits["calib_x"][:32])}
    p8 = km().analysis(cal, output_dir=tmp_path / "a")
    p16 = km().analysis(cal, output_dir=tmp_path / "b", datapath_bitwidth_mode="int16", weight_bitwidth_mode="int16",
                        model_in_bitwidth_mode="int16", model_out_bitwidth_mode="int16")
    f = npuflow.load(MNIST)
    xs = digits["eval_x"][:16]
    ref = [f.run({"Input3": x})[0] for x in xs]
    s8 = snr(ref, [npuflow.load(p8).run({"Input3": x})[0] for x in xs])
    s16 = snr(ref, [npuflow.load(p16).run({"Input3": x})[0] for x in xs])
    assert s16 > s8 + 20 and s16 > 50


def test_node_override_and_options(tmp_path, digits):
    cal = {"Input3": list(digits["calib_x"][:8])}
    p = km().analysis(cal, output_dir=tmp_path / "o", node_overrides={"Convolution28": {"bits": 16}})
    m = npuflow.load(p)
    conv = m.program.steps[0]
    assert conv.nodes[0] == "Convolution28" and m.program.formats[conv.outputs[0]].bits == 16
    with pytest.raises(InvalidConfigError, match="not nodes of the optimized model"):
        km().analysis(cal, output_dir=tmp_path / "x", node_overrides={"nope": {"bits": 16}})
    with pytest.raises(InvalidConfigError, match="bits=16 not allowed on KL520"):
        km(520).analysis(cal, output_dir=tmp_path / "x", node_overrides={"Convolution28": {"bits": 16}})
    for kw in ({"datapath_range_method": "mmse"}, {"quantize_mode": "post_sigmoid"}, {"percentage": 1.0, "percentage_16b": 1.0}):
        assert os.path.isfile(km().analysis(cal, output_dir=tmp_path / "k", **kw))
    with pytest.warns(CompatibilityWarning, match="bias adjustment"):
        km().analysis(cal, output_dir=tmp_path / "k", optimize=2)
    with pytest.raises(InvalidConfigError, match="outlier"):
        km().analysis(cal, output_dir=tmp_path / "k", outlier=0.99)
    with pytest.raises(InvalidConfigError, match="percentage"):
        km().analysis(cal, output_dir=tmp_path / "k", percentage=2.0)
    # the mixed modes run (docs/fixed-point.md 10.3; tests/analysis/test_mixed_precision.py): MNIST's two
    # convolutions have 8 and 16 output channels, small-channel steps that mix light makes 16-bit
    assert os.path.isfile(km().analysis(cal, output_dir=tmp_path / "k", datapath_bitwidth_mode="mix light"))


def test_modelconfig_from_bie(bie_int8, tmp_path):
    k = ktc.ModelConfig(40000, "0001", 720, bie_path=bie_int8)
    assert "kdp720/ip_eval/fps" in k.evaluate(output_dir=tmp_path)
    with pytest.raises(InvalidConfigError, match="built from a BIE: analysis needs the float model"):
        k.analysis({"Input3": []}, output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(InvalidConfigError, match="platform 720, not 520"):
        ktc.ModelConfig(40000, "0001", 520, bie_path=bie_int8)


def test_corrupted_truncated_newer_bie(bie_int8, tmp_path):
    data = open(bie_int8, "rb").read()
    trunc = tmp_path / "trunc.bie"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="trunc.bie"):
        npuflow.load(str(trunc))
    m = onnx.load(bie_int8)
    for p in m.metadata_props:
        if p.key == "npuflow.options":
            p.value = p.value.replace("percentage", "percentagE")
    edited = tmp_path / "edited.bie"
    edited.write_bytes(m.SerializeToString())
    with pytest.raises(ModelLoadError, match="checksum mismatch"):
        npuflow.load(str(edited))
    m = onnx.load(bie_int8)
    for p in m.metadata_props:
        if p.key == "npuflow.bie.format_version":
            p.value = "9.0"
    newer = tmp_path / "newer.bie"
    newer.write_bytes(m.SerializeToString())
    with pytest.raises(ModelLoadError, match="newer than the"):
        npuflow.load(str(newer))
