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

import threading
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


def _plan(program: Any, fuse: bool, keep: tuple[str, ...]) -> list[_Exec]:
    from npuflow.sim.fast import mode

    cache = program._fast_plans
    key = (mode(), fuse, keep)
    plan = cache.get(key)
    if plan is None:
        plan = cache[key] = build_plan(program, fuse=fuse, keep=keep)
    return plan


def _run_entries(program: Any, plan: list[_Exec], env: dict[str, np.ndarray], start: int, *,
                 keep_all: bool = False, stats: list[Any] | None = None, on_step: Callable[[int], None] | None = None,
                 batch: int | None = None, before: Callable[[int, dict[str, np.ndarray]], None] | None = None) -> None:
    """Run ``plan[start:]`` on ``env`` (the live tensors before entry ``start``), in place;
    ``before(i, env)`` is called before entry ``i`` runs."""
    batched = batch is not None and batch > 1
    steps = program.steps
    for i in range(start, len(plan)):
        e = plan[i]
        if before is not None:
            before(i, env)
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


def execute(program: Any, feeds_q: dict[str, np.ndarray], *, keep_all: bool = False,
            stats: list[Any] | None = None, on_step: Callable[[int], None] | None = None,
            batch: int | None = None, keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``program`` (see ``Program.run``); returns the outputs and the tensors ``keep``, or every
    tensor with ``keep_all``."""
    fuse = not keep_all and on_step is None
    keep = tuple(dict.fromkeys(keep))
    plan = _plan(program, fuse, keep)
    env: dict[str, np.ndarray] = dict(feeds_q)
    _run_entries(program, plan, env, 0, keep_all=keep_all, stats=stats, on_step=on_step, batch=batch)
    return env if keep_all else {n: env[n] for n in (*program.output_names, *keep)}


def _signature(program: Any, plan: list[_Exec]) -> list[tuple[Any, ...]]:
    """What decides the integers each plan entry writes, given its inputs: entry ``0`` stands for
    the model inputs' formats (the quantized feeds), entry ``i + 1`` for ``plan[i]``. Steps and
    parameter objects are compared by identity (a rebuilt program gets the same object back for a
    step whose formats and options did not change: ``analysis.program._prepared_step``), formats by
    value. A fused entry's function is made per plan: it is told by the table step's op instead."""
    fmts = program.formats
    sig: list[tuple[Any, ...]] = [("inputs", tuple(fmts.get(n) for n in program.input_names))]
    for e in plan:
        step = _Same(program.steps[e.k])
        if e.float_step:  # onnxruntime on the step's node, between the formats of its inputs and outputs
            sig.append((e.k, step, "float", tuple(fmts.get(x) for x in (*e.inputs, *e.outputs))))
            continue
        lut = program.steps[e.fused].op_type if e.fused is not None else None
        sig.append((e.k, step, e.fn if e.fused is None else lut, _Same(e.params),
                    _Same(program.params[e.fused] if e.fused is not None else None), tuple(e.inputs), tuple(e.outputs)))
    return sig


class _Same:
    """Equal to another only when both hold the same object (identity, never ``==`` on arrays)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


@dataclass
class _Run:
    sig: list[tuple[Any, ...]]
    #: plan index i -> the live tensors before entry i (the dict is never changed once stored)
    snaps: dict[int, dict[str, np.ndarray]]


#: bytes of tensors one :class:`PrefixRuns` may keep alive in its snapshots (measured peak resident
#: set of a default analysis with it: en_PP-OCRv3_det 4.03 -> 4.15 GB, yolox_nano 2.01 -> 2.03 GB);
#: 0 keeps none (every run from the start)
PREFIX_BUDGET = 256 << 20


class PrefixRuns:
    """Runs of programs on one fixed set of inputs that resume from an earlier run where their
    plans agree.

    The analysis measures many programs that differ from one another in a few steps (a range
    choice for one part of the network, one tensor promoted to 16 bits): every entry of the plan up
    to the first that differs computes the same integers from the same inputs. A run keeps the live
    tensors before every ``ceil(len(plan) / CHECKPOINTS)``-th entry (references: no copy) while the
    store holds at most ``budget`` bytes (:data:`PREFIX_BUDGET`); a later program resumes from the latest such snapshot of
    the stored run whose plan it shares longest. The integers are those of a full run (tested:
    tests/sim_fast/test_prefix_runs.py). The last ``runs`` runs used or made are kept; the store
    is guarded by a lock (an executor's threads may share one measurement)."""

    #: snapshots per run
    CHECKPOINTS = 16

    def __init__(self, *, runs: int = 2, budget: int | None = None, share: int = 1) -> None:
        """``budget``: bytes (default :data:`PREFIX_BUDGET`, read now), of which this store gets a
        ``share``-th (one budget for the stores of one set of inputs run in several groups)."""
        self.runs = max(1, int(runs))
        self.budget = (PREFIX_BUDGET if budget is None else int(budget)) // max(1, int(share))
        self._store: list[_Run] = []  # least recently used first
        self._lock = threading.Lock()
        #: entries skipped by resuming, entries run (for the tests and benchmarks)
        self.skipped = 0
        self.ran = 0

    def _bytes(self, extra: list[dict[str, np.ndarray]] = ()) -> int:
        seen: dict[int, int] = {}
        for r in self._store:
            for env in r.snaps.values():
                for v in env.values():
                    seen[id(v)] = getattr(v, "nbytes", 0)
        for env in extra:
            for v in env.values():
                seen[id(v)] = getattr(v, "nbytes", 0)
        return sum(seen.values())

    def run(self, program: Any, feeds: Callable[[], dict[str, np.ndarray]], *, batch: int | None = None,
            keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The outputs of ``program`` (and the tensors ``keep``), as :func:`execute` gives them;
        ``feeds()`` gives the quantized inputs when the run starts from the beginning."""
        keep = tuple(dict.fromkeys(keep))
        plan = _plan(program, True, keep)
        sig = _signature(program, plan)
        best, shared = None, 0
        with self._lock:
            for r in self._store:
                n = 0
                for a, b in zip(r.sig, sig):
                    if a != b:
                        break
                    n += 1
                if n > shared:
                    best, shared = r, n
            # snapshot i (before plan entry i) is valid when signature entries 0..i agree
            start = max((i for i in (best.snaps if best else ()) if i < shared), default=None)
            if best is not None and start is not None:
                self._store.remove(best)
                self._store.append(best)  # used: most recent
        snaps: dict[int, dict[str, np.ndarray]] = {}
        if best is not None and start is not None:
            snaps = {i: s for i, s in best.snaps.items() if i <= start}
            env = dict(best.snaps[start])
        else:
            start = 0
            env = dict(feeds())
        every = max(1, -(-len(plan) // self.CHECKPOINTS))
        fresh: list[dict[str, np.ndarray]] = []

        def before(i: int, live: dict[str, np.ndarray]) -> None:
            if i % every == 0 and i not in snaps:
                snap = dict(live)
                with self._lock:
                    fits = self._bytes([*fresh, snap]) <= self.budget
                if fits:
                    snaps[i] = snap
                    fresh.append(snap)

        _run_entries(program, plan, env, start, batch=batch, before=before)
        with self._lock:
            self.skipped += start
            self.ran += len(plan) - start
            self._store.append(_Run(sig, snaps))
            while len(self._store) > self.runs:
                self._store.pop(0)
        return {n: env[n] for n in (*program.output_names, *keep)}
