"""Charts of the report as standalone SVG documents, embedded as ``data:`` images.

No scripts, fonts or external files: each chart is an SVG string (every name taken from the model
is XML-escaped) turned into a ``data:image/svg+xml;base64`` URI that the HTML puts in an ``<img>``
with an ``alt`` text, so a text browser shows the alt text (the numbers are in the tables) and a
graphical browser the picture.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Sequence
from xml.sax.saxutils import escape

FONT = "font-family='monospace' font-size='11'"


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(label, {chr(39): '&#39;'})}'>"
            f"<rect width='{width}' height='{height}' fill='white'/>" + "".join(body) + "</svg>")


def _t(x: float, y: float, text: str, anchor: str = "start", fill: str = "#222", extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' fill='{fill}' {FONT} {extra}>"
            f"{escape(text)}</text>")


def time_bars(bars: Sequence[dict[str, Any]], width: int = 900) -> str:
    """Horizontal bars: estimated time per node (``name``, ``ms``, ``bound``)."""
    left, bar_w = 250, width - 250 - 90
    peak = max((b["ms"] for b in bars), default=0.0) or 1.0
    h = 16 * len(bars) + 10
    body = []
    for i, b in enumerate(bars):
        y = 16 * i + 4
        w = max(1.0, bar_w * b["ms"] / peak)
        color = "#4a7" if b["bound"] == "compute" else "#47a"
        body.append(f"<rect x='{left}' y='{y}' width='{w:.1f}' height='12' fill='{color}'/>")
        body.append(_t(left - 4, y + 10, b["name"][:34], "end"))
        body.append(_t(left + w + 4, y + 10, f"{b['ms']:.4f} ms"))
    return _svg(width, h, body, "estimated time per node")


def snr_along_graph(rows: Sequence[dict[str, Any]], marked: Sequence[dict[str, Any]] = (), width: int = 960,
                    height: int = 300) -> str:
    """Cumulative SNR (line) and isolated SNR (dots) of every step, in graph order.

    ``rows``: the report's step rows; ``marked``: ranked entries (``rank``, ``index``) drawn as
    numbered red rings. Exact values (no error) are drawn at the top edge.
    """
    left, right, top, bottom = 48, 12, 22, 34
    pw, ph = width - left - right, height - top - bottom
    vals = [v for r in rows for v in (r["cumulative"]["snr_db"], r["isolated"]["snr_db"]) if v is not None]
    hi = max(10.0, math.ceil((max(vals) if vals else 60.0) / 10.0) * 10.0)
    hi = min(hi, 120.0)
    lo = min(0.0, math.floor((min(vals) if vals else 0.0) / 10.0) * 10.0)
    n = max(1, len(rows) - 1)

    def X(i: float) -> float:
        return left + pw * i / n

    def Y(v: float | None) -> float:
        v = hi if v is None else min(max(v, lo), hi)
        return top + ph * (hi - v) / (hi - lo)

    body = []
    step = 10 if hi - lo <= 80 else 20
    v = lo
    while v <= hi + 1e-9:
        y = Y(v)
        body.append(f"<line x1='{left}' y1='{y:.1f}' x2='{width - right}' y2='{y:.1f}' stroke='#ddd'/>")
        body.append(_t(left - 4, y + 4, f"{v:g}", "end"))
        v += step
    body.append(_t(12, top - 8, "dB"))
    for r in rows:
        if r["placement"] == "CPU":
            x = X(r["index"])
            body.append(f"<rect x='{x - 2:.1f}' y='{top}' width='4' height='{ph}' fill='#fde2cf'/>")
    pts = [(X(r["index"]), Y(r["cumulative"]["snr_db"])) for r in rows if r["outputs"]]
    if pts:
        body.append("<polyline fill='none' stroke='#2a6ebb' stroke-width='1.6' points='"
                    + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "'/>")
    for r in rows:
        if r["outputs"] and not r.get("pass_through"):
            body.append(f"<circle cx='{X(r['index']):.1f}' cy='{Y(r['isolated']['snr_db']):.1f}' r='2.2' fill='#e08a00'/>")
    for m in marked:
        x, y = X(m["index"]), Y(m.get("isolated_snr_db"))
        body.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='6' fill='none' stroke='#c00' stroke-width='1.5'/>")
        body.append(_t(x, y - 9, str(m["rank"]), "middle", "#c00"))
    body.append(f"<line x1='{left}' y1='{top + ph}' x2='{width - right}' y2='{top + ph}' stroke='#888'/>")
    body.append(_t(left, height - 10, "0"))
    body.append(_t(width - right, height - 10, f"step {len(rows) - 1}", "end"))
    body.append(_t(width / 2, height - 10, "node (after fusion), in graph order", "middle"))
    lx = width - right - 330
    body.append(f"<line x1='{lx}' y1='12' x2='{lx + 18}' y2='12' stroke='#2a6ebb' stroke-width='2'/>")
    body.append(_t(lx + 22, 16, "cumulative SNR"))
    body.append(f"<circle cx='{lx + 135}' cy='12' r='3' fill='#e08a00'/>")
    body.append(_t(lx + 142, 16, "isolated SNR"))
    body.append(f"<circle cx='{lx + 240}' cy='12' r='5' fill='none' stroke='#c00'/>")
    body.append(_t(lx + 249, 16, "ranked worst"))
    return _svg(width, height, body, "per-layer SNR along the graph")


def histogram(h: dict[str, Any], width: int = 460, height: int = 200) -> str:
    """Histogram of |x| of one activation (log count), with the chosen range and the max marked."""
    left, right, top, bottom = 40, 10, 26, 30
    pw, ph = width - left - right, height - top - bottom
    counts = h["counts"]
    hi = h["hi"] or 1.0
    peak = max(counts) or 1
    lpeak = math.log10(peak + 1)
    bw = pw / len(counts)
    body = [_t(left, 14, f"{h['name'][:40]} ({h['bits']}-bit)")]
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        bh = ph * math.log10(c + 1) / lpeak
        body.append(f"<rect x='{left + i * bw:.2f}' y='{top + ph - bh:.2f}' width='{max(bw - 0.3, 0.5):.2f}' "
                    f"height='{bh:.2f}' fill='#6b8fc9'/>")
    cx = left + pw * min(h["chosen"], hi) / hi
    body.append(f"<line x1='{cx:.1f}' y1='{top - 4}' x2='{cx:.1f}' y2='{top + ph}' stroke='#c00' stroke-width='2'/>")
    body.append(_t(cx - 3, top + 10, f"range {h['chosen']:.4g}", "end", "#c00"))
    mx = left + pw * min(h["abs_max"], hi) / hi
    body.append(f"<line x1='{mx:.1f}' y1='{top - 4}' x2='{mx:.1f}' y2='{top + ph}' stroke='#555' stroke-dasharray='3,2'/>")
    body.append(f"<line x1='{left}' y1='{top + ph}' x2='{left + pw}' y2='{top + ph}' stroke='#888'/>")
    body.append(_t(left, height - 12, "0"))
    body.append(_t(left + pw, height - 12, f"|x| {hi:.4g}", "end"))
    clipped = h.get("clipped_calib")
    note = f"max {h['abs_max']:.4g}" + (f", clipped {100 * clipped:.3g} %" if clipped else "")
    body.append(_t(left + pw / 2, height - 12, note, "middle", "#555"))
    body.append(_t(4, top + 8, "log n", "start", "#555"))
    return _svg(width, height, body, f"histogram of |x| of {h['name']}")


def front(points: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]] = (), bound: float | None = None,
          width: int = 640, height: int = 300) -> str:
    """The mixbw front: estimated FPS (x) against the lowest model-output SNR (y); the front's
    points joined in order (the chosen one, the last, ringed), reference points as squares, the
    time bound as a dashed vertical line. Points without a finite SNR are left out."""
    left, right, top, bottom = 56, 16, 18, 36
    pw, ph = width - left - right, height - top - bottom
    pts = [p for p in (*points, *references) if p.get("fps") is not None and p.get("snr_db") is not None]
    xs = [p["fps"] for p in pts] + ([bound] if bound else [])
    ys = [p["snr_db"] for p in pts]
    if not pts:
        return _svg(width, height, [_t(width / 2, height / 2, "no measured point", "middle")], "mixbw front")
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x0, x1 = (x0 - 1, x1 + 1) if x1 - x0 < 1e-9 else (x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))
    y0, y1 = (y0 - 1, y1 + 1) if y1 - y0 < 1e-9 else (y0 - 0.1 * (y1 - y0), y1 + 0.1 * (y1 - y0))

    def px(v: float) -> float:
        return left + pw * (v - x0) / (x1 - x0)

    def py(v: float) -> float:
        return top + ph * (1 - (v - y0) / (y1 - y0))

    body = [f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>",
            _t(left + pw / 2, height - 6, "estimated FPS", "middle"),
            _t(12, top + ph / 2, "SNR dB", "middle", extra=f"transform='rotate(-90 12 {top + ph / 2:.1f})'"),
            _t(left, height - 20, f"{x0:.1f}"), _t(left + pw, height - 20, f"{x1:.1f}", "end"),
            _t(left - 4, top + ph, f"{y0:.2f}", "end"), _t(left - 4, top + 10, f"{y1:.2f}", "end")]
    if bound:
        body.append(f"<line x1='{px(bound):.1f}' y1='{top}' x2='{px(bound):.1f}' y2='{top + ph}' stroke='#c33' "
                    "stroke-dasharray='4 3'/>")
        body.append(_t(px(bound) + 3, top + 12, "time bound", fill="#c33"))
    fr = [p for p in points if p.get("fps") is not None and p.get("snr_db") is not None]
    if len(fr) > 1:
        body.append("<polyline fill='none' stroke='#47a' points='"
                    + " ".join(f"{px(p['fps']):.1f},{py(p['snr_db']):.1f}" for p in fr) + "'/>")
    for i, p in enumerate(fr):
        body.append(f"<circle cx='{px(p['fps']):.1f}' cy='{py(p['snr_db']):.1f}' r='4' fill='#47a'/>")
        if i == len(fr) - 1:
            body.append(f"<circle cx='{px(p['fps']):.1f}' cy='{py(p['snr_db']):.1f}' r='8' fill='none' stroke='#c33'/>")
    for p in references:
        if p.get("fps") is None or p.get("snr_db") is None:
            continue
        body.append(f"<rect x='{px(p['fps']) - 4:.1f}' y='{py(p['snr_db']) - 4:.1f}' width='8' height='8' fill='#a74'/>")
        right_half = px(p["fps"]) > left + 0.7 * pw  # labels near the right edge go to the left of the point
        body.append(_t(px(p["fps"]) + (-6 if right_half else 6), py(p["snr_db"]) - 6, str(p["label"])[:20],
                       "end" if right_half else "start", fill="#a74"))
    return _svg(width, height, body, "mixbw front: estimated FPS against model-output SNR")
