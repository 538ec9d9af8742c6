"""Outputs written as one set: all the files of a run appear in ``output_dir`` together, or none do.

A run (an ``analysis()``: the BIE, the report, the layer dump; an ``evaluate()``; a cut) writes its
files into a staging folder inside ``output_dir`` and then commits them:

1. the staging folder gets ``npuflow_manifest.json``: every file of the set with its size and sha256;
2. the staging folder is renamed to ``output_dir/.npuflow-commit``: **the commit point** (one atomic
   rename). Before it, ``output_dir`` holds the previous outputs untouched; after it, the set is
   committed even if the process dies;
3. each file is moved into ``output_dir`` (``os.replace``, atomic per file), the manifest last, and
   the commit folder removed. A run that finds a ``.npuflow-commit`` left by a process that died in
   step 3 finishes it first (roll-forward: the moves are idempotent).

So after any interruption or failure, the files named by ``npuflow_manifest.json`` are one complete
set: the previous one, or the new one. Files of an earlier set that the new one does not write (for
example the report of a run with ``report=False``, or another model's BIE in a shared folder) are
left as they are; the manifest says which files belong to the latest set.

Concurrent runs on one ``output_dir`` are refused: each run holds an exclusive ``flock`` on the
folder itself from start to commit (an OS lock: it dies with its process, so a crash leaves nothing
that blocks the next run, and no lock file). Ctrl-C during step 3 is held back until the moves are done.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from npuflow._io import atomic_write_text, ensure_output_dir
from npuflow.errors import OutputError

MANIFEST = "npuflow_manifest.json"
COMMIT_DIR = ".npuflow-commit"
STAGING_PREFIX = ".npuflow-staging-"
MANIFEST_FORMAT = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Relative paths of the regular files below ``root`` (POSIX separators, sorted)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def read_manifest(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the latest complete set in ``output_dir`` (None when there is none)."""
    p = Path(output_dir) / MANIFEST
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify(output_dir: str | os.PathLike) -> list[str]:
    """Files of the manifest's set that are missing or differ from it (empty: the set is complete)."""
    out = Path(output_dir)
    man = read_manifest(out)
    if man is None:
        return [MANIFEST]
    bad = []
    for rel, info in man.get("files", {}).items():
        p = out / rel
        if not p.is_file() or p.stat().st_size != info["bytes"] or _sha256(p) != info["sha256"]:
            bad.append(rel)
    return bad


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(out, os.O_RDONLY)  # the folder itself is locked: no lock file is ever left behind
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another npuflow run is writing into {out} right now: wait for it to finish, or pass "
                              "another output_dir") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT (Ctrl-C) until the block ends (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[Any] = []
    old = signal.signal(signal.SIGINT, lambda *a: got.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and callable(old):
            old(*got[0])


def roll_forward(out: Path) -> bool:
    """Finish a commit that a dead process left in ``out`` (step 3); True when there was one."""
    commit = out / COMMIT_DIR
    if not commit.is_dir():
        return False
    with _signals_held():
        for rel in _files(commit):
            if rel == MANIFEST:
                continue
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(commit / rel, dst)
        if (commit / MANIFEST).is_file():
            os.replace(commit / MANIFEST, out / MANIFEST)
        shutil.rmtree(commit, ignore_errors=True)
    return True


class OutputSet:
    """``with OutputSet(output_dir, run="analysis") as s:`` write every file under ``s.staging``
    (same relative names as in ``output_dir``), then ``s.commit()``; leaving the block without a
    commit (an error, Ctrl-C) removes the staging folder and leaves ``output_dir`` as it was.
    ``s.final(path)`` maps a staged path to its place in ``output_dir``."""

    def __init__(self, output_dir: str | os.PathLike | None, *, run: str) -> None:
        self.run = run
        self.output_dir = ensure_output_dir(output_dir)
        self.staging: Path = Path()
        self.committed = False
        self._lock_cm: Any = None

    def __enter__(self) -> OutputSet:
        self._lock_cm = _lock(self.output_dir)
        self._lock_cm.__enter__()
        try:
            roll_forward(self.output_dir)
            for stale in self.output_dir.glob(STAGING_PREFIX + "*"):  # left by a process that died
                shutil.rmtree(stale, ignore_errors=True)
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.output_dir))
        except BaseException:
            self._lock_cm.__exit__(None, None, None)
            raise
        return self

    def final(self, path: str | os.PathLike) -> Path:
        return self.output_dir / Path(path).relative_to(self.staging)

    def commit(self) -> dict[str, Path]:
        """Commit the staged files (steps 1-3); returns {relative name: final path}."""
        names = _files(self.staging)
        manifest = {"format": MANIFEST_FORMAT, "run": self.run,
                    "files": {rel: {"bytes": (self.staging / rel).stat().st_size, "sha256": _sha256(self.staging / rel)}
                              for rel in names}}
        atomic_write_text(self.staging / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False))
        commit = self.output_dir / COMMIT_DIR
        try:
            os.rename(self.staging, commit)  # the commit point
        except OSError as exc:
            raise OutputError(f"cannot commit the outputs into {self.output_dir}: {exc.strerror}") from exc
        self.committed = True
        roll_forward(self.output_dir)
        return {rel: self.output_dir / rel for rel in names}

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if not self.committed and self.staging.is_dir():
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._lock_cm.__exit__(None, None, None)
