"""build_program's per-step memo (the report rebuilds the program once per measured suggestion):
a rebuild reuses the parameters of every step whose inputs, outputs, override and options are
unchanged, and gives exactly the program a build without the memo gives."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import ktc
from npuflow.analysis.program import build_program
from npuflow.analysis.ranges import NodeOverride, QuantOptions
from npuflow.errors import CompatibilityWarning

from tests.conftest import EXAMPLES

MNIST = str(EXAMPLES / "mnist" / "mnist_cntk_opt.onnx")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with np.load(EXAMPLES / "mnist" / "digits.npz", allow_pickle=False) as z:
        digits = {k: z[k] for k in z.files}
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=MNIST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatibilityWarning)
        km.analysis({"Input3": list(digits["calib_x"][:32])}, output_dir=tmp_path_factory.mktemp("memo"),
                    threads=1, report=False)
    return km.analysis_result, digits["eval_x"][:6]


def _build(res, opts):
    p = res.program
    return build_program(res.optimized, res.steps, res.stats, opts, p.input_names, p.output_names,
                         channel_means=res.channel_means.get, weight_moments=res.weight_moments)


def _outputs(prog, xs):
    outs = []
    for x in xs:
        r = prog.run(prog.quantize_inputs({"Input3": x.reshape(1, 1, 28, 28).astype(np.float32)}))
        outs.append([r[n] for n in prog.output_names])
    return outs


def _fresh(res, opts):
    for st in res.steps:
        st.memo.clear()
    return _build(res, opts)


@pytest.mark.parametrize("change", ["override", "nearest", "int16"])
def test_memoised_rebuild_equals_fresh_build(result, change):
    res, xs = result
    base_opts = QuantOptions()
    base = _build(res, base_opts)
    convs = [k for k, st in enumerate(res.steps) if st.op_type == "Conv"]
    k = convs[-1]
    if change == "override":  # what the report's per-layer suggestion does
        opts = dataclasses.replace(base_opts, overrides={res.steps[k].nodes[0]: NodeOverride(bits=16)})
    elif change == "nearest":  # an option that only the memo key (not the formats) can tell apart
        opts = dataclasses.replace(base_opts, weight_rounding="nearest")
    else:
        opts = dataclasses.replace(base_opts, datapath_bits=16)
    warm = _build(res, opts)
    if change == "override":
        assert all(warm.params[i] is base.params[i] for i in range(k) if base.params[i] is not None)
        assert warm.params[k] is not base.params[k]
    else:
        assert all(warm.params[i] is not base.params[i] for i in convs)
    fresh = _fresh(res, opts)
    assert fresh.formats == warm.formats
    for a, b in zip(_outputs(warm, xs), _outputs(fresh, xs)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    again = _fresh(res, base_opts)  # the base program is unchanged by the other builds
    for a, b in zip(_outputs(base, xs), _outputs(again, xs)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_forget_prepared_keeps_only_the_given_program(result):
    """After the report, only the kept program's parameters stay memoised (the variants' would
    keep their simulator sessions alive as long as the analysis result)."""
    from npuflow.analysis.program import forget_prepared

    res, xs = result
    base = _build(res, QuantOptions())
    k = [i for i, st in enumerate(res.steps) if st.op_type == "Conv"][-1]
    _build(res, dataclasses.replace(QuantOptions(), overrides={res.steps[k].nodes[0]: NodeOverride(bits=16)}))
    prepared = lambda: [v[0][0] for st in res.steps for key, v in st.memo.items() if key[0] == "prepared"]  # noqa: E731
    assert len(prepared()) > len([p for p in base.params if p is not None])
    forget_prepared(res.steps, base.params)
    assert {id(p) for p in prepared()} == {id(p) for p in base.params if p is not None}
    again = _build(res, QuantOptions())  # still memoised: the same objects
    assert all(a is b for a, b in zip(again.params, base.params))
