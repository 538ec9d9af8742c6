"""benchmarks/speed.py: one timed configuration per fresh subprocess (MNIST, one pass), and the
table with its ratios and round ranges; benchmarks/sim_models.py on MNIST."""
from __future__ import annotations

import numpy as np

from benchmarks import speed
from benchmarks.ort_quant import ort_quantize, optimized_model
from benchmarks.tasks import get_task


def test_each_configuration_times_in_its_own_subprocess(shared, tmp_path):
    task = get_task("mnist_cntk_opt", str(shared))
    k = task.input_name
    xs = np.concatenate([f[k] for f in task.eval_inputs(4)])
    files = {"inputs": str(tmp_path / "inputs.npy"), "float": str(task.model_path), "qdq": str(tmp_path / "qdq.onnx")}
    np.save(files["inputs"], xs)
    ort_quantize(task, "MinMax", 4, model=optimized_model(task), output=files["qdq"])
    files["int8"], _ = speed._analyse(task, "int8", 4, tmp_path)
    for config in ("ort_float_b32", "ort_qdq_b1", "fixed_int8_b1", "fixed_int8_b32"):
        res = speed._time_isolated(config, files, k, 2, tmp_path)
        assert len(res["ms"]) == 2 and all(t > 0 for t in res["ms"]), (config, res)
        assert (tmp_path / f"{config}.result.json").is_file()
    assert res["ms"] and "how" not in res  # a fixed configuration
    # mnist_cntk_opt's graph fixes batch 1: its "batch 32" is 32 calls, and the table says so
    assert speed._time_isolated("ort_float_b32", files, k, 1, tmp_path)["how"] == "32 calls (graph fixes batch 1)"


def test_table_ratios_and_round_ranges(capsys):
    row = {"model": "m", "inputs": 32, "ort_float_b32_how": "one call"}
    for i, c in enumerate(speed.CONFIGS):
        row[c] = 2.0 * (i + 1)
        row[c + "_spread"] = (1.5 * (i + 1), 2.5 * (i + 1))
    speed.print_table([row])
    out = capsys.readouterr().out
    assert "[1.5-2.5]" in out  # ORT float b1: its round range
    assert "( 4.00x)" in out  # fixed int8 b1 (8.0) over ORT float b1 (2.0)
    assert "1.50x" in out  # int16 / int8 at batch 1: 12 / 8
    assert "1.40x" in out  # and at batch 32: 14 / 10
    assert "2.00x" in out and "1.80x" in out  # a16w8 / int8: 16 / 8 and 18 / 10


def test_sim_models_measures_one_model(shared, tmp_path):
    from benchmarks import sim_models

    r = sim_models.measure("mnist_cntk_opt", calib=4, inputs=2, repeats=1, out=tmp_path, shared=str(shared))
    assert r["model"] == "mnist_cntk_opt" and r["inputs"] == 2 and r["fixed"] > 0 and r["float"] > 0
    assert list(tmp_path.glob("mnist_cntk_opt/**/*.bie"))  # the analysis ran (in its subprocess)
