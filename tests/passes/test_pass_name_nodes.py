"""name_nodes: unique names, original names kept."""
from __future__ import annotations

from collections import Counter

from onnx import helper
from optimizer_testutil import make_model, vi

from npuflow.passes import name_nodes


def _relu_chain(names):
    nodes, prev = [], "x"
    for k, name in enumerate(names):
        out = f"t{k}"
        nodes.append(helper.make_node("Relu", [prev], [out], name=name))
        prev = out
    return make_model(nodes, [vi("x", [1, 4])], [vi(prev, [1, 4])])


def test_unnamed_nodes_get_optype_index_and_named_nodes_keep_their_name():
    model = _relu_chain(["", "keep_me", "", "Relu_3"])
    out, modified = name_nodes.run(model)
    assert modified
    # index 2 -> Relu_2; index 0 -> Relu_0; the explicit later "Relu_3" is never stolen.
    assert [n.name for n in out.graph.node] == ["Relu_0", "keep_me", "Relu_2", "Relu_3"]


def test_generated_name_avoids_a_later_explicit_name_and_duplicates_get_a_suffix():
    model = _relu_chain(["", "Relu_0", "dup", "dup"])
    out, _ = name_nodes.run(model)
    names = [n.name for n in out.graph.node]
    assert names == ["Relu_0_1", "Relu_0", "dup", "dup_1"]
    assert len(set(names)) == len(names)


def test_all_named_graph_is_unchanged():
    model = _relu_chain(["a", "b"])
    before = model.SerializeToString()
    out, modified = name_nodes.run(model)
    assert not modified and out.SerializeToString() == before


def test_real_paddle_model_every_node_named_uniquely_and_original_names_kept(load_shared):
    model = load_shared("ch_ppocr_mobile_v2.0_cls_infer")
    original = [n.name for n in model.graph.node]
    assert Counter(original)[""] == 308  # the Constant nodes have no name
    out, modified = name_nodes.run(model)
    names = [n.name for n in out.graph.node]
    assert modified and "" not in names and len(set(names)) == len(names)
    assert all(new == old for old, new in zip(original, names) if old)
    assert names[original.index("")] == f"Constant_{original.index('')}"
