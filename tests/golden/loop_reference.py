"""A second, deliberately simple, loop-level implementation of docs/fixed-point.md (numerics 1.1).

Written only from ``docs/fixed-point.md`` (the numerics spec), ``docs/bie-format.md`` (the file
layout) and the BIE file itself. It does not import or mirror anything under ``src/npuflow/sim``,
``src/npuflow/quant`` or ``src/npuflow/analysis``: the integers it produces are an independent
witness against which the simulator is compared bit for bit.

Style rules, on purpose:

* every tensor is a nested list of Python ``int`` (arbitrary precision, so no overflow can hide);
* every kernel is explicit loops (``for n, for c_out, for y, for x, for c_in, for ky, for kx``);
* every rounding is the spec's single rule, round half to even (RNE), done on exact integers /
  exact rationals (``fractions.Fraction``), never with float arithmetic in the integer core;
* numpy / onnx are used only to *read* the file and to hand the results back as arrays.

It covers the ops of the MNIST graph (Conv with fused Relu, MaxPool, Reshape, Gemm) and refuses
anything else loudly rather than guessing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import onnx
from onnx import numpy_helper

SPEC_VERSION = "1.1"  # docs/fixed-point.md version this file implements


# --------------------------------------------------------------------------------------------
# Counters: which rules the run actually exercised (ties, saturations), for the report/tests.
# --------------------------------------------------------------------------------------------
@dataclass
class Counters:
    ties: dict = field(default_factory=dict)          # where -> number of exact .5 ties met
    saturated: dict = field(default_factory=dict)     # where -> number of saturated values
    acc_saturated: dict = field(default_factory=dict)

    @staticmethod
    def bump(d: dict, key: str, n: int = 1) -> None:
        d[key] = d.get(key, 0) + n


# --------------------------------------------------------------------------------------------
# Spec §1 / §4 / §12: the integer primitives, on Python ints.
# --------------------------------------------------------------------------------------------
def rne_div(num: int, den: int, counters: Counters | None = None, where: str = "") -> int:
    """RNE(num / den), exact, for integers with den > 0 (spec §1 'rounding', §12 ties to even)."""
    if den <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(num, den)  # floor division: num = q*den + r, 0 <= r < den
    if 2 * r > den:
        q += 1
    elif 2 * r == den:  # exact tie x.5 -> to even
        if counters is not None:
            Counters.bump(counters.ties, where)
        if q % 2 != 0:
            q += 1
    return q


def rne_exact(v: Fraction, counters: Counters | None = None, where: str = "") -> int:
    return rne_div(v.numerator, v.denominator, counters, where)


def qrange(bits: int) -> tuple[int, int]:
    """Spec §1 'symmetry': qmin = -2^(b-1), qmax = 2^(b-1) - 1."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def sat(v: int, bits: int, counters: Counters | None = None, where: str = "") -> int:
    """sat_b(v): clamp to the signed b-bit range (spec §1 'overflow': saturation, never wrap)."""
    lo, hi = qrange(bits)
    if v < lo or v > hi:
        if counters is not None:
            Counters.bump(counters.saturated, where)
        return lo if v < lo else hi
    return v


def requantize(acc: int, mult: int, shift: int, counters: Counters | None = None, where: str = "") -> int:
    """RNE(acc * M / 2^(31+shift)) (spec §4 `requantize`, §5.2), without the final saturation."""
    e = 31 + shift
    if e >= 0:
        return rne_div(acc * mult, 1 << e, counters, where)
    return acc * mult * (1 << (-e))  # exact (a negative exponent is a multiplication)


# --------------------------------------------------------------------------------------------
# Formats (spec §1 'value': real = q / f, f = scale * 2^radix)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fmt:
    bits: int
    radix: int | tuple
    scale: float | tuple
    axis: int | None = None

    def factor(self) -> float:
        """f = scale * 2^radix as a float64 (per-tensor formats only). ldexp is exact."""
        if self.axis is not None:
            raise ValueError("per-channel format has one factor per channel")
        return math.ldexp(float(self.scale), int(self.radix))

    def same_as(self, other: "Fmt") -> bool:
        return (self.bits, self.radix, self.scale, self.axis) == (other.bits, other.radix, other.scale, other.axis)


def fmt_from_json(d: dict) -> Fmt:
    if "__qformat__" in d:
        d = d["__qformat__"]
    radix, scale = d["radix"], d["scale"]
    if isinstance(radix, list):
        radix = tuple(int(r) for r in radix)
        scale = tuple(float(s) for s in scale)
    else:
        radix, scale = int(radix), float(scale)
    return Fmt(bits=int(d["bits"]), radix=radix, scale=scale, axis=d.get("axis"))


# --------------------------------------------------------------------------------------------
# Nested-list helpers (no numpy arithmetic anywhere in the math)
# --------------------------------------------------------------------------------------------
def nest(flat: list, shape: list[int]) -> list:
    """C-order flat list -> nested lists of the given shape."""
    if len(shape) == 0:
        assert len(flat) == 1
        return flat[0]
    if len(shape) == 1:
        assert len(flat) == shape[0]
        return list(flat)
    step = 1
    for s in shape[1:]:
        step *= s
    assert len(flat) == shape[0] * step
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def flatten(t) -> list:
    """Nested lists -> C-order flat list."""
    if not isinstance(t, list):
        return [t]
    out = []
    for e in t:
        out.extend(flatten(e))
    return out


def shape_of(t) -> list[int]:
    s = []
    while isinstance(t, list):
        s.append(len(t))
        t = t[0] if t else None
    return s


def to_array(t) -> np.ndarray:
    """Nested Python ints -> int64 array (for the comparison only)."""
    return np.array(flatten(t), dtype=np.int64).reshape(shape_of(t))


def check_in_format(t, fmt: Fmt, what: str) -> None:
    """Spec §12: input integers outside the input format are an error (a bug upstream)."""
    lo, hi = qrange(fmt.bits)
    for v in flatten(t):
        if not (lo <= v <= hi):
            raise ValueError(f"{what}: integer {v} outside int{fmt.bits}")


# --------------------------------------------------------------------------------------------
# Reading the BIE (docs/bie-format.md)
# --------------------------------------------------------------------------------------------
def unpack_int4(raw: list[int], count: int) -> list[int]:
    """int4 weights: two per byte, low nibble first, two's complement (docs/bie-format.md)."""
    out = []
    for i in range(count):
        byte = raw[i // 2]
        nib = (byte >> (4 * (i % 2))) & 0xF
        out.append(nib - 16 if nib >= 8 else nib)
    return out


@dataclass
class Bie:
    meta: dict
    plan: dict
    options: dict
    initializers: dict            # name -> numpy array (raw, as stored)
    float_model: onnx.ModelProto

    def decode(self, obj):
        """Resolve the plan's JSON encodings into Python values:
        ``{"__init__": name, "dtype": ..., ["int4": true, "shape": [...]]}`` -> nested int lists from
        the initializers; ``{"__ndarray__": dtype, "data": [...], "shape": [...]}`` -> nested lists;
        ``{"__qformat__": ...}`` -> Fmt; ``{"__type__": ...}`` -> plain dict of decoded fields."""
        if isinstance(obj, list):
            return [self.decode(e) for e in obj]
        if not isinstance(obj, dict):
            return obj
        if "__init__" in obj:
            arr = self.initializers[obj["__init__"]]
            if obj.get("int4"):
                shape = [int(s) for s in obj["shape"]]
                count = 1
                for s in shape:
                    count *= s
                return nest(unpack_int4([int(b) for b in arr.reshape(-1).tolist()], count), shape)
            if np.dtype(obj["dtype"]) != arr.dtype:
                raise ValueError(f"initializer {obj['__init__']}: dtype {arr.dtype} != plan {obj['dtype']}")
            return nest([int(v) for v in arr.reshape(-1).tolist()], list(arr.shape))
        if "__ndarray__" in obj:
            return nest([int(v) for v in obj["data"]], [int(s) for s in obj["shape"]])
        if "__qformat__" in obj:
            return fmt_from_json(obj)
        return {k: self.decode(v) for k, v in obj.items() if k != "__type__"}

    @property
    def formats(self) -> dict[str, Fmt]:
        return {k: fmt_from_json(v) for k, v in self.plan["formats"].items()}


def read_bie(path) -> Bie:
    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    if meta.get("npuflow.numerics_version") != SPEC_VERSION:
        raise ValueError(f"BIE follows numerics {meta.get('npuflow.numerics_version')}, this reference {SPEC_VERSION}")
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    fm = onnx.load_from_string(inits.pop("npuflow.float_model").tobytes())
    return Bie(
        meta=meta,
        plan=json.loads(meta["npuflow.plan"]),
        options=json.loads(meta.get("npuflow.options") or "{}"),
        initializers=inits,
        float_model=fm,
    )


# --------------------------------------------------------------------------------------------
# Spec §1 / §10: input quantization  q = sat_b(RNE(x * f)), one float64 product, NaN error.
# --------------------------------------------------------------------------------------------
def quantize_input(x: np.ndarray, fmt: Fmt, counters: Counters | None = None, where: str = "input") -> list:
    f = fmt.factor()
    lo, hi = qrange(fmt.bits)
    flat = []
    for v in np.asarray(x).reshape(-1).tolist():  # Python floats (float64)
        p = float(v) * f                            # the one float64 product of §1
        if math.isnan(p):
            raise ValueError(f"{where}: NaN at the float boundary (spec §12)")
        if math.isinf(p):
            if counters is not None:
                Counters.bump(counters.saturated, where)
            flat.append(hi if p > 0 else lo)
            continue
        flat.append(sat(rne_exact(Fraction(p), counters, where), fmt.bits, counters, where))
    return nest(flat, list(np.asarray(x).shape))


# --------------------------------------------------------------------------------------------
# Spec §5.2: fused activation, bounds in the output domain (RNE(bound * f_out)).
# --------------------------------------------------------------------------------------------
def activation_bounds(act: dict, out_fmt: Fmt) -> tuple[int | None, int | None]:
    """(lower, upper) clamp of the fused activation, derived from the spec, not from the file."""
    kind = act["kind"]
    if kind == "none":
        return None, None
    if kind == "relu":
        # Relu = max(., 0): lower bound RNE(0 * f_out) = 0, no upper bound (saturation does it).
        return rne_exact(Fraction(0.0) * Fraction(out_fmt.factor())), None
    raise NotImplementedError(f"fused activation {kind!r} is not covered by this loop reference")


def mac_output(acc: int, c: int, out: dict, lo_hi, out_bits: int, counters: Counters, where: str) -> int:
    """Spec §5.1 + §5.2 for one output value of channel c:
    saturate the exact accumulator once to the accumulator width, requantize with (M[c], shift[c])
    and RNE, apply the fused activation in the output domain, saturate to the output width."""
    acc_lo, acc_hi = qrange(int(out["acc_bits"]))
    if acc < acc_lo or acc > acc_hi:  # exact sum saturated once (§5.1, §12)
        Counters.bump(counters.acc_saturated, where)
        acc = acc_lo if acc < acc_lo else acc_hi
    v = requantize(acc, int(out["mult"][c]), int(out["shift"][c]), counters, where)
    lo, hi = lo_hi
    if lo is not None and v < lo:
        v = lo
    if hi is not None and v > hi:
        v = hi
    return sat(v, out_bits, counters, where)


def _check_mac_out(out: dict, in_bits: int, w_bits: int, out_fmt: Fmt, where: str):
    """The spec's fixed choices that the stored params must agree with."""
    want_acc = 32 if (in_bits <= 8 and w_bits <= 8) else 48  # §5.1
    if int(out["acc_bits"]) != want_acc:
        raise AssertionError(f"{where}: acc_bits {out['acc_bits']} but §5.1 says int{want_acc}")
    if not out["out_format"].same_as(out_fmt):
        raise AssertionError(f"{where}: step out_format differs from plan formats")
    if out.get("mult_neg") is not None:
        raise NotImplementedError(f"{where}: LeakyRelu second multiplier not covered")
    lo, hi = activation_bounds(out["act"], out_fmt)
    qlo, qhi = qrange(out_fmt.bits)
    stored_lo, stored_hi = int(out["act"]["lo"]), int(out["act"]["hi"])
    if (qlo if lo is None else max(lo, qlo)) != stored_lo or (qhi if hi is None else min(hi, qhi)) != stored_hi:
        raise AssertionError(f"{where}: stored activation clamp [{stored_lo}, {stored_hi}] "
                             f"differs from the spec's [{lo}, {hi}] (§5.2)")
    return lo, hi


# --------------------------------------------------------------------------------------------
# Spec §5.3 geometry helpers (ONNX rules)
# --------------------------------------------------------------------------------------------
def conv_pads(in_hw, k_hw, strides, dilations, auto_pad: str, pads):
    """Return (out_hw, pad_begin_hw) with ONNX semantics. With SAME_*/VALID the explicit pads are
    ignored (ONNX: pads must not be used together with auto_pad)."""
    out_hw, begin = [], []
    for i in range(len(in_hw)):
        n, k, s, d = in_hw[i], k_hw[i], strides[i], dilations[i]
        ke = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)  # ceil
            total = max(0, (o - 1) * s + ke - n)
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad == "VALID":
            o = (n - ke) // s + 1
            b = 0
        elif auto_pad in ("NOTSET", ""):
            b, e = pads[i], pads[i + len(in_hw)]
            o = (n + b + e - ke) // s + 1
        else:
            raise ValueError(f"auto_pad {auto_pad!r}")
        out_hw.append(o)
        begin.append(b)
    return out_hw, begin


# --------------------------------------------------------------------------------------------
# Kernels, explicit loops
# --------------------------------------------------------------------------------------------
def conv2d(x, p: dict, in_fmt: Fmt, out_fmt: Fmt, counters: Counters, where: str):
    """Spec §5: acc[c] = sum x_q * w_q + q_b[c] exactly, then §5.2. 2-D, NCHW, groups, dilations."""
    w, out = p["w_q"], p["out"]
    if not p["in_format"].same_as(in_fmt):
        raise AssertionError(f"{where}: step in_format differs from plan formats")
    lo_hi = _check_mac_out(out, in_fmt.bits, 8, out_fmt, where)  # weights are int8 on this file
    N, C, H, W = shape_of(x)
    C_out, Cg, KH, KW = shape_of(w)
    group = int(p["group"])
    if Cg * group != C or C_out % group != 0 or [KH, KW] != list(p["kernel_shape"]):
        raise AssertionError(f"{where}: inconsistent Conv shapes")
    (HO, WO), (pt, pl) = conv_pads([H, W], [KH, KW], p["strides"], p["dilations"], p["auto_pad"], p["pads"])
    sy, sx = p["strides"]
    dy, dx = p["dilations"]
    bias = out["bias"]
    per_group = C_out // group
    y = [[[[0] * WO for _ in range(HO)] for _ in range(C_out)] for _ in range(N)]
    for n in range(N):
        for co in range(C_out):
            g = co // per_group
            for oy in range(HO):
                for ox in range(WO):
                    acc = 0
                    for ci in range(Cg):
                        for ky in range(KH):
                            iy = oy * sy - pt + ky * dy
                            if iy < 0 or iy >= H:
                                continue  # zero padding: contributes exactly 0
                            for kx in range(KW):
                                ix = ox * sx - pl + kx * dx
                                if ix < 0 or ix >= W:
                                    continue
                                acc += x[n][g * Cg + ci][iy][ix] * w[co][ci][ky][kx]
                    acc += bias[co]
                    y[n][co][oy][ox] = mac_output(acc, co, out, lo_hi, out_fmt.bits, counters, where)
    return y


def maxpool2d(x, p: dict, in_fmt: Fmt, out_fmt: Fmt, counters: Counters, where: str):
    """Spec §9: exact maximum over the window (padding never wins); requantized only if the output
    format differs from the input's (then one rounding with the stored multiplier)."""
    if int(p.get("ceil_mode", 0)) != 0 or p["auto_pad"] not in ("NOTSET", ""):
        raise NotImplementedError(f"{where}: ceil_mode/auto_pad pooling not covered")
    N, C, H, W = shape_of(x)
    KH, KW = p["kernel_shape"]
    (HO, WO), (pt, pl) = conv_pads([H, W], [KH, KW], p["strides"], p["dilations"], "NOTSET", p["pads"])
    sy, sx = p["strides"]
    dy, dx = p["dilations"]
    same = in_fmt.same_as(out_fmt)
    y = [[[[0] * WO for _ in range(HO)] for _ in range(C)] for _ in range(N)]
    for n in range(N):
        for c in range(C):
            for oy in range(HO):
                for ox in range(WO):
                    best = None
                    for ky in range(KH):
                        iy = oy * sy - pt + ky * dy
                        if iy < 0 or iy >= H:
                            continue
                        for kx in range(KW):
                            ix = ox * sx - pl + kx * dx
                            if ix < 0 or ix >= W:
                                continue
                            v = x[n][c][iy][ix]
                            if best is None or v > best:
                                best = v
                    if same:
                        y[n][c][oy][ox] = best
                    else:
                        rq = p["rq"]
                        y[n][c][oy][ox] = sat(requantize(best, int(rq["mult"]), int(rq["shift"]), counters, where),
                                              out_fmt.bits, counters, where)
    return y


def reshape(x, p: dict, in_fmt: Fmt, out_fmt: Fmt, counters: Counters, where: str):
    """Spec §6.4: integers move unchanged (ONNX Reshape: 0 copies a dim unless allowzero, -1 inferred)."""
    if not in_fmt.same_as(out_fmt):
        raise NotImplementedError(f"{where}: requantizing Reshape not covered")
    cfg = p["config"]
    in_shape = shape_of(x)
    flat = flatten(x)
    target = []
    for i, s in enumerate(cfg["shape"]):
        s = int(s)
        if s == 0 and not int(cfg.get("allowzero", 0)):
            s = in_shape[i]
        target.append(s)
    if -1 in target:
        known = 1
        for s in target:
            if s != -1:
                known *= s
        target[target.index(-1)] = len(flat) // known
    return nest(flat, target)


def gemm(a, p: dict, in_fmt: Fmt, out_fmt: Fmt, counters: Counters, where: str):
    """Spec §5 for Gemm with a constant B: acc[i][j] = sum_k A[i][k] * B[k][j] + q_b[j] exactly,
    weights and bias per output column j, then §5.2 with (M[j], shift[j]) (alpha folded in)."""
    if not p["a_format"].same_as(in_fmt):
        raise AssertionError(f"{where}: step a_format differs from plan formats")
    b, out = p["b_q"], p["out"]
    lo_hi = _check_mac_out(out, in_fmt.bits, p["b_format"].bits, out_fmt, where)
    if p["trans_a"]:
        a = [[a[k][i] for k in range(len(a))] for i in range(len(a[0]))]
    if p["trans_b"]:
        b = [[b[j][k] for j in range(len(b))] for k in range(len(b[0]))]
    M, K = shape_of(a)
    K2, NC = shape_of(b)
    if K != K2:
        raise AssertionError(f"{where}: Gemm K mismatch {K} vs {K2}")
    bias = out["bias"]
    y = [[0] * NC for _ in range(M)]
    for i in range(M):
        for j in range(NC):
            acc = 0
            for k in range(K):
                acc += a[i][k] * b[k][j]
            acc += bias[j]
            y[i][j] = mac_output(acc, j, out, lo_hi, out_fmt.bits, counters, where)
    return y


KERNELS = {"Conv": conv2d, "MaxPool": maxpool2d, "Reshape": reshape, "Gemm": gemm}


# --------------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------------
def run(bie: Bie, inputs: dict, counters: Counters | None = None) -> dict[str, np.ndarray]:
    """Run the BIE's integer program on float inputs. Returns every quantized tensor (model inputs
    included) as an int64 array, keyed by tensor name."""
    counters = counters if counters is not None else Counters()
    fmts = bie.formats
    env: dict[str, list] = {}
    for name in bie.plan["input_names"]:
        env[name] = quantize_input(inputs[name], fmts[name], counters, name)
    for step in bie.plan["steps"]:
        where = step["name"]
        if step.get("float_step"):
            raise NotImplementedError(f"{where}: CPU float steps are not covered by this loop reference")
        op = step["op_type"]
        if op not in KERNELS:
            raise NotImplementedError(f"{where}: op {op} not covered by this loop reference")
        runtime = [n for n in step["inputs"] if n]
        if len(runtime) != 1 or len(step["outputs"]) != 1:
            raise NotImplementedError(f"{where}: only single-input single-output steps are covered")
        x = env[runtime[0]]
        in_fmt, out_fmt = fmts[runtime[0]], fmts[step["outputs"][0]]
        check_in_format(x, in_fmt, where)
        p = bie.decode(step["params"])
        for key, want in (("in_format", in_fmt), ("out_format", out_fmt)):
            if key in p and not p[key].same_as(want):
                raise AssertionError(f"{where}: step {key} differs from the plan's formats")
        env[step["outputs"][0]] = KERNELS[op](x, p, in_fmt, out_fmt, counters, where)
    return {k: to_array(v) for k, v in env.items()}
