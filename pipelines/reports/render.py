"""Render a report dict (:func:`pipelines.reports.build.build_report`) as one self-contained HTML file.

Everything is inside the file: CSS inline, figures as inline SVG or base64 PNG, no script and no
network fetch, so it opens offline and can be mailed. Jinja2 autoescaping escapes every value
from data (a cell holding ``<script>`` shows as text); the figures are the only markup passed
through, and matplotlib escapes the text it writes into SVG.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pipelines.reports import plots

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
    trim_blocks=True, lstrip_blocks=True,
)
_ENV.filters["num"] = lambda v, digits=4: "" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))
_ENV.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"


def figures(report: dict, rows: Optional[pd.DataFrame], scores: Optional[pd.DataFrame],
            band: Optional[pd.DataFrame] = None) -> dict[str, Any]:
    """The report's figures as HTML fragments: the distribution, and one per item (a time
    series' events over the model's expected ``band`` of its rows, when given)."""
    out: dict[str, Any] = {"distribution": plots.distribution_plot(report["distribution"]), "cards": {}}
    model = report["model"]
    for item in report["items"]:
        if item["kind"] == "event" and rows is not None and scores is not None:
            out["cards"][item["key"]] = plots.event_plot(
                rows.reset_index(drop=True), scores.reset_index(drop=True), item, model["time_column"],
                model["series_column"], report["summary"]["threshold"],
                None if band is None else band.reset_index(drop=True),
            )
        elif item["features"]:
            out["cards"][item["key"]] = plots.shares_plot(item["features"])
    return out


def render_html(report: dict, figs: dict[str, Any], links: Optional[dict[str, str]] = None) -> str:
    """The HTML text of ``report`` with the figures from :func:`figures`."""
    trusted = {"distribution": Markup(figs["distribution"]), "cards": {k: Markup(v) for k, v in figs["cards"].items()}}
    return _ENV.get_template("report.html.j2").render(r=report, figs=trusted, links=links or {})


def to_json(report: dict) -> str:
    """``report.json``: the same content as the HTML, without the figures."""
    return json.dumps(report, indent=1, default=str, allow_nan=False)
