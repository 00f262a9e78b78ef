"""The lake: validated, quarantining, idempotent batch ingest into Delta Lake tables.

Layout under the lake root (a local path or an ``s3://`` URL); each folder is a Delta table
(``_delta_log/`` plus Parquet files) that any Delta reader can open::

    <dataset>/batches/      one row per committed batch: id, content and file hashes, source,
                            format, counts, schema (JSON), ingest time, ``seq`` (ingest order)
    <dataset>/rows/batch_id=<id>/...         accepted rows (+ ``_source_row``, ``_content``)
    <dataset>/quarantine/batch_id=<id>/...   rejected rows as text (+ ``_reason``, ``_source_row``, ``_content``)
    <dataset>/scores/model_version=<v>/batch_id=<id>/...   scores (+ batch-level columns, e.g. ``psi``)

Commit protocol. An ingest replaces its rows in the batch's partition of ``rows`` and then of
``quarantine`` (one Delta commit each, overwrite by predicate ``batch_id = <id> AND
(_content = <marker> OR _content IS NULL)``, the marker being the content hash's first 16 hex
digits; readers keep only the committed record's content: :mod:`~pipelines.lake.content`), then
appends the batch's row to ``batches`` with a compare-and-swap commit: it succeeds only if no
other writer committed to ``batches`` since it was read (delta-rs ``max_commit_retries=0``).
A writer that loses the race reads ``batches`` again: if the same content is now there (a
concurrent ingest of the same rows) its ingest is a no-op, otherwise it retries. Readers list
batches from ``batches`` only, so data of a batch whose ingest was killed is invisible (and is
replaced by the re-run, or deleted by :meth:`Lake.vacuum`), and so are the rows of an ingest
that lost its explicit batch id to other content (deleted by :meth:`Lake.vacuum`). The batch id
is derived from the content hash of the validated rows
(:func:`~pipelines.lake.identity.content_hash`), so the same rows from a CSV or a Parquet file
are one batch. Scores of a batch are spooled to a
private temporary file and committed with one partition-replacing commit.

Logical types are ``int``, ``float``, ``bool``, ``string`` and ``datetime``, stored as Arrow
``int64``, ``float64``, ``bool``, ``string`` and ``timestamp[us, UTC]`` (naive times are taken
as UTC). Missing values are allowed everywhere except in the time column; in text sources an
empty field (and, outside string columns, ``NA``, ``NaN``, ``null``, ``None``) is missing.

Modules: :mod:`~pipelines.lake.errors` (exceptions), :mod:`~pipelines.lake.records` (types and
records), :mod:`~pipelines.lake.sources` (reading files), :mod:`~pipelines.lake.validation`
(inference and casting), :mod:`~pipelines.lake.identity` (content hash),
:mod:`~pipelines.lake.delta` (commits), :mod:`~pipelines.lake.filesystems` (Arrow's file
systems for reading tables), :mod:`~pipelines.lake.content` (rows keyed by their
batch's content), :mod:`~pipelines.lake.batches` (the batches table),
:mod:`~pipelines.lake.scores` (the scores table), :mod:`~pipelines.lake.core` (the
:class:`Lake`), :mod:`~pipelines.lake.admin` (list, remove, restore, migrate) and
:mod:`~pipelines.lake.storage` (single-file writes; the ``crash_point`` test seam). Import the
public names from ``pipelines.lake``.
"""
from pipelines.lake.core import Lake
from pipelines.lake.errors import LakeError, SchemaError, SourceError
from pipelines.lake.records import (
    BATCH_COLUMN,
    CONTENT_COLUMN,
    INFER_MIN_SHARE,
    LOGICAL_TYPES,
    META_COLUMNS,
    PART_FILE,
    REASON_COLUMN,
    RESERVED_COLUMNS,
    RETYPE_SHARE,
    ROW_COLUMN,
    BatchRecord,
    DatasetSchema,
    ExtraColumns,
    IngestReport,
    LogicalType,
    SourceBatch,
    SourceFormat,
    ValidatedBatch,
)
from pipelines.lake.sources import read_source
from pipelines.lake.storage import write_table
from pipelines.lake.validation import infer_schema, validate_batch

__all__ = [
    "BATCH_COLUMN",
    "CONTENT_COLUMN",
    "INFER_MIN_SHARE",
    "LOGICAL_TYPES",
    "META_COLUMNS",
    "PART_FILE",
    "REASON_COLUMN",
    "RESERVED_COLUMNS",
    "RETYPE_SHARE",
    "ROW_COLUMN",
    "BatchRecord",
    "DatasetSchema",
    "ExtraColumns",
    "IngestReport",
    "Lake",
    "LakeError",
    "LogicalType",
    "SchemaError",
    "SourceBatch",
    "SourceError",
    "SourceFormat",
    "ValidatedBatch",
    "infer_schema",
    "read_source",
    "validate_batch",
    "write_table",
]
