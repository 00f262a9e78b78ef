"""Anomaly reports: one self-contained HTML file (and the same content as JSON) per scored batch.

- :mod:`~pipelines.reports.facts`: what a report is built from (model and batch facts)
- :mod:`~pipelines.reports.build`: the report data (pure), review items and events
- :mod:`~pipelines.reports.plots`: matplotlib figures as inline SVG / base64 PNG
- :mod:`~pipelines.reports.render`: the HTML (Jinja2, autoescaped) and the JSON
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it; imported on first use, so what needs only the stored
# reports (pipelines.reports.store, the review server) starts without torch and matplotlib
_EXPORTS = {
    "build_report": "build", "item_key": "build",
    "BatchFacts": "facts", "ColumnFacts": "facts", "ModelFacts": "facts", "detector_facts": "facts",
    "drift_verdict": "facts",
    "figures": "render", "render_html": "render", "to_json": "render",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
