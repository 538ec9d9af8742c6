"""npuflow quick start on the shipped MNIST model: the ktc workflow, unchanged apart from paths.

Run from the repository root:  .venv/bin/python examples/mnist/quickstart.py
Writes the report and the BIE to ./npuflow_output/mnist/.
"""
from pathlib import Path

import numpy as np

import ktc

HERE = Path(__file__).resolve().parent
MODEL = str(HERE / "mnist_cntk_opt.onnx")
OUT = "npuflow_output/mnist"

with np.load(HERE / "digits.npz", allow_pickle=False) as z:
    calib, xs, ys = list(z["calib_x"]), z["eval_x"], z["eval_y"]

# 1. Optimize + evaluate for the KL720 (the optimizer runs inside evaluate()).
km = ktc.ModelConfig(32769, "0001", "720", onnx_path=MODEL)
print(km.evaluate(output_dir=OUT))

# 2. Fixed-point analysis on 64 calibration digits -> the open BIE.
bie_path = km.analysis({"Input3": calib}, output_dir=OUT, threads=4)
print("BIE:", bie_path)

# 3. E2E simulation, float model vs fixed-point model, on 64 other real digits.
float_pred, fixed_pred, ref, fx = [], [], [], []
for x in xs:
    f = ktc.kneron_inference([x], input_names=["Input3"], onnx_file=MODEL)[0]
    q = ktc.kneron_inference([x], input_names=["Input3"], bie_file=bie_path, platform=720)[0]
    ref.append(f)
    fx.append(q)
ref, fx = np.concatenate(ref), np.concatenate(fx)
snr = 10 * np.log10((ref ** 2).sum() / ((ref - fx) ** 2).sum())
print(f"accuracy on {len(ys)} shipped MNIST digits: float {np.mean(ref.argmax(1) == ys):.4f}, "
      f"fixed {np.mean(fx.argmax(1) == ys):.4f}; output SNR {snr:.1f} dB")
