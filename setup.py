"""Build step beyond pyproject.toml: compile the simulator's numba kernels at install time.

``build_py`` copies the package as usual, then runs ``npuflow/sim/fast/precompile.py`` on the copy
(``build/lib``, which becomes the wheel; the source tree for an editable install): the kernel
specializations that real runs use are compiled into ``npuflow/sim/fast/_kernel_cache``, so the
first run after ``pip install`` loads them instead of compiling for a minute or more. It needs
numba in the build environment (``[build-system] requires``, with the same platform markers as the
dependency); when numba is missing, the compile fails or takes longer than
``NPUFLOW_BUILD_KERNELS_TIMEOUT`` seconds (default 600), or ``NPUFLOW_BUILD_KERNELS=0``, the
install goes on without the cache and the kernels compile on first use (as numba does by default).
No C compiler is needed. The cache is tied to the numba version and the CPU of the build: pip
builds on the installing machine, and numba ignores (and replaces) entries of another version or
CPU.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class build_py_with_kernels(build_py):  # setuptools names its commands in lower case
    def run(self) -> None:
        super().run()
        if os.environ.get("NPUFLOW_BUILD_KERNELS", "1").strip() == "0":
            return
        root = Path("src") if getattr(self, "editable_mode", False) else Path(self.build_lib)
        script = root / "npuflow" / "sim" / "fast" / "precompile.py"
        if not script.is_file():
            return
        try:
            timeout = float(os.environ.get("NPUFLOW_BUILD_KERNELS_TIMEOUT", "600"))
        except ValueError:
            timeout = 600.0
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        t = time.perf_counter()
        print("npuflow: compiling the simulator's kernels for this machine (NPUFLOW_BUILD_KERNELS=0 skips it)",
              flush=True)
        try:
            # its own process group: on a timeout its compiling workers end with it (what they
            # finished stays in the cache; the rest compiles on first use)
            proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                if hasattr(os, "killpg"):
                    os.killpg(proc.pid, signal.SIGKILL)
                else:  # pragma: no cover - Windows
                    proc.kill()
                proc.communicate()
                raise
            out = (stdout if proc.returncode == 0 else stdout + stderr).strip().splitlines()
            print(f"npuflow: kernel build exit {proc.returncode} after {time.perf_counter() - t:.0f} s: "
                  + " | ".join(out[-3:]), flush=True)
        except Exception as exc:  # noqa: BLE001 - the install goes on: kernels compile on first use
            print(f"npuflow: kernels not built ({type(exc).__name__}: {exc}); they compile on first use",
                  flush=True)


setup(cmdclass={"build_py": build_py_with_kernels})
