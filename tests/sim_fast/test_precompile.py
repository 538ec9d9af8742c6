"""Kernels compiled at install time (npuflow/sim/fast/precompile.py, run by setup.py's build_py):
the recorded signatures still name real kernels and parse, the build needs only numpy and numba
(no onnx: pip's build environment), and a later process loads them from the kernel cache instead
of compiling (unless NUMBA_CACHE_DIR is set, which wins)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from npuflow.sim.fast._nb import HAVE_NUMBA

REPO = Path(__file__).resolve().parents[2]
PRECOMPILE = REPO / "src" / "npuflow" / "sim" / "fast" / "precompile.py"
KERNEL = "histogram._count"  # one cheap kernel of the recorded list

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba missing: install the test extra")

# compile (or load) every recorded signature of KERNEL; print how many really compiled
LOAD = f"""
from numba.core import event
compiled = []
class L(event.Listener):
    def on_start(self, e): compiled.append(1)
    def on_end(self, e): pass
event.register("numba:compile", L())
from npuflow.sim.fast import precompile
from npuflow.sim.fast._signatures import SIGNATURES
k = precompile._import_kernels()[{KERNEL!r}]
for s in SIGNATURES[{KERNEL!r}]:
    k.compile(precompile.parse_signature(s))
print("compiled", len(compiled))
"""

# precompile.py as pip's build runs it, in a process where onnx cannot be imported
BUILD = f"""
import runpy, sys
sys.modules["onnx"] = None
sys.modules["onnxruntime"] = None
sys.argv = [{str(PRECOMPILE)!r}] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NPUFLOW_KERNEL_CACHE")}
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update(extra)
    return e


def test_recorded_signatures_name_kernels_and_parse():
    from numba.core import types

    from npuflow.sim.fast import precompile
    from npuflow.sim.fast._signatures import SIGNATURES

    kernels = precompile._import_kernels()
    assert SIGNATURES and set(SIGNATURES) <= set(kernels), set(SIGNATURES) - set(kernels)
    for sigs in SIGNATURES.values():
        for text in sigs:
            assert all(isinstance(t, types.Type) for t in precompile.parse_signature(text)), text


def test_install_built_kernels_load_without_compiling(tmp_path):
    cache = tmp_path / "kernel_cache"
    build = subprocess.run([sys.executable, "-c", BUILD, "--cache-dir", str(cache), "--only", KERNEL], check=False,
                           capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert build.returncode == 0 and "1 compiled, 0 skipped" in build.stdout, build.stdout + build.stderr
    assert any(p.suffix == ".nbi" for p in cache.iterdir()) and (cache / ".gitignore").is_file()
    # --record reads the signatures back from such a folder (how _signatures.py is regenerated)
    from npuflow.sim.fast import precompile
    from npuflow.sim.fast._signatures import SIGNATURES

    out = tmp_path / "_signatures.py"
    assert precompile.record([("test", cache)], out) == len(SIGNATURES[KERNEL])
    ns: dict = {}
    exec(out.read_text(encoding="utf-8"), ns)  # noqa: S102 - the file just written
    assert ns["SIGNATURES"] == {KERNEL: tuple(sorted(SIGNATURES[KERNEL]))}
    # a later process loads them: nothing compiles
    later = subprocess.run([sys.executable, "-c", LOAD], check=False, capture_output=True, text=True, timeout=600,
                           env=_env(NPUFLOW_KERNEL_CACHE=str(cache)))
    assert later.returncode == 0 and later.stdout.split() == ["compiled", "0"], later.stdout + later.stderr
    # NUMBA_CACHE_DIR wins over the kernel cache (an empty one: the kernel compiles)
    own = subprocess.run([sys.executable, "-c", LOAD], check=False, capture_output=True, text=True, timeout=600,
                         env=_env(NPUFLOW_KERNEL_CACHE=str(cache), NUMBA_CACHE_DIR=str(tmp_path / "numba")))
    assert own.returncode == 0 and own.stdout.split()[0] == "compiled" and int(own.stdout.split()[1]) >= 1, own.stderr
