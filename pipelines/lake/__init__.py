"""The Parquet lake: validated, quarantining, idempotent batch ingest and manifest-gated reads.

Layout under the lake root (a local path or any fsspec URL)::

    <dataset>/_schema.json                       column -> logical type, time column
    <dataset>/_manifest.json                     the committed batches, in ingest order
    <dataset>/rows/batch_id=<id>/part-0.parquet        accepted rows (+ ``_source_row``)
    <dataset>/quarantine/batch_id=<id>/part-0.parquet  rejected rows as text (+ ``_reason``)
    <dataset>/scores/model_version=<v>/batch_id=<id>/part-0.parquet

Commit protocol. Every file is written under a hidden temporary name (``.tmp-<uuid>-...``) in
its final folder and then renamed into place; ``_manifest.json`` is replaced last. Readers list
batches from the manifest only, so a batch whose files were written before a crash, but which is
missing from the manifest, is invisible. Batch ids are derived from the content hash, so a re-run
writes to the same paths, overwriting the leftovers and removing stale temporary files.
Assumes one writer per dataset at a time (run the ingest flow under a Prefect concurrency limit).

Logical types are ``int``, ``float``, ``bool``, ``string`` and ``datetime``, stored as Arrow
``int64``, ``float64``, ``bool``, ``string`` and ``timestamp[us, UTC]`` (naive times are taken
as UTC). Missing values are allowed everywhere except in the time column; in text sources an
empty field (and, outside string columns, ``NA``, ``NaN``, ``null``, ``None``) is missing.

Modules: :mod:`~pipelines.lake.errors` (exceptions), :mod:`~pipelines.lake.records` (types and
records), :mod:`~pipelines.lake.storage` (atomic writes; the ``_crash_point`` test seam lives
there), :mod:`~pipelines.lake.sources` (reading files), :mod:`~pipelines.lake.validation`
(inference and casting) and :mod:`~pipelines.lake.core` (the :class:`Lake`). Import the public
names from ``pipelines.lake``.
"""
from pipelines.lake.core import Lake
from pipelines.lake.errors import LakeError, SchemaError, SourceError
from pipelines.lake.records import (
    BATCH_COLUMN,
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
