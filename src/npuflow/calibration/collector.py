"""Run the float model over calibration inputs and keep streaming statistics of every tensor."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import onnx

from npuflow.errors import InputError
from npuflow.calibration.histogram import AbsHistogram
from npuflow.reference.float_runner import FloatRunner

log = logging.getLogger(__name__)


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


class StatsCollector:
    """Feed calibration samples one at a time; keeps an AbsHistogram per requested tensor.

    Memory is constant in the number of samples. ``threads`` sets onnxruntime's intra-op threads and
    the number of workers that update histograms; results do not depend on it (the histogram is
    order-independent and each tensor's histogram is updated by one worker per sample).
    """

    def __init__(self, model: onnx.ModelProto, tensors: list[str], *, threads: int = 1,
                 channel_means: list[str] = (), track: tuple[float, ...] = ()) -> None:
        inputs = {i.name for i in model.graph.input}
        self.mean_tensors = list(dict.fromkeys(channel_means))
        wanted = list(dict.fromkeys(list(tensors) + self.mean_tensors))
        self.input_tensors = [t for t in wanted if t in inputs]
        self.tensors = [t for t in wanted if t not in inputs]
        self.runner = FloatRunner(expose_tensors(model, self.tensors), label="calibration model", threads=threads)
        self.hist = {t: AbsHistogram(track) for t in wanted}
        # per-channel (axis 1) sums for bias correction; updated in sample order -> deterministic
        self.channel_sum: dict[str, np.ndarray] = {}
        self.channel_count: dict[str, int] = {}
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        self.samples = 0

    def feed(self, feeds: dict[str, np.ndarray]) -> None:
        outs = self.runner.run(feeds, self.tensors) if self.tensors else []
        pairs = [(t, feeds[t]) for t in self.input_tensors] + list(zip(self.tensors, outs))
        means = set(self.mean_tensors)

        def update(ty: tuple[str, np.ndarray]) -> None:
            t, y = ty
            try:
                self.hist[t].update(y)
            except ValueError as exc:
                raise InputError(f"calibration input #{self.samples}: tensor {t} of the float model has {exc}; "
                                 "check this input and the nodes that produce the tensor") from None
            if t in means and y.ndim >= 2:
                s = y.astype(np.float64).sum(axis=tuple(i for i in range(y.ndim) if i != 1))
                self.channel_sum[t] = s if t not in self.channel_sum else self.channel_sum[t] + s
                self.channel_count[t] = self.channel_count.get(t, 0) + y.size // y.shape[1]

        if self.pool is None:
            for ty in pairs:
                update(ty)
        else:
            list(self.pool.map(update, pairs))
        self.samples += 1

    def channel_mean(self, tensor: str) -> np.ndarray | None:
        if tensor not in self.channel_sum:
            return None
        return self.channel_sum[tensor] / max(1, self.channel_count[tensor])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
