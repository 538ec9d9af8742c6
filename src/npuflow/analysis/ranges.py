"""Calibrated ranges -> abs max per tensor (docs/fixed-point.md section 3.1, "Choosing ranges").

* ``auto`` (default): each 8-bit tensor's range is one of the per-input quantiles
  :data:`AUTO_QUANTILES` (1.0: the max), chosen by what the model outputs measure on the first
  calibration inputs (:mod:`npuflow.analysis.range_search`), kept per tensor in
  ``QuantOptions.range_choice``; a tensor without a choice uses ``percentage``; 16-bit tensors
  use ``percentage_16b``, as under ``percentage``.
* ``percentage`` (default): per tensor, the **per-input** quantile: for each calibration input
  separately the exact ``percentage`` quantile of that input's |x| (``percentage_16b`` for 16-bit
  tensors), then the maximum over the calibration inputs
  (:meth:`npuflow.calibration.histogram.AbsHistogram.per_input_percentile`). 0.999 removes the
  0.1 % largest magnitudes of each input.
* ``mmse``: per tensor, the clip c minimising the expected squared error of symmetric uniform
  quantization on the pooled |x| histogram (rounding noise step^2/12 inside, (|x|-c)^2 outside),
  searched over 64 log-spaced candidates between the pooled ``1 - percentile`` quantile (at least
  1e-3 of the max) and the max; then multiplied by ``outlier_factor`` (capped at the max).
* 16-bit tensors (other than model inputs) get headroom: in a 16-bit datapath two bits
  (:data:`INT16_HEADROOM`, the chosen range times 4), so that values beyond the calibration range
  do not saturate (int16 has precision to spare; on the quick scoreboard's evaluation inputs
  tensors of five models reached 2.2 to 3.1 times their calibration maximum); 16-bit tensors in an
  8-bit datapath (promotions, 16-bit outputs and CPU nodes) one bit (:data:`PROMOTED_HEADROOM`,
  times 2: MNIST int16 output SNR 25 dB -> 90 dB on a digit whose logit exceeded the calibrated
  range), since their precision is why they are 16-bit (docs/fixed-point.md section 3.1).
* Model inputs and model outputs are never clipped (their exact abs max).
* ``quantize_mode="post_sigmoid"``: the tensors :func:`npuflow.analysis.effects.post_sigmoid_targets`
  picks (the inputs of the Sigmoids that produce model outputs; the outputs themselves when no
  Sigmoid produces them: logits whose Sigmoid was removed) are capped at 8 (sigmoid(8) = 0.99966:
  precision beyond is wasted), before the 16-bit headroom.
* A per-node ``abs_max`` override replaces all of this (``build_program``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from npuflow.calibration.histogram import AbsHistogram

POST_SIGMOID_CAP = 8.0
MMSE_CANDIDATES = 64
RANGE_METHODS = ("auto", "percentage", "mmse")
#: the per-input quantiles ``auto`` chooses from, per 8-bit tensor (1.0: the exact max)
AUTO_QUANTILES = (0.999, 0.9999, 0.99999, 1.0)


@dataclass(frozen=True)
class NodeOverride:
    """Per-node override (the original's ``quan_config`` idea), keyed by ONNX node name.

    ``bits``: bit width of the node's output; ``weight_bits``: of its weights;
    ``abs_max``: fixed range of its output (no calibration).
    """

    bits: int | None = None
    weight_bits: int | None = None
    abs_max: float | None = None
    #: set by the analysis itself (``auto_precision``: :mod:`npuflow.analysis.precision`), not the user
    auto: bool = False


@dataclass(frozen=True)
class QuantOptions:
    datapath_bits: int = 8
    weight_bits: int = 8
    model_in_bits: int = 8
    model_out_bits: int = 8
    cpu_bits: int = 8
    range_method: str = "auto"
    percentage: float = 0.999
    percentage_16b: float = 0.999999
    percentile: float = 0.001
    outlier_factor: float = 1.0
    post_sigmoid: bool = False
    bias_correction: bool = True
    #: sequential bias adjustment on this many calibration inputs (0: off; analysis(optimize>=1))
    bias_adjust: int = 0
    #: "compensated" (spec 3.6: error-compensating rounding of spatial convolutions' weights)
    #: or "nearest" (every weight rounded on its own)
    weight_rounding: str = "compensated"
    #: automatic precision choices measured on the calibration inputs (float tails:
    #: :mod:`npuflow.analysis.tails`); ``analysis(auto_precision=False)`` turns them off
    auto_precision: bool = True
    #: channel equalization into depthwise convolutions before calibration (spec 3.8,
    #: :mod:`npuflow.analysis.equalize`); ``analysis(equalize=False)`` turns it off
    equalize: bool = True
    #: mixed modes (docs/fixed-point.md section 10.3): "" or "mix light" / "mix balance" / "mixbw"
    #: for the datapath and the weights (``datapath_bits`` / ``weight_bits`` hold the base width)
    mix_datapath: str = ""
    mix_weight: str = ""
    #: mixbw: the extra estimated time allowed, t <= (1 + flops_ratio) * t_int8
    flops_ratio: float = 0.2
    overrides: Mapping[str, NodeOverride] = field(default_factory=dict)
    #: ``range_method="auto"``: tensor -> the per-input quantile its 8-bit range takes (the
    #: search's choice, :mod:`npuflow.analysis.range_search`); tensors not in it use ``percentage``
    range_choice: Mapping[str, float] = field(default_factory=dict)

    def tracked_quantiles(self) -> tuple[float, ...]:
        """The per-input quantiles the calibration pass must track exactly for these options."""
        if self.range_method == "percentage":
            return (self.percentage, self.percentage_16b)
        if self.range_method == "auto":
            return tuple(sorted({*AUTO_QUANTILES, self.percentage, self.percentage_16b} - {1.0}))
        # mmse: the percentage rule's quantiles too, for the comparison that warns when mmse loses to it
        return (self.percentage, self.percentage_16b)


def mmse_clip(h: AbsHistogram, bits: int, percentile: float) -> float:
    key = ("mmse", bits, percentile)
    if key not in h.memo:
        h.memo[key] = _mmse_clip(h, bits, percentile)
    return h.memo[key]


def _mmse_clip(h: AbsHistogram, bits: int, percentile: float) -> float:
    hi = h.abs_max
    lo = max(h.percentile(max(0.0, 1.0 - percentile)), hi * 1e-3)
    if hi <= 0.0 or lo >= hi:
        return hi
    levels = (1 << (bits - 1)) - 1
    cands = np.geomspace(lo, hi, MMSE_CANDIDATES)
    errs = [h.quant_mse(float(c), levels) for c in cands]
    return float(cands[int(np.argmin(errs))])


#: 16-bit tensors' range = this x the calibrated range where the datapath is 16-bit (two bits:
#: evaluation inputs reached 3.1x the calibration maximum; x2 lost 10 to 25 dB of int16 output SNR on
#: three models by saturation) ...
INT16_HEADROOM = 4.0
#: ... and in an 8-bit datapath (tensors promoted to 16 bits, 16-bit model outputs or CPU nodes): one
#: bit. A promotion is there for its precision (an ill-conditioned tensor's small channels: the
#: synthetic stem of tests/analysis/test_mixed_precision.py gains 4.3 -> 11.6 dB with x2, 6.7 dB
#: with x4), and the 8-bit tensors around it clip an excursion beyond their calibrated range anyway
PROMOTED_HEADROOM = 2.0


#: ops whose outputs lie within a known bound, ``|y| <= bound`` (docs/fixed-point.md section 3.1)
OUTPUT_BOUNDS = {"Softmax": 1.0, "Sigmoid": 1.0, "HardSigmoid": 1.0, "Tanh": 1.0}


def output_bound(op_type: str, h: AbsHistogram) -> float | None:
    """The range of a model output written by an ``op_type`` step whose values are bounded
    (:data:`OUTPUT_BOUNDS`): the bound itself, where the calibration reaches more than half of it
    (the same power of two, so the grid is at most a factor 2 coarser than the calibrated one, and
    usually much less: a probability calibrated at 0.99993 keeps its step to 0.01 %); else None.
    Calibration inputs rarely hold the most confident output the model gives: a Softmax output
    calibrated at 0.99993 saturated the evaluation's 0.99999988 there (ch_ppocr cls)."""
    bound = OUTPUT_BOUNDS.get(op_type)
    if bound is None or not h.abs_max > bound / 2:
        return None
    return bound


def choose_abs_max(h: AbsHistogram, bits: int, opts: QuantOptions, role: str, *, capped: bool = False,
                   tensor: str | None = None, op_type: str | None = None) -> float:
    """``role``: "input", "output" or "internal"; ``capped``: a post_sigmoid target (the range is
    at most ``POST_SIGMOID_CAP`` before the 16-bit headroom); ``tensor``: its name (the key of
    ``opts.range_choice`` under ``auto``); ``op_type``: the op that writes it (a model output of a
    bounded op takes the bound: :func:`output_bound`, no headroom at 16 bits)."""
    if role == "input":
        return h.abs_max
    if role == "output" and op_type is not None and not capped and (b := output_bound(op_type, h)) is not None:
        return b
    a = _calibrated(h, bits, opts, role, tensor)
    if role == "internal" and h.read_max is not None and 0.0 < h.read_max < a:
        # consumer bounds (spec 3.1): no range beyond the largest value a reader can tell apart
        a = h.read_max
    if capped:
        a = min(a, POST_SIGMOID_CAP)
    if bits <= 8:
        return a
    return (INT16_HEADROOM if opts.datapath_bits > 8 else PROMOTED_HEADROOM) * a


def auto_quantile(opts: QuantOptions, tensor: str | None) -> float:
    """The per-input quantile of an 8-bit tensor's range under ``auto``."""
    return float(opts.range_choice.get(tensor, opts.percentage)) if tensor is not None else opts.percentage


def range_rule(bits: int, opts: QuantOptions, role: str, tensor: str | None = None) -> str:
    """Which rule gives a tensor's range (for the option-effect notes and the report): "input",
    "output", "mmse", "percentage", "percentage_16b" or, under ``auto``, "auto q" with the
    tensor's quantile ("auto max" for 1.0)."""
    if role in ("input", "output"):
        return role
    if opts.range_method == "mmse":
        return "mmse"
    if opts.range_method == "auto" and bits <= 8:
        q = auto_quantile(opts, tensor)
        return "auto max" if q >= 1.0 else f"auto {q:g}"
    return "percentage" if bits <= 8 else "percentage_16b"


def _calibrated(h: AbsHistogram, bits: int, opts: QuantOptions, role: str, tensor: str | None = None) -> float:
    if role == "output":
        return h.abs_max
    if opts.range_method == "mmse":
        return min(h.abs_max, mmse_clip(h, bits, opts.percentile) * opts.outlier_factor)
    if opts.range_method == "auto" and bits <= 8:
        return h.per_input_percentile(auto_quantile(opts, tensor))
    q = opts.percentage if bits <= 8 else opts.percentage_16b
    return h.per_input_percentile(q)
