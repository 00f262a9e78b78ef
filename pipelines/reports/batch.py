"""A scored batch's report, from what its score task has in hand, written into the lake.

The score task feeds :class:`ReportParts` each scored chunk (the scores it wrote and the
explanation of the flagged rows, from the same pass: :func:`vae_core.score_and_explain`), then
calls :func:`write_batch_report`. ``vae-anomaly report`` does the same from the lake's rows.
"""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from pipelines.lake import ROW_COLUMN, Lake
from pipelines.reports.build import build_report
from pipelines.reports.facts import BatchFacts, detector_facts
from pipelines.reports.render import figures, render_html, to_json
from pipelines.reports.store import ReportRef, ReportStore

LIGHT_COLUMNS = [ROW_COLUMN, "anomaly_score", "p_value", "is_anomaly"]


class ReportParts:
    """What a report needs of a batch, kept chunk by chunk: a few score columns of every row,
    the flagged rows' explanations, and (time series) the rows themselves for the plots."""

    def __init__(self, det: Any):
        self.time_column = getattr(det, "time_column_", None)
        self.series_column = getattr(det, "series_column_", None)
        self.scores: list[pd.DataFrame] = []
        self.explanations: list[pd.DataFrame] = []
        self.rows: list[pd.DataFrame] = []
        self.band: Optional[pd.DataFrame] = None
        self.events: Optional[tuple[pd.DataFrame, Any]] = None
        self.n = 0

    def add(self, part: pd.DataFrame, explanation: pd.DataFrame, rows: Optional[pd.DataFrame] = None,
            band: Optional[pd.DataFrame] = None, events: Optional[tuple[pd.DataFrame, Any]] = None) -> None:
        """One scored chunk: ``part`` as written (keys and scores), ``explanation`` indexed by
        position in ``part``; for a time series (one chunk) ``rows``, the chunk's feature rows,
        ``band``, the model's expected values of those rows
        (:meth:`vae_core.TimeSeriesVAEDetector.expected`; None: no band drawn), and ``events``,
        the events found with the batch's context and each row's event id
        (:class:`vae_core.series_batch.ScoredBatch`; None: the report finds them in the rows)."""
        self.scores.append(part[LIGHT_COLUMNS].reset_index(drop=True))
        if len(explanation):
            self.explanations.append(explanation.set_axis(explanation.index + self.n))
        if self.time_column is not None and rows is not None:
            self.rows.append(rows.reset_index(drop=True))
            self.band = None if band is None else band.reset_index(drop=True)
            self.events = events
        self.n += len(part)

    def frames(self) -> tuple[pd.DataFrame, Optional[pd.DataFrame], pd.DataFrame]:
        scores = pd.concat(self.scores, ignore_index=True) if self.scores else pd.DataFrame(columns=LIGHT_COLUMNS)
        rows = pd.concat(self.rows, ignore_index=True) if self.rows else None
        explanations = pd.concat(self.explanations) if self.explanations else pd.DataFrame(columns=["feature", "share", "value"])
        return scores, rows, explanations


def reviewed_precision(lake: Lake, dataset: str, scores_key: str) -> Optional[float]:
    """The share of this model version's reviewed items that were real so far (the review
    page's figure: :func:`pipelines.review.labels.version_precision`)."""
    from pipelines.review.feedback import FeedbackStore
    from pipelines.review.labels import reviewed_items, version_precision

    feedback = FeedbackStore(lake.table_uri(dataset, "feedback"), lake.delta_options)
    versions = version_precision(reviewed_items(ReportStore(lake.url), feedback, dataset, label=scores_key))
    return None if versions.empty else versions["precision"].iloc[0]


def write_batch_report(lake: Lake, dataset: str, batch_id: str, scores_key: str, det: Any, info: Any,
                       parts: ReportParts, psi: Optional[float]) -> str:
    """Build, render and store the report of one scored batch; returns the path of report.html.

    ``info`` is the registered version (:class:`pipelines.tracking.ModelVersionInfo`)."""
    record = next((r for r in lake.list_batches(dataset) if r.batch_id == batch_id), None)
    scores, rows, explanations = parts.frames()
    batch = BatchFacts(
        dataset=dataset, batch_id=batch_id, rows=len(scores), psi=psi,
        quarantined=int(record.rows_quarantined) if record else 0, source=record.source if record else None,
    )
    facts = detector_facts(det, info.name, info.version, aliases=tuple(info.aliases), run_id=info.run_id)
    report = build_report(scores, rows, explanations, facts, batch, reviewed_precision(lake, dataset, scores_key),
                          events=parts.events)
    figs = figures(report, rows, scores, parts.band)
    return ReportStore(lake.url).write(ReportRef(dataset, scores_key, batch_id), render_html(report, figs),
                                       to_json(report), figs["cards"])

