"""Pass ``fold_conv_affine``: a per-channel constant scale or offset after a convolution is folded
into the convolution's weights and bias.

Converters of dlib, Caffe and Paddle models write a batch normalization or a bias as separate
``Mul`` / ``Add`` nodes after a ``Conv`` (dlib's "affine" layers: ``Conv -> Mul(s) -> Add(a)``;
paddle2onnx: ``Conv -> Add(b)``, ``ConvTranspose -> Add(b)``). Left in the graph, each of them is an
NPU step whose output is quantized again: the convolution's output, then the scaled tensor, then
the shifted one, three roundings where one does. Folded, the convolution writes the final tensor.

With ``m`` the output channel:

* ``Mul(y, s)`` / ``Mul(s, y)``: ``W'[m] = W[m] * s[m]``, ``b'[m] = b[m] * s[m]``;
* ``Add(y, a)`` / ``Add(a, y)``: ``b'[m] = b[m] + a[m]``; ``Sub(y, a)``: ``b'[m] = b[m] - a[m]``
  (``b = 0`` when the convolution has no bias; ``Sub(a, y)`` is left alone).

Rules:
1. Pattern: ``Conv`` or ``ConvTranspose`` (default domain) whose output is read by that one
   ``Mul`` / ``Add`` / ``Sub`` node only, is not a graph output and is not read in a subgraph.
   A chain (``Conv -> Mul -> Add``) folds in one run, one node after the other. One
   ``Transpose`` may sit between the convolution and the chain (converters from TensorFlow write
   ``Conv -> Transpose(NCHW -> NHWC) -> Add(bias) -> Sub -> Mul -> Add``): it is read by the chain
   only, the constants then broadcast along the axis the channel axis moves to, and the
   Transpose takes over the last folded node's output name.
2. The convolution's weight (and bias, when present) and the other operand are constant
   initializers of a float type. The operand holds one value per output channel or one value in
   all: after right-aligning its shape to the output's rank (the weight's rank), every dimension is
   1 except the channel axis (1, or its place after the Transpose), which is 1 or the output
   channel count ``M``; its rank is at most the output's (so the output's shape does not change).
   Every value is finite.
3. ``ConvTranspose`` weights ``[C_in, M / group, k...]`` are scaled per output channel
   ``g * (M / group) + j`` (any ``group``).
4. The arithmetic is done in float64 and cast back to the weight's and bias's dtypes once; the
   convolution gets new initializers ``<W>_affine`` / ``<node>_bias_affine`` (the originals stay
   for other readers and ``remove_unused`` drops them when unread), takes over the folded node's
   output name and keeps its own node name; the folded node is removed.
5. Float effect: the same function up to float32 rounding (``y * s`` computed as ``(W * s) x``:
   a few units of the last place relative to the accumulated sum).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.passes._graph import (
    drop_value_info,
    ensure_ir_version,
    is_default_domain,
    remove_nodes,
)
from npuflow.passes._rewrite import Index, attr, out_channels, scale_out_channels

#: producers this pass folds into, and the op types it folds
CONVS = ("Conv", "ConvTranspose")
FOLDABLE = ("Mul", "Add", "Sub")


def _per_channel(c: np.ndarray, rank: int, m: int, axis: int = 1) -> np.ndarray | None:
    """``c`` as a float64 vector of ``m`` values when it broadcasts per output channel along
    ``axis`` (rule 2)."""
    if c.ndim > rank or c.size == 0 or not np.all(np.isfinite(c)):
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for k, d in enumerate(shape) if k != axis) or shape[axis] not in (1, m):
        return None
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (m,)) if c.size == 1 else c.astype(np.float64).reshape(m)


def _transpose_reader(idx: Index, y: str, rank: int) -> onnx.NodeProto | None:
    """The Transpose that alone reads ``y`` and whose output alone feeds a foldable node (rule 1)."""
    t = idx.sole_reader(y)
    if t is None or t.op_type != "Transpose" or not is_default_domain(t.domain):
        return None
    perm = attr(t, "perm")
    if perm is not None and sorted(perm) != list(range(rank)):
        return None
    nxt = idx.sole_reader(t.output[0])
    return t if nxt is not None and nxt.op_type in FOLDABLE else None


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    idx = Index(model)
    removed: list[onnx.NodeProto] = []
    stale: set[str] = set()

    for conv in model.graph.node:
        if conv.op_type not in CONVS or not is_default_domain(conv.domain) or len(conv.input) < 2:
            continue
        w_name = conv.input[1]
        b_name = conv.input[2] if len(conv.input) > 2 else ""
        w0 = idx.const_array(w_name)
        b0 = idx.const_array(b_name) if b_name else None
        if w0 is None or (b_name and b0 is None) or w0.ndim < 3:
            continue
        m = out_channels(conv, w0)
        if b0 is not None and b0.shape != (m,):
            continue
        w, b = w0.astype(np.float64), (b0.astype(np.float64) if b0 is not None else np.zeros(m))
        folded = []
        y = conv.output[0]
        axis, through = 1, _transpose_reader(idx, y, w0.ndim)
        if through is not None:
            perm = attr(through, "perm") or list(range(w0.ndim))[::-1]
            axis, y = list(perm).index(1), through.output[0]
        while True:
            nxt = idx.sole_reader(y)
            if nxt is None or nxt.op_type not in FOLDABLE or not is_default_domain(nxt.domain) or len(nxt.input) != 2:
                break
            other = idx.other_input(nxt, y)
            if other is None or other == y or (nxt.op_type == "Sub" and nxt.input[0] != y):
                break
            c = idx.const_array(other)
            v = None if c is None else _per_channel(c, w0.ndim, m, axis)
            if v is None:
                break
            if nxt.op_type == "Mul":
                w, b = scale_out_channels(conv, w, v), b * v
            else:
                b = b + v if nxt.op_type == "Add" else b - v
            folded.append(nxt)
            stale.add(y)
            y = nxt.output[0]
        if not folded:
            continue
        if any(n.op_type == "Mul" for n in folded):
            w_init = numpy_helper.from_array(w.astype(w0.dtype), idx.name(f"{w_name}_affine"))
            idx.new_initializers.append(w_init)
            conv.input[1] = w_init.name
        b_init = numpy_helper.from_array(b.astype(b0.dtype if b0 is not None else w0.dtype),
                                         idx.name(f"{conv.name or w_name}_bias_affine"))
        idx.new_initializers.append(b_init)
        if len(conv.input) > 2:
            conv.input[2] = b_init.name
        else:
            conv.input.append(b_init.name)
        (through if through is not None else conv).output[0] = y
        removed.extend(folded)

    if not removed:
        return model, False
    remove_nodes(model.graph, removed)
    idx.finish()
    drop_value_info(model.graph, stale)
    ensure_ir_version(model)
    return model, True
