"""Pass ``div_to_mul``: a division by a constant becomes a multiplication by its reciprocal.

``Div`` is not in the KL520/KL720 NPU operator tables while ``Mul`` is on the KL720 (and both
are on the 530/630/730), so on the 720 every ``x / c`` is a CPU node and ``x * (1/c)`` is not.

Rules:
1. Pattern: ``Div(A, B)`` in the default domain where ``B`` is a constant initializer (not a graph
   input) of a float type (float32, float64, float16) and ``A`` is not a constant.
2. Every element of ``B`` is finite and nonzero and its reciprocal is finite in ``B``'s dtype;
   otherwise the node is left alone (integer ``Div`` truncates and is never touched).
3. The node keeps its inputs order and output and is renamed ``Mul_<its name>``; its op becomes
   ``Mul`` and its second input a new initializer ``<B>_reciprocal`` = ``1/B`` computed in float64 and rounded once to ``B``'s
   dtype (``B`` itself stays for its other readers; ``remove_unused`` drops it when unread).
4. Float effect: exact (bit-identical) when every element of ``B`` is a power of two. Otherwise
   ``fl(A * fl(1/B))`` differs from ``fl(A / B)`` by at most ``3u + u^2`` relative to ``|A/B|``
   (``u`` = unit roundoff of the dtype: 2**-24 for float32, i.e. about 1.8e-7), barring
   underflow to subnormals.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.passes._graph import ensure_ir_version, is_default_domain
from npuflow.passes._rewrite import FLOAT_TYPES, Index


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    done: dict[str, str] = {}  # divisor initializer -> its reciprocal initializer
    changed = False
    for n in model.graph.node:
        if n.op_type != "Div" or not is_default_domain(n.domain) or len(n.input) != 2 or len(n.output) != 1:
            continue
        a, b = n.input
        t = idx.consts.get(b)
        if not a or t is None or t.data_type not in FLOAT_TYPES or a in idx.consts:
            continue
        if b not in done:
            c = numpy_helper.to_array(t)
            c64 = c.astype(np.float64)
            if c.size == 0 or not np.all(np.isfinite(c64)) or np.any(c64 == 0.0):
                continue
            with np.errstate(over="ignore"):
                r = (1.0 / c64).astype(c.dtype)
            if not np.all(np.isfinite(r.astype(np.float64))):
                continue
            rname = idx.name(f"{b}_reciprocal")
            idx.new_initializers.append(numpy_helper.from_array(r, rname))
            done[b] = rname
        if n.name:
            n.name = idx.name(f"Mul_{n.name}")
        n.op_type = "Mul"
        n.input[1] = done[b]
        changed = True
    if not changed:
        return model, False
    idx.finish()
    ensure_ir_version(model)
    return model, True
