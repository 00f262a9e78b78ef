"""Content identity of a batch: a hash of its validated rows, not of the file's bytes.

The same rows read from a CSV and from a Parquet file validate to the same typed table, so
they hash alike and are one batch. The hash covers the schema (names, logical types, time
column), every accepted value with its null mask, and the quarantined rows (text, reason,
source row), in row order; it does not depend on how Arrow chunked or sliced the columns.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lake.records import DatasetSchema


def _feed(digest: "hashlib._Hash", name: str, column: pa.ChunkedArray) -> None:
    """Add one column to ``digest`` in a canonical byte form (buffers passed without copies)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    digest.update(f"\0{name}\0{array.type}\0{len(array)}\0".encode())
    if array.null_count:
        digest.update(pc.is_valid(array).to_numpy(zero_copy_only=False).view(np.uint8))
    else:  # the same bytes: one 1 per row
        digest.update(b"\1" * len(array))
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        filled = pc.fill_null(array, "") if array.null_count else array
        width = np.int64 if pa.types.is_large_string(kind) else np.int32
        _, offset_buffer, data = filled.buffers()
        offsets = np.frombuffer(offset_buffer, width)[filled.offset: filled.offset + len(filled) + 1].astype(np.int64)
        digest.update(offsets - offsets[0])
        if data is not None and len(offsets):
            digest.update(memoryview(data)[offsets[0]: offsets[-1]])
        return
    if pa.types.is_boolean(kind):
        values = pc.fill_null(array, False).to_numpy(zero_copy_only=False).view(np.uint8)
    elif pa.types.is_timestamp(kind):
        values = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
    else:  # int64 / float64
        values = (pc.fill_null(array, 0) if array.null_count else array).to_numpy()
    digest.update(np.ascontiguousarray(values))


def content_hash(schema: DatasetSchema, accepted: pa.Table, quarantine: pa.Table) -> str:
    """SHA-256 of a validated batch's rows in canonical form (hex).

    Parameters
    ----------
    schema : DatasetSchema
        The schema the rows were validated against.
    accepted, quarantine : pyarrow.Table
        The typed accepted rows and the text quarantine rows of
        :class:`~pipelines.lake.records.ValidatedBatch`.

    Returns
    -------
    str
    """
    digest = hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode())
    for label, table in (("accepted", accepted), ("quarantine", quarantine)):
        digest.update(f"\1{label}\1".encode())
        for name in table.column_names:
            _feed(digest, name, table.column(name))
    return digest.hexdigest()
