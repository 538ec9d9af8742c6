"""The one-line notice when npuflow's kernels compile (a cold numba cache), and its absence when
they load from the cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from npuflow.sim.fast._nb import COMPILE_NOTICE, HAVE_NUMBA

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import numpy as np
from npuflow.calibration import histogram as H
H._at_least(np.ones(10, np.float32), np.float32(0.5), np.empty(10, np.float32))
H._count_at_least(np.ones(10, np.float32), np.int32(5))
print("ran")
"""


def _run(cache: Path, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "NPUFLOW_QUIET"}
    e.update(NUMBA_CACHE_DIR=str(cache), **env)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=e, timeout=300)


def test_notice_once_when_compiling_none_from_the_cache(tmp_path):
    assert HAVE_NUMBA, "numba missing: install the test extra"
    cold = _run(tmp_path)
    assert cold.returncode == 0 and cold.stdout.strip() == "ran", cold.stderr
    assert cold.stderr.count(COMPILE_NOTICE) == 1  # two kernels compiled, one notice
    warm = _run(tmp_path)
    assert warm.returncode == 0 and COMPILE_NOTICE not in warm.stderr, warm.stderr
    quiet = _run(tmp_path / "other", NPUFLOW_QUIET="1")
    assert quiet.returncode == 0 and COMPILE_NOTICE not in quiet.stderr


def test_missing_numba_warns_once_with_the_cost(monkeypatch):
    """Without numba (no wheel for the platform), the first use of the fast path says so once, with
    the measured slowdown; choosing the numpy path on purpose (NPUFLOW_SIM) gives no warning."""
    import warnings

    from npuflow.errors import NpuflowWarning
    from npuflow.sim.fast import _nb

    monkeypatch.setattr(_nb, "HAVE_NUMBA", False)
    monkeypatch.setattr(_nb, "_fallback_warned", False)
    monkeypatch.delenv("NPUFLOW_SIM", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _nb.use_numba() is False and _nb.use_numba() is False
    notes = [w for w in caught if issubclass(w.category, NpuflowWarning) and "numba is not installed" in str(w.message)]
    assert len(notes) == 1 and "pip install numba" in str(notes[0].message) and "slower" in str(notes[0].message)
    monkeypatch.setattr(_nb, "_fallback_warned", False)
    monkeypatch.setenv("NPUFLOW_SIM", "numpy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _nb.use_numba() is False
    assert not caught
