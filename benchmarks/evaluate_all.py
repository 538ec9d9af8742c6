"""Every shared model x every platform: NPU/CPU node counts and estimated FPS (IP evaluator).

    .venv/bin/python benchmarks/evaluate_all.py            # uses $NPUFLOW_SHARED or ../shared

Prints a markdown table. PaddleOCR models have dynamic dims; they are fixed to the shapes below.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import npuflow
from npuflow.platforms import PLATFORMS

SHARED = Path(os.environ.get("NPUFLOW_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SHAPES = {
    "ch_ppocr_mobile_v2.0_cls_infer": {"x": [1, 3, 48, 192]},
    "en_PP-OCRv3_det_infer": {"x": [1, 3, 640, 640]},
    "en_number_mobile_v2.0_rec_infer": {"x": [1, 3, 32, 320]},
    "efficientnet_lite0": {"input": [1, 3, 224, 224]},
}


def main() -> int:
    models = sorted((SHARED / "models").glob("*.onnx"))
    if not models:
        print(f"no models under {SHARED / 'models'} (set NPUFLOW_SHARED)", file=sys.stderr)
        return 1
    print("| model | " + " | ".join(f"{p} NPU/CPU | {p} FPS" for p in PLATFORMS) + " |")
    print("|---|" + "---|---|" * len(PLATFORMS))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in models:
            name = path.name[:-5]
            cells = []
            for p in PLATFORMS:
                km = npuflow.ModelConfig(40000, "0001", p, onnx_path=path, input_shapes=SHAPES.get(name))
                km.evaluate(output_dir=tmp)
                doc = json.loads((Path(tmp) / "model_fx_report.json").read_text())
                s = doc["summary"]
                cells.append(f"{s['npu_node_count']}/{s['cpu_node_count']} | {s['fps']:.1f}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
