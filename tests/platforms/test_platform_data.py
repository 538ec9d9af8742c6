"""Platform descriptions: loading, lookup, validation of the JSON data."""
from __future__ import annotations

import copy
import json
from importlib import resources

import pytest

from npuflow.errors import InvalidConfigError
from npuflow.platforms import (
    PLATFORMS,
    Platform,
    PlatformDataError,
    cost_model_spec,
    cpu_ops,
    get_platform,
    load_platform_file,
)


def _raw(pid: int) -> dict:
    return json.loads(resources.files("npuflow.platforms").joinpath(f"kl{pid}.json").read_text())


def test_platform_ids():
    assert PLATFORMS == (520, 720, 530, 630, 730)


@pytest.mark.parametrize("value", [520, "520", "kl520", "KL520", " kl520 "])
def test_get_platform_aliases(value):
    p = get_platform(value)
    assert isinstance(p, Platform) and p.id == 520 and p.name == "KL520"
    assert get_platform(p) is p


@pytest.mark.parametrize("value", [521, "abc", "kl", None, 520.0, True, "kl999"])
def test_get_platform_rejects_with_allowed_list(value):
    with pytest.raises(InvalidConfigError) as exc:
        get_platform(value)
    msg = str(exc.value)
    for pid in PLATFORMS:
        assert str(pid) in msg


def test_op_table_sizes_match_inventory():
    sizes = {pid: len(get_platform(pid).npu_ops) for pid in PLATFORMS}
    assert sizes == {520: 22, 720: 36, 530: 44, 630: 44, 730: 53}
    assert set(get_platform(530).npu_ops) == set(get_platform(630).npu_ops)
    # every generation is a superset of the previous one
    assert set(get_platform(520).npu_ops) < set(get_platform(720).npu_ops) < set(get_platform(530).npu_ops) < set(get_platform(730).npu_ops)


def test_some_table_entries():
    p520, p720, p730 = (get_platform(i) for i in (520, 720, 730))
    for op in ("Sigmoid", "Mul", "Slice", "Reshape", "Transpose", "MatMul"):
        assert not p520.npu_supports(op) and p720.npu_supports(op)
    assert not p720.npu_supports("Softmax") and get_platform(530).npu_supports("Softmax")
    assert p730.npu_supports("LayerNormalization") and not get_platform(630).npu_supports("LayerNormalization")
    for pid in PLATFORMS:
        p = get_platform(pid)
        for op in ("LSTM", "GRU", "Shape", "Cast", "ArgMax", "TopK", "Where"):
            assert not p.npu_supports(op) and p.cpu_supports(op)


def test_cpu_ops_cover_npu_ops():
    cpu = cpu_ops()
    for pid in PLATFORMS:
        assert set(get_platform(pid).npu_ops) <= cpu


def test_bitwidths():
    assert get_platform(520).bitwidths["datapath"] == (8,)
    assert get_platform(520).bitwidths["weight"] == (8,)
    for pid in (720, 530, 630, 730):
        assert 16 in get_platform(pid).bitwidths["datapath"]
    assert [pid for pid in PLATFORMS if 4 in get_platform(pid).bitwidths["weight"]] == [730]
    with pytest.raises(InvalidConfigError, match="int16"):
        get_platform(520).check_bits("datapath", 16)


def test_every_figure_has_a_source():
    for pid in PLATFORMS:
        hw = get_platform(pid).hardware
        for key, fig in hw.items():
            assert fig.kind in ("sourced", "fitted", "assumed", "inferred"), (pid, key)
            assert len(fig.source) > 20
        assert hw["mac_efficiency"].kind == "fitted"
        assert hw["peak_int8_tops"].kind == "sourced"
        assert hw["channel_lanes"].kind == "sourced"
        assert 0 < hw["mac_efficiency"].value <= 1.0
    assert get_platform(520).hardware["rdma_bandwidth"].kind == "sourced"
    assert get_platform(520).figure("rdma_bandwidth") == pytest.approx(0.8)
    spec = cost_model_spec()
    assert spec.constants["channelwise_utilisation"].kind == "fitted"
    assert 0 < spec.constant("channelwise_utilisation") <= 1


def test_peak_macs():
    assert get_platform(520).peak_macs_per_s == pytest.approx(0.15e12)
    assert get_platform(730).peak_macs_per_s == pytest.approx(1.8e12)


def test_new_platform_is_data_only():
    raw = copy.deepcopy(_raw(720))
    raw["id"], raw["name"] = 999, "KL999"
    raw["npu_ops"]["Softmax"] = []
    p = load_platform_file(raw, name="kl999.json")
    assert p.id == 999 and p.npu_supports("Softmax") and p.figure("peak_int8_tops") == 1.4


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("hardware"), "missing key"),
        (lambda d: d["npu_ops"].__setitem__("Conv", [{"of": "attr:kernel_shape"}]), "exactly one comparison"),
        (lambda d: d["npu_ops"].__setitem__("Conv", [{"of": "bogus", "max": 1}]), "'of' must start"),
        (lambda d: d["npu_ops"].__setitem__("Conv", [{"of": "attr:k", "max": 1, "typo": 2}]), "unknown keys"),
        (lambda d: d["npu_ops"].__setitem__("FancyOp", []), "missing from cpu_ops"),
        (lambda d: d["hardware"].pop("peak_int8_tops"), "figures missing"),
        (lambda d: d["hardware"]["peak_int8_tops"].__setitem__("source", "trust me"), "source must start"),
        (lambda d: d["hardware"]["peak_int8_tops"].__setitem__("value", -1), "non-negative"),
        (lambda d: d["bitwidths"].__setitem__("datapath", [12]), "bitwidths.datapath"),
    ],
)
def test_validation_rejects_bad_data(mutate, match):
    raw = copy.deepcopy(_raw(520))
    mutate(raw)
    with pytest.raises(PlatformDataError, match=match):
        load_platform_file(raw, name="bad.json")
