"""Re-derive the BIE's prepared MAC parameters from the float model, from docs/fixed-point.md alone.

The loop reference (``loop_reference.py``) consumes the integers stored in the BIE plan (quantized
weights, accumulator biases, multipliers and shifts). This module checks that those stored integers
are what the spec says they must be, given the float weights of the optimized float model that the
BIE carries (``npuflow.float_model``) and the activation formats recorded in the plan:

* §3 weights: per output channel, ``a_c = max(max|w_c|, |b_c| * f_in * qmax_w / 2^(acc_bits-2))``,
  ``radix = (b-1) - ceil(log2 a_c)`` (exactly, from the float's exponent), ``scale = qmax/(a_c 2^radix)``;
  all-zero channel -> ``(b-1, 1.0)``; radix clamped to [-128, 127] with scale 1.
* §1 quantize: ``q = sat_b(RNE(x * f))``, one float64 product.
* §3 bias: accumulator format ``radix = r_in + r_w[c]``, ``scale = s_in * s_w[c]`` (float64 product),
  ``q_b = sat_acc(RNE(b * f_acc))``.
* §4 ``multiplier_shift``: ``r ~= M 2^-(31+shift)``, ``|M| in [2^30, 2^31)``, mantissa RNE; the scale
  ratio in float64 and the radix difference passed exactly as a power of two.
* §5.2 ratio ``alpha * f_out / (f_in * f_w[c])``; Gemm's bias is ``beta * C / alpha``.
* §5.1 ``acc_bound = max_c(2^(b_in-1) * sum|w_q[c]| + |q_b[c]|)``.

Only the activation formats (which come from calibration statistics) are taken from the file, and
they are checked against the §3 invariants (scale range, model input a pure power of two, pass-through
formats of MaxPool/Reshape, one output format per fused MAC).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from onnx import helper, numpy_helper

from .loop_reference import Bie, Fmt, nest, qrange, rne_div, rne_exact, sat


def ceil_log2(a: float) -> int:
    """ceil(log2 a) exactly, from the float's exponent (a > 0, denormals included)."""
    m, e = math.frexp(a)  # a = m * 2^e, m in [0.5, 1)
    return e - 1 if m == 0.5 else e


def range_format(a: float, bits: int) -> tuple[int, float]:
    """Spec §3 activation/weight rule: (radix, scale) so that a maps exactly onto qmax."""
    qmax = (1 << (bits - 1)) - 1
    if a == 0.0:
        return bits - 1, 1.0
    radix = (bits - 1) - ceil_log2(a)
    if radix < -128 or radix > 127:
        return max(-128, min(127, radix)), 1.0
    return radix, qmax / math.ldexp(a, radix)


def quantize_value(x: float, f: float, bits: int) -> int:
    """Spec §1 quantize: sat_b(RNE(x * f)) with the product in float64."""
    return sat(rne_exact(Fraction(float(x) * f)), bits)


def multiplier_shift(ratio: float, exp2: int) -> tuple[int, int]:
    """Spec §4: (M, shift) with ratio * 2^exp2 ~= M * 2^-(31+shift), |M| in [2^30, 2^31), mantissa RNE,
    renormalized when it rounds up to 2^31, sign in M; ratio = 0 -> (0, 0)."""
    if ratio == 0.0:
        return 0, 0
    m, e = math.frexp(abs(ratio))           # |ratio| = m * 2^e, m in [0.5, 1)
    mant = rne_exact(Fraction(m) * (1 << 31))  # in [2^30, 2^31]
    if mant == 1 << 31:
        mant, e = 1 << 30, e + 1
    # ratio * 2^exp2 = mant * 2^(e - 31 + exp2) = mant * 2^-(31 + shift)
    shift = -(e + exp2)
    if shift < -31:
        raise ValueError("multiplier >= 2^31 is refused in prepare (§4)")
    return (mant if ratio > 0 else -mant), shift


def _float_node(bie: Bie, name: str):
    for n in bie.float_model.graph.node:
        if n.name == name:
            return n
    raise KeyError(name)


def _float_init(bie: Bie, name: str) -> np.ndarray:
    for t in bie.float_model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def expected_mac(bie: Bie, step: dict, w_bits: int = 8) -> dict:
    """What §1/§3/§4/§5 say the prepared parameters of a Conv or Gemm step must be.

    Returns ``w_q`` (nested ints, stored layout), ``w_radix``/``w_scale`` per channel, ``bias``,
    ``mult``, ``shift``, ``acc_bits``, ``acc_bound``, ``act`` (the fused op type or None)."""
    fmts = bie.formats
    in_fmt: Fmt = fmts[[n for n in step["inputs"] if n][0]]
    out_fmt: Fmt = fmts[step["outputs"][0]]
    mac = _float_node(bie, step["nodes"][0])
    attrs = _attrs(mac)
    W = _float_init(bie, mac.input[1]).astype(np.float64)
    alpha = 1.0
    if mac.op_type == "Conv":
        axis = 0
        nch = W.shape[0]
        bias_f = (_float_init(bie, mac.input[2]).astype(np.float64).reshape(-1).tolist()
                  if len(mac.input) > 2 and mac.input[2] else [0.0] * nch)
    elif mac.op_type == "Gemm":
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        axis = 0 if attrs.get("transB", 0) else 1
        nch = W.shape[axis]
        if len(mac.input) > 2 and mac.input[2]:
            C = _float_init(bie, mac.input[2]).astype(np.float64).reshape(-1).tolist()
            C = C * nch if len(C) == 1 else C
            bias_f = [beta * c / alpha for c in C]  # §5.2: Gemm's bias is beta*C/alpha
        else:
            bias_f = [0.0] * nch
    else:
        raise NotImplementedError(mac.op_type)
    act = None
    for extra in step["nodes"][1:]:
        act = _float_node(bie, extra).op_type

    acc_bits = 32 if (in_fmt.bits <= 8 and w_bits <= 8) else 48  # §5.1
    qmax_w = (1 << (w_bits - 1)) - 1
    f_in = in_fmt.factor()
    f_out = out_fmt.factor()
    Wc = np.moveaxis(W, axis, 0)  # channel first, for reading only
    radixes, scales, wq_c, biases, mults, shifts, widened = [], [], [], [], [], [], []
    bound = 0
    for c in range(nch):
        vals = Wc[c].reshape(-1).tolist()
        a = max(abs(v) for v in vals)
        widen = abs(bias_f[c]) * f_in * qmax_w / 2.0 ** (acc_bits - 2)  # §3 widening by the bias
        widened.append(widen > a)
        a = max(a, widen)
        r_w, s_w = range_format(a, w_bits)
        f_w = math.ldexp(s_w, r_w)
        q = [quantize_value(v, f_w, w_bits) for v in vals]
        # bias in the accumulator format of its channel (§3)
        f_acc = math.ldexp(in_fmt.scale * s_w, in_fmt.radix + r_w)
        qb = quantize_value(bias_f[c], f_acc, acc_bits)
        # requantization multiplier (§4, §5.2): scale ratio in float64, radix difference exact
        M, sh = multiplier_shift(alpha * out_fmt.scale / (in_fmt.scale * s_w), out_fmt.radix - in_fmt.radix - r_w)
        radixes.append(r_w)
        scales.append(s_w)
        wq_c.append(q)
        biases.append(qb)
        mults.append(M)
        shifts.append(sh)
        bound = max(bound, (1 << (in_fmt.bits - 1)) * sum(abs(v) for v in q) + abs(qb))
    # back to the stored layout (channel axis where the float weight had it)
    chan_shape = list(Wc.shape[1:])
    stacked = np.array(wq_c, dtype=object).reshape([nch] + chan_shape)
    w_q = np.moveaxis(stacked, 0, axis)
    return {
        "w_q": nest([int(v) for v in w_q.reshape(-1).tolist()], list(w_q.shape)),
        "w_radix": radixes, "w_scale": scales, "axis": axis, "widened": widened,
        "bias": biases, "mult": mults, "shift": shifts,
        "acc_bits": acc_bits, "acc_bound": bound, "act": act,
        "f_in": f_in, "f_out": f_out,
    }


def check_activation_format(fmt: Fmt, is_model_input: bool) -> list[str]:
    """§1/§3 invariants a calibrated activation format must satisfy."""
    problems = []
    qmax = (1 << (fmt.bits - 1)) - 1
    if not (-128 <= fmt.radix <= 127):
        problems.append(f"radix {fmt.radix} outside [-128, 127]")
    if is_model_input:
        if fmt.scale != 1.0:
            problems.append(f"model input scale {fmt.scale} != 1 (§3)")
    elif fmt.scale != 1.0:  # scale 1 is the a = 0 / clamped case
        lo, hi = qmax / 2 ** (fmt.bits - 1), qmax / 2 ** (fmt.bits - 2)
        if not (lo <= fmt.scale < hi):
            problems.append(f"scale {fmt.scale} outside [{lo}, {hi}) (§1)")
    return problems


def requant_has_reachable_tie(mult: int, shift: int, acc_abs_max: int) -> bool:
    """Can RNE(acc*M / 2^(31+shift)) ever meet an exact .5 for |acc| <= acc_abs_max?
    A tie needs v2(acc*M) == 30 + shift exactly, i.e. v2(acc) == 30 + shift - v2(M)."""
    if mult == 0:
        return False
    v2m = (abs(mult) & -abs(mult)).bit_length() - 1
    need = 30 + shift - v2m
    return need >= 0 and (1 << need) <= acc_abs_max


__all__ = ["ceil_log2", "range_format", "quantize_value", "multiplier_shift", "expected_mac",
           "check_activation_format", "requant_has_reachable_tie", "rne_div", "qrange"]
