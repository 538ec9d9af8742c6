"""Run the float model over calibration inputs and keep streaming statistics of every tensor."""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from npuflow.calibration.histogram import AbsHistogram, channel_stats
from npuflow.errors import InputError
from npuflow.reference.float_runner import FloatRunner

log = logging.getLogger(__name__)

#: calibration samples whose statistics may be updating at once (each tensor's still in order)
IN_FLIGHT = 2


def expose_tensors(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also include ``names`` (intermediate tensors)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            have.add(name)
    return m


#: spatial positions per sample and channel that :func:`sample_positions` keeps
POSITIONS = 512


def sample_positions(y: np.ndarray) -> np.ndarray:
    """``y`` (N, C, ...) as (N, C, P): every s-th spatial position, ``s = ceil(size / POSITIONS)``
    (all of them for small maps); the same positions for any two tensors of one shape."""
    flat = y.reshape(y.shape[0], y.shape[1], -1) if y.ndim >= 2 else y.reshape(y.shape[0], 1, -1)
    s = -(-flat.shape[2] // POSITIONS)
    return flat[:, :, ::s] if s > 1 else flat


class FloatStash:
    """float16 copies, at :func:`sample_positions`, of some tensors of the first ``samples``
    samples, in ``kept`` (one dict per sample): at most ``budget`` bytes, but at least one sample.
    The float references of the sequential bias adjustment (npuflow.analysis.bias_adjust)."""

    def __init__(self, names: Iterable[str], samples: int, budget: int) -> None:
        self.names = list(dict.fromkeys(names))
        self.samples, self.budget = samples, budget
        self.kept: list[dict[str, np.ndarray]] = []
        self.nbytes = 0
        self.full = not self.names or samples <= 0

    def add(self, values: Mapping[str, np.ndarray]) -> bool:
        """Keep this sample's tensors (True), or nothing once the count or the budget is reached."""
        if self.full:
            return False
        keep = {t: sample_positions(np.asarray(values[t])).astype(np.float16) for t in self.names}
        size = sum(v.nbytes for v in keep.values())
        if self.kept and self.nbytes + size > self.budget:
            self.full = True
            return False
        self.kept.append(keep)
        self.nbytes += size
        self.full = len(self.kept) >= self.samples
        return True


def clip_to(y: np.ndarray, bound: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``y`` clipped to ``bound`` = (lo, hi), arrays broadcastable against it (``y`` itself when
    they would widen its shape): the values a tensor's readers can tell apart
    (npuflow.analysis.flat)."""
    lo, hi = bound
    try:
        if np.broadcast_shapes(np.shape(y), np.shape(lo), np.shape(hi)) != np.shape(y):
            return y
    except ValueError:
        return y
    dt = y.dtype if np.issubdtype(y.dtype, np.floating) else np.float64
    return np.clip(y, np.asarray(lo, dtype=dt), np.asarray(hi, dtype=dt))


class StatsCollector:
    """Feed calibration samples one at a time; keeps an AbsHistogram per requested tensor.

    Memory is constant in the number of samples. With ``threads`` > 1, ``w = min(threads, CPU
    count)`` workers update the statistics and onnxruntime runs ``w // 2`` intra-op threads (1
    thread: everything in the caller's thread). Results do not depend on it: the histogram is
    order-independent and each tensor's statistics are updated by one worker per sample, in
    sample order.
    """

    def __init__(self, model: onnx.ModelProto, tensors: list[str], *, threads: int = 1,
                 channel_means: list[str] = (), track: tuple[float, ...] = (),
                 stash: list[str] = (), stash_samples: int = 0, stash_budget: int = 0,
                 moments: Mapping[str, list[Any]] | None = None, channel_absmax: list[str] = (),
                 bounds: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        """``stash``: tensors whose float values of the first ``stash_samples`` samples are kept
        (a :class:`FloatStash` of at most ``stash_budget`` bytes; ``stashed``) for the bias
        adjustment, so it need not run the float model again. ``moments``: tensor -> accumulators
        with ``update(y)`` and ``full`` (:class:`npuflow.quant.weight_rounding.SecondMoment`),
        fed that tensor's values of the first samples until ``full``. ``channel_absmax``: tensors
        whose per-channel (axis 1) abs max over all samples is kept (``channel_max``; the
        detection of ill-conditioned tensors, npuflow.analysis.precision). ``bounds``: tensor ->
        (lo, hi) outside which its readers cannot tell values apart (npuflow.analysis.flat): its
        histogram records the largest ``|clip(x, lo, hi)|`` too (``AbsHistogram.read_max``)."""
        inputs = {i.name for i in model.graph.input}
        self.mean_tensors = list(dict.fromkeys(channel_means))
        self.absmax_tensors = list(dict.fromkeys(channel_absmax))
        wanted = list(dict.fromkeys(list(tensors) + self.mean_tensors + self.absmax_tensors + list(moments or {})))
        self.input_tensors = [t for t in wanted if t in inputs]
        self.tensors = [t for t in wanted if t not in inputs]
        # the statistics cost about twice onnxruntime's pass: with ``threads`` > 1 they get one
        # worker per thread (at most one per core) and onnxruntime half as many threads, which
        # wait passively (measured on 2 cores, efficientnet_lite0, whole analysis(): 6.8-7.2 s
        # with 2 onnxruntime threads and 1 worker, 6.2 s with 2 and 2, 5.9 s with 1 and 2;
        # threads=4 uncapped 6.0 s vs 5.65 s for threads=2). Since the per-channel sums and maxima
        # are one compiled pass (channel_stats) the statistics cost about onnxruntime's pass
        # (200 inputs: 7.3 s with 1 and 2, 7.2 s with 2 and 2: the same within noise)
        workers = min(threads, os.cpu_count() or threads)
        self.runner = FloatRunner(expose_tensors(model, self.tensors), label="calibration model",
                                  threads=max(1, workers // 2) if threads > 1 else threads, spin=False)
        self.hist = {t: AbsHistogram(track) for t in wanted}
        # per-channel (axis 1) sums for bias correction; updated in sample order -> deterministic
        self.channel_sum: dict[str, np.ndarray] = {}
        self.channel_count: dict[str, int] = {}
        self.channel_absmax: dict[str, np.ndarray] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers) if threads > 1 else None
        self.pending: deque[list[Future]] = deque()  # per sample in flight, oldest first
        self._order = threading.Condition()
        self._next: dict[str, int] = {}  # tensor -> the sample whose update it takes next
        self.stash = FloatStash([t for t in stash if t in self.tensors], stash_samples, stash_budget)
        self.moments = {t: list(v) for t, v in (moments or {}).items() if t in wanted}
        self.bounds = {t: b for t, b in (bounds or {}).items() if t in wanted}
        self.samples = 0

    def feed(self, feeds: dict[str, np.ndarray]) -> None:
        """Add one calibration sample. With a thread pool, its statistics are updated in the
        background while the next samples run through onnxruntime (at most IN_FLIGHT samples
        pending; each tensor's statistics are still updated in sample order, so results do not
        change)."""
        outs = self.runner.run(feeds, self.tensors) if self.tensors else []
        if not self.stash.full:
            self.stash.add(dict(zip(self.tensors, outs)))
        pairs = [(t, feeds[t]) for t in self.input_tensors] + list(zip(self.tensors, outs))
        means = set(self.mean_tensors)
        absmax = set(self.absmax_tensors)
        index = self.samples

        def update(ty: tuple[str, np.ndarray]) -> None:
            t, y = ty
            try:
                self.hist[t].update(y)
                if t in self.bounds:  # after update: a NaN or inf is reported by it
                    self.hist[t].note_read_max(float(np.max(np.abs(clip_to(y, self.bounds[t])), initial=0.0)))
            except ValueError as exc:
                raise InputError(f"calibration input #{index}: tensor {t} of the float model has {exc}; "
                                 "check this input and the nodes that produce the tensor") from None
            for acc in self.moments.get(t, ()):
                if not acc.full:
                    acc.update(y)
            want_sum, want_max = t in means and y.ndim >= 2, t in absmax and y.ndim >= 2 and y.size > 0
            if want_sum or want_max:  # one pass over y for both (compiled: channel_stats)
                s, m = channel_stats(y, want_sum, want_max)
                if s is not None:
                    self.channel_sum[t] = s if t not in self.channel_sum else self.channel_sum[t] + s
                    self.channel_count[t] = self.channel_count.get(t, 0) + y.size // y.shape[1]
                if m is not None:
                    self.channel_absmax[t] = m if t not in self.channel_absmax else np.maximum(self.channel_absmax[t], m)

        if self.pool is None:
            for ty in pairs:
                update(ty)
        else:
            while len(self.pending) >= IN_FLIGHT:
                self._wait_oldest()
            self.pending.append([self.pool.submit(self._in_order, index, ty, update) for ty in pairs])
        self.samples += 1

    def _in_order(self, index: int, ty: tuple[str, np.ndarray], update: Any) -> None:
        """``update(ty)`` once tensor ``ty[0]`` has had the updates of every sample before
        ``index`` (the queue is first in, first out and at most IN_FLIGHT samples are pending, so
        the one waited for is running already: no deadlock)."""
        t = ty[0]
        with self._order:
            while self._next.get(t, 0) != index:
                self._order.wait()
        try:
            update(ty)
        finally:
            with self._order:
                self._next[t] = index + 1
                self._order.notify_all()

    def _wait_oldest(self) -> None:
        for f in self.pending.popleft():
            f.result()  # re-raises a worker's error

    def _wait(self) -> None:
        while self.pending:
            self._wait_oldest()

    @property
    def stashed(self) -> list[dict[str, np.ndarray]]:
        """The kept float tensors of the first samples (see ``stash``), one dict per sample."""
        return self.stash.kept

    def channel_max(self, tensor: str) -> np.ndarray | None:
        """Per-channel (axis 1) abs max of ``tensor`` over the samples (``channel_absmax``)."""
        return self.channel_absmax.get(tensor)

    def channel_mean(self, tensor: str) -> np.ndarray | None:
        if tensor not in self.channel_sum:
            return None
        return self.channel_sum[tensor] / max(1, self.channel_count[tensor])

    def close(self) -> None:
        """Finish the pending updates (raising their error, if any) and stop the workers."""
        if self.pool is not None:
            try:
                self._wait()
            except BaseException:
                for fs in self.pending:
                    for f in fs:
                        f.cancel()
                self.pool.shutdown(cancel_futures=True)
                self.pool = None
                raise
            self.pool.shutdown()
            self.pool = None
