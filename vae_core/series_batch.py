"""One batch of a series scored after its context: what the scheduled score flow stores and shows.

The batch's rows are scored after the context's (the last points of each series before the batch,
:attr:`TimeSeriesVAEDetector.batch_context_points` of them), and the flagged points of both are
grouped into events together (:func:`vae_core.events.find_events`). The first
:attr:`~TimeSeriesVAEDetector.context_points` of each series' context only settle the scores of
the rest (their own windows reach before the context), so their flags start no event, unless the
series has fewer context rows than that full amount: then the context is the series' whole
history, scored as in the whole series. So an event
that began in an earlier batch is one event with the points it had there: its start is where it
began (as far back as the settled context reaches), it is marked ``began_before``, and each of its
flagged points in the batch is explained by the columns of all its points, the earlier ones
included (:func:`vae_core.events.event_excess`), as in the whole series. In the causal modes the
context's flags are the ones stored for the earlier batch; offline (``point_score="mean"``) the
context's last points are scored again with the batch's windows after them, so their flags can
differ from the stored ones. One pass over the windows gives the scores, the events, the
explanations and the expected band.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from . import series_band
from .events import event_excess, find_events
from .explain import explain_rows
from .scored import ScoredBatch


def score_batch(det: Any, frame: pd.DataFrame, top_k: int, context: Optional[pd.DataFrame],
                band: bool) -> ScoredBatch:
    """Score ``frame`` after ``context`` with the time-series detector ``det``, group its flags into
    events with the context's, explain them, and with ``band`` draw the expected band when a
    row is flagged (:class:`~vae_core.scored.ScoredBatch`; its ``events`` count the event's points
    in the context too in ``start``, ``points`` and ``flagged_points``, while ``peak`` and
    ``peak_score`` are its highest point in the batch). ``scores`` comes without ``top_features``."""
    grids, rows, skip = det.context_grids(frame, context)
    past_flags: Optional[list[np.ndarray]] = [] if band else None
    raw, feat, feat_sq = det.score_grids(grids, len(rows), mask_past=det.masks_past(), past_flags=past_flags)
    every = det.flagged_scores(rows, raw)  # the context's flags too: they continue the batch's events
    flags = every["is_anomaly"].to_numpy(bool)
    series = rows[det.series_column_] if det.series_column_ else None
    settled = np.ones(len(rows), bool)
    settled[:skip] = settled_rows(rows.iloc[:skip], det.time_column_, det.series_column_, det.context_points,
                              det.batch_context_points)
    score = every["anomaly_score"].to_numpy()
    events, member = find_events(rows[det.time_column_], flags & settled, score, series)
    excess = event_excess(det.attribution_.excess(feat, feat_sq), member)[skip:]
    pos = np.flatnonzero(flags[skip:])
    explanation = explain_rows(frame.iloc[pos], excess[pos], det.preprocessor_, top_k, index=pos)
    expected = None
    if band and len(pos):
        expected = series_band.expected(det, grids, len(rows), skip, frame.index, past_flags or None)
    times = rows[det.time_column_].to_numpy()[skip:]
    events, event_of_row = batch_events(events, member, skip, times, score[skip:])
    return ScoredBatch(every.iloc[skip:].set_axis(frame.index), explanation, expected, events, event_of_row,
                       groups_events=True)


def batch_events(events: pd.DataFrame, member: np.ndarray, skip: int, times: np.ndarray,
                 score: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The events of :func:`~vae_core.events.find_events` over context and batch that reach the
    batch (rows ``skip`` and after, whose ``times`` and ``score`` are given), numbered again from
    0, with ``began_before``, and ``peak`` / ``peak_score`` the event's highest point in the batch
    (a batch's card shows its own rows); and each batch row's new event id."""
    ours = member[skip:]
    kept = np.unique(ours[ours >= 0])
    new_id = np.full(len(events) + 1, -1, dtype=np.int64)  # the last place: rows outside events
    new_id[kept] = np.arange(len(kept))
    event_of_row = new_id[ours]
    out = events.iloc[kept].reset_index(drop=True)
    inside = np.flatnonzero(event_of_row >= 0)
    top = pd.Series(score[inside]).groupby(event_of_row[inside]).idxmax().to_numpy()  # per new id, in order
    peak = inside[top] if len(inside) else np.zeros(0, dtype=np.int64)
    out = out.assign(event_id=np.arange(len(kept)), peak=times[peak], peak_score=score[peak],
                     began_before=np.isin(kept, member[:skip]))
    return out, event_of_row


def settled_rows(context: pd.DataFrame, time_column: str, series_column: Optional[str], unsettled: int,
                 full: int) -> np.ndarray:
    """Which context rows are scored as in the whole series: all but each series' first
    ``unsettled`` (their windows reach before the context), whose flags start no event. A series
    with fewer than ``full`` context rows has its whole history there (the score flow reads
    ``full`` where there are that many): all its rows are settled."""
    key = context[series_column].astype(str) if series_column else pd.Series(0, index=context.index)
    by = context.groupby(key, sort=False)[time_column]
    return ((by.rank(method="first") > unsettled) | (by.transform("size") < full)).to_numpy()
