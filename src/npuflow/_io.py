"""Small file-system helpers: output folders and atomic writes (never a half-written file), safe CSV
cells, strict JSON, and the one checked reader of numpy ``.npy``/``.npz`` files."""
from __future__ import annotations

import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from npuflow.errors import InputError, InvalidConfigError, OutputError

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
    tmp: str | None = None
    try:
        if not path.parent.is_dir():
            raise OutputError(f"cannot write {path}: the folder {path.parent} does not exist; create it first or "
                              "choose another path")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, (OSError, ValueError)) and not isinstance(exc, OutputError):  # ValueError: NUL in the path
            why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
            raise OutputError(f"cannot write {path}: {why}; choose a writable folder or path") from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def refuse_overwrite(path: Path, force: bool) -> None:
    """Before any work: refuse an output file that exists (unless ``force``) or whose folder does not."""
    if not Path(path).parent.is_dir():
        raise OutputError(f"cannot write {path}: the folder {Path(path).parent} does not exist; create it first or "
                          "choose another path")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists: pass force=True (CLI: --force) to replace it, or choose another path")


# ----------------------------------------------------------------------------- CSV cells
#: text that is only a number, a list or range of numbers ("-0.5", "-3 -2", "-2..5", "1e-05", "-inf"):
#: a spreadsheet cannot run it, so it is written as it is
_NUMBER_TEXT = re.compile(r"[+-]?\.?\d[\d.eE+\-/x ]*|[+-]?(?:inf|nan)", re.IGNORECASE)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP "CSV injection").

    Text starting with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'``; numbers (and text
    that is only numbers, such as ``-0.5`` or ``-3 -2``) and all other text are returned unchanged.
    Every CSV file npuflow writes goes through this; its JSON files keep the exact names."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER_TEXT.fullmatch(value):
        return "'" + value
    return value


def csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with every cell through :func:`csv_cell`."""
    return {k: csv_cell(v) for k, v in row.items()}


# ----------------------------------------------------------------------------- JSON
def finite_or_null(value: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """A copy of a JSON-like structure with every non-finite number (inf, -inf, NaN, numpy floats
    included) replaced by None, and ``{path: what it was}`` for each one (paths like
    ``summary.fps`` or ``nodes[3].time_ms``)."""
    found: dict[str, str] = {}

    def walk(v: Any, p: str) -> Any:
        if isinstance(v, (float, np.floating)):
            if math.isfinite(v):
                return v
            found[p or "<value>"] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return None
        if isinstance(v, Mapping):
            return {k: walk(x, f"{p}.{k}" if p else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{p}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            return [walk(x, f"{p}[{i}]") for i, x in enumerate(v.tolist())]
        return v

    return walk(value, path), found


def json_dumps(value: Any, *, what: str, **kwargs: Any) -> str:
    """``json.dumps`` that writes standard JSON only (``allow_nan=False``).

    A non-finite number raises InvalidConfigError naming ``what`` and where in it the number is; a
    value JSON cannot hold (and ``default=`` does not convert) raises InvalidConfigError too."""
    import json

    _, bad = finite_or_null(value)
    if bad:
        where, v = next(iter(bad.items()))
        raise InvalidConfigError(f"{what}: {where} is {v}, which standard JSON cannot store; give finite numbers")
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidConfigError(f"{what} cannot be written as JSON ({exc}); give numbers, strings, lists and dicts") from None


# ----------------------------------------------------------------------------- .npy / .npz
#: the largest array data (declared in the headers, all arrays of one file together) npuflow reads
MAX_ARRAY_BYTES = 4 << 30

#: ``check_shape(where, shape)``: raise InputError when ``shape`` is not what the caller wants
ShapeCheck = Callable[[str, "tuple[int, ...]"], None]


def _array_header(fp: Any, where: str) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise InputError(f"{where}: .npy format version {version[0]}.{version[1]} is not read by npuflow "
                             "(numpy.save writes numeric arrays as 1.0 or 2.0); save it again with numpy.save")
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"{where} is not a valid .npy array ({exc}); save it with numpy.save") from None
    if dtype.hasobject:
        raise InputError(f"{where} holds Python objects (pickle), which npuflow never loads; save a numeric array")
    if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
        raise InputError(f"{where}: dtype {dtype} is not numeric; save a numeric array (float32, uint8, ...)")
    return tuple(int(d) for d in shape), dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _too_big(where: str, shape: tuple[int, ...], nbytes: int, max_bytes: int) -> InputError:
    return InputError(f"{where} declares shape {shape} ({nbytes:,} bytes), more than the {max_bytes:,} bytes npuflow "
                      "reads from one file; split it into smaller files")


def read_arrays(
    path: str | os.PathLike,
    *,
    what: str = "",
    check_shape: ShapeCheck | None = None,
    max_arrays: int | None = None,
    max_bytes: int = MAX_ARRAY_BYTES,
) -> list[tuple[str, np.ndarray]]:
    """Read a ``.npy`` file (one array) or a ``.npz`` file (one array per member, in stored order)
    as ``[(where, array)]``, ``where`` naming the file (and the member).

    Every header is checked before any array data is read: the file must be a .npy or .npz by its
    content (pickles and other data are never loaded; ``allow_pickle=False``), each dtype numeric,
    each declared size no larger than the data the file holds (.npy) or the member's stored size
    (.npz), all arrays together no larger than ``max_bytes``, at most ``max_arrays`` arrays, and
    ``check_shape(where, shape)`` (when given) must accept every shape. Every failure is an
    InputError naming the file (``what``, e.g. "input 'x'", is put in front of it)."""
    p = Path(path)
    label = f"{what}: {p}" if what else str(p)
    if not p.is_file():
        raise InputError(f"{what + ': ' if what else ''}file not found: {p}")
    fmt = np.lib.format
    try:
        with open(p, "rb") as fp:
            head = fp.read(6)
            if head.startswith(b"\x93NUMPY"):
                fp.seek(0)
                shape, dtype = _array_header(fp, label)
                nbytes, held = _nbytes(shape, dtype), os.fstat(fp.fileno()).st_size - fp.tell()
                if nbytes > held:
                    raise InputError(f"{label} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds only "
                                     f"{held:,} bytes of data: the file is truncated or not what it claims; save it again")
                if nbytes > max_bytes:
                    raise _too_big(label, shape, nbytes, max_bytes)
                if check_shape is not None:
                    check_shape(label, shape)
                fp.seek(0)
                return [(label, fmt.read_array(fp, allow_pickle=False))]
            if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise InputError(f"{label} is not a numpy .npy/.npz file (pickled objects and other formats are never "
                                 "loaded); save the array with numpy.save or numpy.savez")
        with zipfile.ZipFile(p) as zf:
            members = zf.infolist()
            if not members:
                raise InputError(f"{label} holds no arrays")
            if max_arrays is not None and len(members) > max_arrays:
                raise InputError(f"{label} holds {len(members)} arrays {[m.filename[:-4] for m in members][:10]}; "
                                 f"give a .npz with {max_arrays} array{'s' if max_arrays > 1 else ''} or a .npy")
            total = 0
            for m in members:
                key = m.filename[:-4] if m.filename.endswith(".npy") else m.filename
                where = f"{label}[{key}]"
                if not m.filename.endswith(".npy"):
                    raise InputError(f"{where} is not a .npy array (a .npz holds only .npy members); save it with numpy.savez")
                with zf.open(m) as f:
                    shape, dtype = _array_header(f, where)
                    nbytes, held = _nbytes(shape, dtype), m.file_size - f.tell()
                if nbytes > held:
                    raise InputError(f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds only "
                                     f"{held:,} bytes: the file is truncated or not what it claims; save it again")
                total += nbytes
                if total > max_bytes:
                    raise _too_big(where, shape, nbytes, max_bytes)
                if check_shape is not None:
                    check_shape(where, shape)
            out = []
            for m in members:
                with zf.open(m) as f:
                    out.append((f"{label}[{m.filename[:-4]}]", fmt.read_array(f, allow_pickle=False)))
            return out
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{label}: not enough memory to read it; use smaller files") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise InputError(f"{label} is not a readable .npy/.npz file ({type(exc).__name__}: {exc}); save it again with "
                         "numpy.save or numpy.savez") from None
