"""The report's figures, drawn into self-contained strings (matplotlib; the small share bars
written as SVG directly).

Small figures are inline SVG (text kept as text, so they stay small); a series of more than
``PNG_POINTS`` points becomes a base64 PNG, since an SVG grows with every point. Only the
object-oriented API is used (``matplotlib.figure.Figure``): no pyplot state, no backend switch.
"""
from __future__ import annotations

import base64
import html
import io
import re
from typing import Any, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipelines.lake import BATCH_COLUMN, ROW_COLUMN

PNG_POINTS = 1500
CONTEXT_POINTS = 48  # points of a series drawn on each side of an event
EVENT_MARGINS = {"left": 0.1, "right": 0.98, "top": 0.97, "bottom": 0.2, "hspace": 0.12}  # of the figure
OBSERVED, SCORE, CALIBRATION, THRESHOLD, SHADE, BAND = "#1f4e79", "#b03a2e", "#9aa5b1", "#b03a2e", "#f5b7b1", "#a9cce3"
_RC = {"svg.fonttype": "none", "font.size": 8, "axes.spines.top": False, "axes.spines.right": False,
       "font.sans-serif": ["DejaVu Sans", "Arial"]}  # the font list is written into every SVG text: keep it short


def _encode(fig: Figure, png: bool = False, tight: bool = True) -> str:
    """The figure as an HTML fragment: an ``<svg>`` element, or an ``<img>`` with a data URI.
    ``tight=False`` keeps the figure's own margins (no second layout pass on saving)."""
    buf = io.BytesIO()
    bbox = {"bbox_inches": "tight"} if tight else {}
    if png:
        fig.savefig(buf, format="png", dpi=110, **bbox)
        return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    fig.savefig(buf, format="svg", metadata={"Date": None}, **bbox)
    text = buf.getvalue().decode("utf-8")
    text = text[text.index("<svg"):]  # drop the XML prologue and doctype: inline in HTML
    text = re.sub(r"\n\s+", "\n", re.sub(r' d="([^"]*)"', _short_path, text))
    return re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)


def _short_path(match: re.Match) -> str:
    """A path's ``d`` attribute with coordinates to 0.1 pt, on one line, and a line-to after
    a point of a path of moves and lines only implicit (an event card's lines and band hold
    a few hundred points each: this makes them a third of the size)."""
    d = re.sub(r"(\.\d)\d+", r"\1", match.group(1)).replace(" \n", " ")
    if set(re.findall(r"[A-Za-z]", d)) <= {"M", "L", "z"}:
        d = re.sub(r"(\d) L ", r"\1 ", d)
    return f' d="{d}"'


def _figure(width: float, height: float, rows: int = 1, layout: Optional[str] = "constrained", **kwargs: Any):
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout=layout)
        axes = fig.subplots(rows, 1, sharex=True, **kwargs)
    return fig, axes


def distribution_plot(dist: dict) -> str:
    """The batch's score histogram over the calibration scores', the threshold marked."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, ax = _figure(6.0, 2.2)
        edges = np.asarray(dist["edges"])
        for counts, color, label in ((dist["calibration"], CALIBRATION, "calibration (held-out normal rows)"),
                                     (dist["batch"], OBSERVED, "this batch")):
            counts = np.asarray(counts, float)
            density = counts / max(counts.sum(), 1.0)
            ax.stairs(density, edges, color=color, fill=color == CALIBRATION, alpha=0.6 if color == CALIBRATION else 1.0, label=label)
        ax.axvline(dist["threshold"], color=THRESHOLD, linestyle="--", linewidth=1.2, label="threshold")
        ax.set_xlabel("anomaly score (nats)")
        ax.set_ylabel("share of rows")
        ax.legend(frameon=False, loc="upper right")
        return _encode(fig)


def shares_plot(features: list[dict]) -> str:
    """Each top feature's share of the item's excess negative log-likelihood, as horizontal bars.

    Written as SVG directly (bars, names and an axis from 0 to 100%), not with matplotlib: a
    report has a card per flagged row, and matplotlib took ~0.25 s a card, most of a 1M-row score
    flow's time (benchmarks/pipeline.py). Names from the data are escaped and cut to 24 characters.
    """
    label_w, bar_w, row_h, top, axis_h = 130.0, 140.0, 14.0, 4.0, 26.0
    height = top + row_h * max(len(features), 1) + axis_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 16:.0f}pt" height="{height:.0f}pt" '
             f'viewBox="0 0 {label_w + bar_w + 16:.0f} {height:.0f}" role="img" '
             'aria-label="share of the excess score per feature" style="font-family: \'DejaVu Sans\', Arial, sans-serif; '
             'font-size: 8px">']
    for i, f in enumerate(features):
        y = top + i * row_h
        share = min(max(100 * float(f["share"]), 0.0), 100.0)
        name = html.escape(str(f["feature"])[:24])
        parts.append(f'<text x="{label_w - 4:.0f}" y="{y + row_h * 0.68:.1f}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{label_w:.0f}" y="{y + 2:.1f}" width="{bar_w * share / 100:.1f}" height="{row_h - 4:.0f}" '
                     f'fill="{OBSERVED}"><title>{name}: {share:.1f}%</title></rect>')
    axis_y = top + row_h * max(len(features), 1)
    parts.append(f'<path d="M {label_w:.0f} {axis_y:.1f} H {label_w + bar_w:.0f}" stroke="#000" stroke-width="0.8"/>')
    for tick in (0, 25, 50, 75, 100):
        x = label_w + bar_w * tick / 100
        parts.append(f'<path d="M {x:.1f} {axis_y:.1f} v 3" stroke="#000" stroke-width="0.8"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 11:.1f}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{label_w + bar_w / 2:.0f}" y="{axis_y + 22:.1f}" text-anchor="middle">'
                 'share of the excess score (%)</text></svg>')
    return "".join(parts)


def event_plot(rows: pd.DataFrame, scores: pd.DataFrame, item: dict, time_column: str,
               series_column: Optional[str], threshold: float, band: Optional[pd.DataFrame] = None) -> str:
    """The series around an event (the event shaded) with the score track beneath.

    Draws the item's top feature (or the first numeric one) for the event's series, from
    ``CONTEXT_POINTS`` points before the event to as many after it, over the model's expected
    band (mean +- 2 sd, from ``band``: :meth:`vae_core.TimeSeriesVAEDetector.expected` of ``rows``).
    """
    import matplotlib

    frame = rows.assign(_score=scores["anomaly_score"].to_numpy(float), _pos=np.arange(len(rows)))
    if series_column:
        frame = frame[frame[series_column].astype(str).str.slice(0, 120) == str(item["series"])]
    frame = frame.sort_values(time_column, kind="stable")
    if pd.api.types.is_numeric_dtype(frame[time_column]):
        times, start, end = frame[time_column], float(item["start"]), float(item["end"])
    else:
        times, start, end = pd.to_datetime(frame[time_column], utc=True), _utc(item["start"]), _utc(item["end"])
    inside = np.flatnonzero((times >= start).to_numpy() & (times <= end).to_numpy())
    lo = max(int(inside[0]) - CONTEXT_POINTS, 0) if len(inside) else 0
    hi = min(int(inside[-1]) + CONTEXT_POINTS + 1, len(frame)) if len(inside) else len(frame)
    window, wtimes = frame.iloc[lo:hi], times.iloc[lo:hi]
    numeric = [c for c in window.columns if c not in (time_column, series_column, "_score", "_pos", BATCH_COLUMN, ROW_COLUMN)
               and pd.api.types.is_numeric_dtype(window[c]) and not pd.api.types.is_bool_dtype(window[c])]
    top = [f["feature"] for f in item.get("features", []) if f["feature"] in numeric]
    feature = top[0] if top else (numeric[0] if numeric else None)
    with matplotlib.rc_context(_RC):
        # fixed margins, not the constrained layout and a tight bounding box: a report draws up to
        # MAX_ITEMS of these, and the two layout passes were 60% of each card's 0.3 s
        fig, (ax, sx) = _figure(6.0, 2.8, rows=2, layout=None, gridspec_kw={"height_ratios": [2, 1]})
        fig.subplots_adjust(**EVENT_MARGINS)
        if feature is not None:
            if band is not None and feature in band.columns.get_level_values(0):
                mean = band[(feature, "mean")].to_numpy(float)[window["_pos"].to_numpy()]
                sd = band[(feature, "std")].to_numpy(float)[window["_pos"].to_numpy()]
                ax.fill_between(wtimes, mean - 2 * sd, mean + 2 * sd, color=BAND, alpha=0.7, linewidth=0,
                                label="expected (mean ± 2 sd)")
            ax.plot(wtimes, window[feature].to_numpy(float), color=OBSERVED, linewidth=1.0, label="observed")
            ax.set_ylabel(feature[:24])
        ax.axvspan(start, end, color=SHADE, alpha=0.6, linewidth=0, label="event")
        ax.legend(frameon=False, loc="upper left", fontsize=6, ncol=3)
        sx.plot(wtimes, window["_score"].to_numpy(float), color=SCORE, linewidth=1.0)
        sx.axhline(threshold, color=THRESHOLD, linestyle="--", linewidth=0.8)
        sx.axvspan(start, end, color=SHADE, alpha=0.6, linewidth=0)
        sx.set_ylabel("score")
        fig.autofmt_xdate(bottom=EVENT_MARGINS["bottom"])
        return _encode(fig, png=len(window) > PNG_POINTS, tight=False)


def _utc(text: str) -> pd.Timestamp:
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
