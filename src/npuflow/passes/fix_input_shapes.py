"""Pass ``fix_input_shapes``: give every real model input a fully static shape.

A dim is *dynamic* when it has a ``dim_param`` (a symbolic name such as ``batch`` or
``p2o.DynamicDimension.1``), no value at all, or a value <= 0 (paddle2onnx writes -1).
Real inputs are the graph inputs that are not initializers.

Rules:
1. ``input_shapes`` (option; input name -> list of ints) overrides an input's whole shape.
   Every key must be a real input name, else ``InvalidConfigError`` listing the real inputs
   with their current dims. Every value must be a list of positive integers whose length is the
   input's rank, else ``InvalidConfigError`` saying the expected rank and the given one.
   An override may not change a dim the model already fixes (that would contradict the
   weights and the exported reshapes): ``InvalidConfigError`` naming the dim.
2. A dynamic dim 0 (the batch dim) of an input without an override is fixed to 1.
3. Any other dynamic dim of an input without an override raises ``DynamicShapeError`` naming
   the input, the dim index and its symbolic name, and showing the ``input_shapes={...}``
   (Python) and ``--input-shape name=d0,d1,...`` (CLI) forms to pass. All such dims of all
   inputs are reported in one message.
4. An input with no shape at all needs an override (``DynamicShapeError`` otherwise).
5. When any dim changed, every ``graph.value_info`` entry is dropped and every dim of every
   graph output is cleared (rank and element type are kept), so that shape inference
   recomputes them from the new input shapes instead of merging with stale ones.
6. A model whose inputs are already static and that gets no override is returned unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral

import onnx

from npuflow.errors import DynamicShapeError, InvalidConfigError
from npuflow.ir.load import dims_of, model_inputs


def _fmt_dims(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _is_dynamic(d: onnx.TensorShapeProto.Dimension) -> bool:
    return not (d.HasField("dim_value") and d.dim_value > 0)


def _dim_label(d: onnx.TensorShapeProto.Dimension) -> str:
    if d.HasField("dim_param"):
        return repr(d.dim_param)
    if d.HasField("dim_value"):
        return f"value {d.dim_value}"
    return "unnamed"


def _check_overrides(
    input_shapes: object, inputs: list[onnx.ValueInfoProto]
) -> dict[str, list[int]]:
    if input_shapes is None:
        return {}
    if not isinstance(input_shapes, Mapping):
        raise InvalidConfigError(
            f"input_shapes must be a dict input name -> list of ints, got {type(input_shapes).__name__}"
        )
    by_name = {i.name: i for i in inputs}
    listing = ", ".join(f"{i.name!r} {_fmt_dims(dims_of(i))}" for i in inputs) or "none"
    out: dict[str, list[int]] = {}
    for name, shape in input_shapes.items():
        if name not in by_name:
            raise InvalidConfigError(
                f"input_shapes names an unknown input {name!r}; the model's inputs are: {listing}"
            )
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in shape
        ):
            raise InvalidConfigError(
                f"input_shapes[{name!r}] must be a list of ints such as [1, 3, 224, 224], got {shape!r}"
            )
        dims = [int(v) for v in shape]
        if any(v <= 0 for v in dims):
            raise InvalidConfigError(f"input_shapes[{name!r}] = {dims}: every dim must be a positive integer")
        vi = by_name[name]
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            model_dims = dims_of(vi)
            if len(dims) != len(model_dims):
                raise InvalidConfigError(
                    f"input_shapes[{name!r}] has rank {len(dims)} ({dims}) but input {name!r} has rank "
                    f"{len(model_dims)} {_fmt_dims(model_dims)}: expected {len(model_dims)} dims"
                )
            for k, (d, v) in enumerate(zip(tt.shape.dim, dims)):
                if not _is_dynamic(d) and d.dim_value != v:
                    raise InvalidConfigError(
                        f"input_shapes[{name!r}] sets dim {k} to {v}, but the model fixes it to {d.dim_value} "
                        f"(input {name!r} is {_fmt_dims(model_dims)}); only dynamic dims can be chosen"
                    )
        out[name] = dims
    return out


def _example(vi: onnx.ValueInfoProto) -> list[str]:
    """Dims to show in the error's example: fixed values, 1 for the batch, ``<name>`` otherwise."""
    ex: list[str] = []
    for k, d in enumerate(vi.type.tensor_type.shape.dim):
        if not _is_dynamic(d):
            ex.append(str(d.dim_value))
        elif k == 0:
            ex.append("1")
        else:
            ex.append(f"<{d.dim_param or 'dim' + str(k)}>")
    return ex


def run(
    model: onnx.ModelProto, *, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    inputs = model_inputs(model)
    overrides = _check_overrides(input_shapes, inputs)

    missing: list[str] = []
    examples: list[tuple[str, list[str]]] = []
    for vi in inputs:
        if vi.name in overrides:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue  # sequences/maps: nothing to fix here
        if not tt.HasField("shape"):
            missing.append(f"input {vi.name!r} has no shape information at all")
            examples.append((vi.name, ["<d0>", "<d1>", "..."]))
            continue
        bad = [
            f"dim {k} ({_dim_label(d)})"
            for k, d in enumerate(tt.shape.dim)
            if k > 0 and _is_dynamic(d)
        ]
        if bad:
            missing.append(f"input {vi.name!r} {_fmt_dims(dims_of(vi))} has dynamic " + ", ".join(bad))
            examples.append((vi.name, _example(vi)))
    if missing:
        py = ", ".join(f'"{n}": [{", ".join(e)}]' for n, e in examples)
        cli = " ".join(f"--input-shape {n}={','.join(e)}" for n, e in examples)
        raise DynamicShapeError(
            "; ".join(missing)
            + f". Pass the shape to compile for: input_shapes={{{py}}} (CLI: {cli}), "
            "replacing each <...> by a size, e.g. input_shapes={\"x\": [1, 3, 32, 320]} / "
            "--input-shape x=1,3,32,320. Only a dynamic batch dim (dim 0) defaults to 1."
        )

    modified = False
    for vi in inputs:
        tt = vi.type.tensor_type
        if vi.name in overrides:
            new_dims = overrides[vi.name]
        elif vi.type.HasField("tensor_type") and tt.HasField("shape"):
            new_dims = [1 if _is_dynamic(d) else int(d.dim_value) for d in tt.shape.dim]
        else:
            continue
        old = [d.dim_value if not _is_dynamic(d) else None for d in tt.shape.dim] if tt.HasField("shape") else None
        if old == new_dims:
            continue
        tt.shape.Clear()
        for v in new_dims:
            tt.shape.dim.add().dim_value = v
        modified = True

    if modified:
        del graph.value_info[:]
        for out in graph.output:
            if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
                for d in out.type.tensor_type.shape.dim:
                    d.Clear()
    return model, modified
