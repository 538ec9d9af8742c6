"""npuflow quick start on the shipped MNIST model: the ktc workflow, unchanged apart from paths.

Run from the repository root:  .venv/bin/python examples/mnist/quickstart.py
Writes the IP-evaluator report to ./npuflow_output/mnist/.
"""
from pathlib import Path

import numpy as np

import ktc

HERE = Path(__file__).resolve().parent
MODEL = str(HERE / "mnist_cntk_opt.onnx")

# 1. Optimize + evaluate for the KL720 (the optimizer runs inside evaluate()).
km = ktc.ModelConfig(32769, "0001", "720", onnx_path=MODEL)
print(km.evaluate(output_dir="npuflow_output/mnist"))

# 2. Float E2E simulation on real digits (64 evaluation digits shipped with the example).
with np.load(HERE / "digits.npz", allow_pickle=False) as z:
    xs, ys = z["eval_x"], z["eval_y"]
pred = [int(ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MODEL)[0].argmax()) for x in xs]
acc = float(np.mean(np.array(pred) == ys))
print(f"float accuracy on {len(ys)} shipped MNIST digits: {acc:.4f}")
