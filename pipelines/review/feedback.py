"""Verdicts on review items: an append-only Delta table per dataset, ``<lake>/<dataset>/feedback``.

Every action is a row (who, when, the item, the model version, the verdict, a comment); nothing
is updated in place. The current verdict of an item is its latest row, so a changed verdict
keeps its history, and two reviewers submitting at once both land (Delta appends commit with
optimistic concurrency and retry). Verdicts are data, not server state: the review app can be
killed at any moment and lose nothing that was acknowledged.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from pipelines.lake.delta import arrow_dataset

#: The verdict vocabulary (ThirdEye's four feedback types): what each means for the model.
VERDICTS = {
    "anomaly": "confirmed: a real anomaly (left out of training data)",
    "expected": "real but known, e.g. maintenance (kept out of precision's false alarms)",
    "false_alarm": "not an anomaly (kept as normal data; counts against precision)",
    "new_normal": "this is how things are now (kept as normal data for retraining)",
}
MAX_COMMENT = 2000

SCHEMA = pa.schema([
    ("action_id", pa.string()),
    ("at", pa.timestamp("us", tz="UTC")),
    ("reviewer", pa.string()),
    ("item_key", pa.string()),
    ("batch_id", pa.string()),
    ("model_version", pa.string()),
    ("verdict", pa.string()),
    ("comment", pa.string()),
    # the item as its report showed it, so the reviewed labels need no report (issue 30); null in
    # the rows of a table from before these columns, whose items are read from their reports
    ("kind", pa.string()),
    ("score", pa.float64()),
    ("source_row", pa.int64()),
    ("series", pa.string()),
    ("start", pa.string()),
    ("end", pa.string()),
    ("run_id", pa.string()),
])
ITEM_FIELDS = ("kind", "score", "source_row", "series", "start", "end", "run_id")


class FeedbackError(ValueError):
    """A verdict that cannot be stored (unknown verdict, empty reviewer or item)."""


@dataclass(frozen=True)
class Verdict:
    """One review action."""

    item_key: str
    batch_id: str
    model_version: str
    verdict: str
    reviewer: str
    comment: str = ""
    kind: Optional[str] = None  # the item's facts (:func:`item_verdict`): what the reviewed labels need
    score: Optional[float] = None
    source_row: Optional[int] = None
    series: Optional[str] = None
    start: Optional[str] = None
    end: Optional[str] = None
    run_id: Optional[str] = None

    def check(self) -> "Verdict":
        if self.verdict not in VERDICTS:
            raise FeedbackError(f"unknown verdict {self.verdict!r}; use one of {', '.join(VERDICTS)}")
        for name in ("item_key", "batch_id", "model_version", "reviewer"):
            if not str(getattr(self, name)).strip():
                raise FeedbackError(f"a verdict needs a {name.replace('_', ' ')}")
        if len(self.comment) > MAX_COMMENT:
            raise FeedbackError(f"a comment has at most {MAX_COMMENT} characters (got {len(self.comment)})")
        return self


class FeedbackStore:
    """The feedback table of one dataset.

    Parameters
    ----------
    uri : str
        The table's location (a local path or an ``s3://`` URL).
    storage_options : dict, optional
        delta-rs storage options (credentials, endpoint).
    """

    def __init__(self, uri: str, storage_options: Optional[dict[str, str]] = None):
        self.uri = uri
        self.options = storage_options or None

    def add(self, verdicts: list[Verdict]) -> int:
        """Append ``verdicts`` in one commit; returns how many were stored."""
        if not verdicts:
            return 0
        now = datetime.now(timezone.utc)
        rows = [v.check() for v in verdicts]
        table = pa.table({
            "action_id": [uuid.uuid4().hex for _ in rows],
            "at": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
            "reviewer": [v.reviewer for v in rows],
            "item_key": [v.item_key for v in rows],
            "batch_id": [v.batch_id for v in rows],
            "model_version": [v.model_version for v in rows],
            "verdict": [v.verdict for v in rows],
            "comment": [v.comment for v in rows],
            **{f: [_text(getattr(v, f)) if SCHEMA.field(f).type == pa.string() else getattr(v, f) for v in rows]
               for f in ITEM_FIELDS},
        }, schema=SCHEMA)
        write_deltalake(self.uri, table, mode="append", schema_mode="merge", storage_options=self.options,
                        commit_properties=CommitProperties(custom_metadata={"vae_anomaly.op": "feedback"},
                                                           max_commit_retries=50))
        return len(rows)

    def history(self) -> pd.DataFrame:
        """Every action, oldest first."""
        try:
            table = arrow_dataset(DeltaTable(self.uri, storage_options=self.options), self.options or {}).to_table()
        except TableNotFoundError:
            table = SCHEMA.empty_table()
        frame = table.to_pandas()
        for name in ITEM_FIELDS:  # a table from before the item's columns
            if name not in frame.columns:
                frame[name] = None
        return frame.sort_values(["at", "action_id"], kind="stable").reset_index(drop=True)

    def current(self) -> pd.DataFrame:
        """The latest verdict of each item (one row per ``item_key``)."""
        return self.history().groupby("item_key", sort=False).tail(1).set_index("item_key")


def item_verdict(item: dict, batch_id: str, label: str, verdict: str, reviewer: str, comment: str = "",
                 run_id: Optional[str] = None) -> Verdict:
    """A verdict on ``item`` (a stored report's item) of batch ``batch_id`` scored by ``label``,
    carrying the item's facts; ``run_id`` is the report's model run."""
    return Verdict(item["key"], batch_id, label, verdict, reviewer, comment, kind=item.get("kind"),
                   score=None if item.get("score") is None else float(item["score"]),
                   source_row=None if item.get("source_row") is None else int(item["source_row"]),
                   series=_text(item.get("series")), start=_text(item.get("start")), end=_text(item.get("end")),
                   run_id=run_id)


def _text(value) -> Optional[str]:
    return None if value is None else str(value)


def precision_by_version(current: pd.DataFrame) -> pd.DataFrame:
    """Per model version of the current verdicts (:meth:`FeedbackStore.current`): ``label``,
    ``reviewed`` (items) and ``precision`` (:func:`precision`), sorted by label. What the review
    index and each report's header show; a verdict names its item's version, so no report is read."""
    rows = [{"label": label, "reviewed": len(group), "precision": precision(group)}
            for label, group in current.groupby("model_version", sort=True)]
    return pd.DataFrame(rows, columns=["label", "reviewed", "precision"])


def precision(current: pd.DataFrame) -> Optional[float]:
    """Share of reviewed flags that were right: (anomaly + expected) / reviewed.

    ``expected`` flags are real, so they count as right too; ``new_normal`` ones count as wrong
    (the data had moved on). None when nothing was reviewed."""
    if current.empty:
        return None
    right = current["verdict"].isin(["anomaly", "expected"]).sum()
    return float(right / len(current))
