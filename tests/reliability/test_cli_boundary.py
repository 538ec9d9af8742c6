"""Issue 18, "one exception boundary": over the cases of this folder, the CLI exits with 2 and one
line naming the file, node or input; its "internal error" path (exit 3) is for real bugs only."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from npuflow.cli import main

from tests.reliability import _models as M


@pytest.fixture
def files(tmp_path):
    f = {}
    for name, build in (("cycle", M.cycle), ("missing_weight", M.missing_weight), ("two_producers", M.two_producers),
                        ("no_opset", M.no_opset), ("string_input", M.string_input), ("zero_size", M.zero_size_input),
                        ("no_inputs", M.no_inputs), ("conv", M.conv)):
        f[name] = str(M.save(build(), tmp_path / f"{name}.onnx"))
    (tmp_path / "ext").mkdir()
    f["external"] = str(M.external_outside(tmp_path / "ext"))
    f["bad_utf8"] = str(M.bad_utf8(tmp_path / "bad_utf8.onnx"))
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 6, 6), np.float32))
    f["x"] = str(tmp_path / "x.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 2, 6, 6), np.float32))
    f["empty"] = str(tmp_path / "empty.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f["pickle"] = str(tmp_path / "obj.npy")
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (96000, 96000)})
    (tmp_path / "big.npy").write_bytes(hdr.getvalue())
    f["big"] = str(tmp_path / "big.npy")
    with zipfile.ZipFile(tmp_path / "two.npz", "w") as z:
        z.writestr("a.npy", b"")
        z.writestr("b.npy", b"")
    f["two"] = str(tmp_path / "two.npz")
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "0.npy", np.zeros((1, 4), np.float32))
    f["calib"] = str(tmp_path / "calib")
    f["tmp"] = str(tmp_path)
    return f


CASES = {
    # invalid graphs (case 5) and unclear model files
    "optimize cycle": (["optimize", "{cycle}", "-o", "{tmp}/o.onnx"], "node 'add_in_cycle'"),
    "optimize missing weight": (["optimize", "{missing_weight}", "-o", "{tmp}/o.onnx"], "'W_missing' of node 'conv_no_weight'"),
    "optimize two producers": (["optimize", "{two_producers}", "-o", "{tmp}/o.onnx"], "tensor 'y' is defined twice"),
    "evaluate cycle": (["evaluate", "{cycle}", "-p", "720", "-o", "{tmp}/out"], "cycle.onnx: the graph has a cycle"),
    "evaluate missing weight": (["evaluate", "{missing_weight}", "-p", "720", "-o", "{tmp}/out"], "missing_weight.onnx"),
    "evaluate two producers": (["evaluate", "{two_producers}", "-p", "720", "-o", "{tmp}/out"], "second_writer"),
    "infer two producers": (["infer", "{two_producers}", "-i", "x={x}"], "second_writer"),
    "no opset_import": (["optimize", "{no_opset}", "-o", "{tmp}/o.onnx"], "no_opset.onnx has no opset_import"),
    "evaluate no opset_import": (["evaluate", "{no_opset}", "-p", "720", "-o", "{tmp}/out"], "no_opset.onnx has no opset_import"),
    "external data outside": (["infer", "{external}", "-i", "x={x}"], "ext.onnx stores a weight in an external-data file outside"),
    "invalid UTF-8 name": (["evaluate", "{bad_utf8}", "-p", "720", "-o", "{tmp}/out"], "is not valid UTF-8"),
    "STRING input": (["infer", "{string_input}", "-i", "s={x}"], "input 's' has type STRING"),
    "zero-size input": (["infer", "{zero_size}", "-i", "z={x}"], "input 'z' has a zero-size dim"),
    # case 1: a model without inputs
    "analysis no inputs": (["analysis", "{no_inputs}", "-p", "720", "-i", "x={calib}", "-o", "{tmp}/out"],
                           "model 'constant_only' has no inputs"),
    "infer no inputs": (["infer", "{no_inputs}", "-i", "x={x}"], "model 'constant_only' has no inputs"),
    # case 6: options that were ignored
    "infer fixed on ONNX": (["infer", "{conv}", "-i", "x={x}", "--data-type", "fixed"], "conv.onnx is a float ONNX model"),
    "infer platform 999": (["infer", "{conv}", "-i", "x={x}", "-p", "999"], "unknown platform '999'"),
    # case 10 and input files
    "npy claiming 37 GB": (["infer", "{conv}", "-i", "x={big}"], "big.npy declares shape (96000, 96000)"),
    "pickle npy": (["infer", "{conv}", "-i", "x={pickle}"], "obj.npy holds Python objects"),
    "npz with two arrays": (["infer", "{conv}", "-i", "x={two}"], "two.npz holds 2 arrays"),
    "empty batch": (["infer", "{conv}", "-i", "x={empty}", "--batch"], "input 'x' is an empty batch"),
    # writes into a missing folder
    "optimize -o missing folder": (["optimize", "{conv}", "-o", "{tmp}/missing/o.onnx"], "missing does not exist"),
    "infer --save missing folder": (["infer", "{conv}", "-i", "x={x}", "--save", "{tmp}/missing/o.npz"],
                                    "missing does not exist"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_exits_2_with_one_line(case, files, capsys):
    argv, needle = CASES[case]
    rc = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("npuflow: warning")]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"npuflow {argv[0]}: error: ") and "internal error" not in err
    assert needle in lines[0], lines[0]
