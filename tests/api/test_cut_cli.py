"""Cutting a model into head and tail: ``npuflow cut`` and ``onnx2onnx_flow(eliminate_tail=True)``.

* ``npuflow cut MODEL --at T[,T...] -o HEAD --tail TAIL``: head + tail == the model (within 1e-5) on
  MNIST digits; outputs written atomically and never replaced without --force; unknown tensors,
  a cut that does not separate, and -o equal to --tail are one-line npuflow errors (exit 2).
* ``onnx2onnx_flow(eliminate_tail=True)``: removes the trailing nodes the original removes (data
  movement and Softmax, from the outputs backwards), warns naming them and the cut; the head plus
  ``cut_model``'s tail at the head's outputs == the optimized model.
* ultraface_rfb_320 and yolox_nano (shared): the same at the float-tail candidates' boundary and at
  eliminate_tail's cut, on real images.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ktc
from npuflow.cli import main
from npuflow.errors import InvalidConfigError, NpuflowWarning
from npuflow.passes.edit import cut_model
from npuflow.reference.float_runner import FloatRunner
from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r = FloatRunner(model)
    return dict(zip(r.output_names, r.run(feeds)))


def assert_head_tail_equal(model: onnx.ModelProto, head: onnx.ModelProto, tail: onnx.ModelProto,
                           inputs: list[dict[str, np.ndarray]]) -> None:
    """tail(head(x)) == model(x) within 1e-5, output by output (names and order kept)."""
    assert [o.name for o in tail.graph.output] == [o.name for o in model.graph.output]
    tail_ins = {i.name for i in tail.graph.input} - {t.name for t in tail.graph.initializer}
    for x in inputs:
        want = _run(model, x)
        mid = _run(head, x)
        got = _run(tail, {k: v for k, v in mid.items() if k in tail_ins})
        for name, v in want.items():
            np.testing.assert_allclose(got[name], v, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def digits() -> list[dict[str, np.ndarray]]:
    with np.load(EXAMPLES / "mnist" / "digits.npz") as z:
        return [{"Input3": x} for x in z["eval_x"][:4]]


def test_cut_cli_head_plus_tail_is_the_model(tmp_path, capsys, digits):
    head, tail = tmp_path / "head.onnx", tmp_path / "tail.onnx"
    assert main(["cut", MNIST, "--at", "Pooling66_Output_0", "-o", str(head), "--tail", str(tail)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {head}" in out and f"wrote {tail}" in out and "outputs Pooling66_Output_0" in out
    h, t = onnx.load(head), onnx.load(tail)
    assert [o.name for o in h.graph.output] == ["Pooling66_Output_0"]
    assert {n.op_type for n in t.graph.node} >= {"Conv", "Gemm"} and "Pooling66" not in {n.name for n in t.graph.node}
    assert_head_tail_equal(onnx.load(MNIST), h, t, digits)
    # no temporary files left next to them: one output set (tests/reliability/test_later_writers.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.onnx", "npuflow_manifest.json", "tail.onnx"]


def test_cut_cli_never_overwrites_without_force(tmp_path, capsys):
    head, tail = tmp_path / "head.onnx", tmp_path / "tail.onnx"
    tail.write_bytes(b"keep me")
    args = ["cut", MNIST, "--at", "ReLU114_Output_0", "-o", str(head), "--tail", str(tail)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and err.count("\n") == 1
    assert tail.read_bytes() == b"keep me" and not head.exists()  # nothing written
    assert main(args + ["--force"]) == 0
    assert onnx.load(tail).graph.node


@pytest.mark.parametrize("at, message", [
    ("Pooling66_Outptu_0", "no node computes a tensor named 'Pooling66_Outptu_0'"),
    ("Input3", "is a graph input"),
    (",", "--at names no tensor"),
])
def test_cut_cli_unknown_names_are_clear_errors(tmp_path, capsys, at, message):
    rc = main(["cut", MNIST, "--at", at, "-o", str(tmp_path / "h.onnx"), "--tail", str(tmp_path / "t.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("npuflow cut: error: ") and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cut_cli_refuses_same_paths(tmp_path, capsys):
    p = tmp_path / "x.onnx"
    assert main(["cut", MNIST, "--at", "Pooling66_Output_0", "-o", str(p), "--tail", str(p)]) == 2
    assert "same file" in capsys.readouterr().err
    assert main(["cut", MNIST, "--at", "Pooling66_Output_0", "-o", MNIST, "--tail", str(p), "--force"]) == 2
    assert "the model being cut" in capsys.readouterr().err


def _trailing_model() -> onnx.ModelProto:
    """x -> Conv -> Reshape -> Softmax -> "prob"; Conv -> Exp -> Transpose -> "e" (Exp is kept)."""
    w = np.random.default_rng(0).normal(0, 0.5, (4, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["prob"], axis=-1, name="softmax"),
             helper.make_node("Exp", ["c"], ["ex"], name="exp"),
             helper.make_node("Transpose", ["ex"], ["e"], perm=[0, 2, 3, 1], name="transpose")]
    g = helper.make_graph(nodes, "trail", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_empty_tensor_value_info("prob"), helper.make_empty_tensor_value_info("e")],
                          initializer=[numpy_helper.from_array(w, "w"),
                                       numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def test_eliminate_tail_removes_trailing_nodes_and_says_so():
    m = _trailing_model()
    opt = ktc.onnx_optimizer.onnx2onnx_flow(m)
    with pytest.warns(NpuflowWarning, match="removed 3 trailing node") as rec:
        head = ktc.onnx_optimizer.onnx2onnx_flow(m, eliminate_tail=True)
    msg = str(rec[0].message)
    assert "reshape (Reshape)" in msg and "softmax (Softmax)" in msg and "transpose (Transpose)" in msg
    assert {n.name for n in head.graph.node} == {"conv", "exp"}
    outs = [o.name for o in head.graph.output]
    assert outs == ["c", "ex"] and f"cut_model(optimized_model, {outs!r})" in msg
    _, tail = cut_model(opt, outs)
    assert_head_tail_equal(opt, head, tail, [{"x": np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32)}])
    assert len(m.graph.node) == 5  # the argument is not modified
    with pytest.raises(InvalidConfigError, match="eliminate_tail"):
        ktc.onnx_optimizer.onnx2onnx_flow(m, eliminate_tail="yes")


# ------------------------------------------------------------------------------------------------ shared models
def _images(shared: Path, folder: str, spec: str, n: int) -> list[np.ndarray]:
    from npuflow.preprocess import PRESETS, load_image, parse

    s = PRESETS[spec] if spec in PRESETS else parse(spec)
    names = (shared / "data" / folder / "eval.txt").read_text().split()[:n]
    return [load_image(shared / "data" / folder / f, s) for f in names]


REAL = {
    "ultraface_rfb_320": ("input", "faces", "resize=240x320,order=RGB,mean=127,std=128"),
    "yolox_nano": ("images", "coco_val2017", "yolox"),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_models_cut_at_the_float_tail_and_by_eliminate_tail(shared, tmp_path, name):
    from npuflow.analysis.graph import build_steps
    from npuflow.analysis.tails import find_tails
    from npuflow.evaluate.placement import place_model
    from npuflow.sim.kernels import KERNELS

    input_name, folder, spec = REAL[name]
    feeds = [{input_name: x} for x in _images(shared, folder, spec, 2)]
    model = onnx.load(str(shared / "models" / f"{name}.onnx"))
    opt = ktc.onnx_optimizer.onnx2onnx_flow(model)
    # at the boundary of the float-tail candidates (what auto_precision would run on the host), by the CLI
    tails = find_tails(opt, build_steps(opt, place_model(opt, 720), set(KERNELS)))
    at = list(dict.fromkeys(x for t in tails for x in t.inputs))
    src = tmp_path / "opt.onnx"
    src.write_bytes(opt.SerializeToString())
    head_p, tail_p = tmp_path / "head.onnx", tmp_path / "tail.onnx"
    assert main(["cut", str(src), "--at", ",".join(at), "-o", str(head_p), "--tail", str(tail_p)]) == 0
    head, tail = onnx.load(head_p), onnx.load(tail_p)
    assert not {n.op_type for n in tail.graph.node} & {"Conv", "Gemm", "MatMul"}
    assert_head_tail_equal(model, head, tail, feeds)
    # eliminate_tail: the head, and the tail cut_model gives at its outputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NpuflowWarning)
        head2 = ktc.onnx_optimizer.onnx2onnx_flow(model, eliminate_tail=True)
    _, tail2 = cut_model(opt, [o.name for o in head2.graph.output])
    assert len(head2.graph.node) < len(opt.graph.node)
    assert_head_tail_equal(model, head2, tail2, feeds)
