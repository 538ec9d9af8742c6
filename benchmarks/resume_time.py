"""analysis() time with the measurements resuming from earlier runs (the default) and without.

The analysis measures many programs on the same calibration inputs (range notches, promotions, the
precision search); `npuflow.sim.fast.runner.PrefixRuns` runs each only from the first plan entry
where it differs from an earlier one. This script times analysis() on the scoreboard's quick
splits both ways, alternating (`--repeats` rounds after one warm-up run, best of each), checks that
both write byte-identical BIEs, and reports the share of plan entries skipped.

    python benchmarks/resume_time.py [--models yolox_nano,en_PP-OCRv3_det_infer] [--repeats 2]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchmarks.tasks import get_task, shared_root

#: the models whose analysis measures programs (range choice, search) and their quick calibration counts
MODELS = {"en_PP-OCRv3_det_infer": 6, "yolox_nano": 20, "pan_mnv3s_skin_clothes_hair": 4,
          "ddddocr_common_det": 5, "efficientnet_lite0": 32}


def analyse(name: str, n: int, shared: str, threads: int) -> tuple[float, str, int, int]:
    """Seconds of one analysis() call, the BIE's sha256, plan entries skipped and run by PrefixRuns."""
    import npuflow
    from npuflow.sim.fast import runner

    task = get_task(name, shared)
    feeds = list(task.calib_inputs(n))
    counts = [0, 0]
    orig = runner.PrefixRuns.run

    def run(self, *a, **k):
        s0, r0 = self.skipped, self.ran
        out = orig(self, *a, **k)
        counts[0] += self.skipped - s0
        counts[1] += self.ran - r0
        return out

    runner.PrefixRuns.run = run
    try:
        km = npuflow.ModelConfig(40000, "0001", "720", onnx_path=str(task.model_path), input_shapes=task.input_shapes)
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            bie = km.analysis({k: [f[k] for f in feeds] for k in task.input_shapes}, output_dir=out,
                              threads=threads, progress=False, report=False)
            dt = time.perf_counter() - t0
            with open(bie, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
    finally:
        runner.PrefixRuns.run = orig
    return dt, digest, counts[0], counts[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated task names (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds each way after a warm-up (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared", default=None, help="shared assets (default $NPUFLOW_SHARED or ../shared)")
    a = ap.parse_args(argv)
    from npuflow.sim.fast import runner

    shared = a.shared or str(shared_root())
    default_budget = runner.PREFIX_BUDGET
    print(f"# python benchmarks/resume_time.py --models {a.models} --repeats {a.repeats} --threads {a.threads}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | calib | analysis s, resuming | analysis s, every run from the start | ratio | plan entries skipped | BIE identical |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name in a.models.split(","):
        n = MODELS.get(name, 8)
        runner.PREFIX_BUDGET = default_budget
        analyse(name, n, shared, a.threads)  # warm-up: kernel compilation, file caches
        times: dict[int, list[float]] = {default_budget: [], 0: []}
        digests: set[str] = set()
        skipped = ran = 0
        for _ in range(max(1, a.repeats)):
            for budget in (0, default_budget):
                runner.PREFIX_BUDGET = budget
                dt, digest, s, r = analyse(name, n, shared, a.threads)
                times[budget].append(dt)
                digests.add(digest)
                if budget:
                    skipped, ran = s, r
        runner.PREFIX_BUDGET = default_budget
        on, off = min(times[default_budget]), min(times[0])
        same = len(digests) == 1
        ok &= same
        share = f"{100.0 * skipped / (skipped + ran):.0f} % of {skipped + ran}" if skipped + ran else "no measurement"
        print(f"| {name} | {n} | {on:.2f} | {off:.2f} | {on / off:.2f}x | {share} | {'yes' if same else 'NO'} |",
              flush=True)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
