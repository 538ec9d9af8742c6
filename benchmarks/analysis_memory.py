"""Peak memory (RSS) of analysis() fed by a generator: calib.txt once (200 inputs) vs five times (1000).

    .venv/bin/python benchmarks/analysis_memory.py [--model efficientnet_lite0] [--repeats 1 5]

Each measurement runs in its own subprocess (peak RSS = its VmHWM after a reset through
/proc/self/clear_refs, since Linux carries ru_maxrss over from the parent; ru_maxrss where /proc is
not writable); the generator decodes images one at a time, so the calibration set never sits in
memory. Target (issue 5): peak
with 1000 inputs within 10 % of the peak with 200.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import itertools, json, resource, sys, time, warnings
# Linux keeps ru_maxrss across fork/exec: a child of a large process would report its parent's peak.
# Reset this process's high-water mark (VmHWM) first and read it at the end instead.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    HWM = True
except OSError:
    HWM = False
def peak_mb():
    if HWM:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.path.insert(0, {bench!r})
warnings.simplefilter("ignore")
import ktc
from tasks import get_task
task = get_task({model!r})
km = ktc.ModelConfig(40000, "0001", 720, onnx_path=str(task.model_path), input_shapes=task.input_shapes)
count = 0
def gen():
    global count
    for _ in range({repeats}):
        for feeds in task.calib_inputs():
            count += 1
            yield feeds[task.input_name]
t0 = time.perf_counter()
km.analysis({{task.input_name: gen()}}, output_dir={out!r}, threads=2, progress=False)
dt = time.perf_counter() - t0
print(json.dumps({{"inputs": count, "seconds": dt, "peak_rss_mb": peak_mb()}}))
"""


def measure(model: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(bench=str(HERE), model=model, repeats=repeats, out=tmp)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"analysis failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--repeats", type=int, nargs="+", default=[1, 5])
    a = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for k in a.repeats:
        rows.append(measure(a.model, k))
    print(f"| {a.model} analysis, generator input | inputs | wall s | peak RSS MB |")
    print("|---|---|---|---|")
    for k, r in zip(a.repeats, rows):
        print(f"| calib set x{k} | {r['inputs']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"\npeak RSS ratio ({rows[-1]['inputs']} vs {rows[0]['inputs']} inputs): {ratio:.3f} (target <= 1.10)")
    print(f"(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
