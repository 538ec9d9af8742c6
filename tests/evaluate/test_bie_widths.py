"""``evaluate()`` of a BIE estimates with the BIE's own widths (every tensor and weight as
quantized), as the analysis report's ``summary.fps`` does; bit-width modes given to it are ignored
with a warning."""
from __future__ import annotations

import json
import warnings

import pytest

import npuflow
from npuflow.errors import OptionEffectWarning


def _fps(folder) -> float:
    return json.loads((folder / "model_fx_report.json").read_text())["summary"]["fps"]


@pytest.fixture(scope="module")
def bies(tmp_path_factory, mnist_example, mnist_digits):
    out = {}
    for mode in ("int8", "int16"):
        d = tmp_path_factory.mktemp(mode)
        km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(mnist_example))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bie = km.analysis({"Input3": list(mnist_digits["calib_x"][:16])}, output_dir=str(d), threads=1,
                              datapath_bitwidth_mode=mode, model_in_bitwidth_mode=mode, model_out_bitwidth_mode=mode)
        out[mode] = (bie, _fps(d))
    return out


def test_bie_evaluate_uses_the_bie_widths(tmp_path, bies):
    for mode, (bie, analysed_fps) in bies.items():
        km = npuflow.ModelConfig(40000, "0001", "720", bie_path=bie)
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptionEffectWarning)  # defaults: nothing to say
            km.evaluate(output_dir=str(tmp_path / mode))
        assert _fps(tmp_path / mode) == pytest.approx(analysed_fps, rel=1e-9), mode
    assert bies["int16"][1] < bies["int8"][1]  # the widths do reach the estimate


def test_bie_evaluate_ignores_given_modes_with_a_warning(tmp_path, bies):
    bie, analysed_fps = bies["int16"]
    km = npuflow.ModelConfig(40000, "0001", "720", bie_path=bie)
    with pytest.warns(OptionEffectWarning, match="datapath_bitwidth_mode='int16' is ignored"):
        km.evaluate(output_dir=str(tmp_path / "o"), datapath_bitwidth_mode="int16")
    assert _fps(tmp_path / "o") == pytest.approx(analysed_fps, rel=1e-9)
