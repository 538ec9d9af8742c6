"""The BIE validator: everything a BIE says is checked before any kernel sees it.

:func:`read_contents` turns the parsed, checksum-verified ONNX model of a BIE into its float model
and its :class:`~npuflow.analysis.program.Program`, and refuses, with one
:class:`~npuflow.errors.ModelLoadError` naming the file, the step and the field, every file that
breaks docs/bie-format.md or the numerics specification (docs/fixed-point.md). The checksum only
detects accidental damage; this is what makes a deliberately edited file (with a recomputed
checksum) safe to load. What it guarantees is listed in docs/bie-format.md ("What the validator
guarantees"); in short:

* **structure**: versions (compared as versions), metadata, the JSON (standard JSON only; the
  plan decoded value by value against its schema, options and preprocess nested at most
  :data:`MAX_JSON_DEPTH`), every step's keys and types, the parameter tensors (present, not
  external, of exactly the declared element type: no INT32 where int8 is declared, no FLOAT), the
  stored float model and every CPU node (readable protobuf, a valid graph; a CPU node is the float
  model's node of its name, of its step's op type, on the float model's weights);
* **bounds** of docs/fixed-point.md: formats (bits of the platform, radix, scale rule of section 1),
  requantization multipliers ``|M|`` in ``[2**30, 2**31)`` (or ``M = 0`` with shift 0 where a zero
  ratio is possible), shifts, accumulator width, biases within the accumulator, tables;
* **consistency**: each step's parameter formats are ``plan.formats`` of its tensors; every
  multiplier that the stored formats determine is the one they give (relative error at most
  ``2**-30``); the others (constants, alpha, slopes, weight formats not stored) imply formats
  within the spec's radix range; weight shapes against attributes; bias and multiplier lengths
  against channels; every tensor's shape, computed step by step from the model inputs as the
  kernels compute it, is valid for each kernel and equals the shape the stored float model
  declares for it; the steps are in an order that runs (every input defined before use, every
  tensor written once, every model output produced).

So a BIE that loads runs every kernel on inputs and parameters inside their domains: it gives
outputs of its declared container dtypes within each output format's range, or an npuflow error.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, NoReturn

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from npuflow.analysis.graph import Step
from npuflow.analysis.program import Program
from npuflow.errors import ModelLoadError, NpuflowError
from npuflow.sim.fixed_point import NUMERICS_VERSION, QFormat, accumulator_bits, qrange
from npuflow.sim.kernels import (
    KERNELS,
    _mac,
    activation,
    base,
    batchnorm,
    conv,
    elementwise,
    lut,
    matmul,
    movement,
    pool,
)
from npuflow.sim.kernels import resize as resize_k
from npuflow.sim.kernels import softmax as softmax_k

KEY = "npuflow."
FLOAT_MODEL = "npuflow.float_model"
MAX_JSON_DEPTH = 32
"""Deepest nesting of the JSON metadata (a plan written by npuflow nests 8 deep)."""
MAX_INLINE = 4096
"""Longest list or inline array in the plan (the writer stores arrays of more than 16 values as tensors)."""
MAX_ELEMENTS = 1 << 28
"""Largest tensor (elements) a program may compute; the float model's declared shapes are the
tighter check, this one holds where it declares none."""
WEIGHT_RADIX = (-128, 127)
"""Radix range of weight formats (spec section 3: chosen formats lie in [-128, 127]; the
multiplier cap of section 3.2 lowers activation formats only)."""
ACT_RADIX = (-512, 127)
"""Radix range of activation formats: at most 127 (section 3); the multiplier cap lowers some
below -128 and the spec sets no lower bound, so -512 is npuflow's sanity bound (far below any
format the analysis makes, far above where a format's factor stops being a normal float64)."""
SHIFT_MAX = 2048
"""Largest requantization shift where the spec sets no bound (section 4 bounds it below by -31);
a ratio below 2**-2079 cannot come from float32 constants and format factors."""
I64 = (-(1 << 63), (1 << 63) - 1)
M_LO, M_HI = 1 << 30, 1 << 31  # |M| in [2**30, 2**31) (spec section 4)
RATIO_TOL = 2.0**-30  # the spec's 2**-31 relative error, with room for the float64 evaluation

_FIX = "; the file breaks docs/bie-format.md (edited, or written by a faulty tool): re-run analysis() on the float model"


# ==============================================================================================
# errors and small helpers
# ==============================================================================================
class _Check:
    """Raises one-line ModelLoadErrors naming the file and where in it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, at: str, msg: str) -> NoReturn:
        raise ModelLoadError(f"{self.path}: {at}: {msg}{_FIX}")


def _any(a: Any) -> bool:
    return bool(np.asarray(a).any())


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: Any, *, quote: bool = True, n: int = 80) -> str:
    """``repr(v)`` (or ``str``) cut to ``n`` characters, for names quoted in one-line messages."""
    t = str(v) if not quote and isinstance(v, str) and v.isprintable() else repr(v)
    return t if len(t) <= n else t[: n - 3] + "..."


def _tname(v: Any) -> str:
    return "null" if v is None else {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                                     list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def parse_version(text: Any) -> tuple[int, int] | None:
    """``"MAJOR.MINOR"`` as a tuple of ints (``"1.09"`` is ``(1, 9)``), None when malformed."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"(\d{1,6})\.(\d{1,6})", text, flags=re.ASCII)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_version(path: str, what: str, text: Any, current: str) -> tuple[int, int]:
    """Compare a stored version with the one this npuflow implements, as versions: a newer one
    asks for an upgrade, an older major version or a malformed one gets its own message."""
    cur = parse_version(current)
    assert cur is not None
    v = parse_version(text)
    if v is None:
        raise ModelLoadError(f"{path}: the {what} version {text!r} is malformed (expected MAJOR.MINOR, e.g. "
                             f"{current!r}){_FIX}")
    if v > cur:
        raise ModelLoadError(f"{path} is an npuflow BIE of {what} version {text}, newer than the {current} this "
                             "npuflow reads: upgrade npuflow")
    if v[0] < cur[0]:
        raise ModelLoadError(f"{path} is an npuflow BIE of {what} version {text}, older than the {cur[0]}.x this "
                             "npuflow reads: re-run analysis() on the float model with this npuflow")
    return v


def load_json(ck: _Check, key: str, text: str, *, walk: bool = True) -> Any:
    """Standard JSON only (no NaN/Infinity), not nested too deeply to parse; with ``walk``, nested
    at most MAX_JSON_DEPTH (the plan needs no walk: every value of it is decoded against its schema,
    which nests a fixed number of levels, and numbers beyond float64 fail their finite checks)."""
    def no_const(c: str) -> Any:
        raise ValueError(f"non-standard JSON value {c}")

    try:
        value = json.loads(text, parse_constant=no_const)
    except RecursionError:
        ck.fail(key, f"the JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    except ValueError as exc:  # JSONDecodeError, our refusals, integers over Python's digit limit
        ck.fail(key, f"not valid JSON ({str(exc)[:200]})")
    stack = [(value, 1)] if walk else []
    while stack:
        v, d = stack.pop()
        if d > MAX_JSON_DEPTH:
            ck.fail(key, f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(v, dict):
            stack.extend((e, d + 1) for e in v.values())
        elif isinstance(v, list):
            stack.extend((e, d + 1) for e in v)
        elif isinstance(v, float) and not math.isfinite(v):
            ck.fail(key, f"the number {v} does not fit a float64")
    return value


# ==============================================================================================
# decoding typed values from the plan (every type checked, with the field's path in errors)
# ==============================================================================================
_DTYPES = {"|i1": onnx.TensorProto.INT8, "<i2": onnx.TensorProto.INT16, "<i4": onnx.TensorProto.INT32,
           "<i8": onnx.TensorProto.INT64, "|b1": onnx.TensorProto.BOOL}
_DTYPE_WORDS = {"|i1": "int8", "<i2": "int16", "<i4": "int32", "<i8": "int64", "|b1": "bool"}


class _Dec:
    """Decodes one step's ``params`` JSON (with references into the initializers)."""

    def __init__(self, ck: _Check, inits: Mapping[str, onnx.TensorProto], used: set[str],
                 formats: dict[tuple[int, int, float], QFormat] | None = None) -> None:
        self.ck = ck
        self.inits = inits
        self.used = used
        self.formats = {} if formats is None else formats  # per-tensor formats decoded so far in this file

    # --- scalars ---
    def int(self, v: Any, at: str, lo: int | None = None, hi: int | None = None) -> int:
        if not _is_int(v):
            self.ck.fail(at, f"expected an integer, got {_tname(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.ck.fail(at, f"{v} is outside [{lo}, {hi}]")
        return int(v)

    def bool(self, v: Any, at: str) -> bool:
        if not isinstance(v, bool):
            self.ck.fail(at, f"expected true or false, got {_tname(v)}")
        return v

    def float(self, v: Any, at: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            self.ck.fail(at, f"expected a finite number, got {_tname(v)}")
        return float(v)

    def str(self, v: Any, at: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(v, str):
            self.ck.fail(at, f"expected a string, got {_tname(v)}")
        if choices is not None and v not in choices:
            self.ck.fail(at, f"{v!r} is not one of {', '.join(map(repr, choices))}")
        return v

    def ints(self, v: Any, at: str) -> tuple[int, ...]:
        if not isinstance(v, list) or len(v) > MAX_INLINE:
            self.ck.fail(at, f"expected a list of at most {MAX_INLINE} integers, got {_tname(v)}")
        return tuple(self.int(e, f"{at}[{i}]", *I64) for i, e in enumerate(v))

    def floats(self, v: Any, at: str) -> tuple[float, ...]:
        if not isinstance(v, list) or len(v) > MAX_INLINE:
            self.ck.fail(at, f"expected a list of at most {MAX_INLINE} numbers, got {_tname(v)}")
        return tuple(self.float(e, f"{at}[{i}]") for i, e in enumerate(v))

    def opt(self, fn: Callable[..., Any], v: Any, at: str, *a: Any) -> Any:
        return None if v is None else fn(v, at, *a)

    # --- formats ---
    def qformat(self, v: Any, at: str) -> QFormat:
        if not isinstance(v, dict) or set(v) != {"__qformat__"} or not isinstance(v["__qformat__"], dict):
            self.ck.fail(at, f"expected a format {{'__qformat__': {{...}}}}, got {_tname(v)}")
        return self.format_dict(v["__qformat__"], at)

    def format_dict(self, d: Any, at: str) -> QFormat:
        if isinstance(d, dict) and len(d) == 4 and d.get("axis", 0) is None:  # per tensor: the usual case
            key = (d.get("bits"), d.get("radix"), d.get("scale"))
            if all(type(v) is t for v, t in zip(key, (int, int, float))):
                f = self.formats.get(key)
                if f is None:
                    f = self.formats[key] = self._format_dict(d, at)
                return f
        return self._format_dict(d, at)

    def _format_dict(self, d: Any, at: str) -> QFormat:
        if not isinstance(d, dict) or set(d) != {"bits", "radix", "scale", "axis"}:
            self.ck.fail(at, "a format has exactly the keys bits, radix, scale, axis"
                         + ("" if isinstance(d, dict) else f" (got {_tname(d)})"))
        bits = self.int(d["bits"], f"{at}.bits", 2, 48)
        axis = self.opt(self.int, d["axis"], f"{at}.axis", -8, 8)
        if axis is None:
            radix: Any = self.int(d["radix"], f"{at}.radix", *I64)
            scale: Any = self.float(d["scale"], f"{at}.scale")
        else:
            radix, scale = self.ints(d["radix"], f"{at}.radix"), self.floats(d["scale"], f"{at}.scale")
            if not radix or len(radix) != len(scale):
                self.ck.fail(at, f"a per-channel format needs as many radixes as scales (got {len(radix)} and "
                                 f"{len(scale)}), at least one")
        try:
            return QFormat(bits, radix, scale, axis)
        except (ValueError, TypeError) as exc:
            self.ck.fail(at, str(exc))

    # --- arrays ---
    def array(self, v: Any, at: str, dtypes: Sequence[str]) -> np.ndarray:
        words = " or ".join(_DTYPE_WORDS[d] for d in dtypes)
        if not isinstance(v, dict):
            self.ck.fail(at, f"expected an array, got {_tname(v)}")
        if "__init__" in v:
            return self._init_array(v, at, dtypes, words)
        if set(v) != {"__ndarray__", "shape", "data"}:
            self.ck.fail(at, "an inline array has exactly the keys __ndarray__, shape, data")
        dt = v["__ndarray__"]
        if dt not in dtypes:
            self.ck.fail(at, f"element type {dt!r} where {words} is required")
        shape = self._shape(v["shape"], f"{at}.shape")
        data = v["data"]
        if len(shape) and math.prod(shape) > MAX_INLINE:
            self.ck.fail(at, f"an inline array holds at most {MAX_INLINE} values (larger ones are tensors)")
        if not isinstance(data, list) or len(data) != math.prod(shape):
            self.ck.fail(at, f"data must be a list of {math.prod(shape)} values (its shape {list(shape)})")
        if dt == "|b1":
            if not all(isinstance(e, bool) for e in data):
                self.ck.fail(f"{at}.data", "expected booleans")
        else:
            lo, hi = np.iinfo(np.dtype(dt)).min, np.iinfo(np.dtype(dt)).max
            for i, e in enumerate(data):
                if not _is_int(e) or not lo <= e <= hi:
                    self.ck.fail(f"{at}.data[{i}]", f"expected an {_DTYPE_WORDS[dt]} value, got {e!r}"[:200])
        return np.asarray(data, dtype=np.dtype(dt)).reshape(shape)

    def _shape(self, v: Any, at: str) -> tuple[int, ...]:
        shape = self.ints(v, at)
        if len(shape) > 8 or any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
            self.ck.fail(at, f"{list(shape)} is not a valid array shape (at most 8 non-negative dims, "
                             f"{MAX_ELEMENTS} elements)")
        return shape

    def _init_array(self, v: dict[str, Any], at: str, dtypes: Sequence[str], words: str) -> np.ndarray:
        int4 = v.get("int4", False)
        keys = {"__init__", "dtype"} | ({"int4", "shape"} if int4 is not False else set())
        if set(v) != keys or int4 not in (False, True):
            self.ck.fail(at, "a tensor reference has the keys __init__, dtype (and int4: true, shape for packed int4)")
        name = self.str(v["__init__"], f"{at}.__init__")
        dt = self.str(v["dtype"], f"{at}.dtype")
        if dt not in dtypes:
            self.ck.fail(at, f"element type {dt!r} where {words} is required")
        t = self.inits.get(name)
        if t is None:
            self.ck.fail(at, f"parameter tensor {name!r} is missing from the initializers")
        self.used.add(name)
        want = onnx.TensorProto.UINT8 if int4 else _DTYPES[dt]
        if t.data_type != want:
            self.ck.fail(at, f"tensor {name!r} is stored as {onnx.TensorProto.DataType.Name(t.data_type)} where "
                             f"{onnx.TensorProto.DataType.Name(want)} is declared"
                             + (" (int4 packed two per byte)" if int4 else ""))
        arr = tensor_array(self.ck, t, at)
        if int4:
            if dt != "|i1":
                self.ck.fail(at, "packed int4 weights are declared int8")
            shape = self._shape(v["shape"], f"{at}.shape")
            n = math.prod(shape)
            if arr.ndim != 1 or arr.size != (n + 1) // 2:
                self.ck.fail(at, f"packed int4 tensor {name!r} has {arr.size} bytes for shape {list(shape)} "
                                 f"({(n + 1) // 2} expected)")
            return unpack_int4(arr, list(shape))
        return arr

    # --- nested ---
    def nested(self, v: Any, at: str, cls: type) -> Any:
        return decode_params(self, v, at, cls)


def unpack_int4(packed: np.ndarray, shape: list[int]) -> np.ndarray:
    """int4 weights stored two per byte, low nibble first, two's complement (docs/bie-format.md)."""
    lo = (packed & 0xF).astype(np.int16)
    hi = (packed >> 4).astype(np.int16)
    flat = np.empty(packed.size * 2, dtype=np.int16)
    flat[0::2], flat[1::2] = lo, hi
    flat = np.where(flat >= 8, flat - 16, flat)
    n = int(np.prod(shape)) if shape else 1
    return flat[:n].astype(np.int8).reshape(shape)


_RAW_DTYPES = {onnx.TensorProto.INT8: np.dtype("int8"), onnx.TensorProto.UINT8: np.dtype("uint8"),
               onnx.TensorProto.INT16: np.dtype("<i2"), onnx.TensorProto.INT32: np.dtype("<i4"),
               onnx.TensorProto.INT64: np.dtype("<i8"), onnx.TensorProto.FLOAT: np.dtype("<f4"),
               onnx.TensorProto.DOUBLE: np.dtype("<f8"), onnx.TensorProto.BOOL: np.dtype("bool")}


def tensor_array(ck: _Check, t: onnx.TensorProto, at: str) -> np.ndarray:
    """The array of an initializer: stored in the file (no external data), of a consistent size."""
    if t.data_location == onnx.TensorProto.EXTERNAL or t.external_data:
        ck.fail(at, f"tensor {t.name!r} points to external data; a BIE holds every tensor itself")
    dims = list(t.dims)
    if any(d < 0 for d in dims) or math.prod(dims) > (1 << 31):
        ck.fail(at, f"tensor {t.name!r} has invalid dims {dims}")
    dt = _RAW_DTYPES.get(t.data_type)
    if dt is not None and t.HasField("raw_data"):  # the writer's layout: one copy, no per-element work
        raw = t.raw_data
        if len(raw) != math.prod(dims) * dt.itemsize:
            ck.fail(at, f"tensor {t.name!r} holds {len(raw)} bytes for dims {dims} of {dt}")
        return np.frombuffer(raw, dtype=dt).reshape(dims).copy()
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError... on bad tensors
        ck.fail(at, f"tensor {t.name!r} cannot be read ({type(exc).__name__}: {str(exc)[:200]})")
    if list(arr.shape) != dims:
        ck.fail(at, f"tensor {t.name!r} holds {arr.size} values for dims {dims}")
    return arr


# per params class: field -> how to decode it (checked against dataclasses.fields by a test)
_A8 = ("<i8",)
_W = ("|i1", "<i2")
_FIELDS: dict[type, dict[str, Callable[[_Dec, Any, str], Any]]] = {}


def _spec(cls: type, **fields: Callable[[_Dec, Any, str], Any]) -> None:
    _FIELDS[cls] = fields


def _qf(d: _Dec, v: Any, at: str) -> QFormat:
    return d.qformat(v, at)


def _i(d: _Dec, v: Any, at: str) -> int:
    return d.int(v, at, *I64)  # every integer field is an int64 in the kernels


def _b(d: _Dec, v: Any, at: str) -> bool:
    return d.bool(v, at)


def _f(d: _Dec, v: Any, at: str) -> float:
    return d.float(v, at)


def _s(d: _Dec, v: Any, at: str) -> str:
    return d.str(v, at)


def _is(d: _Dec, v: Any, at: str) -> tuple[int, ...]:
    return d.ints(v, at)


def _arr(*dtypes: str) -> Callable[[_Dec, Any, str], np.ndarray]:
    return lambda d, v, at: d.array(v, at, dtypes)


def _opt(fn: Callable[[_Dec, Any, str], Any]) -> Callable[[_Dec, Any, str], Any]:
    return lambda d, v, at: None if v is None else fn(d, v, at)


def _nest(cls: type) -> Callable[[_Dec, Any, str], Any]:
    return lambda d, v, at: d.nested(v, at, cls)


def _tuple(fn: Callable[[_Dec, Any, str], Any]) -> Callable[[_Dec, Any, str], tuple[Any, ...]]:
    def dec(d: _Dec, v: Any, at: str) -> tuple[Any, ...]:
        if not isinstance(v, list):
            d.ck.fail(at, f"expected a list, got {_tname(v)}")
        return tuple(fn(d, e, f"{at}[{i}]") for i, e in enumerate(v))
    return dec


def _config(d: _Dec, v: Any, at: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        d.ck.fail(at, f"expected an object, got {_tname(v)}")
    out: dict[str, Any] = {}
    for k, e in v.items():
        if k == "indices":
            out[k] = None if e is None else d.array(e, f"{at}.{k}", _A8)
        elif k in ("mode",):
            out[k] = d.str(e, f"{at}.{k}")
        elif k in ("allowzero", "axis", "value_q"):
            out[k] = d.int(e, f"{at}.{k}", *I64)
        elif k in ("shape", "perm", "axes", "starts", "ends", "steps", "pads"):
            out[k] = None if e is None else d.ints(e, f"{at}.{k}")
        else:
            d.ck.fail(f"{at}.{k}", "unknown setting of a data-movement step")
    return out


_spec(base.Activation, kind=_s, lo=_i, hi=_i, alpha=_f)
_spec(base.Requant, mult=_i, shift=_i, bits=_i, identity=_b)
_spec(_mac.MacOutput, out_format=_qf, acc_bits=_i, bias=_opt(_arr(*_A8)), mult=_arr(*_A8), shift=_arr(*_A8),
      mult_neg=_opt(_arr(*_A8)), shift_neg=_opt(_arr(*_A8)), act=_nest(base.Activation), bias_saturated=_i,
      acc_bound=_i)
_spec(conv.ConvParams, in_format=_qf, w_q=_arr(*_W), group=_i, kernel_shape=_is, strides=_is, dilations=_is,
      pads=_is, auto_pad=_s, out=_nest(_mac.MacOutput))
_spec(conv.ConvTransposeParams, in_format=_qf, w_q=_arr(*_W), group=_i, kernel_shape=_is, strides=_is,
      dilations=_is, pads=_is, output_padding=_is, output_shape=_is, auto_pad=_s, out=_nest(_mac.MacOutput))
_spec(matmul.MatMulParams, a_format=_qf, b_format=_qf, b_q=_opt(_arr(*_W)), trans_a=_b, trans_b=_b,
      out=_nest(_mac.MacOutput))
def _int_or_arr(d: _Dec, v: Any, at: str) -> Any:
    return d.int(v, at, *I64) if _is_int(v) else d.array(v, at, _A8)  # a scalar constant is stored as a plain int


_spec(elementwise.AddParams, in_formats=_tuple(_qf), mult=_is, rshift=_is, const_term=_opt(_int_or_arr), frac_bits=_i,
      act=_nest(base.Activation), out_format=_qf)
_spec(elementwise.MulParams, in_formats=_tuple(_qf), mult=_arr(*_A8), shift=_arr(*_A8), act=_nest(base.Activation),
      out_format=_qf)
_spec(activation.ClampParams, in_format=_qf, rq=_nest(base.Requant), lo=_i, hi=_i, out_format=_qf)
_spec(activation.LeakyParams, in_format=_qf, mult_pos=_i, shift_pos=_i, mult_neg=_arr(*_A8), shift_neg=_arr(*_A8),
      out_format=_qf)
_spec(lut.LutParams, in_format=_qf, table=_arr(*_W), saturated=_arr("|b1"), out_format=_qf)
_spec(batchnorm.AffineParams, in_format=_qf, mult=_arr(*_A8), rshift=_arr(*_A8), bias=_arr(*_A8), frac_bits=_i,
      out_format=_qf)
_spec(softmax_k.SoftmaxParams, in_format=_qf, axis=_i, exp_table=_arr(*_A8), out_mult=_i, out_shift=_i,
      out_format=_qf, coerce_2d=_b)
_spec(pool.PoolParams, in_format=_qf, kernel_shape=_is, strides=_is, dilations=_is, pads=_is, auto_pad=_s,
      ceil_mode=_i, count_include_pad=_i, rq=_nest(base.Requant), mult=_i, shift=_i, out_format=_qf)
_spec(pool.ReduceMeanParams, in_format=_qf, axes=_opt(_is), keepdims=_b, noop=_b, mult=_i, shift=_i,
      rq=_nest(base.Requant), out_format=_qf)
_spec(resize_k.ResizeParams, in_format=_qf, mode=_s, ctm=_s, nearest_mode=_s,
      scales=_opt(lambda d, v, at: d.floats(v, at)), sizes=_opt(_is), axes=_opt(_is), rq=_nest(base.Requant),
      mult=_i, shift=_i, out_format=_qf)
_spec(movement.MoveParams, in_format=_qf, rq=_nest(base.Requant), out_format=_qf, config=_config)
_spec(movement.SplitParams, in_format=_qf, axis=_i, split=_opt(_is), rqs=_tuple(_nest(base.Requant)),
      out_formats=_tuple(_qf))
_spec(movement.ConcatParams, in_formats=_tuple(_qf), rqs=_tuple(_nest(base.Requant)), axis=_i, out_format=_qf)

PARAMS_FIELDS = _FIELDS
"""Every params class a BIE may hold, with the decoder of each field (a test checks these are
exactly the dataclass fields, so a new field cannot go unchecked)."""

#: the params class of each kernel op type
PARAMS_OF: dict[str, type] = {
    "Conv": conv.ConvParams, "ConvTranspose": conv.ConvTransposeParams, "Gemm": matmul.MatMulParams,
    "MatMul": matmul.MatMulParams, "Add": elementwise.AddParams, "Sub": elementwise.AddParams,
    "Mul": elementwise.MulParams, "Div": elementwise.MulParams, "BatchNormalization": batchnorm.AffineParams,
    "Relu": activation.ClampParams, "Clip": activation.ClampParams, "LeakyRelu": activation.LeakyParams,
    "PRelu": activation.LeakyParams, "Softmax": softmax_k.SoftmaxParams, "MaxPool": pool.PoolParams,
    "GlobalMaxPool": pool.PoolParams, "AveragePool": pool.PoolParams, "GlobalAveragePool": pool.PoolParams,
    "ReduceMean": pool.ReduceMeanParams, "Resize": resize_k.ResizeParams, "Concat": movement.ConcatParams,
    "Split": movement.SplitParams,
    **{op: lut.LutParams for op in lut.FUNCTIONS},
    **{op: movement.MoveParams for op in ("Identity", "Reshape", "Flatten", "Transpose", "Slice", "Squeeze",
                                           "Unsqueeze", "Gather", "Pad")},
}


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_BY_NAME = {_type_name(c): c for c in _FIELDS}


_DC_FIELDS: dict[type, dict[str, dataclasses.Field]] = {}


def decode_params(d: _Dec, v: Any, at: str, cls: type) -> Any:
    """A params dataclass of class ``cls`` from its JSON, every field decoded and type-checked."""
    if not isinstance(v, dict):
        d.ck.fail(at, f"expected an object, got {_tname(v)}")
    tname = v.get("__type__")
    if tname != _type_name(cls):
        known = isinstance(tname, str) and tname in _BY_NAME
        d.ck.fail(f"{at}.__type__", f"{tname!r}"[:100] + f" where {_type_name(cls)!r} is required"
                  + ("" if known or not isinstance(tname, str) else " (not a class npuflow stores)"))
    spec = _FIELDS[cls]
    fields = _DC_FIELDS.get(cls)
    if fields is None:
        fields = _DC_FIELDS[cls] = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(v) - set(fields) - {"__type__"})
    if extra:
        d.ck.fail(at, f"unknown field(s) {', '.join(extra)} for {cls.__name__}")
    kwargs = {}
    for name, f in fields.items():
        if name not in v:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                d.ck.fail(at, f"field {name} is missing")
            continue
        kwargs[name] = spec[name](d, v[name], f"{at}.{name}")
    return cls(**kwargs)


# ==============================================================================================
# numerics bounds (docs/fixed-point.md)
# ==============================================================================================
def _scale_ok(s: float, bits: int) -> bool:
    """Section 1: ``scale`` is 1.0 or in ``[qmax/2**(b-1), qmax/2**(b-2))`` (the range rule)."""
    qmax = (1 << (bits - 1)) - 1
    return s == 1.0 or qmax / 2.0 ** (bits - 1) <= s < qmax / 2.0 ** (bits - 2)


class _Prog:
    """Checks of one program: formats, each step's parameters, shapes."""

    def __init__(self, ck: _Check, platform: Any, formats: dict[str, QFormat]) -> None:
        self.ck = ck
        bw = platform.bitwidths
        self.act_bits = sorted({b for k in ("datapath", "model_in", "model_out", "cpu_node") for b in bw[k]})
        self.weight_bits = sorted(bw["weight"])
        self.platform = platform
        self.formats = formats
        self._ok: set[tuple[QFormat, tuple[int, int]]] = set()  # formats whose radix and scale passed

    # --- formats ---
    def act_format(self, f: QFormat, at: str) -> None:
        if f.per_channel:
            self.ck.fail(at, f"activation formats are per tensor (axis {f.axis} given)")
        if f.bits not in self.act_bits:
            self.ck.fail(at, f"{f.bits}-bit activations are not a width of platform {self.platform.id} "
                             f"({', '.join(f'int{b}' for b in self.act_bits)})")
        self._radix_scale(f, at, ACT_RADIX)

    def weight_format(self, f: QFormat, at: str) -> None:
        if f.bits not in self.weight_bits:
            self.ck.fail(at, f"{f.bits}-bit weights are not a weight width of platform {self.platform.id} "
                             f"({', '.join(f'int{b}' for b in self.weight_bits)})")
        self._radix_scale(f, at, WEIGHT_RADIX)

    def _radix_scale(self, f: QFormat, at: str, rng: tuple[int, int]) -> None:
        if (f, rng) in self._ok:
            return
        self._check_radix_scale(f, at, rng)
        self._ok.add((f, rng))

    def _check_radix_scale(self, f: QFormat, at: str, rng: tuple[int, int]) -> None:
        for r in f.radix_array().tolist():
            if not rng[0] <= r <= rng[1]:
                self.ck.fail(f"{at}.radix", f"{r} is outside [{rng[0]}, {rng[1]}] (docs/fixed-point.md section 3)")
        for s in f.scale_array().tolist():
            if not _scale_ok(s, f.bits):
                qmax = (1 << (f.bits - 1)) - 1
                self.ck.fail(f"{at}.scale", f"{s!r} is neither 1 nor in [{qmax / 2.0 ** (f.bits - 1):.6g}, "
                                            f"{qmax / 2.0 ** (f.bits - 2):.6g}) for int{f.bits} "
                                            "(docs/fixed-point.md section 1)")

    def same(self, got: QFormat, tensor: str, at: str) -> None:
        want = self.formats.get(tensor)
        if want is None:
            self.ck.fail(at, f"tensor {tensor!r} has no format in plan.formats")
        if got != want:
            self.ck.fail(at, f"{_fmt(got)} contradicts plan.formats[{tensor!r}] = {_fmt(want)}")

    # --- multipliers ---
    def mult(self, m: np.ndarray | int, s: np.ndarray | int, at: str, *, zero_ok: bool) -> None:
        """``|M|`` in ``[2**30, 2**31)`` (or 0 with shift 0 where allowed), ``-31 <= shift <= SHIFT_MAX``."""
        if np.ndim(m) == 0 and np.ndim(s) == 0:  # one multiplier: plain Python (most steps)
            self._mult1(int(m), int(s), at, zero_ok)
            return
        ma, sa = np.asarray(m, dtype=np.int64), np.asarray(s, dtype=np.int64)
        if ma.shape != sa.shape:
            self.ck.fail(at, f"{ma.size} multipliers but {sa.size} shifts")
        am = np.abs(ma)
        ok = ((am >= M_LO) & (am < M_HI) & (sa >= -31) & (sa <= SHIFT_MAX)) | ((ma == 0) & (sa == 0) & zero_ok)
        if not ok.all():
            i = int(np.flatnonzero(~ok.ravel())[0])
            self._mult1(int(ma.ravel()[i]), int(sa.ravel()[i]), at, zero_ok)

    def _mult1(self, m: int, s: int, at: str, zero_ok: bool) -> None:
        if m == 0:
            if not zero_ok:
                self.ck.fail(at, "multiplier 0: this ratio of positive format factors cannot be zero")
            if s != 0:
                self.ck.fail(at, "a zero multiplier has shift 0 (docs/fixed-point.md section 4)")
            return
        if not M_LO <= abs(m) < M_HI:
            self.ck.fail(at, f"multiplier {m} is outside +-[2**30, 2**31) (docs/fixed-point.md section 4)")
        if not -31 <= s <= SHIFT_MAX:
            self.ck.fail(at, f"shift {s} is outside [-31, {SHIFT_MAX}] (docs/fixed-point.md section 4)")

    def ratio(self, m: Any, s: Any, scale: Any, exp2: Any, at: str, what: str) -> None:
        """``M * 2**-(31+s)`` is ``scale * 2**exp2`` (the ratio the formats give) within RATIO_TOL
        (``m``, ``s`` already checked by :meth:`mult`)."""
        if all(np.size(v) == 1 for v in (m, s, scale, exp2)):  # one ratio: plain Python
            mi, si = int(np.ravel(m)[0]), int(np.ravel(s)[0])
            sc, e2 = float(np.ravel(scale)[0]), int(np.ravel(exp2)[0])
            e = -(31 + si) - e2
            if mi != 0 and abs(e) < 200 and (mi > 0) == (sc > 0) and \
                    abs(math.ldexp(abs(mi), e) - abs(sc)) <= abs(sc) * RATIO_TOL:
                return
            self._ratio_fail(mi, si, sc, e2, at, what)
        ma = np.asarray(m, dtype=np.int64)
        sa = np.asarray(s, dtype=np.int64)
        ma, sa, sc, e2 = np.broadcast_arrays(ma, sa, np.asarray(scale, dtype=np.float64), np.asarray(exp2, dtype=np.int64))
        e = -(31 + sa) - e2
        ok = (np.abs(e) < 200) & (np.sign(ma) == np.sign(sc)) & (ma != 0)
        approx = np.ldexp(np.abs(ma).astype(np.float64), np.clip(e, -200, 200).astype(np.int32))
        ok &= np.abs(approx - np.abs(sc)) <= np.abs(sc) * RATIO_TOL
        if not ok.all():
            i = int(np.flatnonzero(~ok.ravel())[0])
            self._ratio_fail(int(ma.ravel()[i]), int(sa.ravel()[i]), float(sc.ravel()[i]), int(e2.ravel()[i]), at,
                             what)

    def _ratio_fail(self, m: int, s: int, sc: float, e2: int, at: str, what: str) -> NoReturn:
        self.ck.fail(at, f"multiplier {m} with shift {s} does not give {what} ({sc:.9g} * 2**{e2}): the formats "
                         "contradict the multiplier")

    def format_ratio(self, m: Any, s: Any, num: QFormat, den: QFormat, at: str, sign: float = 1.0) -> None:
        if not num.per_channel and not den.per_channel:
            sc: Any = sign * num.tensor_scale / den.tensor_scale
            e2: Any = num.tensor_radix - den.tensor_radix
        else:
            sc, e2 = sign * num.scale_array() / den.scale_array(), num.radix_array() - den.radix_array()
        self.ratio(m, s, sc, e2, at, f"the ratio of {_fmt(num)} to {_fmt(den)}")

    def requant(self, rq: base.Requant, src: QFormat, dst: QFormat, at: str) -> None:
        same = src.radix == dst.radix and src.scale == dst.scale
        if rq.bits != dst.bits:
            self.ck.fail(f"{at}.bits", f"{rq.bits} where the output format has {dst.bits} bits")
        if rq.identity != same:
            self.ck.fail(f"{at}.identity", f"{rq.identity} but the formats are {'equal' if same else 'different'}")
        if same:
            if (rq.mult, rq.shift) != (1 << 30, -1):
                self.ck.fail(at, "an identity requantization has multiplier 2**30 and shift -1")
            return
        self.mult(rq.mult, rq.shift, at, zero_ok=False)
        self.format_ratio(rq.mult, rq.shift, dst, src, at)

    def act(self, a: base.Activation, out: QFormat, at: str, *, leaky_ok: bool) -> None:
        kinds = ("none", "relu", "clip") + (("leakyrelu",) if leaky_ok else ())
        if a.kind not in kinds:
            self.ck.fail(f"{at}.kind", f"{a.kind!r} is not one of {', '.join(kinds)}")
        want = {"none": (out.qmin, out.qmax), "leakyrelu": (out.qmin, out.qmax), "relu": (0, out.qmax)}.get(a.kind)
        if want is not None and (a.lo, a.hi) != want:
            self.ck.fail(at, f"a {a.kind} activation clamps to {list(want)}, not [{a.lo}, {a.hi}]")
        if not out.qmin <= a.lo <= a.hi <= out.qmax:
            self.ck.fail(at, f"clamp [{a.lo}, {a.hi}] is not inside the output range [{out.qmin}, {out.qmax}]")


def _fmt(f: QFormat) -> str:
    if f.per_channel:
        return f"int{f.bits} per-channel(axis {f.axis}, {f.channels} ch)"
    return f"int{f.bits} radix {f.radix} scale {f.scale!r}"


def _log2f(f: QFormat) -> np.ndarray:
    return f.radix_array() + np.log2(f.scale_array())


def _win(ck: _Check, at: str, kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int], pads: Sequence[int],
         auto_pad: str, nd: int) -> None:
    if len(kernel) != nd or len(strides) != nd or len(dil) != nd or len(pads) != 2 * nd:
        ck.fail(at, f"kernel_shape {list(kernel)}, strides {list(strides)}, dilations {list(dil)} and pads "
                    f"{list(pads)} do not fit {nd} spatial dims")
    for name, vals, lo in (("kernel_shape", kernel, 1), ("strides", strides, 1), ("dilations", dil, 1),
                           ("pads", pads, 0)):
        if any(v < lo or v > (1 << 20) for v in vals):
            ck.fail(f"{at}.{name}", f"{list(vals)}: every value must be in [{lo}, {1 << 20}]")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        ck.fail(f"{at}.auto_pad", f"{auto_pad!r} is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")


# ==============================================================================================
# shapes (as the kernels compute them)
# ==============================================================================================
Shape = tuple[int, ...]


def _broadcast(ck: _Check, at: str, *shapes: Shape) -> Shape:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        ck.fail(at, f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast")


def _axis(ck: _Check, at: str, a: int, nd: int) -> int:
    if not -nd <= a < nd:
        ck.fail(at, f"axis {a} is out of range for a rank-{nd} tensor")
    return a % nd


def _geometry(ck: _Check, at: str, sp: Shape, win: dict[str, Any]) -> tuple[list[int], list[int], list[int], list[int]]:
    from npuflow.sim.kernels._geometry import window_geometry

    try:
        return window_geometry(sp, win)
    except ValueError as exc:
        ck.fail(at, f"{exc} (spatial input {list(sp)})")


def _mac_channels(pr: _Prog, at: str, o: _mac.MacOutput, x_fmt: QFormat, w_bits: int, c: int) -> None:
    """The MAC output stage of ``c`` channels (spec 5)."""
    ck = pr.ck
    pr.act_format(o.out_format, f"{at}.out_format")
    if o.acc_bits != accumulator_bits(x_fmt.bits, w_bits):
        ck.fail(f"{at}.acc_bits", f"{o.acc_bits} where int{x_fmt.bits} inputs and int{w_bits} weights accumulate "
                                  f"in int{accumulator_bits(x_fmt.bits, w_bits)} (docs/fixed-point.md section 5.1)")
    for name in ("mult", "shift"):
        a = getattr(o, name)
        if a.ndim != 1 or a.size not in (1, c):
            ck.fail(f"{at}.{name}", f"{a.size} values for {c} output channels")
    if o.mult.shape != o.shift.shape:
        ck.fail(at, f"{o.mult.size} multipliers but {o.shift.size} shifts")
    if o.bias is not None:
        if o.bias.ndim != 1 or o.bias.size not in (1, c):
            ck.fail(f"{at}.bias", f"{o.bias.size} values for {c} output channels")
        lo, hi = qrange(o.acc_bits)
        if o.bias.size and (int(o.bias.min()) < lo or int(o.bias.max()) > hi):
            v = int(o.bias.max()) if int(o.bias.max()) > hi else int(o.bias.min())
            ck.fail(f"{at}.bias", f"{v} does not fit the int{o.acc_bits} accumulator (biases are saturated to it: "
                                  "docs/fixed-point.md section 3)")
    if not 0 <= o.bias_saturated <= c:
        ck.fail(f"{at}.bias_saturated", f"{o.bias_saturated} is not a count of {c} channels")
    if o.acc_bound < 0:
        ck.fail(f"{at}.acc_bound", "a bound on |accumulator| is not negative")
    pr.act(o.act, o.out_format, f"{at}.act", leaky_ok=True)
    if (o.mult_neg is None) != (o.shift_neg is None) or (o.mult_neg is not None) != (o.act.kind == "leakyrelu"):
        ck.fail(at, "mult_neg and shift_neg are given exactly for a fused LeakyRelu")
    if o.mult_neg is not None:
        assert o.shift_neg is not None
        if o.mult_neg.shape != o.mult.shape or o.shift_neg.shape != o.shift.shape:
            ck.fail(at, "mult_neg/shift_neg have one value per multiplier")
        pr.mult(o.mult_neg, o.shift_neg, f"{at}.mult_neg", zero_ok=True)


def _implied_weight_radix(pr: _Prog, at: str, o: _mac.MacOutput, x_fmt: QFormat, sign: int) -> None:
    """Conv/ConvTranspose store no weight format: each channel's multiplier implies one,
    ``f_w = f_out / (f_in * M * 2**-(31+shift))``, whose radix must lie in the weight range."""
    pr.mult(o.mult, o.shift, f"{at}.mult", zero_ok=False)
    if _any(np.sign(o.mult) != sign):
        pr.ck.fail(f"{at}.mult", "a negative multiplier: this ratio of positive format factors is positive")
    l2 = float(_log2f(o.out_format)[0]) - float(_log2f(x_fmt)[0]) - (np.log2(np.abs(o.mult).astype(np.float64))
                                                                    - 31 - o.shift)
    lo, hi = WEIGHT_RADIX
    bad = (l2 < lo - 1) | (l2 >= hi + 1)
    if _any(bad):
        c = int(np.flatnonzero(bad)[0])
        pr.ck.fail(f"{at}.shift", f"channel {c}: multiplier {int(o.mult[c])} with shift {int(o.shift[c])} implies a "
                                  f"weight format factor of 2**{l2[c]:.1f}, beyond the weight radix range "
                                  f"[{lo}, {hi}] (docs/fixed-point.md section 3)")
    _leaky(pr, at, o)


def _leaky(pr: _Prog, at: str, o: _mac.MacOutput) -> None:
    if o.mult_neg is None:
        return
    assert o.shift_neg is not None
    alpha = o.act.alpha
    if alpha == 0.0:
        if _any(o.mult_neg != 0) or _any(o.shift_neg != 0):
            pr.ck.fail(f"{at}.mult_neg", "LeakyRelu alpha 0 gives multiplier 0, shift 0")
        return
    base_ratio = np.abs(o.mult).astype(np.float64) * np.sign(o.mult)
    pr.ratio(o.mult_neg, o.shift_neg, base_ratio * alpha, -(31 + o.shift), f"{at}.mult_neg",
             f"alpha {alpha!r} times the positive multiplier")


class _Shapes:
    """The shape of every tensor, step by step, as the kernels compute them."""

    def __init__(self, ck: _Check, declared: dict[str, Shape]) -> None:
        self.ck = ck
        self.declared = declared
        self.shape: dict[str, Shape] = {}
        self.elem: dict[str, int] = {}  # ONNX element type of tensors that are not quantized

    def set(self, at: str, name: str, shape: Shape) -> None:
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
            self.ck.fail(at, f"tensor {name!r} would have shape {list(shape)} (at most {MAX_ELEMENTS} elements)")
        want = self.declared.get(name)
        if want is not None and want != shape:
            self.ck.fail(at, f"tensor {name!r} gets shape {list(shape)} from the step's parameters, but the float "
                             f"model gives it {list(want)}")
        self.shape[name] = shape


def _check_npu_step(pr: _Prog, sh: _Shapes, at: str, st: Step, p: Any) -> None:
    """One NPU step: its parameters against the spec, its formats, its input shapes; sets the
    shapes of its outputs."""
    ck = pr.ck
    op = st.op_type
    rt = st.runtime_inputs
    ins = [sh.shape[x] for x in rt]
    outs = [y for y in st.outputs]
    if not outs or any(not y for y in outs):
        ck.fail(at, "every output of an integer step is a named tensor")

    def n_runtime(n: int) -> None:
        if len(rt) != n:
            ck.fail(at, f"{len(rt)} runtime inputs where this {op} step takes {n}")

    def one_out() -> str:
        if len(outs) != 1:
            ck.fail(at, f"{len(outs)} outputs where {op} has one")
        return outs[0]

    def io(in_fmt: QFormat, out_fmt: QFormat, out_field: str = "out_format") -> None:
        pr.act_format(in_fmt, f"{at}: params.in_format")
        pr.same(in_fmt, rt[0], f"{at}: params.in_format")
        pr.act_format(out_fmt, f"{at}: params.{out_field}")
        pr.same(out_fmt, one_out(), f"{at}: params.{out_field}")

    if op in ("Conv", "ConvTranspose"):
        n_runtime(1)
        if not st.inputs[0]:
            ck.fail(at, "the data input of a convolution is its first input")
        io(p.in_format, p.out.out_format, "out.out_format")
        w = p.w_q
        if not 3 <= w.ndim <= 5:
            ck.fail(f"{at}: params.w_q", f"weights of rank {w.ndim}; convolutions have 1 to 3 spatial dims")
        nd = w.ndim - 2
        _win(ck, f"{at}: params", p.kernel_shape, p.strides, p.dilations, p.pads, p.auto_pad, nd)
        if tuple(p.kernel_shape) != tuple(w.shape[2:]):
            ck.fail(f"{at}: params.kernel_shape", f"{list(p.kernel_shape)} but the weights have shape {list(w.shape)}")
        g = p.group
        x = ins[0]
        if len(x) != w.ndim:
            ck.fail(at, f"input {rt[0]!r} of shape {list(x)} has rank {len(x)}; the weights {list(w.shape)} need "
                        f"rank {w.ndim}")
        w_bits = 8 if w.dtype == np.int8 else 16
        if w_bits not in pr.weight_bits and not (w_bits == 8 and 4 in pr.weight_bits):
            ck.fail(f"{at}: params.w_q", f"int{w_bits} weights are not a width of platform {pr.platform.id}")
        if op == "Conv":
            c_out = w.shape[0]
            if g < 1 or c_out % g or x[1] != w.shape[1] * g:
                ck.fail(f"{at}: params.group", f"group {g}: the input has {x[1]} channels and the weights "
                                               f"{list(w.shape)} (C_out, C_in/group, ...)")
            win = {"kernel_shape": p.kernel_shape, "strides": p.strides, "dilations": p.dilations, "pads": p.pads,
                   "auto_pad": p.auto_pad, "ceil_mode": 0}
            _, _, _, out_sp = _geometry(ck, f"{at}: params", x[2:], win)
            out_shape = (x[0], c_out, *out_sp)
        else:
            cog = w.shape[1]
            if g < 1 or x[1] != w.shape[0] or x[1] % g:
                ck.fail(f"{at}: params.group", f"group {g}: the input has {x[1]} channels and the weights "
                                               f"{list(w.shape)} (C_in, C_out/group, ...)")
            c_out = g * cog
            if len(p.output_padding) != nd or any(not 0 <= v < max(s, d) for v, s, d in
                                                  zip(p.output_padding, p.strides, p.dilations)):
                ck.fail(f"{at}: params.output_padding", f"{list(p.output_padding)}: one value per spatial dim, "
                                                        "each below its stride or dilation")
            if len(p.output_shape) not in (0, nd, nd + 2) or any(v < 1 for v in p.output_shape):
                ck.fail(f"{at}: params.output_shape", f"{list(p.output_shape)}")
            _, out_sp = conv.ConvTransposeKernel.geometry(p, x[2:])
            if any(v < 1 for v in out_sp):
                ck.fail(f"{at}: params", f"the output would have spatial size {out_sp}")
            out_shape = (x[0], c_out, *out_sp)
        _mac_channels(pr, f"{at}: params.out", p.out, p.in_format, w_bits, c_out)
        _implied_weight_radix(pr, f"{at}: params.out", p.out, p.in_format, 1)
        sh.set(at, outs[0], out_shape)
        return

    if op in ("Gemm", "MatMul"):
        const_b = p.b_q is not None
        n_runtime(1 if const_b else 2)
        if not st.inputs[0]:
            ck.fail(at, f"the first input of this {op} is a runtime tensor")
        pr.act_format(p.a_format, f"{at}: params.a_format")
        pr.same(p.a_format, rt[0], f"{at}: params.a_format")
        pr.act_format(p.out.out_format, f"{at}: params.out.out_format")
        pr.same(p.out.out_format, one_out(), f"{at}: params.out.out_format")
        a = ins[0]
        if const_b:
            b = p.b_q
            pr.weight_format(p.b_format, f"{at}: params.b_format")
            if b.dtype != p.b_format.dtype:
                ck.fail(f"{at}: params.b_q", f"{b.dtype} weights in an int{p.b_format.bits} format")
            lo, hi = qrange(p.b_format.bits)
            if b.size and (int(b.min()) < lo or int(b.max()) > hi):
                ck.fail(f"{at}: params.b_q", f"weights outside the int{p.b_format.bits} range [{lo}, {hi}]")
            b_shape: Shape = tuple(b.shape)
            if op == "Gemm" and b.ndim != 2:
                ck.fail(f"{at}: params.b_q", f"Gemm weights of shape {list(b.shape)}; (K, N) expected")
        else:
            pr.act_format(p.b_format, f"{at}: params.b_format")
            pr.same(p.b_format, rt[1], f"{at}: params.b_format")
            b_shape = ins[1]
            if op == "Gemm" and p.trans_b:
                b_shape = b_shape[::-1]
        if op == "Gemm":
            if len(a) != 2 or len(b_shape) != 2:
                ck.fail(at, f"Gemm takes 2-D operands, got {list(a)} and {list(b_shape)}")
            m, ka = (a[1], a[0]) if p.trans_a else a
            if ka != b_shape[0]:
                ck.fail(at, f"Gemm: A {list(a)} (transA={int(p.trans_a)}) and B {list(b_shape)} do not multiply")
            out_shape: Shape = (m, b_shape[1])
        else:
            if p.trans_a or p.trans_b:
                ck.fail(f"{at}: params", "MatMul has no transA/transB")
            out_shape = _matmul_shape(ck, at, a, b_shape)
        n = b_shape[-1] if len(b_shape) >= 2 else 1
        if const_b and p.b_format.per_channel and (p.b_format.channels != n or p.b_format.axis % b.ndim != b.ndim - 1):
            ck.fail(f"{at}: params.b_format", f"{p.b_format.channels} channels on axis {p.b_format.axis}; the "
                                              f"weights {list(b.shape)} have {n} output columns on the last axis")
        w_bits = p.b_format.bits
        _mac_channels(pr, f"{at}: params.out", p.out, p.a_format, w_bits, n)
        o = p.out
        if op == "MatMul" and o.bias is not None:
            ck.fail(f"{at}: params.out.bias", "MatMul has no bias")
        pr.mult(o.mult, o.shift, f"{at}: params.out.mult", zero_ok=False)
        bf = p.b_format
        want_sc = p.out.out_format.scale_array() / (p.a_format.tensor_scale * bf.scale_array())
        want_e2 = p.out.out_format.radix_array() - p.a_format.tensor_radix - bf.radix_array()
        if o.mult.size != max(want_sc.size, 1) and bf.per_channel:
            ck.fail(f"{at}: params.out.mult", f"{o.mult.size} multipliers for {bf.channels} weight channels")
        if op == "MatMul":
            pr.ratio(o.mult, o.shift, want_sc, want_e2, f"{at}: params.out.mult",
                     "f_out / (f_A * f_B) (docs/fixed-point.md section 5.2)")
        else:  # alpha is folded in: one alpha, the same for every column
            alpha = (np.abs(o.mult) * np.sign(o.mult)).astype(np.float64) * np.exp2(
                (-(31 + o.shift) - want_e2).astype(np.float64)) / want_sc
            if not np.all(np.isfinite(alpha)) or _any(alpha == 0) or _any(
                    np.abs(alpha / alpha.ravel()[0] - 1) > 2 * RATIO_TOL):
                ck.fail(f"{at}: params.out.mult", "the multipliers do not give one alpha * f_out / (f_A * f_B[c]) "
                                                  "for every column (docs/fixed-point.md section 5.2)")
        _leaky(pr, f"{at}: params.out", o)
        sh.set(at, outs[0], out_shape)
        return

    if op in ("Add", "Sub"):
        n = len(p.in_formats)
        n_runtime(n)
        if n not in (1, 2) or len(p.mult) != n or len(p.rshift) != n:
            ck.fail(f"{at}: params", f"{n} input formats, {len(p.mult)} multipliers, {len(p.rshift)} shifts for "
                                     f"{len(rt)} runtime inputs")
        if (p.const_term is None) != (n == 2):
            ck.fail(f"{at}: params.const_term", "present exactly when one operand is a constant")
        out = p.out_format
        pr.act_format(out, f"{at}: params.out_format")
        pr.same(out, one_out(), f"{at}: params.out_format")
        positions = [i for i, x in enumerate(st.inputs) if x]
        fb = p.frac_bits
        if not 0 <= fb <= elementwise.ADD_FRAC_BITS:
            ck.fail(f"{at}: params.frac_bits", f"{fb} is outside [0, {elementwise.ADD_FRAC_BITS}]")
        for i, (f, m, r) in enumerate(zip(p.in_formats, p.mult, p.rshift)):
            pa = f"{at}: params.in_formats[{i}]"
            pr.act_format(f, pa)
            pr.same(f, rt[i], pa)
            if r < 0:
                ck.fail(f"{at}: params.rshift[{i}]", f"{r}: a right shift is not negative")
            pr.mult(m, r + fb - 31, f"{at}: params.mult[{i}]", zero_ok=False)
            sign = -1.0 if (op == "Sub" and positions[i] == 1) else 1.0
            pr.format_ratio(m, r + fb - 31, out, f, f"{at}: params.mult[{i}]", sign)
        if fb != min([elementwise.ADD_FRAC_BITS] + [r + fb for r in p.rshift]):
            ck.fail(f"{at}: params.frac_bits", f"{fb} is not min(20, 31 + shift) (docs/fixed-point.md section 6.1)")
        shapes = list(ins)
        if p.const_term is not None:
            ct = np.asarray(p.const_term)
            if ct.size and (int(ct.min()) < -(1 << 60) or int(ct.max()) > (1 << 60)):
                ck.fail(f"{at}: params.const_term", "beyond +-2**60")
            shapes.append(tuple(ct.shape))
        pr.act(p.act, out, f"{at}: params.act", leaky_ok=False)
        sh.set(at, outs[0], _broadcast(ck, at, *shapes))
        return

    if op in ("Mul", "Div"):
        n = len(p.in_formats)
        n_runtime(n)
        if n not in (1, 2) or (op == "Div" and n != 1):
            ck.fail(f"{at}: params.in_formats", f"{n} runtime operands")
        out = p.out_format
        pr.act_format(out, f"{at}: params.out_format")
        pr.same(out, one_out(), f"{at}: params.out_format")
        for i, f in enumerate(p.in_formats):
            pr.act_format(f, f"{at}: params.in_formats[{i}]")
            pr.same(f, rt[i], f"{at}: params.in_formats[{i}]")
        if p.mult.shape != p.shift.shape:
            ck.fail(f"{at}: params", f"multipliers of shape {list(p.mult.shape)}, shifts of {list(p.shift.shape)}")
        if n == 2:
            if p.mult.ndim != 0:
                ck.fail(f"{at}: params.mult", "one multiplier for two runtime operands")
            fa, fb_ = p.in_formats
            pr.mult(p.mult, p.shift, f"{at}: params.mult", zero_ok=False)
            pr.ratio(p.mult, p.shift, out.tensor_scale / (fa.tensor_scale * fb_.tensor_scale),
                     out.tensor_radix - fa.tensor_radix - fb_.tensor_radix, f"{at}: params.mult",
                     "f_out / (f_A * f_B) (docs/fixed-point.md section 6.2)")
        else:
            pr.mult(p.mult, p.shift, f"{at}: params.mult", zero_ok=op == "Mul")
        pr.act(p.act, out, f"{at}: params.act", leaky_ok=False)
        sh.set(at, outs[0], _broadcast(ck, at, *ins, tuple(p.mult.shape)))
        return

    if op == "Concat":
        n = len(p.in_formats)
        n_runtime(n)
        if n < 1 or len(p.rqs) != n or len(st.inputs) != n:
            ck.fail(f"{at}: params", f"{n} input formats and {len(p.rqs)} requantizations for {len(rt)} inputs")
        out = p.out_format
        pr.act_format(out, f"{at}: params.out_format")
        pr.same(out, one_out(), f"{at}: params.out_format")
        for i, (f, rq) in enumerate(zip(p.in_formats, p.rqs)):
            pr.act_format(f, f"{at}: params.in_formats[{i}]")
            pr.same(f, rt[i], f"{at}: params.in_formats[{i}]")
            pr.requant(rq, f, out, f"{at}: params.rqs[{i}]")
        nd = len(ins[0])
        a = _axis(ck, f"{at}: params.axis", p.axis, nd)
        for i, s in enumerate(ins):
            if len(s) != nd or any(s[j] != ins[0][j] for j in range(nd) if j != a):
                ck.fail(at, f"input {rt[i]!r} of shape {list(s)} cannot be concatenated with {list(ins[0])} on axis {a}")
        shp = list(ins[0])
        shp[a] = sum(s[a] for s in ins)
        sh.set(at, outs[0], tuple(shp))
        return

    if op == "Split":
        n_runtime(1)
        pr.act_format(p.in_format, f"{at}: params.in_format")
        pr.same(p.in_format, rt[0], f"{at}: params.in_format")
        if len(p.out_formats) != len(outs) or len(p.rqs) != len(outs):
            ck.fail(f"{at}: params.out_formats", f"{len(p.out_formats)} formats for {len(outs)} outputs")
        for i, (f, rq, y) in enumerate(zip(p.out_formats, p.rqs, outs)):
            pr.act_format(f, f"{at}: params.out_formats[{i}]")
            pr.same(f, y, f"{at}: params.out_formats[{i}]")
            pr.requant(rq, p.in_format, f, f"{at}: params.rqs[{i}]")
        x = ins[0]
        a = _axis(ck, f"{at}: params.axis", p.axis, len(x))
        n = len(outs)
        if p.split is None:
            chunk = -(-x[a] // n)
            sizes = [min(chunk, x[a] - i * chunk) for i in range(n)]
        else:
            sizes = list(p.split)
        if len(sizes) != n or sum(sizes) != x[a] or min(sizes) < 0:
            ck.fail(f"{at}: params.split", f"sizes {sizes} do not split {x[a]} into {n} outputs")
        for y, s in zip(outs, sizes):
            shp = list(x)
            shp[a] = s
            sh.set(at, y, tuple(shp))
        return

    # --- single data input, single output from here on ---
    if op == "Gather" and isinstance(p, movement.MoveParams) and p.config.get("indices") is None:
        n_runtime(2)
    else:
        n_runtime(1)
    if not st.inputs[0]:
        ck.fail(at, f"the data input of {op} is its first input")
    io(p.in_format, p.out_format)
    x = ins[0]
    y = outs[0]
    out = p.out_format

    if op in ("Relu", "Clip"):
        pr.requant(p.rq, p.in_format, out, f"{at}: params.rq")
        if op == "Relu" and (p.lo, p.hi) != (0, out.qmax):
            ck.fail(f"{at}: params", f"Relu clamps to [0, {out.qmax}], not [{p.lo}, {p.hi}]")
        if not out.qmin <= p.lo <= p.hi <= out.qmax:
            ck.fail(f"{at}: params", f"clamp [{p.lo}, {p.hi}] is not inside [{out.qmin}, {out.qmax}]")
        sh.set(at, y, x)
    elif op in ("LeakyRelu", "PRelu"):
        pr.mult(p.mult_pos, p.shift_pos, f"{at}: params.mult_pos", zero_ok=False)
        pr.format_ratio(p.mult_pos, p.shift_pos, out, p.in_format, f"{at}: params.mult_pos")
        if p.mult_neg.shape != p.shift_neg.shape:
            ck.fail(f"{at}: params.mult_neg", "one shift per multiplier")
        if op == "LeakyRelu" and p.mult_neg.ndim != 0:
            ck.fail(f"{at}: params.mult_neg", "LeakyRelu has one slope")
        pr.mult(p.mult_neg, p.shift_neg, f"{at}: params.mult_neg", zero_ok=True)
        if _broadcast(ck, at, x, tuple(p.mult_neg.shape)) != x:
            ck.fail(f"{at}: params.mult_neg", f"slope of shape {list(p.mult_neg.shape)} does not broadcast to the "
                                              f"input {list(x)}")
        sh.set(at, y, x)
    elif op in lut.FUNCTIONS:
        f = p.in_format
        if f.bits > lut.LUT_MAX_BITS:
            ck.fail(f"{at}: params.in_format", f"a table input has at most {lut.LUT_MAX_BITS} bits")
        n = 1 << f.bits
        if p.table.shape != (n,) or p.saturated.shape != (n,):
            ck.fail(f"{at}: params.table", f"a table of {p.table.size} entries ({p.saturated.size} flags) for an "
                                           f"int{f.bits} input ({n} needed: docs/fixed-point.md section 7)")
        if p.table.dtype != out.dtype:
            ck.fail(f"{at}: params.table", f"{p.table.dtype} entries for an int{out.bits} output")
        if int(p.table.min()) < out.qmin or int(p.table.max()) > out.qmax:
            ck.fail(f"{at}: params.table", f"entries outside the output range [{out.qmin}, {out.qmax}]")
        sat = p.table[p.saturated]
        if _any((sat != out.qmin) & (sat != out.qmax)):
            ck.fail(f"{at}: params.saturated", "an entry flagged saturated is not qmin or qmax")
        sh.set(at, y, x)
    elif op == "BatchNormalization":
        if len(x) < 2:
            ck.fail(at, f"BatchNormalization of a rank-{len(x)} input (channels on axis 1)")
        c = x[1]
        for name in ("mult", "rshift", "bias"):
            a = getattr(p, name)
            if a.ndim != 1 or a.size not in (1, c):
                ck.fail(f"{at}: params.{name}", f"{a.size} values for {c} channels")
        fb = p.frac_bits
        if not 0 <= fb <= elementwise.ADD_FRAC_BITS:
            ck.fail(f"{at}: params.frac_bits", f"{fb} is outside [0, {elementwise.ADD_FRAC_BITS}]")
        if _any(p.rshift < 0):
            ck.fail(f"{at}: params.rshift", "a right shift is not negative")
        if p.rshift.size and fb != min(elementwise.ADD_FRAC_BITS, int(p.rshift.min()) + fb):
            ck.fail(f"{at}: params.frac_bits", f"{fb} is not min(20, 31 + shift) (docs/fixed-point.md section 6.5)")
        pr.mult(p.mult, p.rshift + fb - 31, f"{at}: params.mult", zero_ok=True)
        if p.bias.size and (int(p.bias.min()) < -(1 << 60) or int(p.bias.max()) > (1 << 60)):
            ck.fail(f"{at}: params.bias", "beyond +-2**60")
        if p.mult.shape != p.rshift.shape:
            ck.fail(f"{at}: params", "one shift per multiplier")
        sh.set(at, y, x)
    elif op == "Softmax":
        f = p.in_format
        if f.bits > lut.LUT_MAX_BITS:
            ck.fail(f"{at}: params.in_format", f"a Softmax input has at most {lut.LUT_MAX_BITS} bits")
        t = p.exp_table
        n = 1 << f.bits
        if t.shape != (n,):
            ck.fail(f"{at}: params.exp_table", f"{t.size} entries for an int{f.bits} input ({n} needed)")
        one = 1 << softmax_k.EXP_FRAC_BITS
        if int(t[0]) != one or int(t.min()) < 0 or int(t.max()) > one or _any(np.diff(t) > 0):
            ck.fail(f"{at}: params.exp_table", "EXP[0] = 2**30 and entries non-increasing in [0, 2**30] "
                                               "(docs/fixed-point.md section 8)")
        if not 0 <= p.out_shift <= 62:
            ck.fail(f"{at}: params.out_shift", f"{p.out_shift} is outside [0, 62]")
        pr.mult(p.out_mult, p.out_shift - 31, f"{at}: params.out_mult", zero_ok=False)
        pr.ratio(p.out_mult, p.out_shift - 31, out.scale_array(), out.radix_array(), f"{at}: params.out_mult",
                 "the output factor")
        _axis(ck, f"{at}: params.axis", p.axis, len(x))
        sh.set(at, y, x)
    elif op in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"):
        glob = op.startswith("Global")
        pr.requant(p.rq, p.in_format, out, f"{at}: params.rq")
        pr.mult(p.mult, p.shift, f"{at}: params.mult", zero_ok=False)
        pr.format_ratio(p.mult, p.shift, out, p.in_format, f"{at}: params.mult")
        if p.ceil_mode not in (0, 1) or p.count_include_pad not in (0, 1):
            ck.fail(f"{at}: params", "ceil_mode and count_include_pad are 0 or 1")
        if glob:
            if p.kernel_shape or p.strides or p.dilations or p.pads or p.auto_pad != "NOTSET" or p.ceil_mode:
                ck.fail(f"{at}: params", f"{op} has no window")
            sh.set(at, y, tuple(x[:2]) + (1,) * max(0, len(x) - 2))
        else:
            nd = len(p.kernel_shape)
            _win(ck, f"{at}: params", p.kernel_shape, p.strides, p.dilations, p.pads, p.auto_pad, nd)
            if len(x) != nd + 2:
                ck.fail(at, f"a {nd}-D window over an input of shape {list(x)}")
            keff = [(k - 1) * d + 1 for k, d in zip(p.kernel_shape, p.dilations)]
            if any(pb >= ke for pb, ke in zip(p.pads, keff + keff)):
                ck.fail(f"{at}: params.pads", f"{list(p.pads)}: pooling pads are smaller than the window {keff}")
            win = {"kernel_shape": p.kernel_shape, "strides": p.strides, "dilations": p.dilations, "pads": p.pads,
                   "auto_pad": p.auto_pad, "ceil_mode": p.ceil_mode}
            _, _, _, out_sp = _geometry(ck, f"{at}: params", x[2:], win)
            sh.set(at, y, tuple(x[:2]) + tuple(out_sp))
    elif op == "ReduceMean":
        pr.requant(p.rq, p.in_format, out, f"{at}: params.rq")
        pr.mult(p.mult, p.shift, f"{at}: params.mult", zero_ok=False)
        pr.format_ratio(p.mult, p.shift, out, p.in_format, f"{at}: params.mult")
        if p.noop:
            sh.set(at, y, x)
        else:
            axes = range(len(x)) if p.axes is None else [_axis(ck, f"{at}: params.axes", a, len(x)) for a in p.axes]
            axes = set(axes)
            sh.set(at, y, tuple((1 if i in axes else d) for i, d in enumerate(x) if p.keepdims or i not in axes))
    elif op == "Resize":
        sh.set(at, y, _resize(pr, at, p, x))
    else:
        sh.set(at, y, _move(pr, sh, at, st, p, x))


def _matmul_shape(ck: _Check, at: str, a: Shape, b: Shape) -> Shape:
    if not a or not b:
        ck.fail(at, "MatMul of a scalar")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        ck.fail(at, f"MatMul: A {list(a)} and B {list(b)} do not multiply")
    batch = _broadcast(ck, at, a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _resize(pr: _Prog, at: str, p: resize_k.ResizeParams, x: Shape) -> Shape:
    ck = pr.ck
    pa = f"{at}: params"
    if p.mode not in ("nearest", "linear"):
        ck.fail(f"{pa}.mode", f"{p.mode!r} (nearest or linear)")
    if p.ctm not in resize_k._CTMS:
        ck.fail(f"{pa}.ctm", f"{p.ctm!r} is not a supported coordinate_transformation_mode")
    if p.nearest_mode not in resize_k._NEAREST:
        ck.fail(f"{pa}.nearest_mode", f"{p.nearest_mode!r}")
    pr.requant(p.rq, p.in_format, p.out_format, f"{pa}.rq")
    pr.mult(p.mult, p.shift, f"{pa}.mult", zero_ok=False)
    pr.format_ratio(p.mult, p.shift, p.out_format, p.in_format, f"{pa}.mult")
    nd = len(x)
    axes = list(range(nd)) if p.axes is None else [_axis(ck, f"{pa}.axes", a, nd) for a in p.axes]
    if len(set(axes)) != len(axes):
        ck.fail(f"{pa}.axes", "repeated axis")
    if p.sizes is None and p.scales is None:
        ck.fail(pa, "Resize needs scales or sizes")
    vals = p.sizes if p.sizes is not None else p.scales
    assert vals is not None
    if len(vals) != len(axes):
        ck.fail(pa, f"{len(vals)} {'sizes' if p.sizes is not None else 'scales'} for {len(axes)} axes")
    out = list(x)
    changed = 0
    for j, a in enumerate(axes):
        l_in = x[a]
        if p.sizes is not None:
            l_out = p.sizes[j]
            if l_out < 1:
                ck.fail(f"{pa}.sizes", f"{list(p.sizes)}: sizes are positive")
            scale = Fraction(l_out, l_in)
        else:
            s = p.scales[j]  # type: ignore[index]
            if not (s > 0 and math.isfinite(s)):
                ck.fail(f"{pa}.scales", f"{list(p.scales)}: scales are positive")  # type: ignore[arg-type]
            scale = Fraction(s)
            l_out = math.floor(l_in * scale)
            if l_out < 1:
                ck.fail(f"{pa}.scales", f"axis {a} of size {l_in} scaled by {s} has no element left")
        if l_out > MAX_ELEMENTS:
            ck.fail(pa, f"axis {a} would have {l_out} elements")
        out[a] = l_out
        if l_out != l_in or any(resize_k.source_coordinate(o, scale, l_in, l_out, p.ctm) != o for o in range(l_out)):
            changed += 1
    if p.mode == "linear" and changed > resize_k.MAX_LINEAR_AXES:
        ck.fail(pa, f"linear interpolation over {changed} axes (at most {resize_k.MAX_LINEAR_AXES}: "
                    "docs/fixed-point.md section 9)")
    return tuple(out)


def _move(pr: _Prog, sh: _Shapes, at: str, st: Step, p: movement.MoveParams, x: Shape) -> Shape:
    """Data movement: the config of each op against the input shape (as the kernels use it)."""
    ck = pr.ck
    op = st.op_type
    pa = f"{at}: params.config"
    c = p.config
    pr.requant(p.rq, p.in_format, p.out_format, f"{at}: params.rq")
    want = {"Identity": set(), "Reshape": {"shape", "allowzero"}, "Flatten": {"axis"}, "Transpose": {"perm"},
            "Squeeze": {"axes"}, "Unsqueeze": {"axes"}, "Slice": {"starts", "ends", "axes", "steps"},
            "Gather": {"axis", "indices"}, "Pad": {"pads", "mode", "axes", "value_q"}}[op]
    if set(c) != want:
        ck.fail(pa, f"{op} takes the settings {sorted(want)}, got {sorted(c)}")
    nd = len(x)
    size = math.prod(x)
    if op == "Identity":
        return x
    if op == "Reshape":
        shape = c["shape"]
        if shape is None or c["allowzero"] not in (0, 1):
            ck.fail(pa, "Reshape needs a shape and allowzero 0 or 1")
        dims = list(shape)
        if not c["allowzero"]:
            for i, s in enumerate(dims):
                if s == 0:
                    if i >= nd:
                        ck.fail(f"{pa}.shape", f"{list(shape)}: a 0 copies a dim the input {list(x)} lacks")
                    dims[i] = x[i]
        if dims.count(-1) > 1 or any(d < -1 for d in dims):
            ck.fail(f"{pa}.shape", f"{list(shape)}")
        known = math.prod(d for d in dims if d != -1)
        if -1 in dims:
            if known == 0 or size % known:
                ck.fail(f"{pa}.shape", f"{list(shape)} cannot hold the {size} elements of {list(x)}")
            dims[dims.index(-1)] = size // known
        elif known != size:
            ck.fail(f"{pa}.shape", f"{list(shape)} cannot hold the {size} elements of {list(x)}")
        return tuple(dims)
    if op == "Flatten":
        a = c["axis"]
        if not -nd <= a <= nd:
            ck.fail(f"{pa}.axis", f"{a} is out of range for rank {nd}")
        a = a + nd if a < 0 else a
        return (math.prod(x[:a]), math.prod(x[a:]))
    if op == "Transpose":
        perm = c["perm"]
        if perm is None:
            return x[::-1]
        if sorted(perm) != list(range(nd)):
            ck.fail(f"{pa}.perm", f"{list(perm)} is not a permutation of the {nd} axes")
        return tuple(x[i] for i in perm)
    if op == "Squeeze":
        axes = c["axes"]
        if not axes:
            return tuple(d for d in x if d != 1)
        ax = [_axis(ck, f"{pa}.axes", a, nd) for a in axes]
        if len(set(ax)) != len(ax) or any(x[a] != 1 for a in ax):
            ck.fail(f"{pa}.axes", f"{list(axes)}: distinct axes of size 1 of {list(x)}")
        return tuple(d for i, d in enumerate(x) if i not in ax)
    if op == "Unsqueeze":
        axes = c["axes"]
        if not axes:
            ck.fail(f"{pa}.axes", "Unsqueeze needs axes")
        n = nd + len(axes)
        ax = [_axis(ck, f"{pa}.axes", a, n) for a in axes]
        if len(set(ax)) != len(ax):
            ck.fail(f"{pa}.axes", f"{list(axes)}: repeated axis")
        it = iter(x)
        return tuple(1 if i in ax else next(it) for i in range(n))
    if op == "Slice":
        starts, ends = c["starts"], c["ends"]
        if starts is None or ends is None:
            ck.fail(pa, "Slice needs starts and ends")
        n = len(starts)
        axes = c["axes"] or tuple(range(n))
        steps = c["steps"] or (1,) * n
        shp = list(x)
        for st_, en, ax_, sp in zip(starts, ends, axes, steps):
            a = _axis(ck, f"{pa}.axes", ax_, nd)
            if sp == 0:
                ck.fail(f"{pa}.steps", "a step of 0")
            dim = x[a]
            s0 = st_ + dim if st_ < 0 else st_
            e0 = en + dim if en < 0 else en
            if sp > 0:
                sl = slice(min(max(s0, 0), dim), min(max(e0, 0), dim), sp)
            else:
                s1, e1 = min(max(s0, 0), dim - 1), min(max(e0, -1), dim - 1)
                sl = slice(s1, e1 if e1 >= 0 else None, sp)
            shp[a] = len(range(dim)[sl])
        return tuple(shp)
    if op == "Gather":
        a = _axis(ck, f"{pa}.axis", c["axis"], nd)
        idx = c["indices"]
        if idx is None:
            ind_name = st.runtime_inputs[1]
            if ind_name in pr.formats or sh.elem.get(ind_name) not in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
                ck.fail(at, f"the runtime indices {ind_name!r} of Gather are not an int32/int64 tensor")
            ind_shape = sh.shape[ind_name]
        else:
            if idx.size and (int(idx.min()) < -x[a] or int(idx.max()) >= x[a]):
                ck.fail(f"{pa}.indices", f"indices outside [{-x[a]}, {x[a] - 1}] for axis {a} of {list(x)}")
            ind_shape = tuple(idx.shape)
        return tuple(x[:a]) + tuple(ind_shape) + tuple(x[a + 1:])
    if op == "Pad":
        pads = c["pads"]
        if pads is None:
            ck.fail(pa, "Pad needs pads")
        axes = [_axis(ck, f"{pa}.axes", a, nd) for a in (c["axes"] or range(nd))]
        k = len(axes)
        if len(pads) != 2 * k or len(set(axes)) != k:
            ck.fail(f"{pa}.pads", f"{len(pads)} pads for {k} distinct axes")
        if c["mode"] not in ("constant", "reflect", "edge", "wrap"):
            ck.fail(f"{pa}.mode", f"{c['mode']!r} is not constant, reflect, edge or wrap")
        if not p.in_format.qmin <= c["value_q"] <= p.in_format.qmax:
            ck.fail(f"{pa}.value_q", f"{c['value_q']} is outside the input range")
        shp = list(x)
        for j, a in enumerate(axes):
            b, e = pads[j], pads[j + k]
            kept = x[a] + min(b, 0) + min(e, 0)
            if kept < 1 or max(b, 0) + max(e, 0) > (1 << 24):
                ck.fail(f"{pa}.pads", f"{list(pads)} crop or pad axis {a} of {list(x)} beyond sense")
            if c["mode"] == "reflect" and kept < 2 and (b > 0 or e > 0):
                ck.fail(f"{pa}.pads", f"reflect padding of a size-{kept} axis")
            shp[a] = kept + max(b, 0) + max(e, 0)
        return tuple(shp)
    raise AssertionError(op)  # PARAMS_OF lists no other op


# ==============================================================================================
# float (CPU) steps
# ==============================================================================================
class _FloatModelIndex:
    """The float model's nodes by name and initializers, for checking that a CPU step runs exactly
    the float model's node on its weights."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            self.nodes.setdefault(n.name, []).append(n)
        self.inits = {t.name: t for t in model.graph.initializer}


def _float_step(ck: _Check, at: str, e: dict[str, Any], inits: Mapping[str, onnx.TensorProto], used: set[str],
                opset: int, fm: _FloatModelIndex) -> tuple[onnx.NodeProto, dict[str, np.ndarray], dict[str, str]]:
    raw = e.get("onnx_node")
    if not isinstance(raw, str):
        ck.fail(f"{at}: onnx_node", f"expected base64 text, got {_tname(raw)}")
    try:
        blob = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        ck.fail(f"{at}: onnx_node", "not valid base64")
    node = onnx.NodeProto()
    try:
        node.ParseFromString(blob)
    except (DecodeError, RuntimeError, ValueError) as exc:
        ck.fail(f"{at}: onnx_node", f"not a readable ONNX NodeProto ({type(exc).__name__})")
    for what, v in (("op_type", node.op_type), ("domain", node.domain), ("name", node.name)):
        if not isinstance(v, str):
            ck.fail(f"{at}: onnx_node", f"its {what} is not valid UTF-8 text")
    if node.op_type != e["op_type"]:
        ck.fail(f"{at}: onnx_node", f"the stored node is a {node.op_type!r}, the step a {e['op_type']!r}")
    if node.domain not in ("", "ai.onnx"):
        ck.fail(f"{at}: onnx_node", f"domain {node.domain!r}: CPU steps run ONNX-domain ops")
    try:
        onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        ck.fail(f"{at}: op_type", f"{node.op_type!r} is not an ONNX op at opset {opset}")
    try:
        ctx = onnx.checker.C.CheckerContext()
        ctx.ir_version = onnx.IR_VERSION
        ctx.opset_imports = {"": opset}
        onnx.checker.check_node(node, ctx)
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError and binding errors
        ck.fail(f"{at}: onnx_node", f"not a valid {node.op_type} node at opset {opset}: {str(exc).splitlines()[0][:200]}")
    if not any(node == n for n in fm.nodes.get(node.name, ())):
        ck.fail(f"{at}: onnx_node", f"the stored {node.op_type} node {node.name!r} is not the float model's node of "
                                    "that name (a CPU step runs exactly the float model's node)")
    w = e.get("weights")
    if not isinstance(w, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in w.items()):
        ck.fail(f"{at}: weights", "expected an object {schema input name: initializer name}")
    weights: dict[str, np.ndarray] = {}
    for s, name in w.items():
        t = inits.get(name)
        if t is None or name == FLOAT_MODEL:
            ck.fail(f"{at}: weights.{s}", f"initializer {name!r} is missing")
        used.add(name)
        weights[s] = tensor_array(ck, t, f"{at}: weights.{s}")
        ft = fm.inits.get(name)
        same = False
        if ft is not None:
            ref = tensor_array(ck, ft, f"{at}: weights.{s} (in the float model)")
            same = ref.dtype == weights[s].dtype and ref.shape == weights[s].shape and bool(
                np.array_equal(ref, weights[s], equal_nan=ref.dtype.kind in "fc"))
        if not same:
            ck.fail(f"{at}: weights.{s}", f"tensor {name!r} is not the float model's initializer of that name "
                                          "(a CPU step runs on the float model's weights)")
    step_in = [x or "" for x in e["inputs"]]
    if len(node.input) != len(step_in):
        ck.fail(f"{at}: inputs", f"{len(step_in)} inputs, the stored node {len(node.input)}")
    wnames = set(w.values())
    for i, (x, nx) in enumerate(zip(step_in, node.input)):
        if x and x != nx:
            ck.fail(f"{at}: inputs[{i}]", f"{x!r} but the stored node reads {nx!r}")
        if not x and nx and nx not in wnames:
            ck.fail(f"{at}: inputs[{i}]", f"the stored node reads {nx!r}, which is neither a runtime input nor a weight")
    if [y for y in node.output if y] != [y for y in e["outputs"] if y]:
        ck.fail(f"{at}: outputs", f"{e['outputs']} but the stored node writes {list(node.output)}")
    return node, weights, dict(w)


def _float_shapes(pr: _Prog, sh: _Shapes, at: str, st: Step, opset: int, inits: Mapping[str, onnx.TensorProto]) -> None:
    """Output shapes and types of a float step by ONNX shape inference of its one node; where it
    cannot tell, the float model's declared shape."""
    ck = pr.ck
    node = st.onnx_node
    assert node is not None
    ins = []
    for x in st.runtime_inputs:
        et = onnx.TensorProto.FLOAT if x in pr.formats else sh.elem.get(x, onnx.TensorProto.FLOAT)
        ins.append(onnx.helper.make_tensor_value_info(x, et, list(sh.shape[x])))
    w_inits = [inits[n] for n in dict.fromkeys(st.weight_names.values())]
    outs = [y for y in node.output if y]
    g = onnx.helper.make_graph([node], "step", ins, [onnx.helper.make_empty_tensor_value_info(y) for y in outs],
                               initializer=w_inits)
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)])
    m.ir_version = 8
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - InferenceError, ValidationError
        ck.fail(at, f"the stored {node.op_type} node does not accept its inputs "
                    f"({', '.join(f'{x} {list(sh.shape[x])}' for x in st.runtime_inputs)}): "
                    f"{str(exc).splitlines()[0][:200]}")
    found = {vi.name: vi for vi in list(inferred.graph.output) + list(inferred.graph.value_info)}
    for y in outs:
        vi = found.get(y)
        shape = None
        et = 0
        if vi is not None and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            et = tt.elem_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        if shape is None:
            shape = sh.declared.get(y)
        if shape is None:
            ck.fail(at, f"the shape of output {y!r} of the stored {node.op_type} node is unknown")
        sh.set(at, y, shape)
        sh.elem[y] = et or onnx.TensorProto.FLOAT
        if y in pr.formats and sh.elem[y] not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                  onnx.TensorProto.DOUBLE):
            ck.fail(at, f"output {y!r} is not a float tensor but has a format in plan.formats")


# ==============================================================================================
# the whole file
# ==============================================================================================
_STEP_KEYS = {"name": str, "op_type": str, "nodes": list, "inputs": list, "outputs": list, "float_step": bool,
              "reason": str}


def read_contents(model: onnx.ModelProto, meta: dict[str, str], path: str) -> dict[str, Any]:
    """Validate a parsed, checksum-verified BIE and build its contents: ``platform``,
    ``model_name``, ``options``, ``preprocess``, ``numerics_version``, ``float_model``,
    ``program``. Raises ModelLoadError naming the file, the step and the field."""
    ck = _Check(path)
    from npuflow.platforms import get_platform

    keys = [m.key for m in model.metadata_props]
    if len(set(keys)) != len(keys):
        ck.fail("metadata", f"a key appears twice: {sorted(k for k in set(keys) if keys.count(k) > 1)[:3]}")
    nv = meta.get(KEY + "numerics_version")
    check_version(path, "numerics", nv, NUMERICS_VERSION)
    plat_text = meta.get(KEY + "platform")
    try:
        ok = isinstance(plat_text, str) and plat_text.isascii() and plat_text.isdigit() and len(plat_text) < 10
        platform = get_platform(int(plat_text)) if ok else None  # "²".isdigit() but int("²") fails
    except NpuflowError:
        platform = None
    if platform is None:
        ck.fail("metadata npuflow.platform", f"{plat_text!r} is not a platform (520, 720, 530, 630, 730)")
    model_name = meta.get(KEY + "model_name", "model")
    options = load_json(ck, "metadata npuflow.options", meta.get(KEY + "options") or "{}")
    if not isinstance(options, dict):
        ck.fail("metadata npuflow.options", f"expected a JSON object, got {_tname(options)}")
    preprocess = None
    if meta.get(KEY + "preprocess"):
        preprocess = load_json(ck, "metadata npuflow.preprocess", meta[KEY + "preprocess"])
        from npuflow.preprocess import PreprocessSpec

        try:
            PreprocessSpec.from_dict(preprocess)
        except NpuflowError as exc:
            ck.fail("metadata npuflow.preprocess", str(exc))
    if KEY + "plan" not in meta:
        ck.fail("metadata", "npuflow.plan is missing")
    plan = load_json(ck, "metadata npuflow.plan", meta[KEY + "plan"], walk=False)

    # --- initializers and the float model ---
    inits: dict[str, onnx.TensorProto] = {}
    for t in model.graph.initializer:
        if not isinstance(t.name, str) or not t.name:
            ck.fail("graph.initializer", "an initializer without a valid name")
        if t.name in inits:
            ck.fail("graph.initializer", f"two initializers named {t.name!r}")
        inits[t.name] = t
    fm_t = inits.get(FLOAT_MODEL)
    if fm_t is None:
        ck.fail("graph.initializer", f"{FLOAT_MODEL} (the float model) is missing")
    if fm_t.data_type != onnx.TensorProto.UINT8 or len(fm_t.dims) != 1:
        ck.fail(FLOAT_MODEL, "the float model is stored as a 1-D UINT8 tensor")
    if fm_t.data_location == onnx.TensorProto.EXTERNAL or fm_t.external_data:
        ck.fail(FLOAT_MODEL, "the float model points to external data; a BIE holds it itself")
    fm_bytes = fm_t.raw_data or tensor_array(ck, fm_t, FLOAT_MODEL).tobytes()  # raw_data copies: read it once
    if len(fm_bytes) != fm_t.dims[0]:
        ck.fail(FLOAT_MODEL, f"{len(fm_bytes)} bytes for dims {list(fm_t.dims)}")
    float_model = onnx.ModelProto()
    try:
        float_model.ParseFromString(fm_bytes)
    except (DecodeError, RuntimeError, ValueError) as exc:
        ck.fail(FLOAT_MODEL, f"the stored float model is not a readable ONNX model ({type(exc).__name__})")
    label = f"{path}: the stored float model"
    from npuflow.ir.validate import validate_graph
    from npuflow.reference.float_runner import input_specs

    validate_graph(float_model, label=label)
    fm_opset = next((i.version for i in float_model.opset_import if i.domain in ("", "ai.onnx")), None)
    if fm_opset is None or not 1 <= fm_opset <= onnx.defs.onnx_opset_version():
        ck.fail(FLOAT_MODEL, f"opset {fm_opset} is not one this onnx knows (1..{onnx.defs.onnx_opset_version()})")
    try:
        specs = input_specs(float_model)
    except NpuflowError as exc:
        raise ModelLoadError(f"{label}: {exc}{_FIX}") from None

    # --- the plan ---
    if not isinstance(plan, dict):
        ck.fail("npuflow.plan", f"expected a JSON object, got {_tname(plan)}")
    for k, typ in (("steps", list), ("formats", dict), ("input_names", list), ("output_names", list)):
        if not isinstance(plan.get(k), typ):
            ck.fail(f"npuflow.plan.{k}", f"expected {_tname(typ())}, got {_tname(plan.get(k))}")
    opset = plan.get("opset", 13)
    if not _is_int(opset) or opset != fm_opset:
        ck.fail("npuflow.plan.opset", f"{opset!r} but the float model has opset {fm_opset}")
    float_dtypes = plan.get("float_dtypes", {})
    if not isinstance(float_dtypes, dict) or not all(isinstance(v, bool) for v in float_dtypes.values()):
        ck.fail("npuflow.plan.float_dtypes", "expected an object {tensor: true/false}")
    names: dict[str, list[str]] = {}
    for k in ("input_names", "output_names"):
        v = plan[k]
        if not v or not all(isinstance(x, str) and x for x in v) or len(set(v)) != len(v):
            ck.fail(f"npuflow.plan.{k}", "expected a non-empty list of distinct tensor names")
        names[k] = v
    fdec = _Dec(ck, inits, set())
    formats = {}
    for t, d in plan["formats"].items():
        formats[t] = fdec.format_dict(d, f"npuflow.plan.formats[{t!r}]")
    steps_json = plan["steps"]
    if not steps_json:
        ck.fail("npuflow.plan.steps", "no steps: a BIE holds at least one")
    graph_nodes = list(model.graph.node)
    if len(steps_json) != len(graph_nodes):
        ck.fail("graph.node", f"{len(graph_nodes)} nodes for {len(steps_json)} steps of the plan")
    pr = _Prog(ck, platform, formats)
    for t, f in formats.items():
        pr.act_format(f, f"npuflow.plan.formats[{t!r}]")

    # --- model inputs ---
    spec_names = [s.name for s in specs]
    if sorted(spec_names) != sorted(names["input_names"]):
        ck.fail("npuflow.plan.input_names", f"{names['input_names']} but the float model's inputs are {spec_names}")
    declared = _declared_shapes(float_model)
    sh = _Shapes(ck, declared)
    defined: dict[str, str] = {}
    for s in specs:
        if s.name not in formats:
            ck.fail("npuflow.plan.formats", f"model input {s.name!r} has no format")
        sh.set(f"model input {s.name!r}", s.name, s.shape)
        defined[s.name] = "a model input"

    # --- steps, in order ---
    used: set[str] = set()
    fm_index: _FloatModelIndex | None = None
    steps: list[Step] = []
    params: list[Any] = []
    for k, e in enumerate(steps_json):
        at = f"step {k}"
        if not isinstance(e, dict):
            ck.fail(at, f"expected an object, got {_tname(e)}")
        at = f"step {k} {_short(e.get('name'))} ({_short(e.get('op_type'), quote=False)})"
        for key, typ in _STEP_KEYS.items():
            if not isinstance(e.get(key), typ) or (typ is not bool and isinstance(e.get(key), bool)):
                ck.fail(f"{at}: {key}", f"expected {_tname(typ())}, got {_tname(e.get(key))}")
        if not all(isinstance(x, str) for x in e["nodes"] + e["inputs"] + e["outputs"]):
            ck.fail(f"{at}: nodes/inputs/outputs", "expected lists of names")
        op = e["op_type"]
        inputs = [x or None for x in e["inputs"]]
        for x in inputs:
            if x is not None and x not in defined:
                ck.fail(f"{at}: inputs", f"tensor {x!r} is not a model input nor written by an earlier step "
                                         "(unknown tensor, or steps out of order)")
        outs = [y for y in e["outputs"] if y]
        if len(set(outs)) != len(outs):
            ck.fail(f"{at}: outputs", "a tensor written twice by one step")
        for y in outs:
            if y in defined:
                ck.fail(f"{at}: outputs", f"tensor {y!r} is already {defined[y]}")
        if e["float_step"]:
            if fm_index is None:
                fm_index = _FloatModelIndex(float_model)
            onode, weights, wnames = _float_step(ck, at, e, inits, used, fm_opset, fm_index)
            if e.get("params") is not None:
                ck.fail(f"{at}: params", "a CPU step has no integer parameters")
            st = Step(e["name"], op, tuple(e["nodes"]), inputs, list(e["outputs"]), {}, weights, wnames, True,
                      e["reason"], onode)
            _float_shapes(pr, sh, at, st, fm_opset, inits)
            p = None
        else:
            cls = PARAMS_OF.get(op)
            if cls is None or op not in KERNELS:
                ck.fail(f"{at}: op_type", f"{op!r} has no integer kernel (an NPU step needs one of "
                                          f"{', '.join(sorted(PARAMS_OF))})")
            if "onnx_node" in e or "weights" in e:
                ck.fail(at, "an NPU step has params, not onnx_node/weights")
            st = Step(e["name"], op, tuple(e["nodes"]), inputs, list(e["outputs"]), {}, {}, {}, False, e["reason"],
                      None)
            for x in st.runtime_inputs:
                if x not in formats and not (op == "Gather" and x == st.runtime_inputs[-1] and len(st.runtime_inputs) == 2):
                    ck.fail(f"{at}: inputs", f"tensor {x!r} is read by an integer kernel but has no format "
                                             "(it is not quantized)")
            p = decode_params(_Dec(ck, inits, used, fdec.formats), e.get("params"), f"{at}: params", cls)
            _check_npu_step(pr, sh, at, st, p)
        node = graph_nodes[k]
        if (node.name, node.op_type, list(node.output)) != (e["name"], op, e["outputs"]):
            ck.fail(f"{at}: graph.node[{k}]", f"the graph's node {node.name!r} ({node.op_type}) does not show this step")
        for y in outs:
            defined[y] = f"written by step {k}"
        steps.append(st)
        params.append(p)

    # --- outputs and leftovers ---
    fm_outs = [o.name for o in float_model.graph.output]
    if sorted(fm_outs) != sorted(names["output_names"]):
        ck.fail("npuflow.plan.output_names", f"{names['output_names']} but the float model's outputs are {fm_outs}")
    for y in names["output_names"]:
        if y not in defined:
            ck.fail("npuflow.plan.output_names", f"model output {y!r} is written by no step")
    extra = sorted(set(formats) - set(defined))
    if extra:
        ck.fail("npuflow.plan.formats", f"formats for tensors the program does not have: {extra[:5]}")
    unused = sorted(set(inits) - used - {FLOAT_MODEL})
    if unused:
        ck.fail("graph.initializer", f"tensors no step uses: {unused[:5]}")
    program = Program(steps, params, formats, list(names["input_names"]), list(names["output_names"]),
                      dict(float_dtypes), opset=int(opset))
    return {"platform": platform.id, "model_name": model_name if isinstance(model_name, str) else "model",
            "options": options, "preprocess": preprocess, "numerics_version": nv, "float_model": float_model,
            "program": program}


def _declared_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(
                d.HasField("dim_value") and d.dim_value > 0 for d in tt.shape.dim):
            out[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    return out


def summary(contents: Any) -> str:
    """One line describing a valid BIE (``npuflow check``)."""
    prog = contents.program
    n_cpu = sum(1 for s in prog.steps if s.float_step)
    return (f"{contents.path}: valid npuflow BIE (format {contents.meta.get(KEY + 'bie.format_version')}, numerics "
            f"{contents.numerics_version}) of model '{contents.model_name}' for platform {contents.platform}: "
            f"{len(prog.steps)} steps ({len(prog.steps) - n_cpu} NPU, {n_cpu} CPU), {len(prog.formats)} quantized "
            f"tensors, inputs {', '.join(prog.input_names)}, outputs {', '.join(prog.output_names)}")


__all__ = ["MAX_JSON_DEPTH", "PARAMS_FIELDS", "PARAMS_OF", "check_version", "parse_version", "read_contents", "summary"]
