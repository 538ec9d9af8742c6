"""The CLI: exit codes, one-line errors, --help, never overwriting without --force."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from npuflow.cli import main

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "npuflow", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("cmd", ["optimize", "evaluate", "infer"])
def test_help_explains_options(cmd):
    r = run_cli(cmd, "--help")
    assert r.returncode == 0
    assert "usage: npuflow " + cmd in r.stdout
    for opt in {"optimize": ["--keep-bn", "--input-shape", "--force"],
                "evaluate": ["--platform", "--output-dir", "--datapath-bitwidth"],
                "infer": ["--input", "--batch", "--save"]}[cmd]:
        assert opt in r.stdout


def test_evaluate_cli(tmp_path, capsys):
    assert main(["evaluate", MNIST, "--platform", "720", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kdp720/ip_eval/fps: " in out
    assert (tmp_path / "model_fx_report.html").is_file()


def test_optimize_cli_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "m.opt.onnx"
    assert main(["optimize", MNIST, "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["optimize", MNIST, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert out.read_bytes() == before
    assert main(["optimize", MNIST, "-o", str(out), "--force"]) == 0


def test_infer_cli(tmp_path, capsys):
    with np.load(EXAMPLES / "mnist" / "digits.npz") as z:
        x, y = z["eval_x"][:4], z["eval_y"][:4]
    np.save(tmp_path / "x.npy", x)
    assert main(["infer", MNIST, "-i", f"Input3={tmp_path / 'x.npy'}", "--batch", "--save", str(tmp_path / "o.npz")]) == 0
    out = capsys.readouterr().out
    assert f"argmax {y.tolist()}" in out
    with np.load(tmp_path / "o.npz") as z:
        assert z["output_0"].shape == (4, 10)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("garbage")
    for args in (["evaluate", str(bad), "--platform", "720"],
                 ["evaluate", MNIST, "--platform", "999"],
                 ["evaluate", str(tmp_path / "nope.onnx"), "--platform", "720"],
                 ["infer", MNIST, "-i", "Input3=" + str(tmp_path / "missing.npy")]):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("npuflow ")


def test_ktc_opt_and_eval(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ktc.opt_and_eval", "530", MNIST, "-E", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "kdp530/ip_eval/fps" in r.stdout


def test_analysis_and_fixed_infer_cli(tmp_path, capsys):
    with np.load(EXAMPLES / "mnist" / "digits.npz") as z:
        cal, x0 = z["calib_x"][:12], z["eval_x"][0]
    (tmp_path / "cal").mkdir()
    for i, x in enumerate(cal):
        np.save(tmp_path / "cal" / f"{i:02d}.npy", x)
    np.save(tmp_path / "x0.npy", x0)
    out = tmp_path / "out"
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={tmp_path / 'cal'}", "-o", str(out)]) == 0
    bie = out / "mnist_cntk_opt.kdp720.scaled.bie"
    assert bie.is_file()
    assert main(["infer", str(bie), "-p", "720", "-i", f"Input3={tmp_path / 'x0.npy'}", "--data-type", "fixed"]) == 0
    assert "int8" in capsys.readouterr().out
    # --optimize 3: the sequential bias adjustment, recorded in the BIE
    out3 = tmp_path / "out3"
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={tmp_path / 'cal'}", "-o", str(out3), "--optimize", "3",
                 "--weight-rounding", "nearest", "--no-report"]) == 0
    import npuflow
    opts3 = npuflow.load(str(out3 / "mnist_cntk_opt.kdp720.scaled.bie")).bie.options
    assert (opts3["optimize"], opts3["weight_rounding"]) == (3, "nearest")
    assert npuflow.load(str(bie)).bie.options["weight_rounding"] == "compensated"
    # images through the recorded preprocessing spec
    out2 = tmp_path / "out2"
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={EXAMPLES / 'mnist' / 'digits'}", "--preprocess", "mnist",
                 "-o", str(out2)]) == 0
    png = sorted((EXAMPLES / "mnist" / "digits").glob("*label2.png"))[0]
    capsys.readouterr()
    assert main(["infer", str(out2 / "mnist_cntk_opt.kdp720.scaled.bie"), "-i", f"Input3={png}"]) == 0
    assert "argmax [2]" in capsys.readouterr().out


def test_analysis_cli_errors(tmp_path, capsys):
    assert main(["analysis", MNIST, "-p", "720", "-i", f"X={tmp_path}"]) == 2
    assert "Cannot find the corresponding input image folder of model input Input3" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["analysis", MNIST, "-p", "720", "-i", f"Input3={tmp_path / 'empty'}", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and not (tmp_path / "o" / "mnist_cntk_opt.kdp720.scaled.bie").exists()
