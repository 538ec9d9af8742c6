"""remove_unused: dead nodes and unread initializers removed; the interface is kept."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from optimizer_testutil import init, make_model, vi

from npuflow.passes import remove_unused


def test_dead_nodes_and_unused_initializers_are_removed():
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add"),
             helper.make_node("Mul", ["x", "dead_w"], ["m"], name="dead_mul"),
             helper.make_node("Neg", ["m"], ["n"], name="dead_neg")]
    inits = [init("w", np.ones(3, np.float32)), init("dead_w", np.ones(3, np.float32)), init("orphan", np.ones(1, np.float32))]
    model = make_model(nodes, [vi("x", [3]), vi("unused_input", [3])], [vi("y", [3])], inits)
    model.graph.value_info.append(vi("n", [3]))
    out, modified = remove_unused.run(model)
    assert modified
    assert [n.name for n in out.graph.node] == ["add"]
    assert [t.name for t in out.graph.initializer] == ["w"]
    assert [i.name for i in out.graph.input] == ["x", "unused_input"]  # inputs are the interface
    assert not out.graph.value_info
    onnx.checker.check_model(out)


def test_initializer_listed_as_input_is_kept_and_clean_graph_unchanged():
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    model = make_model(nodes, [vi("x", [3]), vi("k", [3])], [vi("y", [3])],
                       [init("w", np.ones(3, np.float32)), init("k", np.ones(3, np.float32))])
    before = model.SerializeToString()
    out, modified = remove_unused.run(model)
    assert not modified and out.SerializeToString() == before


def test_initializer_that_is_a_graph_output_is_kept():
    nodes = [helper.make_node("Neg", ["x"], ["y"], name="neg")]
    model = make_model(nodes, [vi("x", [3])], [vi("y", [3]), vi("c", [3])], [init("c", np.ones(3, np.float32))])
    out, modified = remove_unused.run(model)
    assert not modified and [t.name for t in out.graph.initializer] == ["c"]
