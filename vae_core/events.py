"""Flagged points of a time series -> events: one reviewable item per anomalous stretch.

A level shift flagged over three hours is one event, not 36 points. Consecutive flagged points
of one series form an event; up to ``max_gap`` unflagged points between two flagged ones do not
split it (scores of a long anomaly often dip below the threshold for a point or two).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

EVENT_COLUMNS = ["event_id", "series", "start", "end", "peak", "peak_score", "points", "flagged_points"]


def find_events(
    times: pd.Series,
    flags: np.ndarray,
    scores: np.ndarray,
    series: Optional[pd.Series] = None,
    max_gap: int = 2,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Group flagged points into events, per series, in time order.

    Parameters
    ----------
    times : Series of shape (n,)
        Timestamps (datetime or numeric) of the points.
    flags : array of bool, shape (n,)
        Which points are flagged.
    scores : array of float, shape (n,)
        The points' anomaly scores (an event's peak is its highest-scoring point).
    series : Series of shape (n,), optional
        The series each point belongs to; one series when omitted.
    max_gap : int
        Largest run of unflagged points (in the series' own point order) inside one event.

    Returns
    -------
    events : DataFrame
        One row per event, columns ``event_id`` (0, 1, ... ordered by series then start),
        ``series``, ``start``, ``end``, ``peak`` (time of the highest score), ``peak_score``,
        ``points`` (points from start to end, gaps included) and ``flagged_points``.
    event_of_point : array of int, shape (n,)
        The event id of each input point, -1 outside events (gap points inside an event get its id).
    """
    n = len(times)
    flags = np.asarray(flags, bool)
    scores = np.asarray(scores, float)
    if len(flags) != n or len(scores) != n:
        raise ValueError(f"times, flags and scores differ in length ({n}, {len(flags)}, {len(scores)})")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    keys = np.zeros(n, dtype=np.int64) if series is None else pd.Series(series).to_numpy()
    frame = pd.DataFrame({"series": keys, "time": pd.Series(times).to_numpy(), "score": scores, "flag": flags})
    frame = frame.sort_values(["series", "time"], kind="stable")  # index: the input positions
    rank = frame.groupby("series", sort=False).cumcount().to_numpy()
    hit = frame[frame["flag"].to_numpy()]
    hit_rank = rank[frame["flag"].to_numpy()]
    new_series = hit["series"].ne(hit["series"].shift()).to_numpy()
    far = np.diff(hit_rank, prepend=-(max_gap + 2)) > max_gap + 1
    ids = np.cumsum(new_series | far) - 1
    # a point inside an event (a gap point included) has the same event before and after it
    ev = pd.Series(np.nan, index=frame.index)
    ev[hit.index] = ids
    grouped = ev.groupby(frame["series"].to_numpy(), sort=False)
    before, after = grouped.ffill(), grouped.bfill()
    inside = (before.eq(after) & before.notna()).to_numpy()
    event_of_point = np.full(n, -1, dtype=np.int64)
    event_of_point[ev.index[inside]] = before[inside].to_numpy()
    if len(hit) == 0:
        return pd.DataFrame(columns=EVENT_COLUMNS), event_of_point
    hit = hit.assign(event_id=ids)
    by = hit.groupby("event_id", sort=True)
    peak = hit.loc[by["score"].idxmax().to_numpy()]
    events = pd.DataFrame({
        "event_id": by.size().index.to_numpy(),
        "series": by["series"].first().to_numpy() if series is not None else None,
        "start": by["time"].min().to_numpy(),
        "end": by["time"].max().to_numpy(),
        "peak": peak["time"].to_numpy(),
        "peak_score": peak["score"].to_numpy(),
        "points": np.bincount(event_of_point[event_of_point >= 0], minlength=len(by)),
        "flagged_points": by.size().to_numpy(),
    })
    return events[EVENT_COLUMNS], event_of_point


def event_excess(excess: np.ndarray, event_of_point: np.ndarray) -> np.ndarray:
    """Per-point column attributions replaced, inside events, by their event's.

    Parameters
    ----------
    excess : array of shape (n, d)
        Each point's excess NLL per column (:meth:`vae_core.explain.Attribution.excess`).
    event_of_point : array of int, shape (n,)
        :func:`find_events`' second result (-1 outside events).

    Returns
    -------
    array of shape (n, d)
        For a point in an event, the sum of ``excess`` over the event's points (gap points
        included), so every point of one event names the same columns with the same shares;
        other points keep their own row.
    """
    inside = event_of_point >= 0
    if not inside.any():
        return excess
    sums = np.zeros((int(event_of_point.max()) + 1, excess.shape[1]))
    np.add.at(sums, event_of_point[inside], excess[inside])
    out = np.array(excess, dtype=np.float64, copy=True)
    out[inside] = sums[event_of_point[inside]]
    return out
