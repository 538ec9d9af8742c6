"""``ktc.onnx_optimizer``: the original optimizer entry points over ``npuflow.passes.optimize``, and its model
editors over ``npuflow.passes.edit``."""
from __future__ import annotations

import warnings
from typing import Any

import onnx

from npuflow.errors import CompatibilityWarning, InvalidConfigError, NotAvailableError
from npuflow.passes import edit as _edit

# legacy flags that would change the model's meaning or interface: refused rather than ignored
_REFUSED = {
    "bgr": "channel swap in the model", "norm": "input normalisation in the model",
    "rgba2yynn": "RGBA to YYNN conversion",
}
# legacy flags that only tuned the old optimizer: accepted, with a warning saying what npuflow does
_WARNED = {
    "bn_on_skip": "npuflow folds only BatchNormalization that follows a Conv; others stay as they are",
    "bn_before_add": "npuflow folds only BatchNormalization that follows a Conv; others stay as they are",
    "opt_matmul": "npuflow has no MatMul splitting pass; MatMul is kept as it is",
    "opt_720": "npuflow's optimizer is the same for every platform",
    "duplicate_shared_weights": "npuflow keeps shared weights shared; the estimate counts them once per use",
}


def onnx2onnx_flow(m: onnx.ModelProto, disable_fuse_bn: bool = False, *, input_shapes: dict | None = None,
                   eliminate_tail: bool = False, **legacy: Any) -> onnx.ModelProto:
    """Optimize an ONNX model (shape inference, Constant folding, Identity/Dropout removal, BN folding
    unless ``disable_fuse_bn``). Returns a new ModelProto; the argument is not modified.

    ``eliminate_tail=True`` (as the original) then removes the trailing nodes the original removes
    (from the outputs backwards: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Identity, Dropout,
    Constant, Softmax), their inputs becoming the outputs; the removed nodes must run in your
    post-processing. A warning names them and the new outputs;
    ``npuflow.passes.edit.cut_model(optimized, new_outputs)`` (CLI ``npuflow cut``) returns them as a
    tail model. npuflow's analysis() does not need this: it keeps such tails inside the BIE (in
    float where measured to help, docs/fixed-point.md section 10.1)."""
    from npuflow.passes import optimize

    if not isinstance(m, onnx.ModelProto):
        raise InvalidConfigError(f"onnx2onnx_flow expects an onnx.ModelProto (load it with onnx.load), got {type(m).__name__}")
    if not isinstance(eliminate_tail, bool):
        raise InvalidConfigError(f"onnx2onnx_flow(eliminate_tail=...) must be True or False, got {eliminate_tail!r}")
    for name, value in legacy.items():
        if name in _REFUSED:
            if value:
                raise NotAvailableError(f"onnx2onnx_flow({name}=True): {_REFUSED[name]} is not available in npuflow; do it in your preprocessing/postprocessing")
        elif name in _WARNED:
            if value:
                warnings.warn(f"onnx2onnx_flow({name}=True): {_WARNED[name]}", CompatibilityWarning, stacklevel=2)
        else:
            raise InvalidConfigError(f"onnx2onnx_flow got unknown parameter {name!r}")
    out = optimize(m, keep_bn=bool(disable_fuse_bn), input_shapes=input_shapes)
    return _eliminate_tail(out) if eliminate_tail else out


def _eliminate_tail(m: onnx.ModelProto) -> onnx.ModelProto:
    """``onnx2onnx_flow(eliminate_tail=True)``'s last step (see there)."""
    from npuflow.analysis.tails import trailing_nodes
    from npuflow.errors import NpuflowWarning, warn_user

    removed, first = trailing_nodes(m)
    if not removed:
        return m
    head = _edit.cut_graph_from_nodes(m, first)
    kept = {o.name for o in m.graph.output}
    new = [o.name for o in head.graph.output if o.name not in kept]
    at = [o.name for o in head.graph.output]  # the tail takes every head output (kept ones pass through)
    ops = {n.name: n.op_type for n in m.graph.node}
    warn_user(f"onnx2onnx_flow(eliminate_tail=True) removed {len(removed)} trailing node(s): "
                  + ", ".join(f"{n} ({ops[n]})" for n in removed)
                  + f"; new outputs: {', '.join(new)}. Run them in your post-processing: "
                  f"npuflow.passes.edit.cut_model(optimized_model, {at!r}) returns them as a tail model "
                  f"(CLI: npuflow cut OPTIMIZED.onnx --at {','.join(at)} -o HEAD.onnx --tail TAIL.onnx)",
                  NpuflowWarning)
    return head


#: the exporter each legacy converter's users should run instead (none of them converts without
#: installing the source framework, which npuflow does not pull in; docs/compatibility.md)
_EXPORTERS = {
    "keras2onnx_flow": "tf2onnx (pip install tf2onnx; python -m tf2onnx.convert --keras model.h5 --output model.onnx "
                       "--opset 13, or tf2onnx.convert.from_keras(model))",
    "caffe2onnx_flow": "a Caffe-to-ONNX converter run beside Caffe (e.g. the caffe2onnx package), or re-export from the "
                       "training framework's own ONNX exporter",
    "tflite2onnx_flow": "tf2onnx (pip install tf2onnx tensorflow; python -m tf2onnx.convert --tflite model.tflite "
                        "--output model.onnx --opset 13)",
}


def _legacy_converter(name: str):
    def fn(*args: Any, **kwargs: Any) -> onnx.ModelProto:
        raise NotAvailableError(f"ktc.onnx_optimizer.{name} (framework converter of the legacy base env) is not available in "
                                f"npuflow: convert with {_EXPORTERS[name]}, then pass the .onnx file to npuflow")
    fn.__name__ = name
    return fn


keras2onnx_flow = _legacy_converter("keras2onnx_flow")
caffe2onnx_flow = _legacy_converter("caffe2onnx_flow")
tflite2onnx_flow = _legacy_converter("tflite2onnx_flow")


def torch_exported_onnx_flow(m: onnx.ModelProto, disable_fuse_bn: bool = False) -> onnx.ModelProto:
    """Legacy name: the same as onnx2onnx_flow for an ONNX model exported by PyTorch."""
    return onnx2onnx_flow(m, disable_fuse_bn=disable_fuse_bn)


# --- model editors (legacy ``base`` env, ONNX_Convertor ``editor.py``): thin wrappers over npuflow.passes.edit.
# Each returns a new model and leaves its argument unchanged, except pixel_modify (see there);
# differences from the original: docs/compatibility.md, "Model-editing helpers".


def delete_nodes(model: onnx.ModelProto, node_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Delete nodes with the given names (readers are connected to
    the node's input). The argument is not modified."""
    return _edit.delete_nodes(model, node_names)


def delete_inputs(model: onnx.ModelProto, value_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Delete specific (unread) inputs. The argument is not modified."""
    return _edit.delete_inputs(model, value_names)


def delete_outputs(model: onnx.ModelProto, value_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Delete specific outputs. The argument is not modified."""
    return _edit.delete_outputs(model, value_names)


def cut_graph_from_nodes(model: onnx.ModelProto, node_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Cut the graph from the given nodes: delete them and every node
    after them. The argument is not modified."""
    return _edit.cut_graph_from_nodes(model, node_names)


def remove_nodes_with_types(model: onnx.ModelProto, type_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Cut the graph from the nodes with the given op types. The
    argument is not modified."""
    return _edit.remove_nodes_with_types(model, type_names)


def change_input_output_shapes(model: onnx.ModelProto, input_shape_mapping: dict | None = None,
                               output_shape_mapping: dict | None = None) -> onnx.ModelProto:
    """Return the result onnx model. Change input shapes and output shapes. The argument is not modified."""
    return _edit.change_input_output_shapes(model, input_shape_mapping, output_shape_mapping)


def add_conv_after(model: onnx.ModelProto, value_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Add a do-nothing (depthwise 1x1) Conv node after the given
    values. The argument is not modified."""
    return _edit.add_conv_after(model, value_names)


def add_bn_after(model: onnx.ModelProto, value_names: list[str]) -> onnx.ModelProto:
    """Return the result onnx model. Add a do-nothing BatchNormalization node after the given
    values. The argument is not modified."""
    return _edit.add_bn_after(model, value_names)


def rename_output(model: onnx.ModelProto, old_name: str, new_name: str) -> onnx.ModelProto:
    """Return the result onnx model. Rename the specific output. The argument is not modified."""
    return _edit.rename_output(model, old_name, new_name)


def pixel_modify(model: onnx.ModelProto, scale: list[float], bias: list[float], *,
                 input_name: str | None = None) -> onnx.ModelProto:
    """Add a BatchNormalization node at the input so that ``new(raw) == old(raw * scale + bias)``
    (one scale and one bias per channel). As in the original, ``model`` itself is edited (the
    documented usage ignores the return value) and returned."""
    return _edit.pixel_modify(model, scale, bias, input_name=input_name, in_place=True)


def convert_opset_8_to_9(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return the updated onnx model (opset 8 -> 9). The argument is not modified."""
    return _edit.convert_opset_8_to_9(model)


def convert_opset_9_to_11(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return the updated onnx model (opset 9 -> 11, IR version 6 at least). The argument is not modified."""
    return _edit.convert_opset_9_to_11(model)


def convert_opset_10_to_11(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return the updated onnx model (opset 10 -> 11, IR version 6 at least). The argument is not modified."""
    return _edit.convert_opset_10_to_11(model)
