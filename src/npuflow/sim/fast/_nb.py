"""numba: ``njit``/``prange`` when numba is installed and not disabled, else ``None``.

numba is a dependency on the platforms it publishes wheels for (pyproject.toml). Where it is
missing, every fast kernel falls back to vectorised numpy that calls the reference helpers, so
results never depend on it, and the first simulation says so once (:data:`FALLBACK_NOTICE`);
``NPUFLOW_SIM=numpy`` (read at each call) disables numba even when it is installed (the tests run
both), without that notice.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

numba: Any
# numba's OpenMP threading layer spins its idle workers by default; between the many short
# parallel regions of a simulation they would then steal the cores onnxruntime's pool needs
# (measured: efficientnet_lite0 3x slower on 2 cores). Passive waiting, unless the user chose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ... but a fully passive worker sleeps right after each region, and waking it costs ~45 us per
# parallel launch (a simulation launches ~100 per input). A short spin (GOMP_SPINCOUNT overrides
# PASSIVE's 0) keeps the workers awake between the kernels of one step sequence and lets them
# sleep through longer onnxruntime calls (measured, batch 1: efficientnet_lite0 15.0 -> 12.1 ms,
# yolox_nano 34 -> 24 ms per input; see benchmarks/README.md)
os.environ.setdefault("GOMP_SPINCOUNT", "30000")
try:  # pragma: no cover - depends on the environment
    import numba as _numba

    numba = _numba
except Exception:  # noqa: BLE001 - any import problem (missing, broken llvmlite) means "no numba"
    numba = None

HAVE_NUMBA = numba is not None

#: printed (stderr, once per process) when a first npuflow kernel compiles: kernels the install
#: did not compile (:mod:`.precompile`), or all of them with an empty ``NUMBA_CACHE_DIR``, take
#: seconds each the first time
COMPILE_NOTICE = ("npuflow: compiling simulator kernels for this machine (ones the install did not build, or "
                  "NUMBA_CACHE_DIR is set: up to a minute or two, once; numba caches them for later runs)")
_notice_lock = threading.Lock()
_notice_given = False


def _compile_started(dispatcher: Any) -> None:
    global _notice_given
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    if not module.startswith("npuflow.") or _notice_given:
        return
    with _notice_lock:
        if _notice_given:
            return
        _notice_given = True
    if os.environ.get("NPUFLOW_QUIET", "") != "1":
        print(COMPILE_NOTICE, file=sys.stderr, flush=True)


if HAVE_NUMBA:  # pragma: no cover - depends on the environment
    try:
        from numba.core import event as _event

        class _CompileListener(_event.Listener):
            """numba raises "numba:compile" only for a real compilation (not a cache load)."""

            def on_start(self, event: Any) -> None:
                try:  # a notice must never break a compilation (e.g. a closed stderr)
                    _compile_started((event.data or {}).get("dispatcher"))
                except Exception:  # noqa: BLE001
                    pass

            def on_end(self, event: Any) -> None:
                pass

        _event.register("numba:compile", _CompileListener())
    except Exception:  # noqa: BLE001 - an older or changed event API: no notice, nothing else lost
        pass


#: the kernel cache that the install fills (:mod:`npuflow.sim.fast.precompile`): used, when it
#: exists, instead of numba's default places (unless ``NUMBA_CACHE_DIR`` is set, which wins)
KERNEL_CACHE = os.environ.get("NPUFLOW_KERNEL_CACHE") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                      "_kernel_cache")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _register_kernel_cache() -> None:  # pragma: no cover - depends on the environment
    """Put a cache locator for npuflow's own kernels first in numba's list: it keeps their cache in
    :data:`KERNEL_CACHE` when that folder exists and is writable, keyed on the source file's
    content (older numba versions key on its mtime, which every install changes). numba checks
    its own version, the CPU and the function's bytecode before it loads an entry."""
    import hashlib

    from numba.core import caching

    base = getattr(caching, "_CacheLocator", None)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if base is None or impl is None or not isinstance(getattr(impl, "_locator_classes", None), list):
        return
    _stamps: dict[tuple[str, int, int], str] = {}

    class _KernelCacheLocator(base):  # type: ignore[misc, valid-type]
        def __init__(self, py_func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno

        def get_cache_path(self) -> str:
            return KERNEL_CACHE

        def get_source_stamp(self) -> Any:
            st = os.stat(self._py_file)
            key = (self._py_file, st.st_mtime_ns, st.st_size)
            if key not in _stamps:
                with open(self._py_file, "rb") as f:
                    _stamps[key] = "sha256:" + hashlib.sha256(f.read()).hexdigest()
            return _stamps[key]

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if (os.environ.get("NUMBA_CACHE_DIR") or not os.path.isdir(KERNEL_CACHE)
                    or not os.path.abspath(py_file).startswith(_PACKAGE_DIR + os.sep)):
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()  # writable (numba saves new specializations there too)
            except OSError:
                return None
            return self

    impl._locator_classes.insert(0, _KernelCacheLocator)


if HAVE_NUMBA:  # pragma: no cover - depends on the environment
    try:
        _register_kernel_cache()
    except Exception:  # noqa: BLE001 - a changed numba API: numba's own cache places, nothing else lost
        pass


def njit(*args: Any, **kwargs: Any) -> Any:
    """``numba.njit(cache=True, ...)``; only call when :data:`HAVE_NUMBA`."""
    kwargs.setdefault("cache", os.environ.get("NPUFLOW_NUMBA_CACHE", "1") != "0")
    kwargs.setdefault("nogil", True)
    return numba.njit(*args, **kwargs)


#: warned once per process when numba is missing and nothing chose the numpy path on purpose
FALLBACK_NOTICE = ("numba is not installed (no wheel for this platform, or a failed install): npuflow's simulator "
                   "and calibration run their numpy fallback, which gives the same integers but is several times "
                   "slower (measured on efficientnet_lite0: kneron_inference 12-13x ONNX Runtime float instead of "
                   "2.5x; analysis with its report 3.1x ONNX Runtime quantize_static instead of 1.3x). "
                   "pip install numba to get the fast path")
_fallback_warned = False


def use_numba() -> bool:
    """numba kernels are used: installed, and not switched off by ``NPUFLOW_SIM=numpy`` (read at
    each call, so tests and users can switch at run time)."""
    chosen = os.environ.get("NPUFLOW_SIM", "").strip().lower()
    if not HAVE_NUMBA and not chosen:
        _warn_fallback()
    return HAVE_NUMBA and chosen not in ("numpy", "reference")


def _warn_fallback() -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    import warnings

    from npuflow.errors import NpuflowWarning

    warnings.warn(FALLBACK_NOTICE, NpuflowWarning, stacklevel=3)
