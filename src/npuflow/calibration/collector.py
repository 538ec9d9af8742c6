"""Run the float model over calibration inputs and keep streaming statistics of every tensor."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import onnx

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

    def __init__(self, model: onnx.ModelProto, tensors: list[str], *, threads: int = 1) -> None:
        inputs = {i.name for i in model.graph.input}
        wanted = list(dict.fromkeys(tensors))
        self.input_tensors = [t for t in wanted if t in inputs]
        self.tensors = [t for t in wanted if t not in inputs]
        self.runner = FloatRunner(expose_tensors(model, self.tensors), label="calibration model", threads=threads)
        self.hist = {t: AbsHistogram() for t in wanted}
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        self.samples = 0

    def feed(self, feeds: dict[str, np.ndarray]) -> None:
        outs = self.runner.run(feeds, self.tensors) if self.tensors else []
        pairs = [(t, feeds[t]) for t in self.input_tensors] + list(zip(self.tensors, outs))
        if self.pool is None:
            for t, y in pairs:
                self.hist[t].update(y)
        else:
            list(self.pool.map(lambda ty: self.hist[ty[0]].update(ty[1]), pairs))
        self.samples += 1

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
