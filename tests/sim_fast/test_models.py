"""Fast path == reference path, bit for bit, on every tensor of the shared models, and a batch
equals its samples run one by one.

Each model is analysed on a few calibration inputs (platform 720, int8; efficientnet_lite0 also
int16; yolox_nano also int16 activations with int8 weights, "a16w8"), then run on two evaluation
inputs with ``NPUFLOW_SIM=reference`` and with the fast path:
every tensor (``keep_all``), the per-step counters, and the fused run's outputs must be identical.
mnist (shipped example), efficientnet_lite0 and yolox_nano run by default; the other shared models
with NPUFLOW_SLOW=1.
"""
from __future__ import annotations

import numpy as np
import pytest

from npuflow.sim.kernels import KernelStats

CORE = [("mnist_cntk_opt", "int8"), ("efficientnet_lite0", "int8"), ("efficientnet_lite0", "int16"),
        ("yolox_nano", "int8"), ("yolox_nano", "a16w8")]
SLOW = [("ultraface_rfb_320", "int8"), ("pan_mnv3s_skin_clothes_hair", "int8"),
        ("ch_ppocr_mobile_v2.0_cls_infer", "int8"), ("en_number_mobile_v2.0_rec_infer", "int8"),
        ("en_PP-OCRv3_det_infer", "int8"), ("yolox_nano", "int16"), ("efficientnet_lite0", "a16w8")]
CASES = [pytest.param(*c, id="-".join(c)) for c in CORE] + [
    pytest.param(*c, id="-".join(c), marks=pytest.mark.slow) for c in SLOW]


def _model(task, bits, out):
    import ktc
    import npuflow
    from npuflow.errors import NpuflowError

    calib = list(task.calib_inputs(3))
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path), input_shapes=task.input_shapes)
    from benchmarks.speed import BITWIDTHS

    try:
        bie = km.analysis({k: [c[k] for c in calib] for k in calib[0]}, output_dir=str(out), threads=2,
                          progress=False, **BITWIDTHS[bits])
    except NpuflowError as exc:  # a model the analysis cannot quantize is not this test's subject
        pytest.skip(f"{task.name} cannot be analysed: {exc}")
    return npuflow.load(bie)


@pytest.mark.shared
@pytest.mark.parametrize("name,bits", CASES)
def test_fast_equals_reference_on_every_tensor(name, bits, shared, tmp_path, monkeypatch):
    from benchmarks.tasks import get_task

    task = get_task(name, shared)
    m = _model(task, bits, tmp_path)
    prog = m.program
    xs = list(task.eval_inputs(2))
    for x in xs:
        q = prog.quantize_inputs(x)
        s_ref = [KernelStats() for _ in prog.steps]
        s_fast = [KernelStats() for _ in prog.steps]
        monkeypatch.setenv("NPUFLOW_SIM", "reference")
        ref = prog.run(q, keep_all=True, stats=s_ref)
        monkeypatch.delenv("NPUFLOW_SIM", raising=False)
        fast = prog.run(q, keep_all=True, stats=s_fast)
        assert ref.keys() == fast.keys()
        bad = [k for k in ref if ref[k].dtype != fast[k].dtype or not np.array_equal(ref[k], fast[k])]
        assert not bad, f"{len(bad)} of {len(ref)} tensors differ, first: {bad[:3]}"
        assert s_ref == s_fast
        s_fused = [KernelStats() for _ in prog.steps]
        fused = prog.run(q, stats=s_fused)
        for n in prog.output_names:
            np.testing.assert_array_equal(fused[n], ref[n])
        assert s_fused == s_ref
    # a batch of the two inputs == each alone (float outputs of the loaded object)
    k = task.input_name
    batch = m.run_batch({k: np.concatenate([x[k] for x in xs])}, data_type="fixed")
    one = [m.run(x, data_type="fixed") for x in xs]
    for j, b in enumerate(batch):
        np.testing.assert_array_equal(b, np.concatenate([o[j] for o in one]))


@pytest.mark.parametrize("mode", ["reference", "numpy", ""])
def test_mnist_example_modes_agree(mode, tmp_path, monkeypatch):
    """The shipped example (no shared folder needed): every mode gives the same integers, and
    batches of several sizes equal the per-sample results."""
    import ktc
    import npuflow

    z = np.load("examples/mnist/digits.npz")
    km = ktc.ModelConfig(40000, "0001", 720, onnx_path="examples/mnist/mnist_cntk_opt.onnx")
    bie = km.analysis({"Input3": list(z["calib_x"][:8])}, output_dir=str(tmp_path), progress=False)
    m = npuflow.load(bie)
    xs = z["eval_x"][:5]
    monkeypatch.setenv("NPUFLOW_SIM", "reference")
    ref = [m.run({"Input3": x}, data_type="fixed")[0] for x in xs]
    if mode:
        monkeypatch.setenv("NPUFLOW_SIM", mode)
    else:
        monkeypatch.delenv("NPUFLOW_SIM", raising=False)
    for x, r in zip(xs, ref):
        np.testing.assert_array_equal(m.run({"Input3": x}, data_type="fixed")[0], r)
    for n in (1, 2, 5):
        b = m.run_batch({"Input3": np.concatenate([x[None] if x.ndim == 4 else x for x in xs[:n]])}, data_type="fixed")
        np.testing.assert_array_equal(b[0], np.concatenate(ref[:n]))
