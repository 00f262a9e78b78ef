"""The ``batches`` Delta table of a dataset: one row per committed batch, the commit point.

A batch is visible to readers when, and only when, its row is in this table; the rows,
quarantine and scores tables hold data of listed batches (and, briefly, of a batch whose
ingest is still running or was killed, which no reader of the lake sees).
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
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


#: Records of the table versions read last, by (URI, table id, version): a version of a Delta
#: table never changes, so each is read once per process. A score run asks for the records
#: about seven times (the flow's plan, the scores writer's checks, the rows' reader, the report);
#: each ask opens the table (its log) to learn the version, and only a new version's files are read.
_READ: OrderedDict[tuple[str, str, int], list[BatchRecord]] = OrderedDict()
_READ_SIZE = 16
_READ_LOCK = threading.Lock()


def load(uri: str, options: dict[str, str], version: Optional[int] = None) -> tuple[Optional[DeltaTable], list[BatchRecord]]:
    """The table (``None`` if it does not exist yet) and its records in ingest order."""
    table = open_table(uri, options, version)
    if table is None:
        return None, []
    key = (uri, table.metadata().id, table.version())  # a table made again at the URI has another id
    with _READ_LOCK:
        records = _READ.get(key)
        if records is not None:
            _READ.move_to_end(key)
    if records is None:
        records = from_table(arrow_dataset(table).to_table())
        with _READ_LOCK:
            _READ[key] = records
            while len(_READ) > _READ_SIZE:
                _READ.popitem(last=False)
    return table, list(records)
