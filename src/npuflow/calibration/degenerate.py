"""Degenerate calibration data, found from the statistics the calibration pass already keeps.

``analysis()`` warns (``npuflow.errors.CalibrationWarning``, and the report's ``warnings`` list,
docs/report.md "Warnings") when:

* **one input dominates a range** (:data:`OUTLIER_RATIO`): for a tensor, the largest |x| of one
  calibration input is more than 100 times the largest |x| of every other input. The range of
  that tensor (and so its fixed-point format) then follows that one input, and every other input
  is left with almost no resolution: typically an input scaled by mistake (0..255 instead of
  0..1, a unit error, 1e20). One finding per offending input, naming it (0-based index, in the
  order the calibration inputs were given) and the tensors, model inputs first.
* **a model input's range is zero**: every calibration value of a model input is 0 (all-zero
  calibration data, a state input never filled). Its format, and that of the tensors computed from
  it alone, is then the one of ``a = 0`` (docs/fixed-point.md 3.1: radix ``b - 1``, a range of 1),
  whatever the real data will be. The finding names the model inputs and every other tensor whose
  values were all 0; inner tensors alone that are all 0 (a dead branch of the model, as zero on
  real data) give no finding.
* **the model-output SNR is low** (:data:`LOW_SNR_DB`): the worst model-output SNR that the
  report measures on its inputs (the first ``report_samples`` calibration inputs, or
  ``report_inputs``) is below 10 dB, i.e. the quantization error's power is more than a tenth
  of the signal's: at that level classification and detection results are mostly wrong. Only
  when the report runs (``report=True``, the default): it is the report's own measurement.

The first two read the per-tensor :class:`~npuflow.calibration.histogram.AbsHistogram` (its
exact abs max, and the per-input maxima it keeps from the abs max each update computes anyway):
no second pass over the data, a few operations per tensor. A finding is a JSON-ready dict with
``kind`` ("outlier_input", "zero_range", "low_output_snr") and a one-paragraph ``message``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

#: the worst model-output SNR (dB) on the report's inputs below which analysis() warns
LOW_SNR_DB = 10.0
#: one calibration input's max |x| over the largest max |x| of the other inputs, for one tensor,
#: above which analysis() warns
OUTLIER_RATIO = 100.0
#: tensor names a message names before "and N more" (the report's JSON lists every one)
NAMED = 6


def _names(tensors: Sequence[str], inputs: set[str]) -> str:
    shown = [f"{t} (model input)" if t in inputs else t for t in tensors[:NAMED]]
    more = len(tensors) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_statistics(stats: Mapping[str, Any], *, inputs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Findings ("outlier_input", "zero_range") from the per-tensor statistics of one calibration
    pass (tensor -> AbsHistogram, in graph order); ``inputs``: the model's input names (named
    first, marked as model inputs). Empty when the data look sound."""
    model_inputs = [t for t in inputs if t in stats]
    order = model_inputs + [t for t in stats if t not in set(model_inputs)]
    inp = set(model_inputs)
    findings: list[dict[str, Any]] = []

    # one input far above the others, grouped by that input
    by_input: dict[int, list[dict[str, Any]]] = {}
    for t in order:
        h = stats[t]
        top, at, second = getattr(h, "input_max", 0.0), getattr(h, "input_max_at", None), getattr(h, "input_max_2", None)
        if at is None or second is None or top <= 0.0:
            continue
        if top > OUTLIER_RATIO * second:
            by_input.setdefault(at, []).append({"tensor": t, "input_max": float(top), "others_max": float(second),
                                                "ratio": float(top / second) if second > 0.0 else None})
    for at, rows in sorted(by_input.items()):
        tensors = [r["tensor"] for r in rows]
        first = rows[0]
        others = stats[first["tensor"]].updates - 1
        how = (f"{first['ratio']:.3g} times the largest of the other {others} inputs ({first['others_max']:.4g})"
               if first["ratio"] is not None else f"while every value of the other {others} inputs is 0")
        findings.append({
            "kind": "outlier_input",
            "input_index": int(at),
            "tensors": tensors,
            "details": rows,
            "threshold_ratio": OUTLIER_RATIO,
            "message": (f"calibration input #{at} (0-based, in the order given) dominates the calibrated ranges: "
                        f"its max |x| on {first['tensor']} is {first['input_max']:.4g}, {how}; more than "
                        f"{OUTLIER_RATIO:g}x the other inputs on {len(tensors)} tensor(s): {_names(tensors, inp)}. "
                        "These ranges follow this one input and leave the others almost no resolution (the BIE "
                        "is likely useless on real data): check this input's scaling or preprocessing, or remove "
                        "it from the calibration data"),
        })

    # tensors whose every calibration value is 0: a finding when a model input is among them (the
    # calibration data are all zeros); an inner tensor alone is a dead branch of the model (a ReLU
    # of negative values), as zero on real data as on these: no finding (without ``inputs``: any)
    zero = [t for t in order if getattr(stats[t], "input_max_at", None) is not None and stats[t].abs_max == 0.0]
    if zero and (not model_inputs or any(t in inp for t in zero)):
        samples = max(stats[t].updates for t in zero)
        zin = [t for t in zero if t in inp]
        findings.append({
            "kind": "zero_range",
            "tensors": zero,
            "model_inputs": zin,
            "message": (f"calibration data: every value of {len(zero)} tensor(s) is 0 on all {samples} calibration "
                        f"input(s): {_names(zero, inp)}"
                        + (f"; the calibration data of model input(s) {', '.join(zin)} are all zeros" if zin else "")
                        + ". A range of 0 gives the format of a range of 1 (docs/fixed-point.md 3.1), whatever the "
                        "real data will be: calibrate with real, preprocessed inputs"),
        })
    return findings


def check_output_snr(snr_db: float | None, *, count: int, source: str = "calibration",
                     where: Mapping[str, Any] | None = None,
                     trades: Sequence[tuple[str, float, float | None]] = ()) -> dict[str, Any] | None:
    """The "low_output_snr" finding when the worst model-output SNR the report measured on its
    ``count`` inputs (``source``: "calibration" or "user") is below :data:`LOW_SNR_DB`; None when
    it is not (None: no error at all). ``where``: the report's ``lowest`` (the output, and the
    columns of its part when it is read part by part), named in the message. ``trades``: measured
    changes as (what, gain dB, estimated FPS ratio or None), named in the message as what they
    would buy and cost."""
    if snr_db is None or snr_db >= LOW_SNR_DB:
        return None
    which = (f"the first {count} calibration input(s)" if source == "calibration"
             else f"the {count} report_inputs")
    at = (f" (its lowest part: output {where['output']!r}, columns {where['first']}-{where['last']})"
          if where and "first" in where else "")
    return {
        "kind": "low_output_snr",
        "snr_db": float(snr_db),
        "threshold_db": LOW_SNR_DB,
        "report_inputs": int(count),
        "message": (f"the fixed-point model's output SNR is {snr_db:.1f} dB{at} on {which} (below {LOW_SNR_DB:g} dB: "
                    "the quantization error is more than a tenth of the output's power, results are mostly wrong); "
                    "check the calibration data (scaling, outliers, all-zero inputs) and the report's "
                    "\"Where precision is lost\" section"
                    + ("; it measured (gain, estimated FPS relative to now): " + ", ".join(
                        f"{what} {gain:+.1f} dB" + (f" x{fps:.2f}" if fps is not None else "")
                        for what, gain, fps in trades) if trades else "")),
    }
