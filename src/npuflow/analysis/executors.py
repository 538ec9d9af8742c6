"""The mixbw search's candidate measurements on any ``concurrent.futures.Executor``
(docs/fixed-point.md section 10.3, "Executors").

``analysis(executor=...)``: a ``concurrent.futures.ProcessPoolExecutor``, a Dask
``Client.get_executor()``, a Ray executor, ... Each task builds one candidate's program from the
analysis' statistics and measures its estimated FPS and model-output SNR; the search
(:func:`npuflow.analysis.precision.mixbw_search`) reads the results in candidate order, so the
choice and the BIE are those of the one-at-a-time search (``tests/analysis/test_executors.py``).

What a task needs travels as one :class:`SearchContext`, serialized once per search into bytes
(pickle, between npuflow's own processes: nothing is read from a file) and cached by each worker
process under its digest: the optimized model, the steps, the calibration statistics and
corrections, the measurement inputs and their float references (computed once, in the caller: the
workers measure against the same numbers).
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from npuflow.analysis.graph import Step
from npuflow.analysis.ranges import QuantOptions


@dataclass
class SearchContext:
    """Everything a worker needs to build and measure a candidate (see the module docstring)."""

    model: bytes  # the optimized model, serialized
    platform: int
    steps: list[Step]
    stats: dict[str, Any]
    input_names: list[str]
    output_names: list[str]
    channel_means: dict[str, np.ndarray]
    weight_moments: dict[str, Any]
    bias_deltas: dict[str, Any]
    feeds: list[dict[str, np.ndarray]]
    refs: list[dict[str, np.ndarray]]
    opts: QuantOptions
    bound: float
    #: per measurement input: output -> its row weights (OutputSnr.weights; empty: none weighted)
    weights: list[dict[str, np.ndarray]]
    #: output -> the boundaries of its parts along the last axis (OutputSnr.parts; empty: none)
    parts: dict[str, list[int]]


def _portable_steps(steps: Sequence[Step]) -> list[Step]:
    """Copies of ``steps`` without their memo (prepared parameters, sessions: rebuilt by the worker)."""
    return [replace(st, memo={}) for st in steps]


def pack(ctx: SearchContext) -> tuple[str, bytes]:
    """(digest, bytes) of ``ctx``: what each task carries."""
    blob = pickle.dumps(replace(ctx, steps=_portable_steps(ctx.steps)), protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(blob).hexdigest(), blob


#: worker-side: digest -> (context, build, fps, measure), the last contexts seen by this process
_CACHE: dict[str, tuple[Any, ...]] = {}


def _state(digest: str, blob: bytes) -> tuple[Any, ...]:
    got = _CACHE.get(digest)
    if got is not None:
        return got
    from npuflow.analysis.precision import FpsModel, OutputSnr
    from npuflow.analysis.program import build_program

    ctx: SearchContext = pickle.loads(blob)  # bytes made by pack() in the calling npuflow process, not a file
    model = onnx.load_from_string(ctx.model)
    fps_model = FpsModel(model, ctx.platform, ctx.opts)
    measure = OutputSnr(None, ctx.feeds, ctx.output_names, refs=ctx.refs, weights=ctx.weights or None,
                        parts=ctx.parts)

    def build(o: QuantOptions) -> Any:
        return build_program(model, ctx.steps, ctx.stats, o, ctx.input_names, ctx.output_names,
                             channel_means=ctx.channel_means.get, weight_moments=ctx.weight_moments,
                             bias_deltas=ctx.bias_deltas or None)

    _CACHE.clear()  # one search at a time per worker: the previous context's memory goes
    _CACHE[digest] = (ctx, build, fps_model, measure)
    return _CACHE[digest]


def evaluate_candidate(digest: str, blob: bytes, trial: QuantOptions) -> tuple[float, Any, Any]:
    """(estimated FPS, model-output SNRs, the SNRs on each half of the inputs; both None when the FPS
    is under the bound) of the program built with ``trial`` (a task: runs in any process)."""
    ctx, build, fps_model, measure = _state(digest, blob)
    program = build(trial)
    f = fps_model.fps(program, trial)
    if f < ctx.bound:
        return f, None, None
    return f, measure(program), measure.halves(program)


def executor_evaluate(executor: Executor, ctx: SearchContext
                      ) -> Callable[[list[QuantOptions]], list[tuple[float, Any, Any]]]:
    """The ``evaluate`` of :func:`npuflow.analysis.precision.mixbw_search` on ``executor``."""
    digest, blob = pack(ctx)

    def evaluate(trials: list[QuantOptions]) -> list[tuple[float, Any, Any]]:
        futures = [executor.submit(evaluate_candidate, digest, blob, t) for t in trials]
        return [f.result() for f in futures]

    return evaluate


class RayTasks:
    """``concurrent.futures.Executor``-like adapter over Ray's own task API: ``submit(fn, *args)`` is
    ``ray.remote(fn).remote(*args).future()`` (a Ray ``ObjectRef`` as a ``concurrent.futures.Future``).
    Ray must be initialised (``ray.init(...)``) by the caller; ``pip install npuflow[ray]``."""

    def __init__(self, **options: Any) -> None:
        import ray

        self._ray = ray
        self._options = options  # e.g. num_cpus=1
        self._remote: dict[Any, Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(**self._options)(fn) if self._options else self._ray.remote(fn)
        return remote.remote(*args).future()


def check_executor(executor: Any) -> None:
    """``executor`` must have ``submit`` (a ``concurrent.futures.Executor`` or the same interface)."""
    from npuflow.errors import InvalidConfigError

    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InvalidConfigError(f"executor must be a concurrent.futures.Executor (an object with submit(fn, *args) "
                                 f"returning a future), got {type(executor).__name__}")


def context_of(optimized: onnx.ModelProto, platform: int, steps: Sequence[Step], stats: Mapping[str, Any],
               input_names: Sequence[str], output_names: Sequence[str], channel_means: Mapping[str, np.ndarray],
               weight_moments: Mapping[str, Any], bias_deltas: Mapping[str, Any], measure: Any,
               opts: QuantOptions, bound: float) -> SearchContext:
    """A :class:`SearchContext` from the analysis' pieces (``measure``: its OutputSnr, measuring the
    model outputs themselves: a worker rebuilds it from the references alone)."""
    assert not measure.logits, "a worker measures the outputs: pass a measure without logits"
    return SearchContext(optimized.SerializeToString(), int(platform), list(steps), dict(stats), list(input_names),
                         list(output_names), dict(channel_means), dict(weight_moments), dict(bias_deltas),
                         list(measure.feeds), list(measure.refs), opts, float(bound), list(measure.weights),
                         dict(measure.parts))
