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
    the flagged rows' explanations, and (time series) the rows themselves for the plots, the
    expected band and the events the detector found with the batch's context."""

    def __init__(self, det: Any):
        self.time_column, *rest = det.key_columns_ or [None]
        self.series_column = rest[0] if rest else None
        self.scores: list[pd.DataFrame] = []
        self.explanations: list[pd.DataFrame] = []
        self.rows: list[pd.DataFrame] = []
        self.band: Optional[pd.DataFrame] = None
        self.events: Optional[tuple[pd.DataFrame, Any]] = None
        self.n = 0

    def add(self, chunk: Any) -> None:
        """One scored chunk (:class:`pipelines.flows.scoring.ScoreChunk`): its ``part`` as written
        (keys and scores), the explanation indexed by position in ``part``; for a time series
        (one chunk) its feature ``rows``, the band (None: no band drawn) and the events with each
        row's event id (:class:`vae_core.ScoredBatch`)."""
        scored = chunk.scored
        self.scores.append(chunk.part[LIGHT_COLUMNS].reset_index(drop=True))
        if len(scored.explanation):
            self.explanations.append(scored.explanation.set_axis(scored.explanation.index + self.n))
        if self.time_column is not None:
            self.rows.append(chunk.rows.reset_index(drop=True))
            self.band = None if scored.band is None else scored.band.reset_index(drop=True)
        if scored.groups_events:
            self.events = (scored.events, scored.event_of_row)
        self.n += len(chunk.part)

    def frames(self) -> tuple[pd.DataFrame, Optional[pd.DataFrame], pd.DataFrame]:
        scores = pd.concat(self.scores, ignore_index=True) if self.scores else pd.DataFrame(columns=LIGHT_COLUMNS)
        rows = pd.concat(self.rows, ignore_index=True) if self.rows else None
        explanations = pd.concat(self.explanations) if self.explanations else pd.DataFrame(columns=["feature", "share", "value"])
        return scores, rows, explanations


def reviewed_precision(lake: Lake, dataset: str, scores_key: str) -> Optional[float]:
    """The share of this model version's reviewed items that were real so far (the review
    page's figure), from the current verdicts in the feedback table alone: one read of one
    table, where reading the reviewed batches' reports made each report cost more than the last."""
    from pipelines.review.feedback import FeedbackStore, precision_by_version

    versions = precision_by_version(FeedbackStore(lake.table_uri(dataset, "feedback"), lake.delta_options).current())
    mine = versions[versions["label"] == scores_key]
    return None if mine.empty else mine["precision"].iloc[0]


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

