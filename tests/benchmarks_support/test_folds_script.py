"""benchmarks/folds.py: every item evaluated once by a model calibrated on the others, the metric
pooled over the folds (the OCR angle classifier, shared: 8 images, 2 folds of 4), its helpers and
its refusals."""
from __future__ import annotations

import json

import pytest

from benchmarks import folds


def test_helpers():
    assert folds._value("false") is False and folds._value("3") == 3 and folds._value("0.5") == 0.5
    assert folds._value("mmse") == "mmse"
    got = folds._scalars({"n": 2, "iou": {"skin": 0.5, "hair": 0.25}, "per_image": {"a": {"x": 1}}, "ok": True})
    assert got == {"n": 2, "iou.skin": 0.5, "iou.hair": 0.25}


def test_folds_cover_every_item_once(shared, tmp_path, capsys):
    out = tmp_path / "folds.json"
    assert folds.main(["ch_ppocr_mobile_v2.0_cls_infer", "--fold-size", "4", "--shared", str(shared),
                       "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    evaluated = [i for f in doc["folds"] for i in f["eval"]]
    assert len(doc["folds"]) == 2 and all(len(f["eval"]) == 4 for f in doc["folds"])
    assert len(evaluated) == len(set(evaluated)) == 8
    assert doc["pooled"]["npuflow"]["n"] == 8 and 0.0 <= doc["pooled"]["npuflow"]["agreement"] <= 1.0
    assert "pooled over the folds:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--fold-size", "0"], "at least 1"),
                                           (["--fold-size", "8"], "leaves none to calibrate on"),
                                           (["--option", "auto_precision"], "KEY=VALUE")])
def test_refusals(shared, argv, message, capsys):
    with pytest.raises(SystemExit):
        folds.main(["ch_ppocr_mobile_v2.0_cls_infer", "--shared", str(shared), *argv])
    assert message in capsys.readouterr().err
