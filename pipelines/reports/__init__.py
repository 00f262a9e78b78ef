"""Anomaly reports: one self-contained HTML file (and the same content as JSON) per scored batch.

- :mod:`~pipelines.reports.facts`: what a report is built from (model and batch facts)
- :mod:`~pipelines.reports.build`: the report data (pure), review items and events
- :mod:`~pipelines.reports.plots`: matplotlib figures as inline SVG / base64 PNG
- :mod:`~pipelines.reports.render`: the HTML (Jinja2, autoescaped) and the JSON
"""
from pipelines.reports.build import build_report, item_key
from pipelines.reports.facts import BatchFacts, ColumnFacts, ModelFacts, detector_facts, drift_verdict
from pipelines.reports.render import figures, render_html, to_json

__all__ = [
    "BatchFacts", "ColumnFacts", "ModelFacts", "build_report", "detector_facts", "drift_verdict",
    "figures", "item_key", "render_html", "to_json",
]
