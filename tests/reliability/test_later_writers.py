"""Issue 18 item 4, "every later writer uses the same writer": ``npuflow cut`` and the layer dumps
(``LayerComparison.dump``, ``npuflow compare --dump``) write their files as one set.

* cut, head and tail in one folder: an ``npuflow._outputs.OutputSet`` (staged, one commit rename,
  ``npuflow_manifest.json`` with sha256s, flock on the folder); a failure leaves neither file.
* cut, head and tail in two folders (a set is one folder, so no single rename can commit both):
  both folders locked, both files staged beside their targets, both renamed with Ctrl-C held
  back, the first undone when the second fails: both files or neither, the previous ones kept.
* never replacing an existing file without --force (checked again under the lock).
* dumps: the four files are one set; an interrupted dump leaves the previous one.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from npuflow._outputs import MANIFEST, OutputSet, read_manifest, verify
from npuflow.cli import main
from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")
BIE = EXAMPLES.parent / "tests" / "fixtures" / "mnist_cntk_opt.kdp720.scaled.bie"
AT = "Pooling66_Output_0"


def _cut(head, tail, *extra):
    return main(["cut", MNIST, "--at", AT, "-o", str(head), "--tail", str(tail), *extra])


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


# ---- cut ---------------------------------------------------------------------------------------
def test_cut_into_one_folder_is_one_set(tmp_path, capsys):
    assert _cut(tmp_path / "head.onnx", tmp_path / "tail.onnx") == 0
    assert _names(tmp_path) == ["head.onnx", "npuflow_manifest.json", "tail.onnx"]  # no staging left
    man = read_manifest(tmp_path)
    assert man["run"] == "cut" and sorted(man["files"]) == ["head.onnx", "tail.onnx"] and verify(tmp_path) == []
    assert onnx.load(tmp_path / "head.onnx").graph.output[0].name == AT


def test_cut_failing_in_one_folder_writes_neither_and_keeps_the_old_pair(tmp_path, capsys, monkeypatch):
    head, tail = tmp_path / "head.onnx", tmp_path / "tail.onnx"
    head.write_bytes(b"old head")
    tail.write_bytes(b"old tail")

    def broken_commit(self):
        raise KeyboardInterrupt  # Ctrl-C (or a full disk) before the commit point

    monkeypatch.setattr(OutputSet, "commit", broken_commit)
    assert _cut(head, tail, "--force") != 0
    assert "npuflow: interrupted" in capsys.readouterr().err
    assert head.read_bytes() == b"old head" and tail.read_bytes() == b"old tail"
    assert _names(tmp_path) == ["head.onnx", "tail.onnx"]


def test_cut_refuses_a_folder_another_run_is_writing(tmp_path, capsys):
    with OutputSet(tmp_path, run="analysis"):  # holds the folder's flock
        rc = _cut(tmp_path / "head.onnx", tmp_path / "tail.onnx")
    err = capsys.readouterr().err
    assert rc == 2 and "another npuflow run is writing into" in err and err.count("\n") == 1
    assert not (tmp_path / "head.onnx").exists() and not (tmp_path / "tail.onnx").exists()


def test_cut_refuses_the_manifest_name(tmp_path, capsys):
    assert _cut(tmp_path / MANIFEST, tmp_path / "tail.onnx") == 2
    assert "is a name npuflow's output sets use" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cut_into_two_folders_writes_both(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert _cut(a / "head.onnx", b / "tail.onnx") == 0
    assert _names(a) == ["head.onnx"] and _names(b) == ["tail.onnx"]  # no temporary or backup file left
    assert onnx.load(b / "tail.onnx").graph.node


@pytest.mark.parametrize("existing", [False, True])
def test_cut_into_two_folders_is_all_or_nothing(tmp_path, capsys, monkeypatch, existing):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    head, tail = a / "head.onnx", b / "tail.onnx"
    if existing:
        head.write_bytes(b"old head")
        tail.write_bytes(b"old tail")
    real = os.replace

    def failing(src, dst, *args, **kw):  # the second rename (the tail into place) fails
        if str(dst) == str(tail):
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", failing)
    rc = _cut(head, tail, "--force")
    monkeypatch.setattr(os, "replace", real)
    err = capsys.readouterr().err
    assert rc == 2 and "nothing was written" in err and str(tail) in err and err.count("\n") == 1
    if existing:  # the head was replaced, then put back
        assert head.read_bytes() == b"old head" and tail.read_bytes() == b"old tail"
    else:
        assert not head.exists() and not tail.exists()
    assert _names(a) == (["head.onnx"] if existing else []) and _names(b) == (["tail.onnx"] if existing else [])


def test_cut_into_two_folders_never_overwrites_without_force(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "tail.onnx").write_bytes(b"keep me")
    assert _cut(a / "head.onnx", b / "tail.onnx") == 2
    assert "already exists" in capsys.readouterr().err
    assert (b / "tail.onnx").read_bytes() == b"keep me" and _names(a) == []


# ---- layer dumps -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def comparison():
    from npuflow.debug import compare_layers

    with np.load(EXAMPLES / "mnist" / "digits.npz") as z:
        x = z["eval_x"][0]
    return compare_layers(str(BIE), [x], input_names=["Input3"])


def test_dump_is_one_set(tmp_path, comparison):
    paths = comparison.dump(tmp_path / "d")
    assert sorted(p.name for p in paths.values()) == ["dequantized.npz", "fixed.npz", "float.npz", "layers.csv"]
    assert all(p.parent == tmp_path / "d" and p.is_file() for p in paths.values())
    man = read_manifest(tmp_path / "d")
    assert man["run"] == "layer dump" and sorted(man["files"]) == sorted(p.name for p in paths.values())
    assert verify(tmp_path / "d") == []


def test_interrupted_dump_keeps_the_previous_one(tmp_path, comparison, monkeypatch):
    d = tmp_path / "d"
    comparison.dump(d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    real = type(comparison).to_csv

    def interrupted(self):  # after the three .npz files are written
        raise KeyboardInterrupt

    monkeypatch.setattr(type(comparison), "to_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        comparison.dump(d)
    monkeypatch.setattr(type(comparison), "to_csv", real)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before and verify(d) == []


def test_cli_compare_dump_is_one_set(tmp_path, capsys):
    with np.load(EXAMPLES / "mnist" / "digits.npz") as z:
        np.save(tmp_path / "x.npy", z["eval_x"][0])
    d = tmp_path / "dump"
    assert main(["compare", str(BIE), "-i", f"Input3={tmp_path / 'x.npy'}", "--dump", str(d)]) == 0
    assert _names(d) == ["dequantized.npz", "fixed.npz", "float.npz", "layers.csv", MANIFEST] and verify(d) == []
