"""Inline SVG plots drawn by hand: grouped bars (with optional confidence intervals), ROC curves, line charts.

No plotting library and no JavaScript: the report must be one self-contained file that renders offline.
Every text that reaches the SVG goes through :func:`html.escape`.
"""

from __future__ import annotations

from html import escape
from typing import Any

#: Colour-blind-safe palette (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _fmt(v: float, percent: bool) -> str:
    return f"{100 * v:.0f}%" if percent else f"{v:g}"


#: Width reserved for a legend, and the characters of a legend entry that fit in it.
LEGEND_W, LEGEND_CHARS = 250, 40


def _legend(names: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, n in enumerate(names):
        yy = y + 16 * i
        short = n if len(n) <= LEGEND_CHARS else n[: LEGEND_CHARS - 1] + "…"
        out.append(f'<rect x="{x:.1f}" y="{yy - 9:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{yy:.1f}" class="lg">{escape(short)}<title>{escape(n)}</title></text>')
    return out


def bar_chart(plot: dict[str, Any], width: int = 720) -> str:
    """Grouped vertical bars (``plot["horizontal"]``: horizontal) of ``plot["series"]`` over ``plot["groups"]``.

    ``plot``: ``{"title", "groups": [str], "series": [{"name", "values", "low"?, "high"?}], "ymax"?, "percent"?}``;
    a ``None`` value draws no bar (no data), never a zero.
    """
    if plot.get("horizontal"):
        return _hbar_chart(plot, width)
    groups = [str(g) for g in plot["groups"]]
    series = plot["series"]
    percent = bool(plot.get("percent"))
    vals = [x for s in series for x in s["values"] if x is not None]
    highs = [x for s in series for x in (s.get("high") or []) if x is not None]
    ymax = float(plot.get("ymax") or max([*vals, *highs, 1e-9]))
    left, right, top, bottom = 48, 16 + (LEGEND_W if len(series) > 1 else 0), 28, 90
    h = 320
    pw, ph = width - left - right, h - top - bottom
    n_g, n_s = max(len(groups), 1), max(len(series), 1)
    gw = pw / n_g
    bw = max(2.0, gw * 0.8 / n_s)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{h}" '
             f'viewBox="0 0 {width} {h}" role="img">',
             f'<title>{escape(str(plot.get("title", "")))}</title>']
    for i in range(5):
        tick = _fmt(ymax * i / 4, percent)
        y = top + ph - ph * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="ax" text-anchor="end">{tick}</text>')
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = s["values"][gi] if gi < len(s["values"]) else None
            x = gx + si * bw
            colour = PALETTE[si % len(PALETTE)]
            if v is None:
                parts.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph - 4:.1f}" class="na" text-anchor="middle">'
                             'n/a</text>')
                continue
            bh = ph * min(max(v, 0.0), ymax) / ymax if ymax else 0
            parts.append(f'<rect x="{x:.1f}" y="{top + ph - bh:.1f}" width="{bw * 0.92:.1f}" height="{bh:.1f}" '
                         f'fill="{colour}"><title>{escape(s["name"])} · {escape(g)}: {_fmt(v, percent)}</title></rect>')
            lo, hi = (s.get("low") or [None] * (gi + 1))[gi], (s.get("high") or [None] * (gi + 1))[gi]
            if lo is not None and hi is not None:
                cx = x + bw * 0.46
                y1, y2 = top + ph - ph * lo / ymax, top + ph - ph * hi / ymax
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" class="ci"/>')
                for yy in (y1, y2):
                    parts.append(f'<line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" class="ci"/>')
        lx = left + gi * gw + gw / 2
        label = g if len(g) <= 22 else g[:21] + "…"
        parts.append(f'<text x="{lx:.1f}" y="{top + ph + 14}" class="ax" text-anchor="end" '
                     f'transform="rotate(-30 {lx:.1f} {top + ph + 14})">{escape(label)}'
                     f'<title>{escape(g)}</title></text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    if len(series) > 1:
        parts.extend(_legend([s["name"] for s in series], left + pw + 12, top + 10))
    parts.append("</svg>")
    return "".join(parts)


def _hbar_chart(plot: dict[str, Any], width: int) -> str:
    groups = [str(g) for g in plot["groups"]]
    series = plot["series"]
    percent = bool(plot.get("percent"))
    vals = [x for s in series for x in s["values"] if x is not None]
    xmax = float(plot.get("ymax") or max([*vals, 1e-9]))
    left, right, top = 290, 16 + (LEGEND_W if len(series) > 1 else 0), 16
    n_s = max(len(series), 1)
    bh = 12
    gh = bh * n_s + 8
    h = top + gh * len(groups) + 30
    pw = width - left - right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{h}" '
             f'viewBox="0 0 {width} {h}" role="img">', f'<title>{escape(str(plot.get("title", "")))}</title>']
    for i in range(5):
        x = left + pw * i / 4
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{h - 24}" class="grid"/>')
        tick = _fmt(xmax * i / 4, percent)
        parts.append(f'<text x="{x:.1f}" y="{h - 10}" class="ax" text-anchor="middle">{tick}</text>')
    for gi, g in enumerate(groups):
        gy = top + gi * gh
        label = g if len(g) <= 46 else g[:45] + "…"
        parts.append(f'<text x="{left - 6}" y="{gy + gh / 2 + 2:.1f}" class="ax" text-anchor="end">{escape(label)}'
                     f'<title>{escape(g)}</title></text>')
        for si, s in enumerate(series):
            v = s["values"][gi] if gi < len(s["values"]) else None
            if v is None:
                continue
            w = pw * min(max(v, 0.0), xmax) / xmax if xmax else 0
            parts.append(f'<rect x="{left}" y="{gy + si * bh + 4:.1f}" width="{w:.1f}" height="{bh - 2}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(s["name"])} · {escape(g)}: '
                         f'{_fmt(v, percent)}</title></rect>')
    if len(series) > 1:
        parts.extend(_legend([s["name"] for s in series], left + pw + 12, top + 10))
    parts.append("</svg>")
    return "".join(parts)


def roc_chart(plot: dict[str, Any], size: int = 360) -> str:
    """ROC curves (``plot["curves"] = [{"name", "fpr", "tpr", "auc"}]``) with the chance diagonal."""
    left, top, right, bottom = 44, 16, LEGEND_W, 40
    pw = ph = size - top - bottom
    width = left + pw + right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{size}" '
             f'viewBox="0 0 {width} {size}" role="img">', f'<title>{escape(str(plot.get("title", "")))}</title>']
    for i in range(5):
        f = i / 4
        x, y = left + pw * f, top + ph - ph * f
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 14}" class="ax" text-anchor="middle">{f:.2g}</text>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="ax" text-anchor="end">{f:.2g}</text>')
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top}" class="chance"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{size - 6}" class="ax" text-anchor="middle">false-positive rate</text>')
    parts.append(f'<text x="12" y="{top + ph / 2}" class="ax" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + ph / 2})">true-positive rate</text>')
    names = []
    for ci, c in enumerate(plot["curves"]):
        pts = " ".join(f"{left + pw * x:.1f},{top + ph - ph * y:.1f}" for x, y in zip(c["fpr"], c["tpr"], strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[ci % len(PALETTE)]}" stroke-width="2"/>')
        names.append(f'{c["name"]} (AUC {c["auc"]:.3f})')
    parts.extend(_legend(names, left + pw + 12, top + 10))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(plot: dict[str, Any], width: int = 720, height: int = 320) -> str:
    """Lines of ``plot["series"]`` over a shared numeric x axis (a training curve).

    ``plot``: ``{"title", "x": [number], "series": [{"name", "values"}], "xlabel"?, "ylabel"?}``; a ``None``
    value breaks its line (no data there), never a zero.
    """
    xs = [float(x) for x in plot["x"]]
    series = plot["series"]
    vals = [float(v) for s in series for v in s["values"] if v is not None]
    ymin, ymax = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if ymax - ymin < 1e-12:  # a flat line: give it a band to sit in
        ymin, ymax = ymin - 0.5, ymax + 0.5
    xmin, xmax = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if xmax - xmin < 1e-12:
        xmin, xmax = xmin - 0.5, xmax + 0.5
    left, right, top, bottom = 56, 16 + (LEGEND_W if len(series) > 1 else 0), 28, 44
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * (x - xmin) / (xmax - xmin)

    def py(y: float) -> float:
        return top + ph - ph * (y - ymin) / (ymax - ymin)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<title>{escape(str(plot.get("title", "")))}</title>']
    for i in range(5):
        yv, xv = ymin + (ymax - ymin) * i / 4, xmin + (xmax - xmin) * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" class="ax" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<text x="{px(xv):.1f}" y="{top + ph + 14}" class="ax" text-anchor="middle">{xv:.4g}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    if plot.get("xlabel"):
        parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" class="ax" text-anchor="middle">'
                     f'{escape(str(plot["xlabel"]))}</text>')
    if plot.get("ylabel"):
        parts.append(f'<text x="12" y="{top + ph / 2:.1f}" class="ax" text-anchor="middle" '
                     f'transform="rotate(-90 12 {top + ph / 2:.1f})">{escape(str(plot["ylabel"]))}</text>')
    for si, s in enumerate(series):
        colour = PALETTE[si % len(PALETTE)]
        run: list[str] = []
        for x, v in [*zip(xs, s["values"], strict=True), (None, None)]:
            if v is None or x is None:
                if len(run) > 1:
                    parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                                 'stroke-width="2"/>')
                elif run:
                    cx, cy = run[0].split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
                run = []
                continue
            run.append(f"{px(float(x)):.1f},{py(float(v)):.1f}")
    if len(series) > 1:
        parts.extend(_legend([s["name"] for s in series], left + pw + 12, top + 10))
    parts.append("</svg>")
    return "".join(parts)


#: The report stylesheet's rules for plots, for an SVG written as a file of its own.
_SVG_STYLE = ("svg.plot{background:#fff}.grid{stroke:#e5e5e5;stroke-width:1}.axis{stroke:#333;stroke-width:1}"
              ".ci{stroke:#222;stroke-width:1.4}.chance{stroke:#999;stroke-dasharray:4 4}"
              ".ax,.lg,.na{font-size:11px;fill:#333;font-family:sans-serif}.na{fill:#999}")


def standalone_svg(svg: str) -> str:
    """A plot of this module as a stand-alone ``.svg`` file: the report's plot styles embedded in it."""
    head, sep, rest = svg.partition(">")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{head}{sep}<style>{_SVG_STYLE}</style>{rest}\n'
