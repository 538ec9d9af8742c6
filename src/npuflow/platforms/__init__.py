"""Platform descriptions of the Kneron-class NPUs, loaded from the JSON files next to this module.

One ``kl<id>.json`` per platform holds the NPU operator table (op type -> declarative conditions,
checked by :mod:`npuflow.platforms.conditions`), the allowed bit widths and the hardware figures of
the cost model, each with its ``source`` ("sourced: <where>", "fitted: <how>" or "assumed: <why>").
``cpu_ops.json`` lists what the CPU fallback can execute (shared by every platform) and
``cost_model.json`` the platform-independent cost-model constants. Adding a platform is adding a
``kl<id>.json`` file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

from npuflow.errors import InvalidConfigError
from npuflow.platforms.conditions import NodeInfo, RuleError, check_rules, validate_rule

__all__ = [
    "PLATFORMS",
    "Figure",
    "NodeInfo",
    "Platform",
    "CostModelSpec",
    "PlatformDataError",
    "cost_model_spec",
    "cpu_ops",
    "get_platform",
    "load_platform_file",
]

_SOURCE_KINDS = ("sourced:", "fitted:", "assumed:", "inferred:")
_BIT_KEYS = ("datapath", "weight", "model_in", "model_out", "cpu_node")
_REQUIRED_FIGURES = (
    "peak_int8_tops",
    "channel_lanes",
    "onchip_buffer_kib",
    "rdma_bandwidth",
    "wdma_bandwidth",
    "weight_bandwidth",
    "mac_efficiency",
)


class PlatformDataError(ValueError):
    """A platform JSON file is malformed (a packaging bug, not a user error)."""


@dataclass(frozen=True)
class Figure:
    """One number of the cost model with its unit and where it comes from."""

    value: float
    unit: str
    source: str

    @property
    def kind(self) -> str:
        """'sourced', 'fitted', 'assumed' or 'inferred'."""
        return self.source.split(":", 1)[0]


@dataclass(frozen=True)
class Platform:
    id: int
    name: str
    npu_ops: Mapping[str, tuple[Mapping[str, Any], ...]]
    cpu_ops: frozenset[str]
    bitwidths: Mapping[str, tuple[int, ...]]
    hardware: Mapping[str, Figure]
    common_rules: tuple[Mapping[str, Any], ...] = field(default=())

    # -- operator support --------------------------------------------------------------
    def npu_supports(self, op_type: str) -> bool:
        return op_type in self.npu_ops

    def cpu_supports(self, op_type: str) -> bool:
        return op_type in self.cpu_ops

    def npu_reason(self, node: NodeInfo) -> str | None:
        """None when ``node`` can run on this NPU; otherwise the reason it cannot."""
        if node.op_type not in self.npu_ops:
            return f"op {node.op_type} not supported on {self.name} NPU"
        return check_rules(tuple(self.common_rules) + tuple(self.npu_ops[node.op_type]), node, self.name)

    # -- numbers -----------------------------------------------------------------------
    def figure(self, key: str) -> float:
        return self.hardware[key].value

    @property
    def peak_macs_per_s(self) -> float:
        """Peak int8 MAC/s (TOPS counts two ops per MAC)."""
        return self.figure("peak_int8_tops") * 1e12 / 2.0

    def check_bits(self, kind: str, bits: int) -> None:
        allowed = self.bitwidths[kind]
        if bits not in allowed:
            raise InvalidConfigError(
                f"{kind} bit width int{bits} is not available on {self.name}; allowed: "
                + ", ".join(f"int{b}" for b in allowed)
            )

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.name


@dataclass(frozen=True)
class CostModelSpec:
    """Platform-independent part of the cost model (``cost_model.json``)."""

    name: str
    version: int
    constants: Mapping[str, Figure]
    fuse_producers: frozenset[str]
    fuse_ops: frozenset[str]
    fold_ops: frozenset[str]
    fold_consumers: frozenset[str]
    no_op: frozenset[str]
    elementwise: frozenset[str]
    window: frozenset[str]
    reduce_input: frozenset[str]
    data_movement: frozenset[str]

    def constant(self, key: str) -> float:
        return self.constants[key].value


def _read_json(name: str) -> Any:
    try:
        text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PlatformDataError(f"platform data file {name} is missing from the npuflow package") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlatformDataError(f"{name}: invalid JSON: {exc}") from exc


def _figure(name: str, key: str, raw: Any) -> Figure:
    if not isinstance(raw, dict) or not {"value", "unit", "source"} <= set(raw):
        raise PlatformDataError(f"{name}: figure {key} needs value, unit and source")
    src = str(raw["source"])
    if not src.startswith(_SOURCE_KINDS):
        raise PlatformDataError(f"{name}: figure {key} source must start with one of {_SOURCE_KINDS}, got {src!r}")
    value = raw["value"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise PlatformDataError(f"{name}: figure {key} must be a non-negative number, got {value!r} (run benchmarks/cost_model_fit.py --write)")
    return Figure(float(value), str(raw["unit"]), src)


@lru_cache(maxsize=1)
def cpu_ops() -> frozenset[str]:
    data = _read_json("cpu_ops.json")
    ops = data.get("ops")
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise PlatformDataError("cpu_ops.json: 'ops' must be a list of op type names")
    return frozenset(ops)


@lru_cache(maxsize=1)
def cost_model_spec() -> CostModelSpec:
    name = "cost_model.json"
    d = _read_json(name)
    try:
        consts = {k: _figure(name, k, v) for k, v in d["constants"].items()}
        ow = d["op_work"]
        return CostModelSpec(
            name=str(d["name"]),
            version=int(d["version"]),
            constants=MappingProxyType(consts),
            fuse_producers=frozenset(d["fuse_into_producer"]["producers"]),
            fuse_ops=frozenset(d["fuse_into_producer"]["ops"]),
            fold_ops=frozenset(d["fold_into_consumer"]["ops"]),
            fold_consumers=frozenset(d["fold_into_consumer"]["consumers"]),
            no_op=frozenset(d["no_op"]["ops"]),
            elementwise=frozenset(ow["elementwise"]),
            window=frozenset(ow["window"]),
            reduce_input=frozenset(ow["input"]),
            data_movement=frozenset(ow["data_movement"]),
        )
    except (KeyError, TypeError) as exc:
        raise PlatformDataError(f"{name}: missing or malformed entry: {exc}") from exc


def load_platform_file(data: Mapping[str, Any], *, name: str = "<platform>") -> Platform:
    """Validate a parsed platform description and build a :class:`Platform`."""
    for key in ("id", "name", "npu_ops", "bitwidths", "hardware"):
        if key not in data:
            raise PlatformDataError(f"{name}: missing key {key!r}")
    pid = data["id"]
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise PlatformDataError(f"{name}: id must be an integer")
    ops_raw = data["npu_ops"]
    if not isinstance(ops_raw, dict):
        raise PlatformDataError(f"{name}: npu_ops must map op type -> list of rules")
    cpu = cpu_ops()
    npu_ops: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for op, rules in ops_raw.items():
        if not isinstance(rules, list):
            raise PlatformDataError(f"{name}: npu_ops[{op}] must be a list of rules")
        for i, rule in enumerate(rules):
            try:
                validate_rule(rule, f"{name}: npu_ops[{op}][{i}]")
            except RuleError as exc:
                raise PlatformDataError(str(exc)) from exc
        if op not in cpu:
            # The CPU fallback must be able to run an NPU op whose conditions fail.
            raise PlatformDataError(f"{name}: NPU op {op} is missing from cpu_ops.json")
        npu_ops[op] = tuple(MappingProxyType(dict(r)) for r in rules)
    common = data.get("common_rules", [{"of": "rank", "max": 4, "note": "4-D NCHW datapath"}])
    for i, rule in enumerate(common):
        try:
            validate_rule(rule, f"{name}: common_rules[{i}]")
        except RuleError as exc:
            raise PlatformDataError(str(exc)) from exc
    bits: dict[str, tuple[int, ...]] = {}
    for key in _BIT_KEYS:
        vals = data["bitwidths"].get(key)
        if not isinstance(vals, list) or not vals or not all(v in (4, 8, 16) for v in vals):
            raise PlatformDataError(f"{name}: bitwidths.{key} must be a non-empty list of 4/8/16")
        bits[key] = tuple(vals)
    hw = {k: _figure(name, k, v) for k, v in data["hardware"].items()}
    missing = [k for k in _REQUIRED_FIGURES if k not in hw]
    if missing:
        raise PlatformDataError(f"{name}: hardware figures missing: {missing}")
    zero = [k for k in _REQUIRED_FIGURES if hw[k].value <= 0]
    if zero:
        raise PlatformDataError(f"{name}: hardware figures must be positive: {zero}")
    return Platform(
        id=pid,
        name=str(data["name"]),
        npu_ops=MappingProxyType(npu_ops),
        cpu_ops=cpu,
        bitwidths=MappingProxyType(bits),
        hardware=MappingProxyType(hw),
        common_rules=tuple(MappingProxyType(dict(r)) for r in common),
    )


def _discover() -> tuple[int, ...]:
    ids = []
    for entry in resources.files(__package__).iterdir():
        n = entry.name
        if n.startswith("kl") and n.endswith(".json") and n[2:-5].isdigit():
            ids.append(int(n[2:-5]))
    order = {520: 0, 720: 1, 530: 2, 630: 3, 730: 4}
    return tuple(sorted(ids, key=lambda i: (order.get(i, 99), i)))


PLATFORMS: tuple[int, ...] = _discover()


@lru_cache(maxsize=None)
def _load(pid: int) -> Platform:
    fname = f"kl{pid}.json"
    platform = load_platform_file(_read_json(fname), name=fname)
    if platform.id != pid:
        raise PlatformDataError(f"{fname}: id {platform.id} does not match the file name")
    return platform


def get_platform(p: int | str | Platform) -> Platform:
    """The platform for 520 / "520" / "kl520" / "KL520" (or a Platform, returned as is).

    Raises InvalidConfigError naming the allowed values for anything else.
    """
    if isinstance(p, Platform):
        return p
    pid: int | None = None
    if isinstance(p, bool):
        pid = None
    elif isinstance(p, int):
        pid = p
    elif isinstance(p, str):
        s = p.strip().lower()
        if s.startswith("kl"):
            s = s[2:]
        if s.isdigit():
            pid = int(s)
    if pid is None or pid not in PLATFORMS:
        allowed = ", ".join(str(i) for i in PLATFORMS)
        raise InvalidConfigError(
            f"unknown platform {p!r}: allowed are {allowed} (as int, str, or 'kl<id>', e.g. 520, '720', 'kl730')"
        )
    return _load(pid)
