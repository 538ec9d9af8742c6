"""Compile the simulator's numba kernels ahead of their first use (at install time).

numba compiles a kernel the first time it is called with new argument types, which made the first
run after an install cost a minute or more (README step 2: 101 s instead of 2 s). This module
compiles the kernel specializations that real runs use (:data:`npuflow.sim.fast._signatures.SIGNATURES`,
recorded from the workloads named there) into numba's on-disk cache, so that the first run loads
them instead. The install runs it (``setup.py``'s ``build_py`` step) with the cache folder of
:mod:`npuflow.sim.fast._nb` (``_kernel_cache`` next to this file); it can also be run by hand::

    python -m npuflow.sim.fast.precompile              # into the installed package's kernel cache
    python src/npuflow/sim/fast/precompile.py --cache-dir DIR -v

Run as a script (as the install does) it imports only the kernel modules (numpy and numba), not
the ``npuflow`` package (which needs onnx): the build environment of ``pip install`` has only what
``[build-system] requires`` lists. A signature numba can no longer parse or compile is skipped
(the kernel then compiles on first use, as before); nothing here changes a result: the cached
machine code is what the same call would compile, and numba checks the source's hash, its own
version and the CPU before it uses an entry.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

_PKG = Path(__file__).resolve().parents[2]  # .../npuflow

#: modules holding numba kernels (dispatchers), relative to the package
KERNEL_MODULES = ("sim.fast._requant", "sim.fast._common", "sim.fast.depthwise", "sim.fast.elementwise",
                  "sim.fast.affine", "sim.fast.movement", "calibration.histogram")


def _import_kernels() -> dict[str, Any]:
    """``{"module.qualname": dispatcher}`` of every kernel (the lazily built ones included)."""
    import importlib

    from npuflow.sim.fast import _common
    from npuflow.sim.fast._nb import HAVE_NUMBA

    if not HAVE_NUMBA:
        return {}
    found: dict[str, Any] = {}
    for rel in KERNEL_MODULES:
        mod = importlib.import_module("npuflow." + rel)
        for obj in vars(mod).values():
            py = getattr(obj, "py_func", None)
            if py is not None and hasattr(obj, "compile"):  # named where it is defined (as numba's cache)
                found[f"{py.__module__.rsplit('.', 1)[-1]}.{py.__qualname__}"] = obj
    for factory in (_common._limbs_kernel, _common._int8_limbs_kernel, _common._uint8_limbs_kernel):
        d = factory()
        found[f"_common.{d.py_func.__qualname__}"] = d
    return found


#: kernels only called by other kernels: compiled (and cached inside them) with their callers
CALLEES = ("_requant._row", "_requant._mul_rne", "depthwise._finish", "movement._avg_row", "movement._rne_mul_div",
           "movement._tap_range")


def partition(jobs: int) -> list[list[str]]:
    """The recorded kernels (callees left out) split over ``jobs`` processes, balanced by their
    signature counts; each kernel in one process, so each cache index has one writer (a callee's
    own index may lose entries to a concurrent writer: harmless, its callers' cached code
    contains it)."""
    from npuflow.sim.fast._signatures import SIGNATURES

    parts: list[list[str]] = [[] for _ in range(max(1, jobs))]
    load = [0] * len(parts)
    for name, sigs in sorted(SIGNATURES.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if name in CALLEES:
            continue
        i = load.index(min(load))
        parts[i].append(name)
        load[i] += len(sigs)
    return [p for p in parts if p]


def _types_namespace() -> dict[str, Any]:
    from numba.core import types as nt

    ns: dict[str, Any] = {name: getattr(nt, name) for name in (
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
        "intp", "uintp", "none")}
    ns.update({"bool": nt.boolean, "Array": nt.Array, "UniTuple": nt.UniTuple, "Tuple": nt.Tuple})
    return {"__builtins__": {}, **ns}


def parse_signature(text: str) -> tuple[Any, ...]:
    """A signature as recorded (``str`` of numba's argument-type tuple) -> numba types."""
    return tuple(eval(text, _types_namespace()))  # our own recorded strings; only numba type names in scope


def compile_all(names: list[str] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Compile the recorded signatures (of the kernels ``names``, default all) into numba's cache.
    Returns counts and seconds."""
    from npuflow.sim.fast._signatures import SIGNATURES

    kernels = _import_kernels()
    done = skipped = 0
    t0 = time.perf_counter()
    for name, sigs in SIGNATURES.items():
        if (names is not None and name not in names) or (names is None and name in CALLEES):
            continue
        disp = kernels.get(name)
        if disp is None:
            skipped += len(sigs)
            continue
        for text in sigs:
            t = time.perf_counter()
            try:
                disp.compile(parse_signature(text))
                done += 1
            except Exception as exc:  # noqa: BLE001 - compiles on first use instead
                skipped += 1
                if verbose:
                    print(f"  skipped {name}{text[:80]}...: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            if verbose:
                print(f"  {time.perf_counter() - t:6.2f} s  {name}", file=sys.stderr, flush=True)
    return {"compiled": done, "skipped": skipped, "seconds": time.perf_counter() - t0}


def record(sources: list[tuple[str, Path]], out: Path) -> int:
    """Write :mod:`._signatures` (``out``) from numba cache folders that real runs filled (each
    run with an empty ``NUMBA_CACHE_DIR``; ``sources``: (label, folder)). Returns the count."""
    import pickle
    import re

    sigs: dict[str, list[str]] = {}
    origin: dict[tuple[str, str], set[str]] = {}
    for label, folder in sources:
        for index in sorted(Path(folder).rglob("*.nbi")):
            m = re.match(r"(.+)-\d+\.py\d+\w*$", index.name[:-4])
            if m is None:
                continue
            name = m.group(1).replace(".locals.", ".<locals>.")
            with open(index, "rb") as f:
                pickle.load(f)  # numba's version
                _stamp, overloads = pickle.loads(f.read())
            for key in overloads:
                text = str(key[0])
                if text not in sigs.setdefault(name, []):
                    sigs[name].append(text)
                origin.setdefault((name, text), set()).add(label)
    n = sum(len(v) for v in sigs.values())
    lines = ['"""Kernel specializations that real runs use, compiled at install (:mod:`.precompile`).',
             "",
             "Recorded from numba's cache after each run with an empty ``NUMBA_CACHE_DIR``: "
             + ", ".join(label for label, _ in sources) + ".",
             "Regenerate after changing a kernel's argument types (``python -m npuflow.sim.fast.precompile",
             "--record LABEL=FOLDER ...``); a signature missing here only compiles on first use.",
             '"""', "", f"#: {n} signatures", "SIGNATURES: dict[str, tuple[str, ...]] = {"]
    for name in sorted(sigs):
        lines.append(f"    {name!r}: (")
        lines += [f"        {t!r},  # {' '.join(sorted(origin[(name, t)]))}" for t in sorted(sigs[name])]
        lines.append("    ),")
    lines.append("}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", help="numba cache folder to fill (default: the package's _kernel_cache, "
                                        "created if missing)")
    ap.add_argument("--only", help="comma-separated kernel names (default: all)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="compiling processes (default: "
                                                                                  "up to 2)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--record", nargs="+", metavar="LABEL=FOLDER",
                    help="write _signatures.py from these numba cache folders instead of compiling")
    args = ap.parse_args(argv)
    if args.record:
        n = record([(a.split("=", 1)[0], Path(a.split("=", 1)[-1])) for a in args.record],
                   Path(__file__).resolve().with_name("_signatures.py"))
        print(f"{n} signatures recorded")
        return 0
    cache = Path(args.cache_dir) if args.cache_dir else _PKG / "sim" / "fast" / "_kernel_cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n", encoding="ascii")  # machine-specific files, never committed
    os.environ["NPUFLOW_KERNEL_CACHE"] = str(cache)  # read by _nb when it registers its cache locator
    os.environ.pop("NUMBA_CACHE_DIR", None)
    os.environ.setdefault("NPUFLOW_QUIET", "1")
    parts = [args.only] if args.only else [",".join(p) for p in partition(args.jobs)]
    if len(parts) > 1 or "npuflow.sim.fast._nb" in sys.modules:  # (python -m: the locator is chosen at import)
        import subprocess

        t0 = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--cache-dir", str(cache)] + (["-v"] if args.verbose
                                                                                           else [])
        procs = [subprocess.Popen(cmd + ["--only", part], stdout=subprocess.PIPE, text=True) for part in parts]
        outs = [p.communicate()[0] for p in procs]
        counts = [0, 0]
        for out in outs:
            words = (out.strip().splitlines() or [""])[-1].split()
            if len(words) > 4 and words[2].isdigit() and words[4].isdigit():  # "npuflow kernels: N compiled, M skipped"
                counts[0] += int(words[2])
                counts[1] += int(words[4])
        print(f"npuflow kernels: {counts[0]} compiled, {counts[1]} skipped, {time.perf_counter() - t0:.1f} s into "
              f"{cache} ({len(procs)} processes)", flush=True)
        return max(p.returncode for p in procs)
    res = compile_all(args.only.split(",") if args.only else None, verbose=args.verbose)
    print(f"npuflow kernels: {res['compiled']} compiled, {res['skipped']} skipped, {res['seconds']:.1f} s into {cache}",
          flush=True)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: the kernel modules without npuflow/__init__
        if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
            sys.path.pop(0)  # this folder's modules are not top-level modules
        sys.path.insert(0, str(_PKG.parent))
        pkg = types.ModuleType("npuflow")
        pkg.__path__ = [str(_PKG)]  # type: ignore[attr-defined]
        sys.modules["npuflow"] = pkg
    sys.exit(main())
