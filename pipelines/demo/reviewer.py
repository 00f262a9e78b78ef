"""The demo's reviewer: verdicts from the label files, through the review page's own code path.

Every item of the reports of the given batches gets ``anomaly`` when an injected anomaly is in
it (a flagged row that is one; an event whose span holds one of its series' injected points)
and ``false_alarm`` otherwise, stored by :func:`pipelines.review.app.record_verdict`, the
function the page's form calls.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.demo.evaluation import labelled_scores
from pipelines.demo.samples import SampleDataset
from pipelines.lake import Lake, ROW_COLUMN
from pipelines.reports.store import ReportStore
from pipelines.review.app import record_verdict

REVIEWER = "demo reviewer (label files)"


def _utc(text: str) -> pd.Timestamp:
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def review_batches(lake: Lake, ds: SampleDataset, scores_key: str, batch_ids: list[str], samples_dir: Path) -> dict:
    """Give every report item of ``batch_ids`` (scored under ``scores_key``) its verdict from the labels."""
    truth = labelled_scores(lake, ds, scores_key, samples_dir)
    store = ReportStore(lake.url)
    counts = {"anomaly": 0, "false_alarm": 0}
    for ref in store.list(ds.name):
        if ref.label != scores_key or ref.batch_id not in batch_ids:
            continue
        rows = truth[truth["batch_id"] == ref.batch_id]
        for item in (store.report(ref) or {}).get("items", []):
            if item["kind"] == "row":
                real = bool(rows.loc[rows[ROW_COLUMN] == item["source_row"], "is_injected_anomaly"].any())
            else:
                t = pd.to_datetime(rows[ds.time_column], utc=True)
                inside = (t >= _utc(item["start"])) & (t <= _utc(item["end"]))
                if ds.series_column:
                    inside &= rows[ds.series_column].astype(str) == str(item["series"])
                real = bool(rows.loc[inside, "is_injected_anomaly"].any())
            verdict = "anomaly" if real else "false_alarm"
            record_verdict(store, ds.name, ref.label, ref.batch_id, item["key"], verdict, REVIEWER)
            counts[verdict] += 1
    return counts
