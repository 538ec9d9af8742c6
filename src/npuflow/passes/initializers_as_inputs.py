"""Pass ``initializers_as_inputs``: stop listing weights as graph inputs.

Old exporters (ONNX IR 3, where it was mandatory, and some IR 4 ones) list every initializer in
``graph.input`` too. Such an entry makes the weight look like an activation to calibrate, and
onnxruntime refuses to constant-fold it because a caller could override it.

Rules:
1. Every ``graph.input`` entry whose name is also an initializer is removed; the initializer
   stays. Real inputs keep their order.
2. When at least one entry was removed and ``ir_version < 4``, ``ir_version`` is raised to 4,
   the first IR version that allows initializers which are not inputs (``onnx.checker`` would
   reject the model otherwise). Nothing else depends on the IR version here.
3. A model without such entries is returned unchanged (``modified`` is False).
"""
from __future__ import annotations

import onnx

from npuflow.passes._graph import ensure_ir_version


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    if len(keep) == len(graph.input):
        return model, False
    kept = [onnx.ValueInfoProto() for _ in keep]
    for dst, src in zip(kept, keep):
        dst.CopyFrom(src)
    del graph.input[:]
    graph.input.extend(kept)
    ensure_ir_version(model)
    return model, True
