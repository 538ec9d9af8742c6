"""The step loop of :meth:`npuflow.analysis.program.Program.run`.

An execution plan is derived once per program and mode (which function runs each step, which
tensors die after it) so the per-step cost in Python stays small; models with hundreds of small
steps (yolox_nano: 266) spend a noticeable part of their time there otherwise.

Fusion (fast mode with numba, only when neither every tensor nor per-step callbacks are asked
for): a Conv whose output feeds only one table step (Swish, Sigmoid, ...) and is not a graph
output runs with that table applied in its output stage; the table step's counts still go to its
own ``stats`` entry. The integers are those of the two steps run one after the other.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from npuflow.sim.fast import batching
from npuflow.sim.fast.elementwise import quantize_array

LUT_OPS = ("Sigmoid", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Swish")


@dataclass
class _Exec:
    k: int
    fn: Callable[..., Any]
    params: Any  # None for float steps (fn takes the inputs only)
    inputs: list[str]
    outputs: list[str]  # names written (float steps: non-empty ONNX outputs)
    float_step: bool
    fused: int | None = None  # index of a table step computed by this one
    drop: list[str] = field(default_factory=list)  # tensors dead after this step


def _float_fn(program: Any, k: int) -> Callable[..., Any]:
    st = program.steps[k]
    formats = program.formats

    def fn(*a: np.ndarray, stats: Any = None) -> list:
        fl = {x: (formats[x].dequantize(v).astype(np.float32) if x in formats else v)
              for x, v in zip(st.runtime_inputs, a)}
        res = program._float_session(k, fl).run(None, fl)
        names = [y for y in st.onnx_node.output if y]
        return [quantize_array(v, formats[y]) if y in formats else v for y, v in zip(names, res)]

    return fn


def build_plan(program: Any, *, fuse: bool, keep: tuple[str, ...] = ()) -> list[_Exec]:
    """The steps to execute, in order (a Conv and the table step reading it fused into one where
    ``fuse``; never across a model output or a tensor of ``keep``), each with the tensors dead after it."""
    from npuflow.sim.fast import HAVE_NUMBA, kernel_for, mode

    steps = program.steps
    plan: list[_Exec] = []
    for k, st in enumerate(steps):
        if st.float_step:
            names = [y for y in st.onnx_node.output if y]
            plan.append(_Exec(k, _float_fn(program, k), None, list(st.runtime_inputs), names, True))
        else:
            plan.append(_Exec(k, kernel_for(st.op_type), program.params[k], list(st.runtime_inputs),
                              list(st.outputs), False))
    if fuse and HAVE_NUMBA and mode() == "fast":
        consumers: dict[str, list[int]] = {}
        for k, st in enumerate(steps):
            for x in st.runtime_inputs:
                consumers.setdefault(x, []).append(k)
        outputs = set(program.output_names) | set(keep)
        skip: set[int] = set()
        for e in plan:
            st = steps[e.k]
            if e.float_step or st.op_type != "Conv" or len(e.outputs) != 1 or e.outputs[0] in outputs:
                continue
            c = consumers.get(e.outputs[0], [])
            if len(c) != 1 or c[0] in skip:
                continue
            nxt = steps[c[0]]
            if nxt.float_step or nxt.op_type not in LUT_OPS or nxt.runtime_inputs != [e.outputs[0]]:
                continue
            lp = program.params[c[0]]
            if lp.in_format.bits not in (8, 16) or len(nxt.outputs) != 1:
                continue
            from npuflow.sim.fast.conv import conv_lut

            e.fn = partial(_fused_conv_lut, conv_lut, nxt.op_type, lp)
            e.outputs = list(nxt.outputs)
            e.fused = c[0]
            skip.add(c[0])
        plan = [e for e in plan if e.k not in skip]
    live = set(program.output_names) | set(keep)
    last: dict[str, int] = {}
    for i, e in enumerate(plan):
        for x in e.inputs:
            last[x] = i
    for x, i in last.items():
        if x not in live:
            plan[i].drop.append(x)
    return plan


def _fused_conv_lut(conv_lut: Any, lut_op: str, lut_params: Any, params: Any, x: np.ndarray, *,
                    stats: Any = None, lut_stats: Any = None) -> np.ndarray:
    return conv_lut(params, lut_op, lut_params, x, stats=stats, lut_stats=lut_stats)


def execute(program: Any, feeds_q: dict[str, np.ndarray], *, keep_all: bool = False,
            stats: list[Any] | None = None, on_step: Callable[[int], None] | None = None,
            batch: int | None = None, keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``program`` (see ``Program.run``); returns the outputs and the tensors ``keep``, or every
    tensor with ``keep_all``."""
    from npuflow.sim.fast import mode

    fuse = not keep_all and on_step is None
    keep = tuple(dict.fromkeys(keep))
    cache = program._fast_plans
    key = (mode(), fuse, keep)
    plan = cache.get(key)
    if plan is None:
        plan = cache[key] = build_plan(program, fuse=fuse, keep=keep)
    env: dict[str, np.ndarray] = dict(feeds_q)
    batched = batch is not None and batch > 1
    steps = program.steps
    for e in plan:
        args = [env[x] for x in e.inputs]
        kw: dict[str, Any] = {}
        if stats is not None:
            kw["stats"] = stats[e.k]
            if e.fused is not None:
                kw["lut_stats"] = stats[e.fused]
        fn = e.fn if e.params is None else partial(e.fn, e.params)
        if batched and not batching.batch_safe(steps[e.k], e.params, args, batch):
            res = batching.per_sample(fn, args, batch, **kw)
        else:
            res = fn(*args, **kw)
        if isinstance(res, (tuple, list)):
            for y, v in zip(e.outputs, res):
                env[y] = v
        else:
            env[e.outputs[0]] = res
        if not keep_all:
            for x in e.drop:
                env.pop(x, None)
        if on_step is not None:
            on_step(e.k)
    return env if keep_all else {n: env[n] for n in (*program.output_names, *keep)}
