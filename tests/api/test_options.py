"""The options objects of evaluate() and analysis() (``npuflow.flow.options``): every check, through
``ModelConfig`` as a ktc script calls it (nothing is written before an option is refused) and on the
dataclasses directly; the warnings point at the caller's line; ModelConfig's signatures and the
dataclasses list the same options."""
from __future__ import annotations

import dataclasses
import inspect
import warnings

import pytest

import ktc
from npuflow.analysis.ranges import NodeOverride, QuantOptions
from npuflow.errors import CompatibilityWarning, InvalidConfigError, NotAvailableError
from npuflow.flow import AnalysisOptions, EvaluateOptions
from npuflow.platforms import get_platform

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")
P720 = get_platform(720)

# (keyword arguments of analysis(), error class, message pattern): one row per check
ANALYSIS_REFUSALS = [
    (dict(quantize_mode="sigmoid"), InvalidConfigError, "quantize_mode must be 'default' or 'post_sigmoid'"),
    (dict(datapath_range_method="kl"), InvalidConfigError, "datapath_range_method must be 'auto', 'percentage' or 'mmse'"),
    (dict(percentage=0.4), InvalidConfigError, r"percentage must be a number in \[0.5, 1.0\]"),
    (dict(percentage="0.99"), InvalidConfigError, "percentage must be a number"),
    (dict(percentage=True), InvalidConfigError, "percentage must be a number"),
    (dict(percentage_16b=1.5), InvalidConfigError, r"percentage_16b must be a number in \[0.5, 1.0\]"),
    (dict(percentile=0.0), InvalidConfigError, r"percentile must be a number in \(0.0, 0.5\]"),
    (dict(percentile=0.6), InvalidConfigError, "percentile must be a number"),
    (dict(outlier_factor=0.05), InvalidConfigError, r"outlier_factor must be a number in \[0.1, 100.0\]"),
    (dict(percentage=0.9999, percentage_16b=0.999), InvalidConfigError, r"percentage \(0.9999\) must be <= percentage_16b"),
    (dict(threads=0), InvalidConfigError, "threads must be a positive int"),
    (dict(threads=2.0), InvalidConfigError, "threads must be a positive int"),
    (dict(threads=True), InvalidConfigError, "threads must be a positive int"),
    (dict(mode=0), InvalidConfigError, "mode=0.*call evaluate"),
    (dict(mode=4), InvalidConfigError, "mode must be 1, 2 or 3"),
    (dict(optimize=5), InvalidConfigError, r"optimize must be 0..4"),
    (dict(optimize="3"), InvalidConfigError, r"optimize must be 0..4"),
    (dict(weight_rounding="stochastic"), InvalidConfigError, "weight_rounding must be 'compensated' or 'nearest'"),
    (dict(auto_precision="no"), InvalidConfigError, "auto_precision must be True or False"),
    (dict(report="yes"), InvalidConfigError, "report must be True or False"),
    (dict(report_samples=0), InvalidConfigError, "report_samples must be a positive int"),
    (dict(report_samples=True), InvalidConfigError, "report_samples must be a positive int"),
    (dict(export_dynasty_dump=1), InvalidConfigError, "export_dynasty_dump must be True or False"),
    (dict(flops_ratio=0.0, datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw"), InvalidConfigError,
     r"flops_ratio must be a number in \(0, 1\]"),
    (dict(flops_ratio=1.5, datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw"), InvalidConfigError,
     r"flops_ratio must be a number in \(0, 1\]"),
    (dict(flops_ratio="0.2", datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw"), InvalidConfigError,
     r"flops_ratio must be a number"),
    (dict(datapath_bitwidth_mode=8), InvalidConfigError, "datapath_bitwidth_mode must be a string"),
    (dict(weight_bitwidth_mode="mixbw"), InvalidConfigError,
     r"datapath_bitwidth_mode='int8' with weight_bitwidth_mode='mixbw' is not a valid mixbw combination; valid ones"),
    (dict(datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="int8"), InvalidConfigError,
     r"\('mixbw', 'int16'\), \('int16', 'mixbw'\), \('mixbw', 'mixbw'\)"),
    (dict(model_out_bitwidth_mode="mixbw"), InvalidConfigError, "the mixed modes apply to datapath_bitwidth_mode and"),
    (dict(model_in_bitwidth_mode="int4"), InvalidConfigError, r"model_in_bitwidth_mode='int4' is not allowed on platform 720"),
    (dict(weight_bitwidth_mode="int4"), InvalidConfigError, "platforms that allow it: 730"),
    (dict(cpu_node_bitwidth_mode="float"), InvalidConfigError, "cpu_node_bitwidth_mode='float' is not allowed"),
    (dict(model_out_bitwidth_mode="int32"), InvalidConfigError, "model_out_bitwidth_mode='int32' is not allowed"),
    (dict(compiler_tiling="fast"), InvalidConfigError, "compiler_tiling must be one of"),
    (dict(weight_bandwidth=0), InvalidConfigError, "weight_bandwidth must be a positive number in GB/s"),
    (dict(dma_bandwidth="fast"), InvalidConfigError, "dma_bandwidth must be a positive number in GB/s"),
    (dict(node_overrides=[("Convolution28", 16)]), InvalidConfigError, "node_overrides must be a dict"),
    (dict(node_overrides={"Convolution28": {"bitz": 16}}), InvalidConfigError, "must be a dict with keys among bits"),
    (dict(node_overrides={"Convolution28": 16}), InvalidConfigError, "must be a dict with keys among bits"),
    (dict(node_overrides={"Convolution28": {"bits": 12}}), InvalidConfigError, r"bits=12 not allowed on KL720"),
    (dict(node_overrides={"Convolution28": {"weight_bits": 4}}), InvalidConfigError, r"weight_bits=4 not allowed on KL720"),
    (dict(node_overrides={"Convolution28": {"abs_max": -1.0}}), InvalidConfigError, "abs_max must be a positive finite number"),
    (dict(outlier=0.99), InvalidConfigError, r"analysis\(outlier=...\): removed in ktc v0.22"),
    (dict(bitwidth_mode="int8"), InvalidConfigError, "bitwidth_mode=...\\): removed"),
    (dict(skip_verify=True), InvalidConfigError, "skip_verify"),
    (dict(output_bie="x.bie"), InvalidConfigError, "use output_dir"),
    (dict(km_cut=True), InvalidConfigError, "km_cut=...\\): not available"),
    (dict(no_such_option=1), InvalidConfigError, "analysis got unknown parameter 'no_such_option'"),
]


@pytest.fixture(scope="module")
def km():
    return ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)


@pytest.mark.parametrize("kwargs, error, match", ANALYSIS_REFUSALS, ids=lambda v: None)
def test_analysis_refuses_before_any_work(km, tmp_path, kwargs, error, match):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        km.analysis({"Input3": []}, output_dir=out, **kwargs)
    assert not out.exists(), "an option was refused after the output folder was made"


@pytest.mark.parametrize("kwargs, error, match", [r for r in ANALYSIS_REFUSALS if "outlier" not in r[0] and "bitwidth_mode"
                                                 not in r[0] and not {"skip_verify", "output_bie", "km_cut",
                                                                      "no_such_option"} & set(r[0])])
def test_analysis_options_refuse_directly(kwargs, error, match):
    with pytest.raises(error, match=match):
        AnalysisOptions(platform=P720, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(datapath_bitwidth_mode="int16"), "not allowed on platform 520"),
    (dict(weight_bandwidth=-1.0), "weight_bandwidth must be a positive number"),
    (dict(dma_bandwidth=True), "dma_bandwidth must be a positive number"),
    (dict(compiler_tiling="none"), "compiler_tiling must be one of"),
])
def test_evaluate_refuses_before_any_work(tmp_path, kwargs, match):
    out = tmp_path / "out"
    with pytest.raises(InvalidConfigError, match=match):
        ktc.ModelConfig(40000, "0001", 520, onnx_path=MNIST).evaluate(output_dir=out, **kwargs)
    assert not out.exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode=2), "no csim/bit-true-match stage"),
    (dict(optimize=4), "feature-map-cut search"),
    (dict(compiler_tiling="deep_search"), "no tiling search"),
    (dict(fm_cut="deep_search"), "fm_cut was renamed compiler_tiling"),
])
def test_analysis_warnings_point_at_the_callers_line(km, tmp_path, kwargs, match):
    """Each warning is raised once and attributed to this file (the user's script), not to npuflow."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidConfigError, match="node_overrides must be a dict"):  # checked last: no work done
            km.analysis({"Input3": []}, output_dir=tmp_path / "o", node_overrides=["x"], **kwargs)
    found = [w for w in caught if match in str(w.message)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert found[0].filename == __file__ and issubclass(found[0].category, CompatibilityWarning)


def test_warnings_attributed_to_the_caller(km, tmp_path):
    for kwargs, match in ((dict(mode=3), "no csim"), (dict(optimize=2), "feature-map-cut"),
                          (dict(compiler_tiling="partial_graph_search"), "no tiling search")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            AnalysisOptions(platform=P720, **kwargs)
        found = [w for w in caught if match in str(w.message)]
        assert len(found) == 1 and found[0].filename == __file__ and issubclass(found[0].category, CompatibilityWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ktc.ModelConfig(40000, "0001", 520, onnx_path=MNIST).evaluate(output_dir=tmp_path, compiler_tiling="deep_search")
    found = [w for w in caught if "the 520 always uses default tiling" in str(w.message)]
    assert len(found) == 1 and found[0].filename == __file__


def test_signatures_and_options_list_the_same_names():
    """A new option is a field of the dataclass and a parameter of the ModelConfig method, never one alone."""
    fields = {f.name for f in dataclasses.fields(AnalysisOptions)} - {"platform"}
    params = set(inspect.signature(ktc.ModelConfig.analysis).parameters) - {"self", "input_mapping", "report_inputs", "legacy"}
    assert fields == params
    fields = {f.name for f in dataclasses.fields(EvaluateOptions)} - {"platform"}
    params = set(inspect.signature(ktc.ModelConfig.evaluate).parameters) - {"self"}
    assert fields == params
    for cls, method in ((AnalysisOptions, ktc.ModelConfig.analysis), (EvaluateOptions, ktc.ModelConfig.evaluate)):
        sig = inspect.signature(method).parameters
        for f in dataclasses.fields(cls):
            if f.name in sig:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                assert sig[f.name].default == default or (sig[f.name].default is None and default == {}), f.name


def test_options_are_frozen_and_derive_the_numerics():
    o = AnalysisOptions(platform=P720, datapath_bitwidth_mode="int16", percentage=1, percentage_16b=1, quantize_mode="post_sigmoid",
                        optimize=3, node_overrides={"n": {"bits": 16, "abs_max": 2}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.threads = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.node_overrides["m"] = NodeOverride(bits=8)  # type: ignore[index]
    assert o.bits == {"datapath": 16, "weight": 8, "model_in": 8, "model_out": 8, "cpu_node": 16}
    q = o.quant
    assert isinstance(q, QuantOptions) and q.datapath_bits == 16 and q.percentage == 1.0 and isinstance(q.percentage, float)
    assert q.post_sigmoid and q.bias_adjust == 32 and q.overrides == {"n": NodeOverride(bits=16, abs_max=2)}
    rec = o.record(bias_adjusted_steps=1, compensated_steps=2, calibration_samples=3)
    assert rec["percentage"] == 1 and rec["node_overrides"] == {"n": {"bits": 16, "abs_max": 2}}
    assert list(rec)[:4] == ["optimize", "bias_adjusted_steps", "weight_rounding", "compensated_steps"]
    assert AnalysisOptions(platform=P720).quant == QuantOptions()


def test_cpu_node_width_follows_the_datapath_unless_given():
    """cpu_node_bitwidth_mode=None (the default) takes the datapath's width (ktc: int8 always): a 16-bit
    datapath with 8-bit CPU-node boundaries is almost never what is meant (docs/compatibility.md)."""
    assert AnalysisOptions(platform=P720).bits["cpu_node"] == 8
    assert AnalysisOptions(platform=P720, datapath_bitwidth_mode="int16").cpu_node_bitwidth_mode == "int16"
    assert AnalysisOptions(platform=P720, datapath_bitwidth_mode="int16", cpu_node_bitwidth_mode="int8").bits["cpu_node"] == 8
    assert EvaluateOptions(platform=P720, datapath_bitwidth_mode="int16").bits["cpu_node"] == 16
    assert AnalysisOptions(platform=P720, datapath_bitwidth_mode="mix light").cpu_node_bitwidth_mode == "int8"
    assert AnalysisOptions(platform=P720, datapath_bitwidth_mode="mixbw", weight_bitwidth_mode="mixbw").bits["cpu_node"] == 16
    rec = AnalysisOptions(platform=P720, datapath_bitwidth_mode="int16").record(
        bias_adjusted_steps=0, compensated_steps=0, calibration_samples=1)
    assert rec["cpu_node_bitwidth_mode"] == "int16"  # the BIE records the width used
