"""Verdicts as labels: which reviewed items were real, and the training data without them.

Joins the feedback table's current verdicts with the items of the stored reports (an item's
rows, or an event's series and time span) and turns them into what retraining and threshold
recalibration need.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from pipelines.lake import BATCH_COLUMN, ROW_COLUMN
from pipelines.reports.store import ReportRef, ReportStore
from pipelines.review.feedback import FeedbackStore, precision
from pipelines.review.threshold import REAL

ITEM_COLUMNS = ["key", "kind", "label", "batch_id", "score", "verdict", "source_row", "series", "start", "end", "run_id"]
VERSION_COLUMNS = ["label", "run_id", "reviewed", "precision"]


def reviewed_items(reports: ReportStore, feedback: FeedbackStore, dataset: str, label: Optional[str] = None) -> pd.DataFrame:
    """Every reviewed item of ``dataset``'s reports (of model version ``label``, if given) with
    its current verdict, one row per item (columns ``ITEM_COLUMNS``; ``real`` added).

    A verdict carries its item's facts (score, row or span, run), so the items come from the
    feedback table alone; only a verdict stored before it did (its ``score`` null) has its
    report read, each such report once. The cost follows the verdicts, not the reports."""
    current = feedback.current()
    if label is not None:
        current = current[current["model_version"] == label]
    known = current[current["score"].notna()]
    rows = [{"key": key, "kind": v.kind, "label": v.model_version, "batch_id": v.batch_id, "score": float(v.score),
             "verdict": v.verdict, "source_row": None if pd.isna(v.source_row) else int(v.source_row),
             "series": v.series, "start": v.start, "end": v.end, "run_id": v.run_id}
            for key, v in zip(known.index, known.itertuples(index=False))]
    old = current[current["score"].isna()]
    for version, batch_id in sorted(set(zip(old["model_version"], old["batch_id"]))):
        report = reports.report(ReportRef(dataset, version, batch_id)) or {}
        for item in report.get("items", []):
            if item["key"] in old.index:
                rows.append({
                    "key": item["key"], "kind": item["kind"], "label": version, "batch_id": batch_id,
                    "score": item["score"], "verdict": old.loc[item["key"], "verdict"],
                    "source_row": item.get("source_row"), "series": item.get("series"),
                    "start": item.get("start"), "end": item.get("end"), "run_id": report.get("model", {}).get("run_id"),
                })
    items = pd.DataFrame(rows, columns=ITEM_COLUMNS).sort_values(["label", "batch_id", "key"], kind="stable")
    items = items.reset_index(drop=True)
    return items.assign(real=items["verdict"].isin(REAL).to_numpy(bool))


def version_precision(items: pd.DataFrame) -> pd.DataFrame:
    """Per model version (``label``) of :func:`reviewed_items`: its reviewed items, the precision
    of its flags (:func:`pipelines.review.feedback.precision`) and its MLflow run. The one
    computation behind the page's figure, the report header and the runs' ``reviewed_precision``."""
    rows = [{"label": label, "run_id": group["run_id"].dropna().iloc[0] if group["run_id"].notna().any() else None,
             "reviewed": len(group), "precision": precision(group)}
            for label, group in items.groupby("label", sort=True)]
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def covered(frame: pd.DataFrame, items: pd.DataFrame, verdicts: tuple[str, ...], time_column: Optional[str] = None,
            series_column: Optional[str] = None) -> np.ndarray:
    """Which rows of ``frame`` (lake rows: ``batch_id``, ``_source_row``) the items whose current
    verdict is in ``verdicts`` cover: a row item's row, or every point of an event's span."""
    chosen = items[items["verdict"].isin(verdicts)]
    hit = np.zeros(len(frame), bool)
    if chosen.empty or frame.empty:
        return hit
    if time_column is None:
        keys = set(zip(chosen["batch_id"], chosen["source_row"].astype("int64")))
        return np.fromiter((k in keys for k in zip(frame[BATCH_COLUMN], frame[ROW_COLUMN].astype("int64"))), bool, len(frame))
    numeric = pd.api.types.is_numeric_dtype(frame[time_column])
    times = frame[time_column] if numeric else pd.to_datetime(frame[time_column], utc=True)
    for ev in chosen.itertuples(index=False):
        start, end = (float(ev.start), float(ev.end)) if numeric else (_time(ev.start), _time(ev.end))
        inside = (times >= start).to_numpy() & (times <= end).to_numpy() & (frame["batch_id"] == ev.batch_id).to_numpy()
        if series_column:
            inside &= (frame[series_column].astype(str).str.slice(0, 120) == str(ev.series)).to_numpy()
        hit |= inside
    return hit


def without_confirmed(frame: pd.DataFrame, items: pd.DataFrame, time_column: Optional[str] = None,
                      series_column: Optional[str] = None, features: Optional[list[str]] = None) -> tuple[pd.DataFrame, int]:
    """Training rows with the confirmed anomalies left out; and how many rows were affected.

    Tables: the rows of ``anomaly`` items (by ``batch_id`` and ``_source_row``) are dropped.
    Time series: the feature values of each ``anomaly`` event (its series, from start to end)
    are set missing, so the model masks them out of the likelihood (Donut's M-ELBO) while the
    grid and the neighbouring windows stay intact. ``false_alarm`` and ``new_normal`` items stay
    in as normal data; ``expected`` ones stay too (real, but part of how the system runs).
    """
    hit = covered(frame, items, ("anomaly",), time_column, series_column)
    if not hit.any():
        return frame, 0
    if time_column is None:
        return frame[~hit], int(hit.sum())
    masked = frame.copy()
    cols = features or [c for c in frame.columns if c not in (time_column, series_column, BATCH_COLUMN, ROW_COLUMN)]
    for c in cols:
        masked[c] = masked[c].mask(hit)
    return masked, int(hit.sum())


def _time(text: str) -> pd.Timestamp:
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
