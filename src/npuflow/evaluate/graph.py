"""A read-only view of an ONNX graph for the evaluator: static shapes, constants, consumers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npuflow.platforms.conditions import NodeInfo

# Ops whose output is a compile-time constant when all their inputs are (and Shape of a static tensor).
_SHAPE_OPS = {"Shape", "Size"}


@dataclass
class GraphView:
    model: onnx.ModelProto
    shapes: dict[str, tuple[int, ...] | None]
    const_values: dict[str, np.ndarray | None]  # name -> value (None when constant but value not computed)
    consumers: dict[str, list[int]]
    producers: dict[str, int]
    graph_outputs: set[str]
    graph_inputs: set[str]

    @classmethod
    def build(cls, model: onnx.ModelProto) -> "GraphView":
        g = model.graph
        shapes: dict[str, tuple[int, ...] | None] = {}

        def _record(vi: onnx.ValueInfoProto) -> None:
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                shapes.setdefault(vi.name, None)
                return
            dims = []
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_value") and d.dim_value == 0:
                    dims.append(0)
                else:
                    dims = None
                    break
            shapes[vi.name] = None if dims is None else tuple(dims)

        for vi in list(g.input) + list(g.value_info) + list(g.output):
            _record(vi)
        const_values: dict[str, np.ndarray | None] = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            const_values[init.name] = arr
            shapes[init.name] = tuple(int(d) for d in init.dims)
        producers: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for i, node in enumerate(g.node):
            for o in node.output:
                if o:
                    producers[o] = i
            for name in node.input:
                if name:
                    consumers.setdefault(name, []).append(i)
        inits = {i.name for i in g.initializer}
        view = cls(model, shapes, const_values, consumers, producers, {o.name for o in g.output},
                   {i.name for i in g.input if i.name not in inits})
        view._propagate_constants()
        return view

    def _propagate_constants(self) -> None:
        for node in self.model.graph.node:
            outs = [o for o in node.output if o]
            if node.op_type == "Constant":
                val = None
                for a in node.attribute:
                    if a.name == "value":
                        val = numpy_helper.to_array(a.t)
                    elif a.name in ("value_float", "value_int"):
                        val = np.asarray(helper.get_attribute_value(a))
                    elif a.name in ("value_floats", "value_ints"):
                        val = np.asarray(helper.get_attribute_value(a))
                for o in outs:
                    self.const_values[o] = val
                    if val is not None:
                        self.shapes[o] = tuple(int(d) for d in np.shape(val))
                continue
            ins = [n for n in node.input if n]
            if node.op_type in _SHAPE_OPS and ins and self.shapes.get(ins[0]) is not None:
                shp = self.shapes[ins[0]]
                assert shp is not None
                val = np.asarray(shp, dtype=np.int64) if node.op_type == "Shape" else np.asarray(int(np.prod(shp)), dtype=np.int64)
                if node.op_type == "Shape":
                    start = int(self.attr(node).get("start", 0))
                    end = self.attr(node).get("end")
                    val = val[start:end]
                self.const_values[outs[0]] = val
                continue
            if ins and all(n in self.const_values for n in ins):
                for o in outs:
                    self.const_values[o] = self.const_values[ins[0]] if node.op_type == "Identity" else None

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def attr(node: onnx.NodeProto) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            out[a.name] = v
        return out

    def is_const(self, name: str) -> bool:
        return name in self.const_values

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name) if name else None

    def numel(self, name: str) -> int:
        shp = self.shape(name)
        if shp is None:
            return 0
        return int(np.prod(shp)) if shp else 1

    def is_compile_time(self, node: onnx.NodeProto) -> bool:
        """True when every output of the node is a compile-time constant."""
        outs = [o for o in node.output if o]
        return bool(outs) and all(o in self.const_values for o in outs)

    def node_info(self, node: onnx.NodeProto) -> NodeInfo:
        const_inputs: dict[int, np.ndarray] = {}
        present = set()
        for i, name in enumerate(node.input):
            if not name:
                continue
            present.add(i)
            val = self.const_values.get(name, 0)
            if name in self.const_values and val is not None:
                const_inputs[i] = val  # type: ignore[assignment]
            elif name in self.const_values:
                const_inputs[i] = np.asarray([])  # constant, value unknown
        return NodeInfo(
            name=node.name or (node.output[0] if node.output else node.op_type),
            op_type=node.op_type,
            attrs=self.attr(node),
            input_shapes=tuple(self.shape(n) for n in node.input),
            output_shapes=tuple(self.shape(n) for n in node.output),
            const_inputs=const_inputs,
            present_inputs=frozenset(present),
        )


def node_name(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def ensure_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run ONNX shape inference when intermediate tensors carry no shape (cheap, no data)."""
    g = model.graph
    known = {vi.name for vi in g.value_info} | {o.name for o in g.output} | {i.name for i in g.input}
    needed = {o for n in g.node for o in n.output if o}
    if needed - known - {i.name for i in g.initializer}:
        try:
            return onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - best effort; the evaluator copes with unknown shapes
            return model
    return model
