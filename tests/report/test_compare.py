"""Layer dumps and float-vs-fixed comparison: ``npuflow.debug.compare_layers`` and ``npuflow compare``."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import npuflow
from npuflow.cli import main
from npuflow.debug import compare_layers
from npuflow.errors import InputError


@pytest.fixture(scope="module")
def x0(digits):
    return digits["calib_x"][0]


def test_compare_layers_api(mnist_analysis, x0):
    km, _ = mnist_analysis
    prog = km.analysis_result.program
    for source in (km.bie_path, npuflow.load(km.bie_path), km):
        cmp = compare_layers(source, {"Input3": x0})
        assert [r.tensor for r in cmp][0] == "Input3" and cmp.records[0].op_type == "Input"
        assert len(cmp) == 1 + sum(1 for st in prog.steps for y in st.outputs if y in prog.formats)
    conv = cmp.layer("Convolution28")  # by ONNX node name -> its step's output
    assert conv.tensor == prog.steps[0].outputs[0] and conv.nodes == ("Convolution28", "ReLU32")
    assert cmp.layer("ReLU32") is conv and cmp.layer(conv.tensor) is conv
    fmt = prog.formats[conv.tensor]
    np.testing.assert_array_equal(conv.dequantized, fmt.dequantize(conv.fixed))
    # the fixed side is the simulator's integers; the last tensor is the model output
    out = cmp.records[-1]
    q = npuflow.load(km.bie_path).run({"Input3": x0}, data_type="fixed")[0]
    np.testing.assert_array_equal(out.fixed, q)
    np.testing.assert_allclose(out.float, npuflow.load(km.analysis_result.optimized).run({"Input3": x0})[0], rtol=1e-6)
    assert conv.snr_db is not None and 20 < conv.snr_db < 70 and 0.99 < conv.cosine <= 1.0
    assert conv.max_err_lsb >= 0.5 - 1e-9  # rounding alone reaches half an LSB somewhere
    assert "Convolution28" in conv.summary() and "LSB" in conv.summary()
    assert [r.snr_db for r in cmp.worst(2)] == sorted(r.snr_db for r in cmp if r.snr_db is not None)[:2]
    with pytest.raises(InputError, match="no quantized tensor or node named 'nope'"):
        cmp.layer("nope")


def test_dump_files(mnist_analysis, x0, tmp_path):
    km, _ = mnist_analysis
    cmp = compare_layers(km.bie_path, [x0], input_names=["Input3"])
    paths = cmp.dump(tmp_path / "d")
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    with np.load(paths["float"]) as f, np.load(paths["fixed"]) as q, np.load(paths["dequantized"]) as d:
        assert sorted(f.files) == sorted(q.files) == sorted(d.files) == sorted(r["key"] for r in rows)
        for r, rec in zip(rows, cmp):
            assert r["tensor"] == rec.tensor
            np.testing.assert_array_equal(q[r["key"]], rec.fixed)
            assert q[r["key"]].dtype.kind == "i" and f[r["key"]].dtype == np.float32


def test_analysis_export_dynasty_dump(tmp_path, digits):
    import ktc

    from tests.report.conftest import MNIST

    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    km.analysis({"Input3": list(digits["calib_x"][:8])}, output_dir=tmp_path, threads=1, report=False,
                export_dynasty_dump=True)
    assert sorted(p.name for p in (tmp_path / "layer_dump").iterdir()) == [
        "dequantized.npz", "fixed.npz", "float.npz", "layers.csv"]
    assert not (tmp_path / "model_fx_report.html").exists()


def test_cli_compare(mnist_analysis, x0, tmp_path, capsys):
    km, _ = mnist_analysis
    npy = tmp_path / "x.npy"
    np.save(npy, x0)
    rc = main(["compare", km.bie_path, "-i", f"Input3={npy}", "--layer", "Convolution110", "--dump", str(tmp_path / "dump"),
               "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Input3" in out and "Convolution110" in out and "lowest SNR:" in out and "max |error|" in out
    assert (tmp_path / "dump" / "fixed.npz").is_file() and (tmp_path / "t.csv").is_file()
    assert main(["compare", km.bie_path, "-i", f"Input3={npy}", "--layer", "nope"]) == 2
    assert "no quantized tensor or node named 'nope'" in capsys.readouterr().err
    assert main(["compare", km.bie_path, "-i", f"Input3={npy}", "--csv", str(tmp_path / "t.csv")]) == 2  # exists
    assert main(["compare", str(npy), "-i", f"Input3={npy}"]) == 2


def test_cli_analysis_report_flag(tmp_path, digits, capsys):
    from tests.report.conftest import MNIST

    folder = tmp_path / "cal"
    folder.mkdir()
    for i, x in enumerate(digits["calib_x"][:6]):
        np.save(folder / f"{i}.npy", x)
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={folder}", "-o", str(tmp_path / "a"), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "model_fx_report.html (model-output SNR" in out
    doc = json.loads((tmp_path / "a" / "model_fx_report.json").read_text())
    assert doc["quantization"]["report_inputs"]["count"] == 6
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={folder}", "-o", str(tmp_path / "b"), "--threads", "1",
                 "--no-report"]) == 0
    assert not (tmp_path / "b" / "model_fx_report.html").exists()
