"""``python -m ktc.opt_and_eval PLATFORM MODEL [-o OUT_DIR]``: optimize then evaluate (original CLI name)."""
from __future__ import annotations

import argparse
import sys

from npuflow.cli import main as npuflow_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ktc.opt_and_eval", description="Optimize and evaluate an ONNX model (npuflow).")
    p.add_argument("platform", choices=["520", "720", "530", "630", "730"])
    p.add_argument("path", help="ONNX or BIE model file (a BIE, recognized by its content, is evaluated as it is)")
    p.add_argument("-E", "--eval-dir", dest="out", default=None, help="report folder (default ./npuflow_output)")
    a, rest = p.parse_known_args(argv)
    if rest:
        p.error(f"options not available in npuflow: {' '.join(rest)}")
    args = ["evaluate", a.path, "--platform", a.platform]
    if a.out:
        args += ["--output-dir", a.out]
    return npuflow_main(args)


if __name__ == "__main__":
    sys.exit(main())
