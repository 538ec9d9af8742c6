"""tests/passes/effect_table.py renders the tables of docs/optimizer.md."""
from __future__ import annotations

import effect_table
from npuflow.passes import PASSES


def test_effect_table_renders_every_model_and_pass(shared):
    results = effect_table.measure(shared)
    text = effect_table.markdown(results)
    for short in effect_table.SHORT.values():
        assert f"| {short} |" in text
    for p in PASSES:
        assert f"`{p}`" in text
    assert all(r.rel_diff <= 1e-4 for r in results)
