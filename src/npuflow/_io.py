"""Small file-system helpers: output folders and atomic writes (never a half-written file)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from npuflow.errors import OutputError

DEFAULT_OUTPUT_DIR = "npuflow_output"


def ensure_output_dir(output_dir: str | os.PathLike | None) -> Path:
    """Create ``output_dir`` (default ``./npuflow_output``) and check that it is writable."""
    path = Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output_dir {path} exists and is not a folder: pass another output_dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output_dir {path}: {exc.strerror}. Pass a writable output_dir") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output_dir {path} is not writable: pass a writable output_dir")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise OutputError(f"{path} already exists: pass force=True (CLI: --force) to replace it, or choose another path")
