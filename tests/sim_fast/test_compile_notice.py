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
