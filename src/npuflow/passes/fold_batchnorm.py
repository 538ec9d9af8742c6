"""Pass ``fold_batchnorm``: fold an inference ``BatchNormalization`` into the ``Conv`` or
``ConvTranspose`` before it.

With ``s = scale / sqrt(var + epsilon)`` per output channel ``m``:
``W'[m] = W[m] * s[m]`` and ``b'[m] = (b[m] - mean[m]) * s[m] + B[m]`` (``b = 0`` when the Conv
has no bias). The arithmetic is done in float64 and cast back to the weight's dtype once.

Rules:
1. Pattern: ``Conv -> BatchNormalization`` or ``ConvTranspose -> BatchNormalization`` where the
   convolution's output is read by that BN only and is not a graph output; both in the default
   domain.
2. Conv weight (and bias, when present) and the four BN parameters must be constant
   initializers (not graph inputs), float tensors; BN parameters of shape ``[M]`` where ``M`` is
   the convolution's output channel count (``W.shape[0]`` for a Conv, ``W.shape[1] * group`` for a
   ConvTranspose, whose weight is scaled per output channel as in ``fold_conv_affine``).
3. BN must be in inference mode: ``training_mode`` absent or 0, ``spatial`` absent or 1 (opset
   < 9), and its optional outputs (running mean/var, saved mean/var) absent or unused.
4. The Conv gets new initializers ``<W>_bnfold`` / ``<conv name>_bias_bnfold`` (unique names; the
   originals stay for other readers and are dropped by ``remove_unused`` when unread), takes
   over the BN's output name, keeps its own node name; the BN node is removed.
5. ``BatchNormalization`` after anything else (Add, a graph input ...) is left alone.
   ``optimize(keep_bn=True)`` skips this pass entirely.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from npuflow.passes._graph import (
    all_tensor_names,
    constant_initializers,
    consumers,
    drop_value_info,
    ensure_ir_version,
    is_default_domain,
    names_used_in_subgraphs,
    producers,
    remove_nodes,
    unique_name,
)
from npuflow.passes._rewrite import FLOAT_TYPES, attr, out_channels, scale_out_channels


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    consts = constant_initializers(graph)
    prod = producers(graph)
    used = consumers(graph)
    outputs = {o.name for o in graph.output}
    in_subgraphs = names_used_in_subgraphs(graph)
    taken = all_tensor_names(graph)
    removed: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    touched: set[str] = set()

    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or not is_default_domain(bn.domain) or len(bn.input) != 5:
            continue
        y = bn.input[0]
        conv = prod.get(y)
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or not is_default_domain(conv.domain):
            continue
        if y in outputs or y in in_subgraphs or len(used.get(y, [])) != 1:
            continue
        if attr(bn, "training_mode", 0) != 0 or attr(bn, "spatial", 1) != 1:
            continue
        extra = [o for o in bn.output[1:] if o]
        if any(o in used or o in outputs or o in in_subgraphs for o in extra):
            continue
        w_name = conv.input[1] if len(conv.input) > 1 else ""
        b_name = conv.input[2] if len(conv.input) > 2 else ""
        params = [w_name, *bn.input[1:]] + ([b_name] if b_name else [])
        if not all(p in consts and consts[p].data_type in FLOAT_TYPES for p in params):
            continue
        w_t = consts[w_name]
        w = numpy_helper.to_array(w_t)
        if w.ndim < 3:
            continue
        m = out_channels(conv, w)
        scale, beta, mean, var = (numpy_helper.to_array(consts[p]).astype(np.float64) for p in bn.input[1:])
        if any(p.shape != (m,) for p in (scale, beta, mean, var)):
            continue
        b = numpy_helper.to_array(consts[b_name]).astype(np.float64) if b_name else np.zeros(m)
        if b.shape != (m,):
            continue
        eps = float(attr(bn, "epsilon", 1e-5))
        s = scale / np.sqrt(var + eps)
        w_new = scale_out_channels(conv, w.astype(np.float64), s).astype(w.dtype)
        b_dtype = numpy_helper.to_array(consts[b_name]).dtype if b_name else w.dtype
        b_new = ((b - mean) * s + beta).astype(b_dtype)

        w_init = numpy_helper.from_array(w_new, unique_name(f"{w_name}_bnfold", taken))
        b_init = numpy_helper.from_array(b_new, unique_name(f"{conv.name or w_name}_bias_bnfold", taken))
        new_inits += [w_init, b_init]
        conv.input[1] = w_init.name
        if len(conv.input) > 2:
            conv.input[2] = b_init.name
        else:
            conv.input.append(b_init.name)
        conv.output[0] = bn.output[0]
        removed.append(bn)
        touched.update((y, *extra))

    if not removed:
        return model, False
    remove_nodes(graph, removed)
    graph.initializer.extend(new_inits)
    drop_value_info(graph, touched)
    ensure_ir_version(model)
    return model, True
