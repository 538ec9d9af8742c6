"""Fixtures of the optimizer tests: shared models, their real inputs, optimized once per session.

``trace(name)`` optimizes shared model ``name`` once (compiled at its real input's shape for the
PaddleOCR models) and runs onnxruntime on the model as it stands after *every* pass run, on the
real input of tests/passes/real_inputs.py (see ``effect_table.trace_model``), so that each
pass's semantic test reads its own numbers without running the pipeline again.
"""
from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import effect_table  # noqa: E402
import real_inputs  # noqa: E402


@pytest.fixture(scope="session")
def trace(shared):
    """``trace(name) -> effect_table.Trace`` for a shared model, computed once per session."""
    cache: dict[str, effect_table.Trace] = {}

    def get(name: str) -> effect_table.Trace:
        if name not in cache:
            cache[name] = effect_table.trace_model(shared, name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def load_shared(shared):
    """``load_shared(name) -> ModelProto``: a fresh copy of a shared model each call."""
    raw: dict[str, bytes] = {}

    def get(name: str) -> onnx.ModelProto:
        if name not in raw:
            raw[name] = real_inputs.model_path(shared, name).read_bytes()
        return onnx.load_from_string(raw[name])

    return get
