"""Small graph helpers shared by the passes (private: the passes are the public surface).

Only :func:`ensure_ir_version`, :func:`rename_tensor`, :func:`drop_value_info` and
:func:`remove_nodes` change the model they are given; :func:`unique_name` adds to ``taken``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import onnx

# ONNX IR 3 requires every initializer to be listed in graph.input; IR 4 lifted that rule.
IR_INITIALIZERS_NOT_INPUTS = 4


def is_default_domain(domain: str) -> bool:
    return domain in ("", "ai.onnx")


def ensure_ir_version(model: onnx.ModelProto, minimum: int = IR_INITIALIZERS_NOT_INPUTS) -> bool:
    """Raise ``model.ir_version`` to ``minimum`` when lower; True when it changed."""
    if model.ir_version < minimum:
        model.ir_version = minimum
        return True
    return False


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Node count by op type of the main graph, sorted by op type (deterministic)."""
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> node that produces it."""
    return {o: n for n in graph.node for o in n.output if o}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> nodes of this graph that read it (a node reading it twice appears once)."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in dict.fromkeys(i for i in n.input if i):
            out.setdefault(name, []).append(n)
    return out


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor name read inside the subgraphs of ``node``, recursively (a superset of its
    outer-scope references)."""
    used: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        for n in g.node:
            used.update(i for i in n.input if i)
            for sg in subgraphs(n):
                walk(sg)
        used.update(o.name for o in g.output)

    for sg in subgraphs(node):
        walk(sg)
    return used


def names_used_in_subgraphs(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name read by a node inside any subgraph of ``graph`` (recursively).

    Passes use it conservatively: a name in this set may be an outer-scope reference, so it is
    never renamed or removed.
    """
    return set().union(*(subgraph_reads(n) for n in graph.node))


def constant_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers that are true constants: not also listed in graph.input.

    An initializer that is also a graph input is only a default value that a caller may override,
    so no pass may treat its value as fixed.
    """
    inputs = {i.name for i in graph.input}
    return {t.name: t for t in graph.initializer if t.name not in inputs}


def all_tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output}
    names |= {t.name for t in graph.initializer}
    names |= {v.name for v in graph.value_info}
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
    names.discard("")
    return names


def unique_name(base: str, taken: set[str]) -> str:
    """``base`` if free, else ``base_1``, ``base_2`` ...; the result is added to ``taken``."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def is_static_dim(d: onnx.TensorShapeProto.Dimension) -> bool:
    return d.HasField("dim_value") and d.dim_value > 0


def static_shape(vi: onnx.ValueInfoProto) -> list[int] | None:
    """The dims of a tensor value_info when all are known positive integers, else None."""
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    if not all(is_static_dim(d) for d in tt.shape.dim):
        return None
    return [int(d.dim_value) for d in tt.shape.dim]


def known_static_shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Tensor name -> static shape, from graph inputs/outputs, value_info and initializers."""
    shapes: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        s = static_shape(vi)
        if s is not None:
            shapes[vi.name] = s
    for t in graph.initializer:
        shapes[t.name] = [int(d) for d in t.dims]
    return shapes


def rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` in node inputs/outputs and initializers of ``graph``.

    Graph inputs/outputs are left alone on purpose: the callers only rename internal tensors.
    The value_info of ``old`` is dropped (shape inference recomputes it under the new name).
    """
    for n in graph.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new
        for k, o in enumerate(n.output):
            if o == old:
                n.output[k] = new
    for t in graph.initializer:
        if t.name == old:
            t.name = new
    drop_value_info(graph, {old})


def drop_value_info(graph: onnx.GraphProto, names: Iterable[str]) -> None:
    names = set(names)
    keep = [v for v in graph.value_info if v.name not in names]
    if len(keep) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(keep)


def remove_nodes(graph: onnx.GraphProto, dead: Iterable[onnx.NodeProto]) -> None:
    """Remove the given node objects (by identity), keeping the order of the others."""
    dead_ids = {id(n) for n in dead}
    keep = [n for n in graph.node if id(n) not in dead_ids]
    if len(keep) != len(graph.node):
        kept = [onnx.NodeProto() for _ in keep]
        for dst, src in zip(kept, keep):
            dst.CopyFrom(src)
        del graph.node[:]
        graph.node.extend(kept)
