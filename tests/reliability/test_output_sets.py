"""Issue 18 item 4: a run's outputs appear as one set (npuflow._outputs): an interrupted run leaves
the previous set, a run that died after its commit point is finished by the next one, the manifest
lists the set with sha256s, and two runs never write one folder at once (flock, gone with its process)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import pytest

from npuflow import _outputs
from npuflow._io import atomic_write_text
from npuflow._outputs import COMMIT_DIR, MANIFEST, OutputSet, read_manifest, verify
from npuflow.errors import OutputError


def _write_set(out, tag, names=("model.bie", "model_fx_report.json", "layer_dump/layers.csv")):
    with OutputSet(out, run="test") as s:
        for n in names:
            p = s.staging / n
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(p, f"{tag}:{n}")
        return s.commit()


def _contents(out):
    return {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()
            and p.name != MANIFEST}


def test_commit_writes_the_set_and_its_manifest(tmp_path):
    paths = _write_set(tmp_path, "A")
    assert sorted(paths) == ["layer_dump/layers.csv", "model.bie", "model_fx_report.json"]
    assert _contents(tmp_path) == {n: f"A:{n}" for n in paths}
    man = read_manifest(tmp_path)
    assert man["format"] == 1 and set(man["files"]) == set(paths) and verify(tmp_path) == []
    assert not list(tmp_path.glob(".npuflow-staging-*")) and not (tmp_path / COMMIT_DIR).exists()


def test_failure_before_the_commit_leaves_the_previous_set(tmp_path):
    _write_set(tmp_path, "A")
    with pytest.raises(KeyboardInterrupt):
        with OutputSet(tmp_path, run="test") as s:
            atomic_write_text(s.staging / "model.bie", "B:model.bie")
            raise KeyboardInterrupt  # Ctrl-C during the report phase
    assert _contents(tmp_path)["model.bie"] == "A:model.bie" and verify(tmp_path) == []
    assert not list(tmp_path.glob(".npuflow-staging-*"))


def test_a_run_that_died_after_its_commit_point_is_finished_by_the_next(tmp_path, monkeypatch):
    _write_set(tmp_path, "A")
    real = _outputs.roll_forward

    def die(out):  # the process dies right after the commit rename (nothing to do before it)
        if (out / COMMIT_DIR).exists():
            raise SystemExit("killed")
        return False

    monkeypatch.setattr(_outputs, "roll_forward", die)
    with pytest.raises(SystemExit):
        _write_set(tmp_path, "B")
    assert (tmp_path / COMMIT_DIR).is_dir()
    monkeypatch.setattr(_outputs, "roll_forward", real)
    assert _outputs.roll_forward(tmp_path) is True  # what the next run (or a reader) does first
    assert _contents(tmp_path) == {n: f"B:{n}" for n in ("layer_dump/layers.csv", "model.bie", "model_fx_report.json")}
    assert verify(tmp_path) == [] and not (tmp_path / COMMIT_DIR).exists()


def test_roll_forward_is_idempotent_after_a_partial_move(tmp_path):
    _write_set(tmp_path, "A")
    commit = tmp_path / COMMIT_DIR
    commit.mkdir()
    atomic_write_text(commit / "model.bie", "B:model.bie")
    atomic_write_text(commit / MANIFEST, json.dumps({"format": 1, "run": "t", "files": {}}))
    os.replace(commit / "model.bie", tmp_path / "model.bie")  # moved already, then the process died
    _write_set(tmp_path, "C", names=("other.txt",))  # the next run first finishes the old commit
    assert _contents(tmp_path)["model.bie"] == "B:model.bie" and _contents(tmp_path)["other.txt"] == "C:other.txt"
    assert set(read_manifest(tmp_path)["files"]) == {"other.txt"}


def test_a_second_run_on_the_folder_is_refused(tmp_path):
    with OutputSet(tmp_path, run="first"):
        with pytest.raises(OutputError, match="another npuflow run is writing into .* pass another output_dir"):
            with OutputSet(tmp_path, run="second"):
                pass
    with OutputSet(tmp_path, run="third") as s:  # released: the next run goes ahead
        s.commit()


def _hold_lock(path, ready):
    s = OutputSet(path, run="child")
    s.__enter__()
    ready.set()
    time.sleep(60)


def test_the_lock_dies_with_its_process(tmp_path):
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(20)
        with pytest.raises(OutputError, match="another npuflow run"):
            OutputSet(tmp_path, run="parent").__enter__()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    _write_set(tmp_path, "D")  # nothing left behind blocks the next run; its staging folder is cleaned
    assert verify(tmp_path) == [] and not list(tmp_path.glob(".npuflow-staging-*"))


def test_ctrl_c_during_the_moves_is_held_back(tmp_path):
    # Python's own Ctrl-C handler for the test (a process started in the background by a shell
    # inherits SIGINT ignored, and then a held-back SIGINT is rightly not raised afterwards)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _outputs._signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                done = True  # reached: the interrupt waited for the block's end
    finally:
        signal.signal(signal.SIGINT, before)
    assert done


def test_an_ignored_ctrl_c_stays_ignored_after_the_moves():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _outputs._signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_analysis_interrupted_in_the_report_phase_keeps_the_previous_set(tmp_path, monkeypatch, mnist_digits):
    """The issue's case: Ctrl-C while the report is written must not leave a new BIE beside an old report."""
    import ktc
    from npuflow.report import analysis_report
    from tests.conftest import EXAMPLES

    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx"))
    cal = {"Input3": list(mnist_digits["calib_x"][:4])}
    bie = km.analysis(cal, output_dir=tmp_path, threads=1, report_samples=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert verify(tmp_path) == [] and len(before) == 5

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis_report, "write_analysis_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        km.analysis({"Input3": list(mnist_digits["calib_x"][4:8])}, output_dir=tmp_path, threads=1, report_samples=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert verify(tmp_path) == [] and km.bie_path == bie and not list(tmp_path.glob(".npuflow-*"))
