"""The validator itself: it knows every params field, compares versions as versions, accepts
every file the analysis writes (many kernels, CPU steps, every platform and width) and leaves the
loaded program identical to what was written."""
from __future__ import annotations

import dataclasses

import pytest

import npuflow
from npuflow.bie import check_bie, read_bie
from npuflow.bie.validate import PARAMS_FIELDS, PARAMS_OF, check_version, parse_version
from npuflow.errors import ModelLoadError
from npuflow.sim.kernels import KERNELS
from npuflow.sim.kernels.base import params_to_dict

from ._models import zoo_inputs, zoo_model


def test_every_kernel_has_a_params_class():
    assert set(PARAMS_OF) == set(KERNELS)


def test_every_params_field_is_decoded():
    """A new field of a kernel's params class must get a decoder (and its checks) here first."""
    for cls, spec in PARAMS_FIELDS.items():
        assert set(spec) == {f.name for f in dataclasses.fields(cls)}, cls.__name__
    assert set(PARAMS_OF.values()) <= set(PARAMS_FIELDS)


@pytest.mark.parametrize("text, want", [("1.0", (1, 0)), ("1.09", (1, 9)), ("1.1", (1, 1)), ("12.345", (12, 345)),
                                        ("1", None), ("1.1.1", None), ("v1.0", None), ("", None), (" 1.0", None),
                                        ("1.x", None), (None, None), ("1.-1", None),
                                        ("\u0661.\u0660", None), ("1.\u00b2", None)])
def test_parse_version(text, want):
    assert parse_version(text) == want


@pytest.mark.parametrize("stored, outcome", [("1.1", None), ("1.0", None), ("1.2", "newer"), ("1.09", "newer"),
                                             ("1.10", "newer"), ("2.0", "newer"), ("0.9", "older"),
                                             ("0.99", "older"), ("1", "malformed"), ("abc", "malformed")])
def test_versions_compared_as_versions(stored, outcome):
    if outcome is None:
        assert check_version("f.bie", "numerics", stored, "1.1") == parse_version(stored)
        return
    with pytest.raises(ModelLoadError, match=outcome) as ei:
        check_version("f.bie", "numerics", stored, "1.1")
    assert "f.bie" in str(ei.value)
    if outcome != "newer":
        assert "upgrade" not in str(ei.value)


@pytest.mark.filterwarnings("ignore::npuflow.errors.OptionEffectWarning")
@pytest.mark.parametrize("platform, kw", [
    (720, {}),
    (720, {"datapath_bitwidth_mode": "int16", "weight_bitwidth_mode": "int16", "model_out_bitwidth_mode": "int16"}),
    (730, {"weight_bitwidth_mode": "int4"}),
    (520, {}),
], ids=["720-int8", "720-int16", "730-int4", "520"])
def test_analysis_output_is_valid_and_unchanged(platform, kw, tmp_path):
    """Every file the analysis writes passes, and the validated program is the one written."""
    import ktc

    km = ktc.ModelConfig(40000, "0001", platform, onnx_model=zoo_model())
    path = km.analysis({"x": zoo_inputs()}, output_dir=str(tmp_path), threads=1, report=False, **kw)
    assert "valid npuflow BIE" in check_bie(path)
    written = km.analysis_result.program
    loaded = read_bie(path).program
    assert [(s.name, s.op_type, s.inputs, s.outputs) for s in loaded.steps] == [
        (s.name, s.op_type, [x or None for x in s.inputs], s.outputs) for s in written.steps]
    assert loaded.formats == written.formats
    for a, b in zip(loaded.params, written.params):
        assert (a is None) == (b is None)
        if a is not None:
            assert params_to_dict(a) == params_to_dict(b)
    m = npuflow.load(path)
    for y, name in zip(m.run({"x": zoo_inputs(1, seed=5)[0]}, data_type="fixed"), m.output_names):
        f = m.program.formats[name]
        assert y.dtype == f.dtype and f.qmin <= y.min() and y.max() <= f.qmax


def test_no_kernel_runs_before_validation(monkeypatch, mnist_bie, tmp_path):
    """Loading runs no kernel at all: validation is static."""
    from npuflow.sim import kernels

    for k in kernels.KERNELS.values():
        monkeypatch.setattr(k, "eval", lambda *a, **kw: pytest.fail("a kernel ran while loading"))
        monkeypatch.setattr(k, "prepare", lambda *a, **kw: pytest.fail("a kernel prepared while loading"))
    read_bie(mnist_bie)
