"""The lake's value types: logical column types, reserved column names, and the records a batch
passes through (source file -> validated batch -> manifest entry -> ingest report)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pandas as pd
import pyarrow as pa

from pipelines.lake.errors import SchemaError

LogicalType = Literal["int", "float", "bool", "string", "datetime"]
LOGICAL_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "datetime")
SourceFormat = Literal["csv", "parquet", "jsonl"]
ExtraColumns = Literal["error", "ignore"]

BATCH_COLUMN = "batch_id"
ROW_COLUMN = "_source_row"
REASON_COLUMN = "_reason"
#: Written with every row of ``rows`` and ``quarantine``: the marker of the batch content
#: that wrote it, so writers of one batch id with other content never replace each other's
#: rows and readers keep only the committed record's (see :mod:`pipelines.lake.content`).
CONTENT_COLUMN = "_content"
META_COLUMNS: tuple[str, ...] = (BATCH_COLUMN, ROW_COLUMN)
RESERVED_COLUMNS = frozenset({BATCH_COLUMN, ROW_COLUMN, REASON_COLUMN, CONTENT_COLUMN, "model_version"})
PART_FILE = "part-0.parquet"  # the legacy (manifest) layout's file name, for migration

#: A column is inferred as a type when at least this share of its non-missing values fit it;
#: the rest are quarantined.
INFER_MIN_SHARE = 0.95
#: Above this share of uncastable values a column counts as retyped (SchemaError), not dirty.
RETYPE_SHARE = 0.5


ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class DatasetSchema:
    """The fixed schema of a dataset.

    Attributes
    ----------
    columns : dict
        Column name -> logical type (``int``, ``float``, ``bool``, ``string``, ``datetime``),
        in column order.
    time_column : str or None
        A ``datetime`` column that must be present and valid in every row.
    """

    columns: dict[str, str]
    time_column: Optional[str] = None

    def __post_init__(self) -> None:
        bad = {c: t for c, t in self.columns.items() if t not in LOGICAL_TYPES}
        if bad:
            raise SchemaError(f"unknown logical types {bad}; use one of {LOGICAL_TYPES}")
        reserved = sorted(RESERVED_COLUMNS.intersection(self.columns))
        if reserved:
            raise SchemaError(f"column names {reserved} are reserved by the lake; rename them")
        if self.time_column is not None and self.columns.get(self.time_column) != "datetime":
            raise SchemaError(
                f"time column {self.time_column!r} must be a datetime column, "
                f"not {self.columns.get(self.time_column, 'absent')}"
            )

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of an accepted-rows partition."""
        return pa.schema([(c, ARROW_TYPES[t]) for c, t in self.columns.items()] + [(ROW_COLUMN, pa.int64())])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"columns": dict(self.columns), "time_column": self.time_column}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetSchema":
        """Inverse of :meth:`to_dict`."""
        return cls(columns=dict(data["columns"]), time_column=data.get("time_column"))


@dataclass(frozen=True)
class BatchRecord:
    """One committed batch: a row of the dataset's ``batches`` Delta table.

    ``sha256`` is the content hash of the validated rows (see
    :func:`pipelines.lake.identity.content_hash`), the batch's identity; ``file_sha256`` the
    hash of the source file's bytes; ``seq`` the batch's place in ingest order.
    """

    batch_id: str
    source: str
    format: str
    sha256: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    schema: dict[str, Any]
    ingested_at: str
    quarantined_by_column: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    file_sha256: str = ""
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchRecord":
        """Build from a dict (a batches-table row or a legacy manifest entry), ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class IngestReport(BatchRecord):
    """The outcome of one ingest; ``skipped`` is true when the content was already committed."""

    dataset: str = ""
    skipped: bool = False

    @classmethod
    def of_skipped(cls, dataset: str, record: BatchRecord, source: Optional[str] = None) -> "IngestReport":
        """The report of an ingest whose content is already committed as ``record`` (its counts;
        ``source``, if given, the file this ingest read)."""
        data = record.to_dict()
        if source is not None:
            data["source"] = source
        return cls(**data, dataset=dataset, skipped=True)


def find_record(records: list[BatchRecord], *, sha256: Optional[str] = None,
                batch_id: Optional[str] = None) -> Optional[BatchRecord]:
    """The record with this content or file hash, or this id, among ``records``."""
    for record in records:
        if (sha256 and sha256 in (record.sha256, record.file_sha256)) or (batch_id and record.batch_id == batch_id):
            return record
    return None


@dataclass
class SourceBatch:
    """A source file read into memory: one frame row per source record (index = record number).

    ``table``, for Parquet, holds the same columns as Arrow (the types of
    :func:`~pipelines.lake.sources.read_source`): validation takes a column that already has its
    logical type from there as it is, without a round trip through pandas.
    """

    source: str
    format: str
    sha256: str
    frame: pd.DataFrame
    record_errors: dict[int, str] = field(default_factory=dict)
    table: Optional[pa.Table] = None

    @property
    def rows_read(self) -> int:
        """Number of records in the source."""
        return len(self.frame)


@dataclass
class ValidatedBatch:
    """A batch split into typed accepted rows and text quarantine rows, ready to commit."""

    dataset: str
    batch_id: str
    source: SourceBatch
    schema: DatasetSchema
    schema_is_new: bool
    accepted: pa.Table
    quarantine: pa.Table
    quarantined_by_column: dict[str, int]
    ignored_columns: list[str]
    content_sha256: str = ""
