"""Edit a BIE the way an attacker or a faulty tool would, and write it through npuflow's own writer
(``npuflow.bie.seal``), so that the checksum is recomputed and every edit reaches the validator."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.bie import seal

PLAN = "npuflow.plan"


class Bie:
    """A BIE opened for editing: ``plan`` (a dict) and ``meta`` (str -> str) are written back by
    :meth:`write`; ``plan_text`` (when set) replaces the plan's JSON verbatim."""

    def __init__(self, path: Path | str) -> None:
        self.model = onnx.load(str(path))
        self.meta = {p.key: p.value for p in self.model.metadata_props}
        self.plan = json.loads(self.meta[PLAN])
        self.plan_text: str | None = None

    # --- navigation ---
    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.plan["steps"] if s["name"] == name)

    def init(self, name: str) -> onnx.TensorProto:
        return next(t for t in self.model.graph.initializer if t.name == name)

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.init(name))

    def set_init(self, name: str, value: np.ndarray | onnx.TensorProto) -> None:
        t = value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(np.asarray(value), name)
        self.init(name).CopyFrom(t)

    # --- writing ---
    def data(self) -> bytes:
        meta = dict(self.meta)
        meta[PLAN] = self.plan_text if self.plan_text is not None else json.dumps(self.plan, sort_keys=True,
                                                                                   separators=(",", ":"))
        del self.model.metadata_props[:]
        for k, v in meta.items():
            e = self.model.metadata_props.add()
            e.key, e.value = k, v
        return seal(self.model)

    def write(self, dst: Path | str) -> Path:
        Path(dst).write_bytes(self.data())
        return Path(dst)


def edited(src: Path | str, dst: Path | str, fn: Callable[[Bie], Any]) -> Path:
    b = Bie(src)
    fn(b)
    return b.write(dst)


def leaves(v: Any, path: tuple = ()) -> list[tuple]:
    """Every leaf (path into nested dicts/lists) of a JSON value, in a stable order."""
    if isinstance(v, dict):
        return [p for k in sorted(v) for p in leaves(v[k], path + (k,))] or [path]
    if isinstance(v, list):
        return [p for i, e in enumerate(v) for p in leaves(e, path + (i,))] or [path]
    return [path]


def get_at(v: Any, path: tuple) -> Any:
    for k in path:
        v = v[k]
    return v


def set_at(v: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        v = v[k]
    v[path[-1]] = value
