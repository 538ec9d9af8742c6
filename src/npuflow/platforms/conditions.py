"""Generic checker for the declarative NPU operator conditions stored in the platform JSON files.

A platform lists, per ONNX op type, a list of *rules*. A node runs on the NPU when every rule
holds; otherwise the first failing rule gives a human-readable reason. Rules are plain dicts so
that a new limit is a data entry, not code::

    {"of": "attr:kernel_shape", "max": 12}                      every kernel dim <= 12
    {"of": "attr:strides", "index": 1, "max": 16, "label": "stride_w"}
    {"of": "attr:keepdims", "default": 1, "eq": 1}
    {"of": "input:1", "fallback_attr": "min", "eq": 0, "label": "min"}   constant input 1 (or attr)
    {"of": "const:1", "is": true, "label": "second input constant"}
    {"of": "rank", "max": 4}                                    max rank over activations
    {"any": [rule, rule], "label": "..."}                       at least one sub-rule holds

Value sources (``of``):

``attr:<name>``          a node attribute (``default`` when absent)
``input:<i>``            the constant value of input ``i``; ``fallback_attr`` for older opsets
``const:<i>``            whether input ``i`` is a compile-time constant (bool)
``rank``                 the largest rank of the node's non-constant inputs and outputs
``input_rank:<i>``       rank of input ``i``
``spatial_size:<i>``     product of the dims after N, C of input ``i`` (pixels per channel)
``pads_batch``           padding on the batch axis (Pad)
``reduce_axes``          normalised non-negative reduce axes (attribute or input 1)

Comparisons: ``max``, ``min``, ``eq``, ``in``, ``not_in``, ``is``, ``subset_of``. Lists are
compared element-wise for ``max``/``min`` (every element must pass).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from npuflow.ir.nodes import NodeInfo  # noqa: F401  (the checker's input; defined in ir, shared with the optimizer)

_COMPARISONS = ("max", "min", "eq", "in", "not_in", "is", "subset_of")
_SOURCES = ("attr", "input", "const", "rank", "input_rank", "spatial_size", "pads_batch", "reduce_axes")
_MISSING = object()


class RuleError(ValueError):
    """A rule in a platform file is malformed (raised while loading, never while checking)."""


def validate_rule(rule: Any, where: str) -> None:
    """Raise RuleError if ``rule`` is not a well-formed condition."""
    if not isinstance(rule, dict):
        raise RuleError(f"{where}: a rule must be an object, got {rule!r}")
    if "any" in rule:
        subs = rule["any"]
        if not isinstance(subs, list) or not subs:
            raise RuleError(f"{where}: 'any' needs a non-empty list of rules")
        for i, sub in enumerate(subs):
            validate_rule(sub, f"{where}.any[{i}]")
        return
    of = rule.get("of")
    if not isinstance(of, str) or of.split(":", 1)[0] not in _SOURCES:
        raise RuleError(f"{where}: 'of' must start with one of {', '.join(_SOURCES)}; got {of!r}")
    kind, _, arg = of.partition(":")
    if kind in ("attr",) and not arg:
        raise RuleError(f"{where}: 'attr:' needs an attribute name")
    if kind in ("input", "const", "input_rank", "spatial_size") and not arg.isdigit():
        raise RuleError(f"{where}: '{kind}:' needs an input index, got {of!r}")
    comps = [c for c in _COMPARISONS if c in rule]
    if len(comps) != 1:
        raise RuleError(f"{where}: exactly one comparison of {', '.join(_COMPARISONS)} is needed, got {comps}")
    unknown = set(rule) - set(_COMPARISONS) - {"of", "index", "default", "fallback_attr", "label", "note"}
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")


def _to_py(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_to_py(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rank_of(shape: tuple[int, ...] | None) -> int | None:
    return None if shape is None else len(shape)


def _resolve(rule: Mapping[str, Any], node: NodeInfo) -> Any:
    kind, _, arg = rule["of"].partition(":")
    default = rule.get("default", _MISSING)
    if kind == "attr":
        value = node.attrs.get(arg, _MISSING)
    elif kind == "input":
        idx = int(arg)
        if idx in node.const_inputs:
            value = node.const_inputs[idx]
        elif idx in node.present_inputs:
            value = "<not a constant>"
        elif "fallback_attr" in rule:
            value = node.attrs.get(rule["fallback_attr"], _MISSING)
        else:
            value = _MISSING
    elif kind == "const":
        idx = int(arg)
        value = idx in node.const_inputs
    elif kind == "rank":
        ranks = [_rank_of(s) for i, s in enumerate(node.input_shapes) if i not in node.const_inputs]
        ranks += [_rank_of(s) for s in node.output_shapes]
        known = [r for r in ranks if r is not None]
        value = max(known) if known else _MISSING
    elif kind == "input_rank":
        idx = int(arg)
        shp = node.input_shapes[idx] if idx < len(node.input_shapes) else None
        value = _MISSING if shp is None else len(shp)
    elif kind == "spatial_size":
        idx = int(arg)
        shp = node.input_shapes[idx] if idx < len(node.input_shapes) else None
        value = _MISSING if shp is None or len(shp) < 3 else int(np.prod(shp[2:]))
    elif kind == "pads_batch":
        pads = node.const_inputs.get(1)
        if pads is None:
            pads = node.attrs.get("pads")
        if pads is None:
            value = 0
        else:
            pads = [int(p) for p in np.asarray(pads).ravel()]
            half = len(pads) // 2
            value = abs(pads[0]) + abs(pads[half]) if half else 0
    elif kind == "reduce_axes":
        axes = node.attrs.get("axes")
        if axes is None and 1 in node.const_inputs:
            axes = node.const_inputs[1]
        rank = _rank_of(node.input_shapes[0]) if node.input_shapes else None
        if axes is None:
            value = list(range(rank)) if rank is not None else _MISSING
        else:
            axes = [int(a) for a in np.asarray(axes).ravel()]
            value = sorted(a + rank if (a < 0 and rank is not None) else a for a in axes)
    else:  # pragma: no cover - validate_rule rejects it
        raise RuleError(f"unknown source {kind}")
    if value is _MISSING:
        return default
    value = _to_py(value)
    if "index" in rule and isinstance(value, list):
        i = int(rule["index"])
        value = value[i] if -len(value) <= i < len(value) else default
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        flat = list(np.asarray(value, dtype=object).ravel()) if value and not isinstance(value[0], str) else value
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in flat):
            return "x".join(_fmt_num(v) for v in flat) if flat else "[]"
        return "[" + ", ".join(str(v) for v in flat) + "]"
    if isinstance(value, float):
        return _fmt_num(value)
    return str(value)


def _fmt_num(v: Any) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _numbers(value: Any) -> list[float] | None:
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return [float(x) for x in arr]


def _eval_one(rule: Mapping[str, Any], node: NodeInfo, platform_name: str) -> str | None:
    """Return None when the rule holds, else the failure reason."""
    if "any" in rule:
        reasons = []
        for sub in rule["any"]:
            r = _eval_one(sub, node, platform_name)
            if r is None:
                return None
            reasons.append(r)
        label = rule.get("label")
        if label:
            return f"{node.op_type} {label} (required on the {platform_name} NPU)"
        return " and ".join(reasons)
    value = _resolve(rule, node)
    label = rule.get("label") or rule["of"].partition(":")[2] or rule["of"]
    if value is _MISSING:
        return None  # unknown (e.g. shape not inferred): nothing to hold against the node
    if value is None:
        return f"{node.op_type} {label} is not set; the {platform_name} NPU needs it {_describe(rule)}"
    if isinstance(value, str) and value == "<not a constant>":
        return f"{node.op_type} {label} is not a constant; the {platform_name} NPU needs a constant {_describe(rule)}"
    shown = _fmt(value)
    if "max" in rule or "min" in rule:
        nums = _numbers(value)
        if nums is None:
            return f"{node.op_type} {label} {shown} is not numeric"
        if "max" in rule and any(x > rule["max"] for x in nums):
            return f"{node.op_type} {label} {shown} exceeds the {platform_name} limit {_fmt(rule['max'])}"
        if "min" in rule and any(x < rule["min"] for x in nums):
            return f"{node.op_type} {label} {shown} is below the {platform_name} minimum {_fmt(rule['min'])}"
        return None
    if "eq" in rule:
        want = rule["eq"]
        nums, wnums = _numbers(value), _numbers(want)
        if nums is not None and wnums is not None and nums:
            ok = all(x == wnums[0] for x in nums) if len(wnums) == 1 else nums == wnums
        else:
            ok = value == want
        if not ok:
            return f"{node.op_type} {label} is {shown}; the {platform_name} NPU supports only {_fmt(want)}"
        return None
    if "in" in rule:
        if value not in rule["in"]:
            return f"{node.op_type} {label} {shown} is not supported on the {platform_name} NPU (supported: {', '.join(_fmt(v) for v in rule['in'])})"
        return None
    if "not_in" in rule:
        if value in rule["not_in"]:
            return f"{node.op_type} {label} {shown} is not supported on the {platform_name} NPU"
        return None
    if "is" in rule:
        if bool(value) != bool(rule["is"]):
            return f"{node.op_type} {label}: {'required' if rule['is'] else 'not allowed'} on the {platform_name} NPU"
        return None
    if "subset_of" in rule:
        vals = value if isinstance(value, list) else [value]
        if not set(vals) <= set(rule["subset_of"]):
            return f"{node.op_type} {label} {shown} is not supported on the {platform_name} NPU (only within {_fmt(rule['subset_of'])})"
        return None
    raise RuleError(f"rule without comparison: {rule}")  # pragma: no cover


def _describe(rule: Mapping[str, Any]) -> str:
    for c in _COMPARISONS:
        if c in rule:
            return {"max": "<=", "min": ">=", "eq": "=", "in": "in", "not_in": "not in", "is": "=", "subset_of": "within"}[c] + " " + _fmt(rule[c])
    return ""


def check_rules(rules: Sequence[Mapping[str, Any]], node: NodeInfo, platform_name: str) -> str | None:
    """Check ``rules`` in order; return None if all hold, else the first failure's reason."""
    for rule in rules:
        reason = _eval_one(rule, node, platform_name)
        if reason is not None:
            return reason
    return None
