#!/usr/bin/env python
"""Cost and value of the fixed-point report (model_fx_report, docs/report.md).

    python benchmarks/report_time.py                  # both parts (a few minutes)
    python benchmarks/report_time.py --parts time     # part 1 only
    python benchmarks/report_time.py --parts yolox    # part 2 only

1. **Time, efficientnet_lite0 on 720 with 200 calibration inputs**: ``ModelConfig.analysis()``
   without the report (``report=False``), then with it; the second call's split
   (``km.analysis_timing``: everything up to the written BIE vs the report) and the report's own
   breakdown. The report (isolated and cumulative SNR of every node, the measured suggestions,
   charts, files) must add less time than the rest of analysis(); the HTML must stay under 5 MB.
2. **yolox_nano int8 on 720**: calibration on its 60 calibration images, report on the first 8
   evaluation images (``report_inputs``). Prints the ranked list with the measured model-output SNR
   of each suggestion, the top three together, the int16 references; then checks the top three by
   re-running ``analysis()`` with each suggestion (and with the three together) and simulating all
   40 evaluation images with the written BIE (``npuflow.load(bie)``).

Timings are wall-clock seconds on this machine in one process (onnxruntime and numba caches warm
after the first call); inputs are preprocessed into memory before anything is timed. Reports land in
``--out`` (default ``npuflow_output/report_bench``): ``eff_report/model_fx_report.html`` and
``yolox/model_fx_report.html``, with PNG screenshots ``eff_report_report.png`` and
``yolox_report.png`` next to them when Chromium is installed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLATFORM = 720


def _snr(ref: list[np.ndarray], x: list[np.ndarray]) -> float:
    r = np.concatenate([a.ravel() for a in ref]).astype(np.float64)
    v = np.concatenate([a.ravel() for a in x]).astype(np.float64)
    return 10 * math.log10(float(r @ r) / float((r - v) @ (r - v)))


def _km(task: Any):
    import warnings

    import ktc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ktc.ModelConfig(32769, "0001", PLATFORM, onnx_path=str(task.model_path), input_shapes=task.input_shapes)


def part_time(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from benchmarks.tasks import get_task

    task = get_task("efficientnet_lite0")
    calib = list(task.calib_inputs(args.calib_count))
    name = task.input_name
    mapping = lambda: {name: [c[name] for c in calib]}  # noqa: E731
    km = _km(task)
    km.optimized_model()  # the optimizer's result is cached per ModelConfig: time both calls alike
    t0 = time.perf_counter()
    km.analysis(mapping(), output_dir=out / "eff_noreport", threads=args.threads, report=False)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    km.analysis(mapping(), output_dir=out / "eff_report", threads=args.threads, report_samples=args.report_samples)
    t_full = time.perf_counter() - t0
    q = km.report["quantization"]
    html = Path(km.report_paths["html"])
    res = {
        "model": "efficientnet_lite0", "calibration_inputs": len(calib), "report_inputs": q["report_inputs"]["count"],
        "analysis_without_report_s": round(t_plain, 2), "analysis_with_report_s": round(t_full, 2),
        "analysis_part_s": round(km.analysis_timing["analysis"], 2), "report_part_s": round(km.analysis_timing["report"], 2),
        "report_breakdown_s": q["timing_s"], "html_bytes": html.stat().st_size, "html": str(html),
        "model_output_snr_db": q["model_output_snr_db"],
    }
    print(f"\n## 1. Report time: efficientnet_lite0, platform {PLATFORM}, {len(calib)} calibration inputs\n")
    print("| | seconds |\n|---|---|")
    print(f"| analysis() with report=False | {t_plain:.2f} |")
    print(f"| analysis() with the report, total | {t_full:.2f} |")
    print(f"| ... of which up to the written BIE | {km.analysis_timing['analysis']:.2f} |")
    print(f"| ... of which the report ({q['report_inputs']['count']} report inputs) | {km.analysis_timing['report']:.2f} |")
    for k, v in q["timing_s"].items():
        print(f"| ... report: {k} | {v:.2f} |")
    ok = km.analysis_timing["report"] < t_plain
    print(f"\nreport adds {km.analysis_timing['report']:.2f} s to analysis() of {t_plain:.2f} s without it: "
          f"{'OK (less)' if ok else 'NOT MET'}; HTML {html.stat().st_size / 1e6:.3f} MB "
          f"({'OK' if html.stat().st_size < 5e6 else 'NOT MET'} < 5 MB): {html}")
    res["target_met"] = bool(ok and html.stat().st_size < 5e6)
    return res


def _ratio(m: dict[str, Any]) -> str:
    """A measured suggestion's estimated FPS over the analysed model's, as the report shows it."""
    r = m.get("fps_ratio")
    return "-" if r is None else f"x{r:.2f}"


def part_yolox(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import npuflow
    from benchmarks.tasks import get_task

    task = get_task("yolox_nano")
    name = task.input_name
    calib = list(task.calib_inputs(args.yolox_calib_count))
    evals = list(task.eval_inputs(args.verify_count))
    km = _km(task)
    km.analysis({name: [c[name] for c in calib]}, output_dir=out / "yolox", threads=args.threads,
                report_inputs={name: [e[name] for e in evals]}, report_samples=args.report_samples)
    q = km.report["quantization"]
    print(f"\n## 2. yolox_nano int8, platform {PLATFORM}: where precision is lost\n")
    print(f"calibration: {len(calib)} images; report inputs: the first {q['report_inputs']['count']} evaluation images; "
          f"model-output SNR {q['model_output_snr_db']:.2f} dB; analysis {km.analysis_timing['analysis']:.1f} s, "
          f"report {km.analysis_timing['report']:.1f} s; report: {km.report_paths['html']}\n")
    print("| rank | # | node | op | isolated SNR dB | cumulative drop dB | cause | measured suggestion | output SNR with it (gain) "
          "| estimated FPS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in q["ranking"]:
        m = r["measured"] or {}
        sg = m.get("suggestion") or {}
        change = json.dumps(sg.get("node_overrides") or sg.get("options") or {})
        gain = f"{m['with_suggestion_snr_db']:.2f} ({m['gain_db']:+.2f})" if m.get("gain_db") is not None else "n/a"
        print(f"| {r['rank']} | {r['index']} | {r['name']} | {r['op_type']} | {r['isolated_snr_db']:.2f} | "
              f"{r['cumulative_drop_db'] if r['cumulative_drop_db'] is not None else '-'} | {r['cause']} | `{change}` | {gain} "
              f"| {_ratio(m)} |")
    extra = ([q["combined"]] if q["combined"] else []) + [g["measured"] for g in q["regions_int16"]] + (
        [q["reference_int16"]] if q["reference_int16"] else [])
    print("\n| also measured | output SNR (gain) | estimated FPS |\n|---|---|---|")
    for m in extra:
        label = m["suggestion"]["text"].split(" (")[0]
        print(f"| {label} | {m.get('with_suggestion_snr_db', float('nan')):.2f} ({m.get('gain_db', float('nan')):+.2f}) "
              f"| {_ratio(m)} |")

    # check: re-run analysis() with the suggestions; simulate every evaluation image with the BIE
    f = npuflow.load(km.analysis_result.optimized)
    ref = [f.run(e)[0] for e in evals]

    def sim(bie: str) -> float:
        m = npuflow.load(bie)
        return _snr(ref, [m.run(e)[0] for e in evals])

    base = sim(km.bie_path)
    checks = [("baseline (no change)", {}, {}, None)]
    for r in q["ranking"][:3]:
        sg = r["measured"]["suggestion"]
        checks.append((f"rank {r['rank']}: {r['name']}", sg["node_overrides"], sg["options"], r["measured"]))
    if q["combined"]:
        sg = q["combined"]["suggestion"]
        checks.append(("top suggestions together", sg["node_overrides"], sg["options"], q["combined"]))
    print(f"\nCheck on all {len(evals)} evaluation images: analysis() re-run with the suggestion, BIE simulated\n")
    print("| change | report (8 inputs): gain dB | re-run analysis, all images: SNR dB | gain dB |\n|---|---|---|---|")
    rows = []
    for label, ov, opts, m in checks:
        if not ov and not opts:
            got = base
        else:
            p = _km(task).analysis({name: [c[name] for c in calib]}, output_dir=out / "yolox_check", threads=args.threads,
                                   report=False, node_overrides=ov or None, **opts)
            got = sim(p)
        rep = f"{m['gain_db']:+.2f}" if m and m.get("gain_db") is not None else "-"
        print(f"| {label} `{json.dumps(ov or opts)}` | {rep} | {got:.2f} | {got - base:+.2f} |")
        rows.append({"change": label, "node_overrides": ov, "options": opts, "report_gain_db": m and m.get("gain_db"),
                     "snr_db": round(got, 3), "gain_db": round(got - base, 3)})
    return {"model": "yolox_nano", "model_output_snr_db": q["model_output_snr_db"], "ranking": q["ranking"],
            "combined": q["combined"], "regions_int16": q["regions_int16"], "reference_int16": q["reference_int16"],
            "check": rows, "html": km.report_paths["html"], "timing": km.analysis_timing}


def _screenshots(out: Path, pages: list[str]) -> None:
    """PNG of each report's page (top 4000 px) with a locally installed Chromium (tests/report/browser.py)."""
    from tests.report.browser import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        print("\nno Chromium found: no screenshots (Debian: apt-get install chromium)")
        return
    with Chromium(binary) as c:
        for page in pages:
            problems = c.open(Path(page).resolve().as_uri())
            png = c.screenshot(out / f"{Path(page).parent.name}_report.png", max_height=4000)
            print(f"screenshot: {png}" + (f" (console: {problems})" if problems else " (no console errors)"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="time,yolox", help="comma list: time, yolox")
    ap.add_argument("--calib-count", type=int, default=200, help="efficientnet calibration inputs (default 200)")
    ap.add_argument("--report-samples", type=int, default=8, help="report inputs (default 8, analysis()'s default)")
    ap.add_argument("--verify-count", type=int, default=40, help="yolox evaluation images for the check (default 40)")
    ap.add_argument("--yolox-calib-count", type=int, default=None,
                    help="yolox calibration images (default: the whole split, 60)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="npuflow_output/report_bench",
                    help="output folder (default npuflow_output/report_bench): eff_report/ and yolox/ hold the reports")
    ap.add_argument("--no-screenshots", action="store_true",
                    help="do not save PNG screenshots of the reports (taken with an installed Chromium, if any)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"outputs in {out}; threads {args.threads}; cpu count {os.cpu_count()}")
    results: dict[str, Any] = {}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if "time" in parts:
        results["time"] = part_time(args, out)
    if "yolox" in parts:
        results["yolox"] = part_yolox(args, out)
    if not args.no_screenshots:
        _screenshots(out, [r["html"] for r in results.values()])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
