"""Issue 18, items 2 and 12: output file names from inside a model never lead outside ``output_dir``;
wrong types (a bool for an int, a string for a bool) are refused as npuflow errors naming the option."""
from __future__ import annotations

import os

import numpy as np
import pytest

import ktc
import npuflow
from npuflow.errors import InvalidConfigError

from tests.reliability._models import conv

X = [np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32) for _ in range(4)]


@pytest.mark.parametrize("graph_name, expected", [
    ("../../escaped", "_.._escaped"),
    ("/abs/escaped", "_abs_escaped"),
    ("a\x00b", "a_b"),
    ("x" * 5000, "x" * 120),
    ("..", "model"),
    ("", "model"),
    ("net v2", "net_v2"),
])
def test_graph_names_become_plain_file_names(tmp_path, graph_name, expected):
    out = tmp_path / "deep" / "out"
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=conv(name=graph_name), debug=True)
    assert km.name == expected
    km.evaluate(output_dir=out)
    bie = km.analysis({"x": X}, output_dir=out, threads=1, report=False)
    assert os.path.dirname(bie) == str(out) and os.path.basename(bie) == f"{expected}.kdp720.scaled.bie"
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".bie", ".onnx")) == sorted(
        [f"{expected}.kdp720.scaled.bie", f"{expected}.opt.onnx"])
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(os.path.join("deep", "out")) for p in written), written
    # a BIE storing such a name: the name read back is made safe the same way
    kb = ktc.ModelConfig(40000, "0001", 720, bie_path=bie)
    assert kb.name == expected


def test_a_users_own_file_name_is_kept(tmp_path):
    import onnx

    src = tmp_path / "my model v2.onnx"
    onnx.save(conv(), str(src))
    assert ktc.ModelConfig(40000, "0001", 720, onnx_path=src).name == "my model v2"


@pytest.mark.parametrize("call, match", [
    (lambda km, o: km.evaluate(output_dir=o, keep_bn="yes"), "keep_bn must be True or False"),
    (lambda km, o: km.analysis({"x": X}, output_dir=o, optimize=True), r"optimize must be 0..4, got True"),
    (lambda km, o: km.analysis({"x": X}, output_dir=o, mode=True), "mode must be 1, 2 or 3, got True"),
    (lambda km, o: km.analysis({"x": X}, output_dir=o, node_overrides={"conv": {"abs_max": True}}),
     "abs_max must be a positive finite number, got True"),
    (lambda km, o: km.analysis({"x": X}, output_dir=o, node_overrides={"conv": {"abs_max": float("inf")}}),
     "abs_max must be a positive finite number"),
    (lambda km, o: km.analysis({"x": X}, output_dir=o, node_overrides={"conv": {"bits": True}}),
     "bits must be an int such as 8 or 16, got True"),
])
def test_wrong_types_refused_before_any_work(tmp_path, call, match):
    km = ktc.ModelConfig(40000, "0001", 720, onnx_model=conv())
    out = tmp_path / "o"
    with pytest.raises(InvalidConfigError, match=match):
        call(km, out)
    assert not out.exists()


def test_load_threads_wrong_type(tmp_path):
    import onnx

    p = tmp_path / "m.onnx"
    onnx.save(conv(), str(p))
    for bad in ("2", -3, True):
        with pytest.raises(InvalidConfigError, match="threads"):
            npuflow.load(str(p), threads=bad)
