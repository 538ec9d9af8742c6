"""End-to-end golden for the shipped MNIST model, from a second, independent implementation.

``loop_reference.py`` implements docs/fixed-point.md with explicit Python loops over Python ints,
reading only the BIE (docs/bie-format.md). Here it is run against the bit-exact simulator
(``npuflow.load(bie).run_all``) and the two must agree on EVERY quantized tensor, bit for bit.
The output integers of three shipped evaluation digits are also pinned in ``mnist_golden.txt``
(reviewed; rewrite with ``pytest tests/golden --regen-golden``).

``spec_prepare.py`` re-derives the stored parameters (weights, weight formats, multipliers, shifts,
accumulator width and bound, activation clamps) from the float model and the spec text.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import npuflow

from . import loop_reference as L
from . import spec_prepare as S

GOLDEN = Path(__file__).with_name("mnist_golden.txt")
# indices into eval_x of examples/mnist/digits.npz: the first digit, and two digits whose Gemm output
# saturates at 127, so the golden also pins sat_b() at the output (spec §1, §12);
# test_input_ties_and_saturation_bit_exact crafts saturating inputs for the rest.
GOLDEN_DIGITS = (0, 3, 60)
OUTPUT = "Plus214_Output_0"
CONTAINER = {4: np.int8, 8: np.int8, 16: np.int16, 32: np.int32, 48: np.int64}  # spec §1 'containers'


@pytest.fixture(scope="module")
def bie(mnist_bie) -> L.Bie:
    return L.read_bie(mnist_bie)


@pytest.fixture(scope="module")
def sim(mnist_bie):
    return npuflow.load(str(mnist_bie))


def _compare_all(bie: L.Bie, sim, x: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """Run both implementations on one float input and assert every quantized tensor is identical."""
    ref = L.run(bie, {"Input3": x})
    got = sim.run_all({"Input3": x})
    fmts = bie.formats
    # every quantized tensor of the plan is produced by both, nothing more, nothing less
    assert set(ref) == set(fmts), f"{what}: reference tensors {sorted(ref)} vs plan formats {sorted(fmts)}"
    assert set(got) == set(fmts), f"{what}: simulator tensors {sorted(got)} vs plan formats {sorted(fmts)}"
    for name in fmts:
        want_dtype = CONTAINER[fmts[name].bits]
        assert got[name].dtype == want_dtype, f"{what}: {name} container {got[name].dtype}, spec §1 {want_dtype}"
        np.testing.assert_array_equal(
            got[name].astype(np.int64), ref[name], strict=True,
            err_msg=f"{what}: tensor {name} differs between the simulator (actual) and the loop reference (desired)",
        )
    fixed = sim.run({"Input3": x}, data_type="fixed")
    assert len(fixed) == 1
    np.testing.assert_array_equal(fixed[0].astype(np.int64), ref[OUTPUT], strict=True,
                                  err_msg=f"{what}: run(data_type='fixed') output differs")
    return ref


# ------------------------------------------------------------------------------------------------
# 1. bit-exact, every tensor, three shipped evaluation digits
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index", GOLDEN_DIGITS)
def test_every_tensor_bit_exact(bie, sim, mnist_digits, index):
    _compare_all(bie, sim, mnist_digits["eval_x"][index], f"eval digit {index}")


def test_default_analysis_bit_exact(mnist_bie_default, mnist_digits):
    """The default analysis (compensated weight rounding, spec §3.6: other weight integers, same
    arithmetic) is simulated bit for bit like the loop reference reads it from its BIE."""
    bie_d = L.read_bie(mnist_bie_default)
    assert bie_d.options["weight_rounding"] == "compensated" and bie_d.options["compensated_steps"] == 2
    sim_d = npuflow.load(str(mnist_bie_default))
    for index in GOLDEN_DIGITS:
        _compare_all(bie_d, sim_d, mnist_digits["eval_x"][index], f"eval digit {index} (default analysis)")


# ------------------------------------------------------------------------------------------------
# 2. the reviewed golden integers
# ------------------------------------------------------------------------------------------------
def read_golden(path: Path) -> dict[int, list[int]]:
    rows = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [int(v) for v in line.split()]
        assert len(fields) == 11, f"golden line {line!r}: expected digit index + 10 integers"
        rows[fields[0]] = fields[1:]
    return rows


def write_golden(path: Path, rows: dict[int, list[int]], labels: dict[int, int]) -> None:
    lines = [
        "# npuflow MNIST end-to-end golden (docs/fixed-point.md numerics 1.0, platform 720, int8).",
        "# BIE: ktc.ModelConfig(40000, '0001', 720, onnx_path='examples/mnist/mnist_cntk_opt.onnx')",
        "#      .analysis({'Input3': list(calib_x)}, weight_rounding='nearest') with the 64 calibration digits of",
        "#      examples/mnist/digits.npz (ranges: the default datapath_range_method='auto').",
        "# Integers produced by tests/golden/loop_reference.py (independent loop-level implementation of the",
        "# spec) and equal to the simulator's. Rewrite only on purpose: pytest tests/golden --regen-golden",
        "# Columns: eval_x index, then the 10 int8 integers of Plus214_Output_0 (class 0..9).",
    ]
    for i in sorted(rows):
        ints = " ".join(f"{v:4d}" for v in rows[i])
        arg = int(np.argmax(rows[i]))
        lines.append(f"{i:3d} {ints}  # label {labels[i]}, argmax {arg}")
    path.write_text("\n".join(lines) + "\n")


def test_golden_output_integers(bie, sim, mnist_digits, regen_golden):
    if regen_golden:
        rows = {}
        for i in GOLDEN_DIGITS:
            # only rewrite when the two implementations agree bit for bit
            ref = _compare_all(bie, sim, mnist_digits["eval_x"][i], f"eval digit {i}")
            rows[i] = [int(v) for v in ref[OUTPUT].reshape(-1)]
        write_golden(GOLDEN, rows, {i: int(mnist_digits["eval_y"][i]) for i in GOLDEN_DIGITS})
        return
    golden = read_golden(GOLDEN)
    assert sorted(golden) == sorted(GOLDEN_DIGITS)
    for i in GOLDEN_DIGITS:
        got = sim.run({"Input3": mnist_digits["eval_x"][i]}, data_type="fixed")[0]
        np.testing.assert_array_equal(
            got.reshape(-1).astype(np.int64), np.array(golden[i], dtype=np.int64), strict=True,
            err_msg=f"eval digit {i}: simulator output differs from the reviewed golden {GOLDEN.name} "
            "(if intended: pytest tests/golden --regen-golden, and review the diff)",
        )


def test_golden_file_is_reviewed_format():
    """The file stays small and human-readable: one line per digit, index + 10 integers."""
    text = GOLDEN.read_text()
    data = [ln for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
    assert len(data) == len(GOLDEN_DIGITS)
    for ln in data:
        assert re.fullmatch(r"\s*\d+(\s+-?\d+){10}\s*", ln.split("#", 1)[0])
        assert all(-128 <= v <= 127 for v in read_golden(GOLDEN)[int(ln.split()[0])])


# ------------------------------------------------------------------------------------------------
# 3. the rules the shipped digits do not reach: input ties (to even) and saturation
# ------------------------------------------------------------------------------------------------
def test_input_ties_and_saturation_bit_exact(bie, sim, mnist_digits):
    """The shipped digits (k/255) never hit an exact .5 at the input (f = 2^7), so build one that
    does: every pixel moved onto a half LSB, plus a few values beyond [-1, 1). Spec §1, §12."""
    x = mnist_digits["eval_x"][0].astype(np.float64)
    x = (np.floor(x * 128) + 0.5) / 128                   # every pixel an exact tie
    x[0, 0, 0, :8] = [1.5, -0.7, 2.0, -1.0, 127.5 / 128, -0.5 / 128, 0.5 / 128, -1.5 / 128]
    x = x.astype(np.float32)
    counters = L.Counters()
    L.run(bie, {"Input3": x}, counters)
    assert counters.ties.get("Input3", 0) > 700 and counters.saturated.get("Input3", 0) >= 4
    ref = _compare_all(bie, sim, x, "crafted tie/saturation input")
    # §12 examples: 0.5 -> 0, -0.5 -> 0, -1.5 -> -2, 127.5 -> 128 -> saturates to 127
    assert ref["Input3"][0, 0, 0, :8].tolist() == [127, -90, 127, -128, 127, 0, 0, -2]


# ------------------------------------------------------------------------------------------------
# 4. the stored parameters against the spec text (§1, §3, §4, §5)
# ------------------------------------------------------------------------------------------------
def _mac_steps(bie):
    return [s for s in bie.plan["steps"] if s["op_type"] in ("Conv", "Gemm")]


def test_stored_mac_params_follow_spec(bie):
    assert len(_mac_steps(bie)) == 3
    assert bie.options["weight_bitwidth_mode"] == "int8" and bie.meta["npuflow.platform"] == "720"
    for step in _mac_steps(bie):
        p = bie.decode(step["params"])
        out = p["out"]
        want = S.expected_mac(bie, step)
        name = step["name"]
        w = p["w_q"] if step["op_type"] == "Conv" else p["b_q"]
        assert w == want["w_q"], f"{name}: quantized weights differ from §3/§1"
        if step["op_type"] == "Gemm":
            assert p["b_format"].axis == want["axis"]
            assert list(p["b_format"].radix) == want["w_radix"], f"{name}: weight radixes differ from §3"
            assert list(p["b_format"].scale) == want["w_scale"], f"{name}: weight scales differ from §3"
            assert not p["trans_a"] and not p["trans_b"]
        assert out["mult"] == want["mult"], f"{name}: multipliers differ from §4/§5.2"
        assert out["shift"] == want["shift"], f"{name}: shifts differ from §4/§5.2"
        assert out["acc_bits"] == want["acc_bits"] == 32
        # §5.1 acc_bound from the *stored* weights and bias, and it proves no accumulator can saturate
        in_bits = bie.formats[step["inputs"][0]].bits
        chans = np.moveaxis(np.array(w, dtype=object), want["axis"], 0)
        bound = max((1 << (in_bits - 1)) * sum(abs(int(v)) for v in chans[c].reshape(-1)) + abs(out["bias"][c])
                    for c in range(chans.shape[0]))
        assert out["acc_bound"] == bound and bound < 2 ** 31
        assert out["bias_saturated"] == 0
        # the fused activation is the float graph's
        assert out["act"]["kind"] == {"Relu": "relu", None: "none"}[want["act"]]


@pytest.mark.xfail(strict=True, reason=(
    "the stored bias includes the analytical bias correction of docs/fixed-point.md §3.3 (defined "
    "since numerics 1.1, from calibration means the BIE does not store); this independent check "
    "re-derives the plain §3 bias only, so it must differ"))
def test_stored_bias_follows_spec_section_3(bie):
    for step in _mac_steps(bie):
        assert bie.decode(step["params"])["out"]["bias"] == S.expected_mac(bie, step)["bias"], step["name"]


def test_activation_formats_follow_spec(bie):
    fmts = bie.formats
    for name, f in fmts.items():
        assert f.axis is None and f.bits == 8
        assert S.check_activation_format(f, name in bie.plan["input_names"]) == [], name
    for step in bie.plan["steps"]:
        src = [n for n in step["inputs"] if n][0]
        if step["op_type"] in ("MaxPool", "Reshape"):  # §2: output = input format
            assert fmts[step["outputs"][0]] == fmts[src], step["name"]


def test_requant_ties_are_unreachable_in_this_model(bie):
    """Documents a coverage limit: with these multipliers an exact tie in RNE(acc*M/2^(31+shift))
    needs |acc| >= 2^(30+shift-v2(M)), far above acc_bound, so the MNIST golden can only exercise
    tie-to-even at the input quantization (test above), never in the integer core."""
    for step in _mac_steps(bie):
        out = bie.decode(step["params"])["out"]
        assert not any(S.requant_has_reachable_tie(m, s, out["acc_bound"]) for m, s in zip(out["mult"], out["shift"]))


# ------------------------------------------------------------------------------------------------
# 5. the loop reference's own primitives against the spec's examples (§12)
# ------------------------------------------------------------------------------------------------
def test_reference_primitives():
    assert [L.rne_div(n, 2) for n in (1, 3, 5, -5, -1, -3)] == [0, 2, 2, -2, 0, -2]
    assert [L.rne_div(n, 4) for n in (5, 6, 7, -6, 10)] == [1, 2, 2, -2, 2]
    assert L.sat(200, 8) == 127 and L.sat(-200, 8) == -128 and L.sat(-8, 4) == -8 and L.sat(8, 4) == 7
    assert L.requantize(3, 1 << 30, 0) == 2 and L.requantize(5, 1 << 30, 0) == 2   # 1.5 -> 2, 2.5 -> 2
    assert L.requantize(7, 1 << 30, -1) == 7                                        # identity M, shift
    # int4: low nibble first, two's complement
    assert L.unpack_int4([0x8F, 0x07, 0x0A], 5) == [-1, -8, 7, 0, -6]
    assert S.multiplier_shift(1.0, 0) == (1 << 30, -1)
    assert S.multiplier_shift(-0.75, 3) == (-(3 << 29), -3)
    assert S.ceil_log2(1.0) == 0 and S.ceil_log2(1.0000001) == 1 and S.ceil_log2(21.6) == 5
    assert S.range_format(21.6, 8)[0] == 2 and abs(S.range_format(21.6, 8)[1] - 1.470) < 1e-3  # §3 example


# ------------------------------------------------------------------------------------------------
# 6. all 64 shipped evaluation digits (slow: about 15 s)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_all_eval_digits_bit_exact(bie, sim, mnist_digits):
    for i in range(len(mnist_digits["eval_x"])):
        _compare_all(bie, sim, mnist_digits["eval_x"][i], f"eval digit {i}")
