"""Data movement and Concat: Reshape, Flatten, Transpose, Slice, Squeeze, Unsqueeze, Gather,
Split, Pad, Identity, Concat.

Spec 6.4: the format passes through -- the analysis gives the output the input's format and
these kernels move integers without touching them (bound 0). If an output format differs
anyway, the moved integers are requantized once (bound 0.5 LSB). Concat requantizes each input
whose format differs from the shared output format (bound 0 for inputs already in it, else
0.5 LSB). Pad's constant value is rounded into the format (RNE, saturated); zero is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuflow.sim.fixed_point import QFormat
from npuflow.sim.kernels.base import (
    Kernel,
    KernelStats,
    Requant,
    Weights,
    attr,
    check_int,
    clamp_q,
    const,
    finish,
    need_format,
    norm_axis,
    per_tensor,
    single_out,
)


def _ints(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    return tuple(int(e) for e in np.asarray(v).ravel().tolist())


def _const_or_attr(weights: Weights | None, node_attrs: Mapping[str, Any] | None, name: str) -> tuple[int, ...] | None:
    c = const(weights, name)
    return _ints(c) if c is not None else _ints(attr(node_attrs, name))


@dataclass(frozen=True, eq=False)
class MoveParams:
    """Params of the single-input data-movement ops; ``config`` holds the op's integer settings."""

    in_format: QFormat
    rq: Requant
    out_format: QFormat
    config: dict[str, Any]


class _MoveKernel(Kernel):
    """One input, one output; subclasses implement :meth:`config` (prepare) and :meth:`move`."""

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        return {}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> MoveParams:
        f = per_tensor(need_format(in_formats, 0, self.op_type), self.op_type, "input")
        out = single_out(out_format, self.op_type)
        return MoveParams(f, Requant.between(f, out), out, self.config(node_attrs or {}, weights, f))

    def eval(self, params: MoveParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        q = check_int(inputs[0], self.op_type, "input", params.in_format)
        moved = self.move(q, params.config) if len(inputs) == 1 else self.move_with(q, inputs[1:], params.config)
        if params.rq.identity and params.out_format.bits >= params.in_format.bits:
            if stats is not None:
                stats.out_elements += int(moved.size)
            return moved.astype(params.out_format.dtype)
        return finish(params.rq.apply(moved), params.out_format, stats)

    def move_with(self, q: np.ndarray, extra: Sequence[np.ndarray], cfg: Mapping[str, Any]) -> np.ndarray:
        raise ValueError(f"{self.op_type}: unexpected runtime inputs")


class IdentityKernel(_MoveKernel):
    op_type = "Identity"

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        return q


class ReshapeKernel(_MoveKernel):
    op_type = "Reshape"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        shape = _const_or_attr(weights, node_attrs, "shape")
        if shape is None:
            raise ValueError("Reshape: shape must be a constant")
        return {"shape": shape, "allowzero": int(attr(node_attrs, "allowzero", 0) or 0)}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        shape = list(cfg["shape"])
        if not cfg["allowzero"]:
            shape = [q.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return q.reshape(shape)


class FlattenKernel(_MoveKernel):
    op_type = "Flatten"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        return {"axis": int(attr(node_attrs, "axis", 1))}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        ax = cfg["axis"] + q.ndim if cfg["axis"] < 0 else cfg["axis"]
        return q.reshape(int(np.prod(q.shape[:ax])), int(np.prod(q.shape[ax:])))


class TransposeKernel(_MoveKernel):
    op_type = "Transpose"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        return {"perm": _ints(attr(node_attrs, "perm"))}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        return np.transpose(q, cfg["perm"])


class SqueezeKernel(_MoveKernel):
    op_type = "Squeeze"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        return {"axes": _const_or_attr(weights, node_attrs, "axes")}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        if not cfg["axes"]:
            return np.squeeze(q)
        return np.squeeze(q, axis=tuple(norm_axis(a, q.ndim, self.op_type) for a in cfg["axes"]))


class UnsqueezeKernel(_MoveKernel):
    op_type = "Unsqueeze"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        axes = _const_or_attr(weights, node_attrs, "axes")
        if not axes:
            raise ValueError("Unsqueeze: axes required")
        return {"axes": axes}

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        nd = q.ndim + len(cfg["axes"])
        return np.expand_dims(q, tuple(sorted(norm_axis(a, nd, self.op_type) for a in cfg["axes"])))


class SliceKernel(_MoveKernel):
    op_type = "Slice"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        starts = _const_or_attr(weights, node_attrs, "starts")
        ends = _const_or_attr(weights, node_attrs, "ends")
        if starts is None or ends is None:
            raise ValueError("Slice: starts and ends must be constants")
        return {
            "starts": starts,
            "ends": ends,
            "axes": _const_or_attr(weights, node_attrs, "axes"),
            "steps": _const_or_attr(weights, node_attrs, "steps"),
        }

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        n = len(cfg["starts"])
        axes = cfg["axes"] or tuple(range(n))
        steps = cfg["steps"] or (1,) * n
        sl = [slice(None)] * q.ndim
        for st, en, ax, sp in zip(cfg["starts"], cfg["ends"], axes, steps):
            a = norm_axis(ax, q.ndim, self.op_type)
            dim = q.shape[a]
            if sp == 0:
                raise ValueError("Slice: step 0")
            st = st + dim if st < 0 else st
            en = en + dim if en < 0 else en
            if sp > 0:
                st, en = min(max(st, 0), dim), min(max(en, 0), dim)
                sl[a] = slice(st, en, sp)
            else:
                st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
                sl[a] = slice(st, en if en >= 0 else None, sp)
        return q[tuple(sl)]


class GatherKernel(_MoveKernel):
    """Gather along ``axis``; indices constant (``weights["indices"]``) or a runtime int input."""

    op_type = "Gather"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        idx = const(weights, "indices")
        return {
            "axis": int(attr(node_attrs, "axis", 0)),
            "indices": None if idx is None else np.asarray(idx, dtype=np.int64),
        }

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        if cfg["indices"] is None:
            raise ValueError("Gather: indices are neither constant nor given to eval")
        return self.move_with(q, [cfg["indices"]], cfg)

    def move_with(self, q: np.ndarray, extra: Sequence[np.ndarray], cfg: Mapping[str, Any]) -> np.ndarray:
        idx = check_int(extra[0], self.op_type, "indices").astype(np.int64)
        a = norm_axis(cfg["axis"], q.ndim, self.op_type)
        return np.take(q, idx, axis=a)


class PadKernel(_MoveKernel):
    op_type = "Pad"

    def config(self, node_attrs: Mapping[str, Any], weights: Weights | None, in_fmt: QFormat) -> dict[str, Any]:
        pads = _const_or_attr(weights, node_attrs, "pads")
        if pads is None:
            raise ValueError("Pad: pads must be constant")
        cv = const(weights, "constant_value")
        value = float(cv.ravel()[0]) if cv is not None and cv.size else float(attr(node_attrs, "value", 0.0))
        return {
            "pads": pads,
            "mode": str(attr(node_attrs, "mode", "constant")),
            "axes": _const_or_attr(weights, node_attrs, "axes"),
            "value_q": clamp_q(value * float(in_fmt.factor()[0]), in_fmt),
        }

    def move(self, q: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
        axes = [norm_axis(a, q.ndim, self.op_type) for a in (cfg["axes"] or range(q.ndim))]
        k = len(axes)
        pads = cfg["pads"]
        if len(pads) != 2 * k:
            raise ValueError(f"Pad: {len(pads)} pads for {k} axes")
        width = [(0, 0)] * q.ndim
        crop = [slice(None)] * q.ndim
        for j, a in enumerate(axes):
            b, e = pads[j], pads[j + k]
            width[a] = (max(b, 0), max(e, 0))
            crop[a] = slice(-b if b < 0 else 0, q.shape[a] + e if e < 0 else None)
        q = q[tuple(crop)]
        mode = cfg["mode"]
        if mode == "constant":
            return np.pad(q, width, mode="constant", constant_values=cfg["value_q"])
        if mode in ("reflect", "edge", "wrap"):
            return np.pad(q, width, mode=mode)
        raise ValueError(f"Pad: mode {mode!r} is not supported")


@dataclass(frozen=True, eq=False)
class SplitParams:
    in_format: QFormat
    axis: int
    split: tuple[int, ...] | None
    rqs: tuple[Requant, ...]
    out_formats: tuple[QFormat, ...]


class SplitKernel(Kernel):
    """Split; returns a tuple with one array per output format."""

    op_type = "Split"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> SplitParams:
        f = per_tensor(need_format(in_formats, 0, self.op_type), self.op_type, "input")
        outs = (out_format,) if isinstance(out_format, QFormat) else tuple(out_format)
        for o in outs:
            per_tensor(o, self.op_type, "output")
        split = _const_or_attr(weights, node_attrs, "split")
        if split is not None and len(split) != len(outs):
            raise ValueError(f"Split: {len(split)} sizes but {len(outs)} output formats")
        return SplitParams(f, int(attr(node_attrs, "axis", 0)), split, tuple(Requant.between(f, o) for o in outs), outs)

    def eval(
        self, params: SplitParams, *inputs: np.ndarray, stats: KernelStats | None = None
    ) -> tuple[np.ndarray, ...]:
        q = check_int(inputs[0], self.op_type, "input", params.in_format)
        a = norm_axis(params.axis, q.ndim, self.op_type)
        n = len(params.out_formats)
        if params.split is None:
            chunk = -(-q.shape[a] // n)
            sizes = [min(chunk, q.shape[a] - i * chunk) for i in range(n)]
        else:
            sizes = list(params.split)
        if sum(sizes) != q.shape[a] or min(sizes) < 0:
            raise ValueError(f"Split: sizes {sizes} do not add up to {q.shape[a]}")
        parts = np.split(q, np.cumsum(sizes)[:-1], axis=a)
        return tuple(finish(rq.apply(p), o, stats) for p, rq, o in zip(parts, params.rqs, params.out_formats))


@dataclass(frozen=True, eq=False)
class ConcatParams:
    in_formats: tuple[QFormat, ...]
    rqs: tuple[Requant, ...]
    axis: int
    out_format: QFormat


class ConcatKernel(Kernel):
    op_type = "Concat"

    def prepare(
        self,
        node_attrs: Mapping[str, Any],
        in_formats: Sequence[QFormat | None],
        out_format: QFormat | Sequence[QFormat],
        weights: Weights | None = None,
    ) -> ConcatParams:
        if weights:
            raise ValueError("Concat: constant inputs must be given as quantized runtime inputs")
        out = single_out(out_format, self.op_type)
        fmts = tuple(
            per_tensor(need_format(in_formats, i, self.op_type), self.op_type, f"input {i}")
            for i in range(len(in_formats))
        )
        return ConcatParams(fmts, tuple(Requant.between(f, out) for f in fmts), int(attr(node_attrs, "axis", 1)), out)

    def eval(self, params: ConcatParams, *inputs: np.ndarray, stats: KernelStats | None = None) -> np.ndarray:
        if len(inputs) != len(params.in_formats):
            raise ValueError(f"Concat: {len(params.in_formats)} inputs expected, got {len(inputs)}")
        parts = [
            rq.apply(check_int(q, self.op_type, f"input {i}", f))
            for i, (q, f, rq) in enumerate(zip(inputs, params.in_formats, params.rqs))
        ]
        a = norm_axis(params.axis, parts[0].ndim, self.op_type)
        return finish(np.concatenate(parts, axis=a), params.out_format, stats)


IDENTITY = IdentityKernel()
RESHAPE = ReshapeKernel()
FLATTEN = FlattenKernel()
TRANSPOSE = TransposeKernel()
SQUEEZE = SqueezeKernel()
UNSQUEEZE = UnsqueezeKernel()
SLICE = SliceKernel()
GATHER = GatherKernel()
PAD = PadKernel()
SPLIT = SplitKernel()
CONCAT = ConcatKernel()
