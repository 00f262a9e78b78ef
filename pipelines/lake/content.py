"""Rows keyed by content: every row of ``rows`` and ``quarantine`` carries
:data:`~pipelines.lake.records.CONTENT_COLUMN`, the :func:`content_marker` of the batch content
that wrote it, next to its ``batch_id`` partition.

Two ingests of other content under one batch id (explicit ``batch_id``) can both write before
one of them commits; the loser then fails, but its rows stay in the partition. So a write
replaces only its own content's rows (:func:`write_part`), readers keep only the committed
record's (:func:`read_own`), and :func:`foreign_content` finds the rest for ``Lake.vacuum``.
A row with a null marker (a file without the column: a lake written by an earlier release,
whose writes replaced the whole partition before committing) belongs to the committed record,
and a write into a partition replaces its null rows too, so a committed batch's null rows are
its own.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from pipelines.lake import delta
from pipelines.lake.records import BATCH_COLUMN, CONTENT_COLUMN, BatchRecord


def content_marker(sha256: str) -> str:
    """The :data:`CONTENT_COLUMN` value of a batch's rows: its content hash's first 16 hex digits."""
    return sha256[:16]


def write_part(uri: str, options: dict[str, Any], name: str, table: pa.Table, batch_id: str, sha256: str,
               op: str) -> None:
    """Make ``table`` the rows of content ``sha256`` in batch ``batch_id``'s partition of the
    ``rows`` or ``quarantine`` table ``name`` at ``uri`` (delta-rs storage ``options``), adding
    the content and batch columns (one commit).

    Only rows of that content, or of none, are replaced, so a writer of other content under
    the same id (which then fails to commit) never deletes the rows a committed record reads.
    """
    marker = content_marker(sha256)
    table = table.drop_columns([c for c in (CONTENT_COLUMN, BATCH_COLUMN) if c in table.column_names])
    for column, value in ((CONTENT_COLUMN, marker), (BATCH_COLUMN, batch_id)):
        table = table.append_column(column, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
    data = table.combine_chunks()  # delta-rs keeps one batch's order
    delta.replace_partition(uri, options, data, {BATCH_COLUMN: batch_id}, op, name, scope={CONTENT_COLUMN: marker})


def own_rows(record: BatchRecord) -> pc.Expression:
    """Filter keeping a committed batch's rows: those of its content, or of none."""
    return (pc.field(CONTENT_COLUMN) == content_marker(record.sha256)) | pc.field(CONTENT_COLUMN).is_null()


def read_own(
    table, record: BatchRecord, schema: pa.Schema, columns: Optional[list[str]] = None,
    stream: bool = False, batch_size: int = 65536,
) -> Union[pa.Table, Iterator[pa.RecordBatch]]:
    """One committed batch's rows of the rows or quarantine table (``table`` may be ``None``)
    as ``columns`` of ``schema`` (default all): a table, or with ``stream`` record batches of at
    most ``batch_size`` rows read one after another (memory stays bounded by a few of them).

    Only the batch's partition is opened (file pruning); the content filter runs on the rows
    read, not in the scan: delta-rs gives each file a guarantee from its log statistics, and
    for a file written before the table had the column that guarantee is ``_content >= null
    and _content <= null``, which makes Arrow drop every row of the file from a scan filtered
    on the column (seen with deltalake 1.6.6 and pyarrow 25).
    """
    columns = list(columns or schema.names)
    read = columns if CONTENT_COLUMN in columns else columns + [CONTENT_COLUMN]
    schema = schema.append(pa.field(CONTENT_COLUMN, pa.string()))  # null in files written before it
    if table is None:
        data = pds.dataset(schema.empty_table())
    else:
        data = delta.arrow_dataset(table,  # the marker read as a dictionary: one value per file to check
            file_pruning_predicate=[(BATCH_COLUMN, "=", record.batch_id)], schema=schema,
            parquet_read_options=pds.ParquetReadOptions(dictionary_columns={CONTENT_COLUMN}),
        )
    marker = content_marker(record.sha256)
    if not stream:
        return _only_own(data.to_table(columns=read), marker).select(columns)
    # a plain sequential read: Arrow's scanner otherwise reads ahead in background
    # threads while a slow consumer (scoring) works, and memory grows with the batch
    parts = data.to_batches(
        batch_size=batch_size, columns=read, batch_readahead=0, fragment_readahead=0, use_threads=False,
        fragment_scan_options=pds.ParquetFragmentScanOptions(pre_buffer=False),
    )
    return (part.select(columns) for part in (_only_own(p, marker) for p in parts) if part.num_rows)


def _only_own(part: Union[pa.Table, pa.RecordBatch], marker: str) -> Union[pa.Table, pa.RecordBatch]:
    """``part`` less its rows of other content than ``marker`` (not copied when all are its own)."""
    column = part.column(CONTENT_COLUMN)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if all(pa.types.is_dictionary(c.type) and pc.all(pc.equal(c.dictionary, marker)).as_py() is not False for c in chunks):
        return part  # every value is the marker or null (the usual case: no per-row work)
    mine = pc.or_kleene(pc.equal(column, marker), pc.is_null(column))
    return part.filter(mine)


def foreign_content(table, records: list[BatchRecord]) -> list[tuple[str, str]]:
    """(batch id, marker) pairs of rows in listed batches' partitions whose content is not the
    record's; streams the marker column (the batch id is the partition: no data read)."""
    if table is None or not delta.has_column(table, CONTENT_COLUMN):
        return []
    marker = {r.batch_id: content_marker(r.sha256) for r in records}
    found: set[tuple[str, str]] = set()
    data = delta.arrow_dataset(table)  # unfiltered scan: see read_own on filters and statistics
    for part in data.to_batches(columns=[BATCH_COLUMN, CONTENT_COLUMN], batch_readahead=0, fragment_readahead=0):
        pairs = pa.Table.from_batches([part]).group_by([BATCH_COLUMN, CONTENT_COLUMN]).aggregate([])
        found.update(zip(pairs.column(BATCH_COLUMN).to_pylist(), pairs.column(CONTENT_COLUMN).to_pylist()))
    return sorted((b, c) for b, c in found if c is not None and b in marker and marker[b] != c)
