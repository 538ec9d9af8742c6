"""Pass ``split_global_pool`` (option ``platform``; nothing without one): a GlobalAveragePool or
GlobalMaxPool over the platform's pixel limit becomes stages that each meet it.

The NPU tables limit the global pools' input to ``H * W`` pixels per channel (KL720/530/630/730:
16384, KL520: 256; ``platforms/*.json``); above it the pool is a CPU node. A PP-OCRv3 detector
at 640x640 has 160x160 = 25600-pixel pools in its first squeeze-excitation blocks.

Rules:
1. Candidates: ``GlobalAveragePool``/``GlobalMaxPool`` (default domain) whose input has a static
   shape of rank >= 3, that are in the platform's NPU table and that the platform refuses as they
   are (``platform.npu_reason``). Without a platform the pass changes nothing.
2. Pooling stages (tried first): non-overlapping ``AveragePool``/``MaxPool`` stages with
   ``kernel_shape = strides`` (no padding, ``ceil_mode 0``), each kernel dim a divisor of the
   current spatial dim no larger than 8, each stage accepted by the platform (the KL720 accepts
   kernels up to 3x3); per stage the accepted kernel with the largest area (ties: the one that
   reduces the largest dim most), until the global pool of what is left is accepted. Then the
   original node (name, output kept) pools the rest. Every block of a stage has the same size,
   so the mean of block means is the global mean: exactly equal in real arithmetic, float
   rounding aside (relative ~1e-7); max pooling stages are bit-identical.
3. Otherwise (a spatial dim with no divisor the platform accepts, e.g. a prime side): one
   ``ReduceMean``/``ReduceMax`` (keepdims 1) per spatial axis, last axis first, when the platform
   runs each one and a global pool over that axis's length alone would meet the limit (the limit
   is applied to the reductions too). Axes go in the ``axes`` attribute before opset 18 and as a
   constant input from opset 18.
4. Otherwise the node is left alone (logged at debug level).
5. New nodes are named ``<Op>_<pool name>`` (made unique).
"""
from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.passes._graph import is_default_domain
from npuflow.passes._rewrite import (
    CandidateNode,
    Index,
    PlatformLike,
    npu_runs,
    apply_plan,
)

log = logging.getLogger(__name__)

MAX_KERNEL = 8
MAX_STAGES = 16
_STAGE_OP = {"GlobalAveragePool": "AveragePool", "GlobalMaxPool": "MaxPool"}
_REDUCE_OP = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}


def _global_ok(platform: PlatformLike, op: str, name: str, shape: list[int]) -> bool:
    out = tuple(shape[:2]) + (1,) * (len(shape) - 2)
    return npu_runs(platform, CandidateNode(name, op, {}, (tuple(shape),), (out,), {}, frozenset({0})))


def _pool_stages(platform: PlatformLike, op: str, name: str, shape: list[int]) -> list[tuple[int, ...]] | None:
    stage_op = _STAGE_OP[op]
    cur = list(shape)
    stages: list[tuple[int, ...]] = []
    while not _global_ok(platform, op, name, cur):
        if len(stages) >= MAX_STAGES:
            return None
        choices = [[d for d in range(1, MAX_KERNEL + 1) if s % d == 0] for s in cur[2:]]
        best: tuple[int, ...] | None = None
        best_key: tuple[int, int] | None = None
        for ks in itertools.product(*choices):
            area = math.prod(ks)
            if area == 1:
                continue
            out = tuple(cur[:2]) + tuple(s // k for s, k in zip(cur[2:], ks))
            attrs = {"kernel_shape": list(ks), "strides": list(ks)}
            if not npu_runs(platform, CandidateNode(name, stage_op, attrs, (tuple(cur),), (out,), {}, frozenset({0}))):
                continue
            key = (area, -max(out[2:]))
            if best_key is None or key > best_key:
                best, best_key = ks, key
        if best is None:
            return None
        stages.append(best)
        cur = cur[:2] + [s // k for s, k in zip(cur[2:], best)]
    return stages


def _reduce_split(platform: PlatformLike, op: str, name: str, shape: list[int], opset: int) -> bool:
    red = _REDUCE_OP[op]
    cur = list(shape)
    for axis in range(len(shape) - 1, 1, -1):
        out = list(cur)
        out[axis] = 1
        attrs = {"keepdims": 1}
        const: dict[int, np.ndarray] = {}
        if opset >= 18:
            const = {1: np.array([axis], np.int64)}
        else:
            attrs["axes"] = [axis]
        present = frozenset(const) | {0}
        if not npu_runs(platform, CandidateNode(name, red, attrs, (tuple(cur), (1,)) if const else (tuple(cur),),
                                                (tuple(out),), const, present)):
            return False
        alone = cur[:2] + [cur[axis]] + [1] * (len(shape) - 3)
        if not _global_ok(platform, op, name, alone):
            return False
        cur = out
    return True


def run(model: onnx.ModelProto, platform: PlatformLike | None = None) -> tuple[onnx.ModelProto, bool]:
    if platform is None:
        return model, False
    idx = Index(model)
    plan = []
    for n in idx.graph.node:
        op = n.op_type
        if op not in _STAGE_OP or not is_default_domain(n.domain) or len(n.input) != 1 or not platform.npu_supports(op):
            continue
        shape = idx.shapes.get(n.input[0])
        if shape is None or len(shape) < 3 or _global_ok(platform, op, n.name, shape):
            continue
        base = n.name or n.output[0]
        stages = _pool_stages(platform, op, n.name, shape)
        new: list[onnx.NodeProto] = []
        if stages is not None:
            x = n.input[0]
            for ks in stages:
                t = idx.name(f"{base}_stage")
                new.append(helper.make_node(_STAGE_OP[op], [x], [t], name=idx.name(f"{_STAGE_OP[op]}_{base}"),
                                            kernel_shape=list(ks), strides=list(ks)))
                x = t
            last = onnx.NodeProto()
            last.CopyFrom(n)
            last.input[0] = x
            new.append(last)
        elif _reduce_split(platform, op, n.name, shape, idx.opset):
            red = _REDUCE_OP[op]
            x = n.input[0]
            axes = list(range(len(shape) - 1, 1, -1))
            for k, axis in enumerate(axes):
                t = n.output[0] if k == len(axes) - 1 else idx.name(f"{base}_reduced")
                if idx.opset >= 18:
                    ax = idx.name(f"{base}_axis{axis}")
                    idx.new_initializers.append(numpy_helper.from_array(np.array([axis], np.int64), ax))
                    node = helper.make_node(red, [x, ax], [t], name=idx.name(f"{red}_{base}"), keepdims=1)
                else:
                    node = helper.make_node(red, [x], [t], name=idx.name(f"{red}_{base}"), axes=[axis], keepdims=1)
                new.append(node)
                x = t
        else:
            log.debug("%s %s over the %s limit: no split the platform runs", op, n.name, platform.name)
            continue
        plan.append(([n], new))
    return apply_plan(model, plan, idx)
