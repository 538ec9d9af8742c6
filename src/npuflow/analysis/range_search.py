"""``datapath_range_method="auto"`` (docs/fixed-point.md section 3.1): each 8-bit tensor's range is
chosen among per-input quantiles by what the model outputs measure, not by the tensor's own error.

Why: a tensor's own error says little about what its consumers see. The ktc default (the 0.999
quantile of each calibration input) clips the rare large activations that carry a detector's
objects or a text detector's strokes (ddddocr's detector: 0.999 loses 69 % of the float boxes,
0.9999 loses 18 %); ``mmse`` clips harder still (yolox_nano: 6 % recall); the max wastes steps where
outliers are noise (yolox_nano: 0 % recall with the max everywhere, 47 % with 0.999). No single rule
is best on every model, and on some models no single rule is best for every part of it.

How (every measurement: the lowest model-output SNR against the float model on the first
calibration inputs, the same inputs and float references as the float tails and promotions; a
Softmax output measured at its logits, :class:`npuflow.analysis.effects.Logits`):

1. **Candidates**: the per-input quantiles :data:`npuflow.analysis.ranges.AUTO_QUANTILES` (and the
   ``percentage`` option, the start), tracked exactly in the one calibration pass.
2. **Whole model**: every searchable tensor at each candidate; of those that beat the start
   (``percentage`` everywhere) under the rule of the parts below, the best is kept (each half of
   the inputs, even- and odd-numbered, is recorded beside: :data:`HALF_GAIN_DB`).
3. **Parts** (when the whole-model candidates spread at least :data:`MIN_SPREAD_DB`: a model whose
   output hardly moves with every range at once is left there): the searchable tensors, in
   program order, are cut into :data:`GROUPS` consecutive
   parts; each part in turn tries the other candidates with the rest fixed, and keeps one that
   raises the lowest output SNR by at least :data:`MIN_GAIN_DB` while lowering no output by more
   than :data:`MAX_LOSS_DB` (coordinate descent, one pass). A part tries only the quantiles next to
   its current one (one notch up or down).

Searchable: 8-bit tensors whose range comes from a quantile (not model inputs or outputs, not
``abs_max`` overrides, not 16-bit tensors). At most ``len(candidates) - 1 + 2 x GROUPS`` programs
are built and measured (11 with the defaults). The result is
``QuantOptions.range_choice`` (tensor -> quantile) and a record for the report.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from npuflow.analysis.program import Program
from npuflow.analysis.ranges import AUTO_QUANTILES, QuantOptions
from npuflow.analysis.tails import _r

#: consecutive parts of the searchable tensors chosen one at a time after the whole-model choice
#: (8 measured worse on the quick scoreboard: ddddocr recall of float boxes 88.7 -> 85.5 %, open_nsfw
#: 44.9 -> 28.0 dB, dlib_gender 29.8 -> 28.0 dB, nothing better: smaller parts fit the few
#: calibration inputs more)
GROUPS = 4
#: a choice is kept when it raises the lowest model-output SNR by at least this much (dB; measured on
#: en_PP-OCRv3_det: a part's +0.3 dB on 8 calibration inputs was -1.2 dB on the evaluation images) ...
MIN_GAIN_DB = 0.5
#: ... lowers no model output by more than this (dB) ...
MAX_LOSS_DB = 0.1
#: None: the two halves of the measurement inputs (even- and odd-numbered) are recorded, not used to
#: decide. A rule "at least 0.25 dB on each half" was measured on the quick scoreboard and lost more
#: than it saved: it refused en_PP-OCRv3_det's part (+0.12 / +2.39 dB on the halves; -1.2 dB on its
#: evaluation images) and en_number rec's "max" (+3.8 / -0.75; -0.9 dB), but also waifu2x's whole-model
#: 0.9999 (-0.28 / +5.6; +4.1 dB PSNR on evaluation), waifu2x cunet's (+5.6 dB) and ddddocr's part
#: (-0.001 / +1.7; 6.5 points of recall)
HALF_GAIN_DB: float | None = None
#: the parts are searched only when the whole-model candidates' lowest output SNRs spread this much (dB)
MIN_SPREAD_DB = 2 * MIN_GAIN_DB


def searchable(program: Program) -> list[str]:
    """The tensors whose range ``auto`` chooses, in program order."""
    notes = getattr(program, "notes", None)
    rules = notes.range if notes is not None else {}
    out: list[str] = []
    for st in program.steps:
        for t in st.outputs:
            if rules.get(t, "").startswith("auto") and t not in out:
                out.append(t)
    return out


def candidates(opts: QuantOptions) -> list[float]:
    """The quantiles tried, the start (``percentage``) first."""
    return [opts.percentage] + [q for q in AUTO_QUANTILES if q != opts.percentage]


def _neighbours(q: float) -> list[float]:
    """The quantiles next to ``q`` in :data:`AUTO_QUANTILES` order (a part moves one notch at a time:
    the measured error is close to unimodal in the quantile, and each move costs a program)."""
    order = sorted(set(AUTO_QUANTILES) | {q})
    i = order.index(q)
    return [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)]


def _low(snrs: Mapping[str, float]) -> float:
    return min(snrs.values()) if snrs else float("inf")


def _accept(before: Mapping[str, float], after: Mapping[str, float], halves_before: Any = None,
            halves_after: Any = None) -> bool:
    """The search's rule (module docstring): a gain of the lowest output of at least MIN_GAIN_DB over
    the measurement inputs and no output lower by more than MAX_LOSS_DB (and, with HALF_GAIN_DB set,
    a gain of at least that on each half of the inputs)."""
    if _low(after) < _low(before) + MIN_GAIN_DB:
        return False
    if not all(after[o] >= before[o] - MAX_LOSS_DB for o in before):
        return False
    if HALF_GAIN_DB is not None and halves_before is not None and halves_after is not None:
        return all(_low(a) >= _low(b) + HALF_GAIN_DB for b, a in zip(halves_before, halves_after))
    return True


def _label(q: float) -> str:
    return "max" if q >= 1.0 else f"{q:g}"


def choose_ranges(
    program: Program,
    opts: QuantOptions,
    build: Callable[[QuantOptions], Program],
    measure: Callable[[Program], dict[str, float]],
    *,
    groups: int = GROUPS,
    progress: bool = False,
) -> tuple[Program, QuantOptions, dict[str, Any]]:
    """The search (module docstring) from ``program`` (built with ``opts``, every searchable tensor
    at ``opts.percentage``). ``build(opts)`` builds a program with the analysis' statistics,
    ``measure(program)`` gives each model output's SNR. Returns the chosen program, its options
    (``range_choice`` set) and the record for the report."""
    t0 = time.perf_counter()
    tensors = searchable(program)
    cands = candidates(opts)
    record: dict[str, Any] = {"candidates": [_label(q) for q in cands], "tensors": len(tensors), "whole_model": [],
                              "parts": [], "measurements": 0}
    if not tensors:
        record.update(start_snr_db=None, chosen_snr_db=None, chosen={}, seconds=round(time.perf_counter() - t0, 3))
        return program, opts, record
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cands) - 1 + 2 * groups, desc="range search", unit="program", file=sys.stderr)

    split = getattr(measure, "halves", None)  # OutputSnr: each half of the inputs from the same run

    def halves(p: Program) -> Any:
        return split(p) if split is not None else None

    def trial(choice: dict[str, float]) -> tuple[Program, QuantOptions, dict[str, float]]:
        o = replace(opts, range_choice=dict(choice))
        p = build(o)
        s = measure(p)
        record["measurements"] += 1
        if bar is not None:
            bar.update(1)
        return p, o, s

    def entry(q: float, p: Program, s: Mapping[str, float]) -> dict[str, Any]:
        h = halves(p)
        return {"quantile": _label(q), "snr_db": _r(_low(s)),
                "halves_snr_db": None if h is None else [_r(_low(x)) for x in h]}

    try:
        start = measure(program)
        record["whole_model"].append(entry(opts.percentage, program, start))
        # the best candidate among those measurably better than the start (_accept) replaces it: a
        # candidate a hair better on the lowest output but over the loss limit on another does not
        # hide one that passes (ultraface_rfb_320, scores at their logits: "max" 33.80 dB but boxes
        # -1.1 dB; 0.9999 33.77 dB, boxes +0.1 dB)
        best: tuple[float, float, Program, QuantOptions, dict[str, float]] | None = None
        start_halves = halves(program)
        for q in cands[1:]:
            p, o, s = trial({t: q for t in tensors})
            record["whole_model"].append(entry(q, p, s))
            if (best is None or _low(s) > best[0]) and _accept(start, s, start_halves, halves(p)):
                best = (_low(s), q, p, o, s)  # only the best program is kept alive (memory)
        if best is not None:
            _, best_q, program, chosen_opts, cur = best
        else:
            best_q, chosen_opts, cur = opts.percentage, replace(opts, range_choice={t: opts.percentage for t in tensors}), start
        record["whole_model_choice"] = _label(best_q)
        choice = {t: best_q for t in tensors}
        lows = [w["snr_db"] for w in record["whole_model"] if w["snr_db"] is not None]
        spread = (max(lows) - min(lows)) if len(lows) == len(record["whole_model"]) else float("inf")
        record["spread_db"] = _r(spread)
        # a model whose output hardly moves when every range moves together (efficientnet_lite0: 0.65 dB
        # over the candidates) is not searched part by part: no part would clear MIN_GAIN_DB
        n = max(1, min(int(groups), len(tensors))) if spread >= MIN_SPREAD_DB else 0
        parts = [tensors[i * len(tensors) // n:(i + 1) * len(tensors) // n] for i in range(n)]
        for part in parts:
            if not part:
                continue
            was = choice[part[0]]
            row = {"first": part[0], "last": part[-1], "tensors": len(part), "quantile": _label(was), "tried": []}
            for q in _neighbours(was):
                trial_choice = {**choice, **{t: q for t in part}}
                p, o, s = trial(trial_choice)
                row["tried"].append(entry(q, p, s))
                if _accept(cur, s, halves(program), halves(p)):
                    program, chosen_opts, cur, choice = p, o, s, trial_choice
                    row["quantile"] = _label(q)
            record["parts"].append(row)
    finally:
        if bar is not None:
            bar.close()
    record.update(start_snr_db=_r(_low(start)), chosen_snr_db=_r(_low(cur)),
                  chosen={t: _label(q) for t, q in choice.items()}, seconds=round(time.perf_counter() - t0, 3))
    return program, chosen_opts, record


#: ``mmse`` is reported when its lowest model-output SNR is this much (dB) below ``percentage``'s
MMSE_WARN_DB = 1.0


def check_mmse(program: Program, opts: QuantOptions, build: Callable[[QuantOptions], Program],
               measure: Callable[[Program], dict[str, float]]) -> dict[str, Any]:
    """``datapath_range_method="mmse"``: the lowest model-output SNR of the mmse program and of the
    same model under ``percentage`` on the first calibration inputs, and a warning text when mmse
    is :data:`MMSE_WARN_DB` or more below (mmse minimises each tensor's own error, not what its
    consumers see: yolox_nano's recall of float detections falls to 6 %)."""
    mmse = _low(measure(program))
    pct = _low(measure(build(replace(opts, range_method="percentage"))))
    record: dict[str, Any] = {"method": "mmse", "mmse_snr_db": _r(mmse), "percentage_snr_db": _r(pct), "warning": None}
    if mmse <= pct - MMSE_WARN_DB:
        record["warning"] = (f"datapath_range_method='mmse' measured {mmse:.2f} dB lowest model-output SNR on the "
                             f"calibration inputs, {pct - mmse:.2f} dB below 'percentage' ({pct:.2f} dB): mmse minimises "
                             "each tensor's own error, not what its consumers see; 'auto' (the default) chooses ranges by "
                             "the model outputs")
    return record
