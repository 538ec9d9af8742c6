"""Fuzzing the BIE reader and the float loader with Hypothesis.

Each example edits a valid file and loads it, then runs it on one input:

* BIEs (the old MNIST fixture and the many-kernel ``zoo`` BIE with CPU steps): field values,
  shapes, element types and values of the parameter tensors, step order, the JSON plan as data and
  as text, metadata, the bytes of the stored float model and of CPU nodes. Every edited file is
  written through npuflow's own writer (``npuflow.bie.seal``: the checksum is recomputed), so every
  edit reaches the validator. In-spec edits (another valid multiplier or shift where the formats
  leave it free, other weights, biases or table entries in range) must load and run.
* float ONNX models (MNIST and ``zoo``): attributes, op types, tensor names, initializers, input
  shapes, opsets, raw bytes; loaded with ``npuflow.load`` and run.

Allowed outcomes: outputs of each output's declared dtype within its format's range, or an npuflow
error (``NpuflowError``). Never another exception type, a run over 10 s, or a file written anywhere
(the edited file's folder and the working directory stay as they were).

CI runs it derandomized (fixed seed) in well under 60 s. Longer runs: ``NPUFLOW_FUZZ_EXAMPLES=N``
(examples per test) and ``NPUFLOW_FUZZ_RANDOM=1`` (a random seed instead of the fixed one; pass
``--hypothesis-seed=S`` to pick it), e.g. ``NPUFLOW_FUZZ_EXAMPLES=100000 NPUFLOW_FUZZ_RANDOM=1 pytest
tests/bie/test_fuzz.py``. docs/bie-format.md ("Fuzzing") has the long run's exact command and result.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

import npuflow
from npuflow.errors import NpuflowError

from ._edit import Bie, get_at, leaves, set_at
from ._models import MNIST, zoo_model

EXAMPLES = int(os.environ.get("NPUFLOW_FUZZ_EXAMPLES", "0"))
RANDOM = os.environ.get("NPUFLOW_FUZZ_RANDOM") == "1"
LIMIT_S = 10


def fuzz_settings(default: int) -> settings:
    return settings(max_examples=EXAMPLES or default, derandomize=not RANDOM, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# ----------------------------------------------------------------------------------------------
# outcome
# ----------------------------------------------------------------------------------------------
class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _listing(*dirs: Path) -> list[tuple[str, ...]]:
    return sorted(tuple(sorted(str(p.relative_to(d)) for p in d.rglob("*"))) for d in dirs)


def outcome(path: Path, *, must_run: bool = False, what: str = "") -> str:
    """Load and run ``path``; assert the allowed outcomes; return "ran" or "refused"."""
    work = Path.cwd()
    before = _listing(path.parent, work)
    try:
        with time_limit(LIMIT_S):
            try:
                m = npuflow.load(str(path))
                rng = np.random.default_rng(0)
                feeds = {s.name: rng.uniform(-1, 1, [d if d > 0 else 1 for d in s.shape]).astype(s.dtype)
                         for s in m.inputs}
                kw = {"data_type": "fixed"} if m.kind == "fixed" else {}
                outs = m.run(feeds, **kw)
            except NpuflowError as exc:
                if must_run:
                    raise AssertionError(f"an in-spec edit ({what}) was refused: {exc}") from exc
                return "refused"
    except Hang:
        raise AssertionError(f"{what}: loading and running took over {LIMIT_S} s") from None
    finally:
        assert _listing(path.parent, work) == before, f"{what}: something was written while loading/running"
    if m.kind == "fixed":
        for name, y in zip(m.output_names, outs):
            f = m.program.formats.get(name)
            if f is None:  # a float output (host post-processing)
                assert y.dtype.kind == "f", (what, name, y.dtype)
                continue
            assert y.dtype == f.dtype, (what, name, y.dtype, f)
            assert y.size == 0 or (f.qmin <= int(y.min()) and int(y.max()) <= f.qmax), (what, name)
    return "ran"


# ----------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------
EDGE_INTS = [0, 1, -1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 48, 62, 63, 64, 127, 128, -128, 255, 256, 5000,
             1 << 30, (1 << 31) - 1, 1 << 31, -(1 << 31), 1 << 40, 1 << 62, (1 << 63) - 1, -(1 << 63), 10 ** 30]
INTS = st.sampled_from(EDGE_INTS) | st.integers(-1000, 1000)
FLOATS = st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 1e-308, 1e308, 2.0, 0.99, 1.98]) | st.floats(
    allow_nan=False, allow_infinity=False)
WORDS = st.sampled_from(["", "x", "Conv", "Relu", "<i8", "|i1", "<i4", "<f4", "|b1", "nearest", "NOTSET", "VALID",
                         "relu", "leakyrelu", "os:system", "npuflow.sim.kernels.conv:ConvParams", "Input3", "ReLU32_Output_0",
                         "s0.Convolution28.w_q", "npuflow.float_model"])
LEAF = INTS | FLOATS | st.booleans() | st.none() | WORDS | st.text(max_size=6)
JSON = st.recursive(LEAF, lambda ch: st.lists(ch, max_size=3) | st.dictionaries(WORDS | st.text(max_size=4), ch, max_size=3),
                    max_leaves=6)


def _containers(v: Any, path: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(v, dict):
        out.append(path)
        for k in sorted(v):
            out += _containers(v[k], path + (k,))
    elif isinstance(v, list):
        out.append(path)
        for i, e in enumerate(v):
            out += _containers(e, path + (i,))
    return out


def _pick(data, seq, label: str):
    assume(len(seq) > 0)
    return seq[data.draw(st.integers(0, len(seq) - 1), label=label)]


# ----------------------------------------------------------------------------------------------
# BIE edits
# ----------------------------------------------------------------------------------------------
def e_leaf_value(b: Bie, data) -> str:
    path = _pick(data, leaves(b.plan), "leaf")
    if not path:
        return "root"
    set_at(b.plan, path, data.draw(JSON, label="value"))
    return f"leaf {path}"


def e_leaf_nudge(b: Bie, data) -> str:
    nums = [p for p in leaves(b.plan) if p and isinstance(get_at(b.plan, p), (int, float))
            and not isinstance(get_at(b.plan, p), bool)]
    path = _pick(data, nums, "number")
    v = get_at(b.plan, path)
    if isinstance(v, int):
        d = data.draw(st.sampled_from([1, -1, 2, -2, 8, -8, 31, -31, 64, 1 << 20, -(1 << 20), 1 << 30]), label="d")
        nv: Any = data.draw(st.sampled_from([v + d, v * 2, -v, v * d]), label="int")
    else:
        nv = v * data.draw(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 1.0 + 1e-9, 1e300, 1e-300]), label="factor")
    set_at(b.plan, path, nv)
    return f"nudge {path}"


def e_drop(b: Bie, data) -> str:
    paths = [p for p in _containers(b.plan) + leaves(b.plan) if p]
    path = _pick(data, paths, "drop")
    parent = get_at(b.plan, path[:-1])
    del parent[path[-1]]
    return f"drop {path}"


def e_list(b: Bie, data) -> str:
    lists = [p for p in _containers(b.plan) if isinstance(get_at(b.plan, p), list) and get_at(b.plan, p)]
    path = _pick(data, lists, "list")
    lst = get_at(b.plan, path)
    i = data.draw(st.integers(0, len(lst) - 1), label="i")
    j = data.draw(st.integers(0, len(lst) - 1), label="j")
    how = data.draw(st.sampled_from(["swap", "dup", "reverse", "truncate"]), label="how")
    if how == "swap":
        lst[i], lst[j] = lst[j], lst[i]
    elif how == "dup":
        lst.insert(j, json.loads(json.dumps(lst[i])))
    elif how == "reverse":
        lst.reverse()
    else:
        del lst[i:]
    return f"list {how} {path}"


def e_steps(b: Bie, data) -> str:
    assume(isinstance(b.plan, dict) and isinstance(b.plan.get("steps"), list) and b.plan["steps"])
    steps = b.plan["steps"]
    nodes = []
    for n in b.model.graph.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        nodes.append(c)
    i = data.draw(st.integers(0, len(steps) - 1), label="i")
    j = data.draw(st.integers(0, len(steps) - 1), label="j")
    how = data.draw(st.sampled_from(["swap", "drop", "dup", "reverse", "rotate"]), label="how")
    with_nodes = data.draw(st.booleans(), label="nodes too")
    for seq in ([steps, nodes] if with_nodes else [steps]):
        if not seq:
            continue
        a, z = min(i, len(seq) - 1), min(j, len(seq) - 1)  # the node list may differ after earlier edits
        if how == "swap":
            seq[a], seq[z] = seq[z], seq[a]
        elif how == "drop":
            del seq[a]
        elif how == "dup":
            seq.insert(z, seq[a])
        elif how == "reverse":
            seq.reverse()
        else:
            seq[:] = seq[a:] + seq[:a]
    if with_nodes:
        del b.model.graph.node[:]
        b.model.graph.node.extend(nodes)
    b.plan["steps"] = [json.loads(json.dumps(s)) for s in steps]
    return f"steps {how} {i} {j} nodes={with_nodes}"


RETYPE = [TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
          TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BOOL, TensorProto.FLOAT16]


def e_init(b: Bie, data) -> str:
    inits = [t for t in b.model.graph.initializer if t.name != "npuflow.float_model"]
    t = _pick(data, inits, "initializer")
    try:
        a = numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - an earlier edit made it unreadable: leave it so
        return f"init {t.name} (unreadable)"
    how = data.draw(st.sampled_from(["retype", "reshape", "values", "extreme", "empty", "dims"]), label="how")
    if how == "retype":
        et = data.draw(st.sampled_from(RETYPE), label="type")
        dt = onnx.helper.tensor_dtype_to_np_dtype(et)
        na = (a.astype(np.float64) + (0.4 if dt.kind == "f" else 0)).astype(dt)
        t.CopyFrom(numpy_helper.from_array(na, t.name))
    elif how == "reshape":
        flat = a.ravel()
        k = data.draw(st.integers(0, max(0, flat.size + 3)), label="size")
        na = np.resize(flat, k) if flat.size else np.zeros(k, a.dtype)
        shape = data.draw(st.sampled_from(["flat", "col", "extra"]), label="shape")
        na = na.reshape(-1, 1) if shape == "col" else na.reshape((1,) + na.shape) if shape == "extra" else na
        t.CopyFrom(numpy_helper.from_array(na.astype(a.dtype), t.name))
    elif how in ("values", "extreme") and a.dtype.kind in "iub" and a.size:
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
        if a.dtype.kind == "b":
            na = rng.integers(0, 2, a.shape).astype(bool)
        else:
            info = np.iinfo(a.dtype)
            na = rng.integers(info.min, int(info.max) + 1, a.shape, dtype=np.int64).astype(a.dtype) if how == "values" \
                else a.copy()
            if how == "extreme":
                na.flat[data.draw(st.integers(0, a.size - 1), label="at")] = data.draw(st.sampled_from([info.min, info.max]))
        t.CopyFrom(numpy_helper.from_array(na, t.name))
    elif how == "dims":
        t.dims[:] = [data.draw(st.integers(0, 64), label="dim") for _ in range(data.draw(st.integers(0, 4)))]
    else:
        t.CopyFrom(numpy_helper.from_array(np.zeros((0,), a.dtype if a.dtype.kind != "U" else np.int8), t.name))
    return f"init {how} {t.name}"


def _flip(blob: bytes, data) -> bytes:
    arr = bytearray(blob)
    how = data.draw(st.sampled_from(["flip", "truncate", "garbage", "insert"]), label="how")
    if how == "truncate":
        return bytes(arr[: data.draw(st.integers(0, max(0, len(arr) - 1)), label="len")])
    if how == "garbage":
        return data.draw(st.binary(max_size=64), label="bytes")
    for _ in range(data.draw(st.integers(1, 8), label="n")):
        i = data.draw(st.integers(0, max(0, len(arr) - 1)), label="at")
        if how == "insert":
            arr.insert(i, data.draw(st.integers(0, 255)))
        elif arr:
            arr[i] = data.draw(st.integers(0, 255), label="byte")
    return bytes(arr)


def e_bytes(b: Bie, data) -> str:
    steps = b.plan.get("steps") if isinstance(b.plan, dict) else None
    cpu = [s for s in steps if isinstance(s, dict) and s.get("float_step") and isinstance(s.get("onnx_node"), str)] \
        if isinstance(steps, list) else []
    if cpu and data.draw(st.booleans(), label="cpu node"):
        s = _pick(data, cpu, "cpu step")
        try:
            blob = base64.b64decode(s["onnx_node"])
        except ValueError:  # an earlier edit left no base64 there
            blob = b""
        s["onnx_node"] = base64.b64encode(_flip(blob, data)).decode()
        return f"cpu node bytes {s['name']}"
    t = next(t for t in b.model.graph.initializer if t.name == "npuflow.float_model")
    blob = numpy_helper.to_array(t).tobytes()
    t.CopyFrom(numpy_helper.from_array(np.frombuffer(_flip(blob, data), dtype=np.uint8).copy(), t.name))
    return "float model bytes"


META_VALUES = st.sampled_from(["1.0", "1.1", "1.2", "1.09", "1.10", "0.9", "2.0", "1", "", "x.y", "720", "520", "730",
                               "999", "-1", "{}", "[]", "null", '{"version": 1}', "NaN", "1e999", "{" * 40, "\u00b2", "\u0667\u0662\u0660",
                               "1.\u00b2", "7_20", " 720"]) | st.text(max_size=10)


def e_meta(b: Bie, data) -> str:
    key = data.draw(st.sampled_from(["npuflow.bie.format_version", "npuflow.numerics_version", "npuflow.platform",
                                     "npuflow.model_name", "npuflow.options", "npuflow.preprocess"]), label="key")
    if data.draw(st.booleans(), label="delete"):
        b.meta.pop(key, None)
    else:
        b.meta[key] = data.draw(META_VALUES, label="value")
    return f"meta {key}"


def e_text(b: Bie, data) -> str:
    text = b.plan_text if b.plan_text is not None else json.dumps(b.plan, sort_keys=True, separators=(",", ":"))
    assume(text)
    how = data.draw(st.sampled_from(["truncate", "replace", "insert", "nest"]), label="how")
    i = data.draw(st.integers(0, len(text) - 1), label="at")
    if how == "truncate":
        text = text[:i]
    elif how == "nest":
        d = data.draw(st.sampled_from([33, 1000, 100_000]), label="depth")
        text = text[:i] + "[" * d + "]" * d + text[i:]
    else:
        ch = data.draw(st.sampled_from(list('{}[]",:0-.eE9 aNI\\')), label="char")
        text = text[:i] + ch + text[i + (how == "replace"):]
    b.plan_text = text
    return f"text {how} {i}"


def e_in_spec(b: Bie, data) -> str:
    """An edit that stays inside the spec (it must load and run)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
    done = []
    for s in b.plan["steps"]:
        p = s.get("params")
        if not p or not data.draw(st.booleans(), label=f"edit {s['name']}"):
            continue
        op = s["op_type"]
        if op in ("Conv", "ConvTranspose"):
            o = p["out"]
            mult, shift = o["mult"], o["shift"]
            for c in range(len(mult["data"])):
                mult["data"][c] = int(rng.integers(1 << 30, 1 << 31))
                shift["data"][c] = int(max(-31, shift["data"][c] + int(rng.integers(-4, 12))))
            w = p["w_q"]
            t = b.init(w["__init__"])
            a = numpy_helper.to_array(t)
            if not w.get("int4"):
                info = np.iinfo(a.dtype)
                t.CopyFrom(numpy_helper.from_array(
                    rng.integers(info.min, int(info.max) + 1, a.shape, dtype=np.int64).astype(a.dtype), t.name))
            if o["bias"] is not None and "data" in o["bias"]:
                lim = (1 << (o["acc_bits"] - 1)) - 1
                o["bias"]["data"] = [int(v) for v in rng.integers(-lim, lim + 1, len(o["bias"]["data"]))]
            done.append(s["name"])
        elif op in ("Mul", "Div") and len(p["in_formats"]) == 1:
            m, sh = p["mult"], p["shift"]
            vals = m.get("data")
            if vals is not None:
                for c in range(len(vals)):
                    zero = op == "Mul" and rng.random() < 0.2
                    m["data"][c] = 0 if zero else int(rng.integers(1 << 30, 1 << 31)) * int(rng.choice([-1, 1]))
                    sh["data"][c] = 0 if zero else int(rng.integers(-31, 40))
                done.append(s["name"])
        elif op in ("Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Swish"):
            out = p["out_format"]["__qformat__"]
            lo, hi = -(1 << (out["bits"] - 1)), (1 << (out["bits"] - 1)) - 1
            t = b.init(p["table"]["__init__"])
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(rng.integers(lo, hi + 1, a.shape).astype(a.dtype), t.name))
            f = b.init(p["saturated"]["__init__"])
            f.CopyFrom(numpy_helper.from_array(np.zeros(a.shape, bool), f.name))
            done.append(s["name"])
        elif op == "PRelu":
            m, sh = p["mult_neg"], p["shift_neg"]
            if "data" in m:
                m["data"] = [int(rng.integers(1 << 30, 1 << 31)) * int(rng.choice([-1, 1])) for _ in m["data"]]
                sh["data"] = [int(rng.integers(-31, 40)) for _ in sh["data"]]
                done.append(s["name"])
        elif op == "Gemm" and p["b_q"] is not None and "__init__" in p["b_q"]:
            t = b.init(p["b_q"]["__init__"])
            a = numpy_helper.to_array(t)
            bits = p["b_format"]["__qformat__"]["bits"]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not p["b_q"].get("int4"):
                t.CopyFrom(numpy_helper.from_array(rng.integers(lo, hi + 1, a.shape).astype(a.dtype), t.name))
                done.append(s["name"])
    return f"in spec: {done}"


EDITS = [e_leaf_value, e_leaf_nudge, e_drop, e_list, e_steps, e_init, e_bytes, e_meta, e_text]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cwd")


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_bie(data, sources, fuzz_dir, workdir):
    src = data.draw(st.sampled_from(["mnist", "zoo"]), label="source")
    b = Bie(sources[src])
    edits = data.draw(st.lists(st.sampled_from(EDITS), min_size=1, max_size=2), label="edits")
    what = f"{src}: " + "; ".join(e(b, data) for e in edits)
    path = fuzz_dir / "edited.bie"
    with chdir(workdir):
        b.write(path)
        got = outcome(path, what=what)
    event(f"{'+'.join(e.__name__ for e in edits)}: {got}")


@fuzz_settings(60)
@given(data=st.data())
def test_fuzz_bie_in_spec(data, sources, fuzz_dir, workdir):
    src = data.draw(st.sampled_from(["mnist", "zoo"]), label="source")
    b = Bie(sources[src])
    what = f"{src}: " + e_in_spec(b, data)
    path = fuzz_dir / "in_spec.bie"
    with chdir(workdir):
        b.write(path)
        assert outcome(path, must_run=True, what=what) == "ran"


# ----------------------------------------------------------------------------------------------
# float ONNX models
# ----------------------------------------------------------------------------------------------
def o_attr(m: onnx.ModelProto, data) -> str:
    nodes = [n for n in m.graph.node if n.attribute]
    n = _pick(data, nodes, "node")
    a = _pick(data, list(n.attribute), "attribute")
    how = data.draw(st.sampled_from(["int", "ints", "drop", "type"]), label="how")
    if how == "drop":
        n.attribute.remove(a)
    elif how == "type":
        a.type = data.draw(st.sampled_from([1, 2, 3, 6, 7, 8]), label="type")
    elif how == "int":
        a.i = max(-(1 << 63), min((1 << 63) - 1, data.draw(INTS, label="i")))
    else:
        a.ints[:] = [max(-(1 << 63), min((1 << 63) - 1, v)) for v in data.draw(st.lists(INTS, max_size=5), label="ints")]
    return f"attr {how} {n.name}.{a.name}"


def o_node(m: onnx.ModelProto, data) -> str:
    n = _pick(data, list(m.graph.node), "node")
    how = data.draw(st.sampled_from(["op", "input", "output", "drop", "dup", "domain"]), label="how")
    if how == "op":
        n.op_type = data.draw(st.sampled_from(["Relu", "Conv", "Add", "Foo", "", "Reshape", "Softmax", "If"]), label="op")
    elif how == "input" and n.input:
        n.input[data.draw(st.integers(0, len(n.input) - 1))] = data.draw(
            st.sampled_from(["", "nope", m.graph.input[0].name, n.output[0]]), label="name")
    elif how == "output":
        n.output[0] = data.draw(st.sampled_from(["", m.graph.input[0].name, "fresh", m.graph.output[0].name]))
    elif how == "drop":
        m.graph.node.remove(n)
    elif how == "dup":
        m.graph.node.append(n)
    else:
        n.domain = data.draw(st.sampled_from(["com.microsoft", "ai.onnx.ml", "x"]))
    return f"node {how} {n.name}"


def o_init(m: onnx.ModelProto, data) -> str:
    t = _pick(data, list(m.graph.initializer), "initializer")
    a = numpy_helper.to_array(t).copy()
    how = data.draw(st.sampled_from(["retype", "reshape", "values", "nan"]), label="how")
    if how == "retype":
        dt = onnx.helper.tensor_dtype_to_np_dtype(data.draw(st.sampled_from(RETYPE), label="type"))
        t.CopyFrom(numpy_helper.from_array(a.astype(np.float64).astype(dt), t.name))
    elif how == "reshape":
        k = data.draw(st.integers(0, a.size + 3), label="size")
        t.CopyFrom(numpy_helper.from_array(np.resize(a.ravel(), k).astype(a.dtype), t.name))
    elif how == "values" and a.size:
        v = data.draw(st.sampled_from([0, -1, 1e30, 7, 10 ** 6]), label="v")
        na = a.copy()
        with np.errstate(all="ignore"):
            na.flat[data.draw(st.integers(0, a.size - 1))] = np.asarray(v).astype(a.dtype)
        t.CopyFrom(numpy_helper.from_array(na, t.name))
    elif a.dtype.kind == "f" and a.size:
        na = a.copy()
        na.flat[0] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        t.CopyFrom(numpy_helper.from_array(na, t.name))
    return f"init {how} {t.name}"


def o_io(m: onnx.ModelProto, data) -> str:
    vi = _pick(data, list(m.graph.input) + list(m.graph.output), "value info")
    how = data.draw(st.sampled_from(["dims", "type", "name", "opset", "ir"]), label="how")
    if how == "dims":
        dims = data.draw(st.lists(st.integers(-1, 40), max_size=5), label="dims")
        vi.type.tensor_type.shape.ClearField("dim")
        for d in dims:
            vi.type.tensor_type.shape.dim.add().dim_value = d
    elif how == "type":
        vi.type.tensor_type.elem_type = data.draw(st.sampled_from([0, 2, 6, 7, 8, 9, 10, 11, 30]), label="type")
    elif how == "name":
        vi.name = data.draw(st.sampled_from(["", "x", "y1", "Input3", "other"]), label="name")
    elif how == "opset":
        m.opset_import[0].version = data.draw(st.sampled_from([1, 6, 7, 9, 11, 13, 14, 21, 99]), label="opset")
    else:
        m.ir_version = data.draw(st.sampled_from([1, 3, 7, 8, 10, 99]), label="ir")
    return f"io {how} {vi.name}"


def o_bytes(m: onnx.ModelProto, data) -> bytes:
    return _flip(m.SerializeToString(), data)


@pytest.fixture(scope="module")
def onnx_sources() -> dict[str, onnx.ModelProto]:
    return {"mnist": onnx.load(str(MNIST)), "zoo": zoo_model()}


@fuzz_settings(200)
@given(data=st.data())
def test_fuzz_float_onnx(data, onnx_sources, fuzz_dir, workdir):
    src = data.draw(st.sampled_from(["mnist", "zoo"]), label="source")
    m = onnx.ModelProto()
    m.CopyFrom(onnx_sources[src])
    kind = data.draw(st.sampled_from(["attr", "node", "init", "io", "bytes"]), label="kind")
    path = fuzz_dir / "edited.onnx"
    if kind == "bytes":
        path.write_bytes(o_bytes(m, data))
        what = f"{src}: bytes"
    else:
        what = f"{src}: " + {"attr": o_attr, "node": o_node, "init": o_init, "io": o_io}[kind](m, data)
        path.write_bytes(m.SerializeToString())
    with chdir(workdir):
        got = outcome(path, what=what)
    event(f"{kind}: {got}")
