"""Sequential bias adjustment: ``analysis(optimize>=1)`` (docs/fixed-point.md §3.5).

The analytical correction of §3.3 removes the mean output shift that *weight* rounding causes.
Everything else that shifts a channel's mean (the rounding and clipping of every tensor upstream,
the fused activation's clamp) is measured here instead, the way the original toolchain's "bias
adjustment" does it with float inference:

1. the float outputs of every Conv step on the first ``samples`` calibration inputs: kept by the
   calibration pass (``StatsCollector(stash=...)``), else from a float run here; float16, only
   every s-th spatial position (:func:`positions`), at most :data:`MEMORY_BUDGET` bytes;
2. the integer program runs on the same inputs **one step at a time**, all inputs at once; at each
   Conv step the mean error ``dequantize(q) - float`` per output channel is taken over the
   positions where neither the float nor the integer output sits on a clamp (the fused
   activation's bounds or the format's saturation: there a bias change would not move the output);
3. that mean is subtracted from the step's float bias, the step is prepared again with the same
   formats, and its output recomputed before the next step runs, so every later step is measured
   with the corrections of the earlier ones already in place ("sequential"; correcting every step
   from one run instead would count an upstream shift once per step downstream).

A channel with fewer than :data:`MIN_SAMPLES` unclamped positions keeps its bias (a mean over a
handful of values is noise); Gemm/MatMul steps are therefore left alone at the default 32 inputs.
A correction that would change the step's formats or saturate its bias is dropped.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Callable

import numpy as np
import onnx

from npuflow._mem import trim
from npuflow.analysis.program import Program, mac_weights, prepare_capped, step_override
from npuflow.analysis.ranges import QuantOptions
from npuflow.calibration.collector import FloatStash, expose_tensors
from npuflow.calibration.collector import sample_positions as positions
from npuflow.reference.float_runner import FloatRunner
from npuflow.sim.kernels import KERNELS

log = logging.getLogger(__name__)

#: unclamped positions a channel needs before its mean error is trusted
MIN_SAMPLES = 256
#: bytes the float references may take (float16); fewer inputs are used beyond it
MEMORY_BUDGET = 256 * 2**20
#: calibration inputs used by default
DEFAULT_SAMPLES = 32
#: a step whose outputs (all inputs) take this many bytes is followed by ``malloc_trim``
#: (each call costs ~15 ms on a large heap)
TRIM_BYTES = 8 << 20


def _targets(program: Program) -> list[int]:
    return [k for k, st in enumerate(program.steps)
            if not st.float_step and st.op_type == "Conv" and "W" in st.weights and program.params[k] is not None
            and st.outputs and st.outputs[0] in program.formats]


def _float_references(model: onnx.ModelProto, names: list[str], feeds: Sequence[Mapping[str, np.ndarray]],
                      budget: int) -> tuple[dict[str, np.ndarray], int]:
    """float16 outputs ``names`` (at :func:`positions`) of the float model for the first feeds
    that fit ``budget`` bytes; and how many feeds that is."""
    runner = FloatRunner(expose_tensors(model, names), label="float model (bias adjustment)")
    stash = FloatStash(names, len(feeds), budget)
    for feed in feeds:
        if not stash.add(dict(zip(names, runner.run(dict(feed), names)))):
            break
    return {n: np.concatenate([r[n] for r in stash.kept]) for n in names}, len(stash.kept)


def _mean_error(q: np.ndarray, ref: np.ndarray, program: Program, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean of ``dequantize(q) - ref`` over unclamped positions, and their counts.
    ``q`` (N, C, ...) is the integer output, ``ref`` the float one, both already reduced by
    :func:`positions` or both full (then reduced here). In float32, summed in float64."""
    y = program.steps[k].outputs[0]
    fmt = program.formats[y]
    act = program.params[k].out.act
    factor = float(fmt.factor()[0])
    qp = positions(q)
    rp = ref if ref.ndim == 3 and ref.shape[2] == qp.shape[2] and ref.shape[:2] == qp.shape[:2] else positions(ref)
    fq = rp.astype(np.float32) * np.float32(factor)  # the float output in the integer domain
    mask = (qp > act.lo) & (qp < act.hi) & (fq > act.lo) & (fq < act.hi)
    err = qp.astype(np.float32)
    err -= fq  # error in output LSBs
    err[~mask] = 0.0
    cnt = mask.sum(axis=(0, 2))
    total = err.sum(axis=(0, 2), dtype=np.float64) / factor
    return np.where(cnt > 0, total / np.maximum(cnt, 1), 0.0), cnt


def adjust_biases(
    model: onnx.ModelProto,
    program: Program,
    opts: QuantOptions,
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    channel_means: Callable[[str], np.ndarray | None] | None = None,
    budget: int = MEMORY_BUDGET,
    progress: bool = False,
    refs: Sequence[Mapping[str, np.ndarray]] = (),
    weight_moments: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Adjust the biases of ``program``'s Conv steps in place (module docstring); returns the
    corrections (float, per output channel, by step name) for ``build_program(bias_deltas=)``.

    ``refs``: the float outputs of the first feeds, one dict per feed (calibration keeps them:
    ``StatsCollector(stash=...)``); used when they hold every Conv output, else the float model
    runs again on the feeds. ``weight_moments``: those the program was built with (its weights)."""
    from npuflow.sim.fast import batching
    from npuflow.sim.fast.runner import build_plan

    targets = set(_targets(program))
    if not targets or not feeds:
        return {}
    if any(np.ndim(v) == 0 or np.shape(v)[0] != 1 for f in feeds for v in f.values()):
        log.warning("bias adjustment skipped: a model input has no leading batch axis of size 1")
        return {}
    names = [program.steps[k].outputs[0] for k in sorted(targets)]
    if refs and all(t in refs[0] for t in names):
        n = min(len(refs), len(feeds))
        ref = {t: np.concatenate([r[t] for r in refs[:n]]) for t in names}
    else:
        ref, n = _float_references(model, names, feeds, budget)
    batch = {name: np.concatenate([np.asarray(f[name]) for f in feeds[:n]]) for name in program.input_names}
    env: dict[str, np.ndarray] = dict(program.quantize_inputs(batch))
    plan = build_plan(program, fuse=False)
    per = batching.micro_batch()  # inputs per kernel call inside the batch
    deltas: dict[str, np.ndarray] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc="bias adjustment", unit="step", file=sys.stderr)
    try:
        for e in plan:
            st = program.steps[e.k]

            def run_step() -> Any:
                args = [env[x] for x in e.inputs]
                p = program.params[e.k]
                fn = e.fn if p is None else partial(e.fn, p)
                if n > 1 and not batching.batch_safe(st, p, args, n):
                    return batching.per_sample(fn, args, n)
                if n <= per or any(np.ndim(a) == 0 for a in args):
                    return fn(*args)
                # a few inputs at a time: the kernels' wide temporaries stay small
                return batching.per_sample(fn, args, n, per=per)

            res = run_step()
            if e.k in targets:
                err, cnt = _mean_error(res, ref.pop(st.outputs[0]), program, e.k)
                d = np.where(cnt >= MIN_SAMPLES, err, 0.0)
                if np.any(d != 0.0) and _reprepare(program, e.k, opts, channel_means, {**deltas, st.name: d}, weight_moments):
                    deltas[st.name] = d
                    res = run_step()
            outs = res if isinstance(res, (tuple, list)) else [res]
            for y, v in zip(e.outputs, outs):
                env[y] = v
            for x in e.drop:
                env.pop(x, None)
            if sum(np.asarray(v).nbytes for v in outs) >= TRIM_BYTES:
                # a large step's freed temporaries back to the system (npuflow._mem): on
                # efficientnet_lite0 the peak resident set falls from 1.75 to ~1.2 GB
                trim()
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        program._fast_plans.clear()  # plans hold the params they were built with
        env.clear()
        trim()
    log.info("bias adjustment: %d Conv steps corrected on %d calibration inputs", len(deltas), n)
    return deltas


def _reprepare(program: Program, k: int, opts: QuantOptions, channel_means: Callable[[str], np.ndarray | None] | None,
               deltas: Mapping[str, np.ndarray], weight_moments: Mapping[str, np.ndarray] | None = None) -> bool:
    """Prepare step ``k`` again with ``deltas``; keep it (True) only if the formats stay and the bias
    does not saturate any more than before."""
    st = program.steps[k]
    in_formats = [program.formats.get(x) if x else None for x in st.inputs]
    out_fmts = [program.formats[y] for y in st.outputs]
    weights = mac_weights(st, in_formats, step_override(st, opts), opts, channel_means, deltas, weight_moments)
    try:
        p, fmts, _ = prepare_capped(KERNELS[st.op_type], st.attrs, in_formats, out_fmts, weights)
    except (ValueError, ArithmeticError):
        return False
    old = program.params[k]
    if fmts != out_fmts or p.out.bias_saturated > old.out.bias_saturated:
        return False
    program.params[k] = p
    return True
