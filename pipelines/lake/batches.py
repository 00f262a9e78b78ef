"""The ``batches`` Delta table of a dataset: one row per committed batch, the commit point.

A batch is visible to readers when, and only when, its row is in this table; the rows,
quarantine and scores tables hold data of listed batches (and, briefly, of a batch whose
ingest is still running or was killed, which no reader of the lake sees).
"""
from __future__ import annotations

import json
from typing import Optional

import pyarrow as pa
from deltalake import DeltaTable

from pipelines.lake.delta import arrow_dataset, open_table
from pipelines.lake.records import BatchRecord

_JSON_FIELDS = ("schema", "quarantined_by_column", "ignored_columns")
_INT_FIELDS = ("seq", "rows_read", "rows_accepted", "rows_quarantined")
SCHEMA = pa.schema(
    [("seq", pa.int64()), ("batch_id", pa.string()), ("sha256", pa.string()), ("file_sha256", pa.string()),
     ("source", pa.string()), ("format", pa.string()), ("rows_read", pa.int64()), ("rows_accepted", pa.int64()),
     ("rows_quarantined", pa.int64()), ("ingested_at", pa.string()), ("schema", pa.string()),
     ("quarantined_by_column", pa.string()), ("ignored_columns", pa.string())]
)


def to_table(record: BatchRecord) -> pa.Table:
    """One record as a one-row table of :data:`SCHEMA` (nested fields as JSON text)."""
    data = record.to_dict()
    row = {k: [json.dumps(data[k]) if k in _JSON_FIELDS else data[k]] for k in SCHEMA.names}
    return pa.table(row, schema=SCHEMA)


def from_table(table: pa.Table) -> list[BatchRecord]:
    """Records of a batches table, in ingest order (``seq``)."""
    out = []
    for row in table.to_pylist():
        for k in _JSON_FIELDS:
            row[k] = json.loads(row[k]) if row.get(k) else None
        for k in _INT_FIELDS:
            row[k] = int(row[k] or 0)
        row["quarantined_by_column"] = row["quarantined_by_column"] or {}
        row["ignored_columns"] = row["ignored_columns"] or []
        out.append(BatchRecord.from_dict(row))
    return sorted(out, key=lambda r: r.seq)


def load(uri: str, options: dict[str, str], version: Optional[int] = None) -> tuple[Optional[DeltaTable], list[BatchRecord]]:
    """The table (``None`` if it does not exist yet) and its records in ingest order."""
    table = open_table(uri, options, version)
    if table is None:
        return None, []
    return table, from_table(arrow_dataset(table).to_table())
