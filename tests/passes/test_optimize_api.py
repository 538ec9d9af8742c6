"""optimize() / optimize_report(): contract of the public API."""
from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
from onnx import helper
from optimizer_testutil import init, make_model, ops, ort_outputs, vi
from real_inputs import MODELS

import effect_table
from npuflow.errors import DynamicShapeError, InvalidConfigError, ModelLoadError
from npuflow.passes import MAX_ROUNDS, PASSES, PIPELINE, PassStat, optimize, optimize_report


def test_public_signature():
    sig = inspect.signature(optimize)
    assert list(sig.parameters) == ["model", "keep_bn", "input_shapes", "progress", "platform"]
    assert all(p.kind is p.KEYWORD_ONLY for name, p in sig.parameters.items() if name != "model")
    assert (sig.parameters["keep_bn"].default, sig.parameters["input_shapes"].default,
            sig.parameters["progress"].default, sig.parameters["platform"].default) == (False, None, False, None)


def test_registry_order_and_pipeline():
    assert list(PASSES) == ["name_nodes", "initializers_as_inputs", "fix_input_shapes", "constant_to_initializer",
                            "shape_inference", "constant_folding", "remove_identity", "fold_batchnorm",
                            "fuse_hardswish", "hard_sigmoid", "fuse_silu", "fuse_gelu", "div_to_mul",
                            "fold_conv_affine", "split_global_pool", "remove_unused"]
    setup, rounds, final = PIPELINE
    assert set(setup) | set(rounds) | set(final) == set(PASSES)
    for fn in PASSES.values():
        assert callable(fn) and list(inspect.signature(fn).parameters)[0] == "model"


@pytest.mark.parametrize("name", list(MODELS))
def test_deterministic_and_input_not_mutated_and_checker_passes(trace, name):
    t = trace(name)
    # the trace optimized t.original: it must still serialize exactly as loaded
    assert t.original.SerializeToString() == t.original_bytes
    again = optimize(onnx.load_from_string(t.original_bytes), **effect_table.optimize_options(name, t.feeds))
    assert again.SerializeToString() == t.optimized.SerializeToString()
    onnx.checker.check_model(t.optimized, full_check=True)


@pytest.mark.parametrize("name", list(MODELS))
def test_node_names_unique_and_original_names_kept(trace, name):
    t = trace(name)
    names = [n.name for n in t.optimized.graph.node]
    assert "" not in names and len(set(names)) == len(names)
    original = {n.name for n in t.original.graph.node if n.name}
    # every surviving node that had a name keeps it; generated names follow <OpType>_<index>
    for n in t.optimized.graph.node:
        assert n.name in original or n.name.startswith(f"{n.op_type}_"), n.name


def test_report_records_each_pass_run(trace):
    t = trace("ch_ppocr_mobile_v2.0_cls_infer")
    assert all(isinstance(s, PassStat) for s in t.stats)
    assert [s.name for s in t.stats[:4]] == list(PIPELINE[0])
    assert t.stats[-1].name == "shape_inference" and t.stats[-1].round == 0
    assert max(s.round for s in t.stats) <= MAX_ROUNDS
    c2i = next(s for s in t.stats if s.name == "constant_to_initializer")
    assert c2i.modified and c2i.op_delta() == {"Constant": -308}
    assert c2i.nodes_before - c2i.nodes_after == 308
    fis = next(s for s in t.stats if s.name == "fix_input_shapes")
    assert fis.input_dims_before == (("x", (-1, 3, "?", "?")),) and fis.input_dims_after == (("x", (1, 3, 48, 192)),)
    # the stats chain: each run starts from the previous run's result
    for a, b in zip(t.stats, t.stats[1:]):
        assert a.ops_after == b.ops_before
    assert t.stats[0].ops_before == dict(sorted(ops(t.original).items()))
    assert t.stats[-1].ops_after == dict(sorted(ops(t.optimized).items()))


def test_keep_bn_is_reported_as_skipped(load_shared):
    _, stats = optimize_report(load_shared("ultraface_rfb_320"), keep_bn=True)
    fb = [s for s in stats if s.name == "fold_batchnorm"]
    assert fb and all(s.skipped and not s.modified for s in fb)


def test_progress_bar_goes_to_stderr(load_shared, capsys):
    optimize(load_shared("mnist_cntk_opt"), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""


def test_dynamic_model_without_shapes_raises_dynamic_shape_error(load_shared):
    with pytest.raises(DynamicShapeError, match="input_shapes="):
        optimize(load_shared("en_PP-OCRv3_det_infer"))


@pytest.mark.parametrize("kwargs", [{"keep_bn": "yes"}, {"progress": 1}, {"input_shapes": [1, 3, 32, 320]}])
def test_bad_options_raise_invalid_config(load_shared, kwargs):
    with pytest.raises(InvalidConfigError):
        optimize(load_shared("mnist_cntk_opt"), **kwargs)


def test_not_a_model_raises_model_load_error():
    with pytest.raises(ModelLoadError):
        optimize(12345)  # type: ignore[arg-type]


def test_small_graph_end_to_end():
    # Constant -> Identity -> Conv -> BN -> Dropout -> output, dynamic batch
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Identity", ["w0"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Dropout", ["bn"], ["y"]),
    ]
    inits = [init("w0", rng.standard_normal((2, 1, 1, 1)).astype(np.float32))] + [
        init(n, rng.uniform(0.5, 1.5, 2).astype(np.float32)) for n in ("s", "b", "m", "v")]
    model = make_model(nodes, [vi("x", ["N", 1, 4, 4])], [vi("y", ["N", 2, 4, 4])], inits)
    out = optimize(model)
    onnx.checker.check_model(out, full_check=True)
    assert [n.op_type for n in out.graph.node] == ["Conv"]
    assert out.graph.node[0].name == "Conv_1" and out.graph.node[0].output[0] == "y"
    assert [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim] == [1, 2, 4, 4]


def test_outer_tensors_read_by_a_subgraph_are_kept():
    # y = If(cond, then: Neg(i), else: Relu(i)) with i = Identity(x) read only inside the branches
    then_g = helper.make_graph([helper.make_node("Neg", ["i"], ["t"], name="neg")], "then", [], [vi("t", [1, 3])])
    else_g = helper.make_graph([helper.make_node("Relu", ["i"], ["e"], name="relu")], "else", [], [vi("e", [1, 3])])
    nodes = [helper.make_node("Identity", ["x"], ["i"], name="id"),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    model = make_model(nodes, [vi("x", [1, 3]), vi("cond", [], onnx.TensorProto.BOOL)], [vi("y", [1, 3])])
    out = optimize(model)
    onnx.checker.check_model(out)
    assert [n.name for n in out.graph.node] == ["id", "if"]
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    for c in (True, False):
        feeds = {"x": x, "cond": np.array(c)}
        np.testing.assert_array_equal(ort_outputs(out, feeds)[0], ort_outputs(model, feeds)[0])
