"""Build a batch's report data: header figures, score distribution, review items, drift, quality.

:func:`build_report` is pure: the scores the score flow wrote, the batch's rows, the top-feature
explanations of its flagged rows, and the facts of the model and the batch go in; a JSON-ready
dict comes out (``report.json``), which :mod:`pipelines.reports.render` turns into HTML.

Review items, not raw rows: in a table each flagged row is an item; in a time series each event
(consecutive flagged points of one series, small gaps allowed: :func:`vae_core.events.find_events`)
is one item, so a three-hour level shift is one card, not 36.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from pipelines.lake import ROW_COLUMN
from pipelines.reports.facts import BatchFacts, ModelFacts, drift_verdict
from vae_core.events import find_events

REPORT_VERSION = 1
MAX_ITEMS = 100  # cards in one report, highest scores first; the rest are counted, not shown
MAX_TEXT = 80  # characters of a value shown on a card


def short_text(value: Any, limit: int = MAX_TEXT) -> str:
    """A value as text, cut to ``limit`` characters with an ellipsis (a 200,000-character cell
    must not land whole in a report)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def item_key(dataset: str, batch_id: str, kind: str, ident: Any) -> str:
    """The stable key of a review item: what a verdict is stored against."""
    return f"{dataset}/{batch_id}/{kind}/{ident}"


def _features(explanations: pd.DataFrame, positions: np.ndarray, facts: ModelFacts, limit: int = 3,
              peak: Optional[int] = None) -> list[dict]:
    """Top features over ``positions`` (rows of the scores frame), shares averaged over the rows
    (a time series' points of one event carry their event's shares: vae_core explains events);
    each feature's value from the ``peak`` row where it names it, else from its highest share."""
    if explanations is None or explanations.empty:
        return []
    rows = explanations[explanations.index.isin(positions)]
    if rows.empty:
        return []
    ranked_rows = rows.assign(_peak=rows.index == peak).sort_values(["_peak", "share"], ascending=False, kind="stable")
    peak_value = ranked_rows.groupby("feature", sort=False).head(1)
    share = rows.groupby("feature", sort=False)["share"].sum() / max(len(np.unique(rows.index)), 1)
    out = []
    ranked = share.sort_values(ascending=False, kind="stable")
    ranked = ranked[ranked.round(2) >= 0.01].head(limit) if (ranked.round(2) >= 0.01).any() else ranked.head(1)
    for feature, s in ranked.items():
        col = facts.columns.get(feature)
        value = peak_value.loc[peak_value["feature"] == feature, "value"].iloc[0]
        out.append({
            "feature": str(feature),
            "share": round(float(s), 4),
            "value": short_text(value),
            "center": None if col is None or col.center is None else col.center,
            "low": None if col is None else col.low,
            "high": None if col is None else col.high,
            "typical": short_text(col.typical if col else "", 120),
            "outside_range": bool(
                col is not None and col.low is not None and _is_number(value)
                and not (col.low <= float(value) <= col.high)
            ),
        })
    return out


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _row_items(scores: pd.DataFrame, explanations: pd.DataFrame, model: ModelFacts, batch: BatchFacts) -> tuple[list[dict], int]:
    """Each flagged row an item, highest score first; and how many there are in all."""
    flagged = np.flatnonzero(scores["is_anomaly"].to_numpy(bool))
    flagged = flagged[np.argsort(-scores["anomaly_score"].to_numpy(float)[flagged], kind="stable")]
    if explanations is not None and not explanations.empty:  # the items' rows only, found once
        explanations = explanations[explanations.index.isin(flagged[:MAX_ITEMS])]
    items = []
    for pos in flagged[:MAX_ITEMS]:
        row = scores.iloc[pos]
        source_row = int(row[ROW_COLUMN]) if ROW_COLUMN in scores.columns else int(pos)
        score = float(row["anomaly_score"])
        items.append({
            "key": item_key(batch.dataset, batch.batch_id, "row", source_row),
            "kind": "row", "title": f"row {source_row}", "source_row": source_row,
            "score": score, "p_value": float(row["p_value"]), "margin": score - model.threshold,
            "features": _features(explanations, np.array([pos]), model),
        })
    return items, len(flagged)


def _event_items(scores: pd.DataFrame, rows: pd.DataFrame, explanations: pd.DataFrame, model: ModelFacts,
                 batch: BatchFacts, max_gap: int, found: Optional[tuple[pd.DataFrame, np.ndarray]] = None,
                 ) -> tuple[list[dict], int]:
    """Each event an item, highest peak first; and how many events there are in all. ``found``:
    the events and each row's event id as the detector found them with the batch's context,
    else they are found in the batch's rows."""
    flags = scores["is_anomaly"].to_numpy(bool)
    values = scores["anomaly_score"].to_numpy(float)
    if found is None:
        times = rows[model.time_column].reset_index(drop=True)
        series = rows[model.series_column].reset_index(drop=True) if model.series_column else None
        found = find_events(times, flags, values, series=series, max_gap=max_gap)
    events, member = found
    total = len(events)
    events = events.sort_values("peak_score", ascending=False, kind="stable").head(MAX_ITEMS)
    p = scores["p_value"].to_numpy(float)
    items = []
    for ev in events.itertuples(index=False):
        positions = np.flatnonzero(member == ev.event_id)
        where = f"{ev.series} " if model.series_column else ""
        before = bool(getattr(ev, "began_before", False))
        items.append({
            "key": item_key(batch.dataset, batch.batch_id, "event",
                            f"{short_text(ev.series, 40)}@{time_text(ev.start)}" if model.series_column else time_text(ev.start)),
            "kind": "event", "title": f"{where}{time_text(ev.start)} – {time_text(ev.end)}",
            "series": None if ev.series is None else short_text(ev.series, 120),
            "start": time_text(ev.start), "end": time_text(ev.end), "peak": time_text(ev.peak),
            "points": int(ev.points), "flagged_points": int(ev.flagged_points), "began_before": before,
            "score": float(ev.peak_score), "p_value": float(p[positions].min()),
            "margin": float(ev.peak_score) - model.threshold,
            "features": _features(explanations, positions[flags[positions]], model,
                                  peak=int(positions[np.argmax(values[positions])])),
        })
    return items, total


def time_text(t: Any) -> str:
    """A point's time as text: ISO 8601 for datetimes, the number for numeric time (every digit
    a float has: epoch seconds stay apart)."""
    if isinstance(t, (int, float, np.integer, np.floating)):
        return np.format_float_positional(float(t), trim="-") if isinstance(t, (float, np.floating)) else str(int(t))
    return pd.Timestamp(t).isoformat()


def build_report(scores: pd.DataFrame, rows: Optional[pd.DataFrame], explanations: Optional[pd.DataFrame],
                 model: ModelFacts, batch: BatchFacts, reviewed_precision: Optional[float] = None,
                 max_gap: int = 2, events: Optional[tuple[pd.DataFrame, np.ndarray]] = None) -> dict[str, Any]:
    """The report of one scored batch as a JSON-ready dict.

    Parameters
    ----------
    scores : DataFrame
        The batch's scores as the score flow wrote them, in row order (``anomaly_score``,
        ``p_value``, ``is_anomaly``, ``_source_row`` ...).
    rows : DataFrame or None
        The batch's rows in the same order (needed for time series: times, series, values).
    explanations : DataFrame or None
        ``det.explain`` of the flagged rows (long form), indexed by their position in ``scores``.
    model, batch : ModelFacts, BatchFacts
    reviewed_precision : float, optional
        Share of this model version's reviewed items confirmed as anomalies so far.
    max_gap : int
        For time series: unflagged points allowed inside one event.
    events : (DataFrame, array), optional
        For time series: the events as the detector found them with the batch's context
        (``ScoredBatch.events``, with ``began_before``) and each row's event id; found in
        ``rows`` when omitted.
    """
    scores = scores.reset_index(drop=True)
    if explanations is None:
        explanations = pd.DataFrame(columns=["feature", "share", "value"])
    if model.is_timeseries:
        if rows is None:
            raise ValueError("a time-series report needs the batch's rows (times and series)")
        items, n_items = _event_items(scores, rows.reset_index(drop=True), explanations, model, batch, max_gap, events)
    else:
        items, n_items = _row_items(scores, explanations, model, batch)
    flagged = int(scores["is_anomaly"].to_numpy(bool).sum())
    return {
        "report_version": REPORT_VERSION,
        "dataset": batch.dataset,
        "batch": batch.to_dict(),
        "model": model.to_dict(),
        "summary": {
            "rows": int(len(scores)), "flagged": flagged, "flag_rate": flagged / max(len(scores), 1),
            "n_items": n_items, "items_shown": len(items),
            "threshold": model.threshold, "threshold_rule": model.threshold_rule,
            "reviewed_precision": reviewed_precision,
        },
        "distribution": _distribution(scores["anomaly_score"].to_numpy(float), model),
        "drift": drift_verdict(batch.psi),
        "quality": _quality(batch),
        "items": items,
    }


def _distribution(batch_scores: np.ndarray, model: ModelFacts, bins: int = 40) -> dict[str, Any]:
    """Histogram counts of the batch's and the calibration scores on one set of edges."""
    both = np.concatenate([batch_scores[np.isfinite(batch_scores)], model.calibration_scores])
    lo, hi = np.quantile(both, [0.0, 0.999]) if len(both) else (0.0, 1.0)
    hi = max(hi, model.threshold) * 1.02 if hi > 0 else hi + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    clip = lambda s: np.clip(s, lo, hi)  # noqa: E731 - the last bin holds the far tail
    return {
        "edges": edges.tolist(),
        "batch": np.histogram(clip(batch_scores[np.isfinite(batch_scores)]), edges)[0].tolist(),
        "calibration": np.histogram(clip(model.calibration_scores), edges)[0].tolist(),
        "threshold": model.threshold,
        "batch_quantiles": {q: float(np.quantile(batch_scores, float(q))) for q in ("0.5", "0.9", "0.99")} if len(batch_scores) else {},
    }


def _quality(batch: BatchFacts) -> list[str]:
    notes = []
    if batch.quarantined:
        notes.append(f"{batch.quarantined} row(s) of this batch were quarantined at ingest (see `vae-anomaly lake`).")
    notes.extend(batch.notes)
    return notes
