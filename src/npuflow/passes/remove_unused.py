"""Pass ``remove_unused``: drop nodes and initializers that cannot affect a graph output.

Rules:
1. A node is live when one of its outputs is a graph output or is read by a live node
   (including reads from inside a live node's subgraphs, which may refer to outer tensors).
   Every other node of the main graph is removed.
2. An initializer is removed when no live node reads it, it is not a graph output and it is not
   listed in ``graph.input`` (that would change the model's interface).
3. Graph inputs are never removed, even when unread.
4. ``value_info`` entries of tensors that no longer exist are removed.
"""
from __future__ import annotations

import onnx

from npuflow.passes._graph import remove_nodes, subgraph_reads


def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    graph = model.graph
    needed = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output if o):
            live.append(node)
            needed.update(i for i in node.input if i)
            needed |= subgraph_reads(node)
    live_ids = {id(n) for n in live}
    dead = [n for n in graph.node if id(n) not in live_ids]

    inputs = {i.name for i in graph.input}
    keep_inits = [t for t in graph.initializer if t.name in needed or t.name in inputs]
    modified = bool(dead) or len(keep_inits) != len(graph.initializer)
    if dead:
        remove_nodes(graph, dead)
    if len(keep_inits) != len(graph.initializer):
        kept = [onnx.TensorProto() for _ in keep_inits]
        for dst, src in zip(kept, keep_inits):
            dst.CopyFrom(src)
        del graph.initializer[:]
        graph.initializer.extend(kept)

    existing = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for n in graph.node:
        existing.update(o for o in n.output if o)
    vis = [v for v in graph.value_info if v.name in existing]
    if len(vis) != len(graph.value_info):
        kept_vi = [onnx.ValueInfoProto() for _ in vis]
        for dst, src in zip(kept_vi, vis):
            dst.CopyFrom(src)
        del graph.value_info[:]
        graph.value_info.extend(kept_vi)
        modified = True
    return model, modified
