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
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import posixpath
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Literal, Optional, Union

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipelines.settings import get_settings

LogicalType = Literal["int", "float", "bool", "string", "datetime"]
LOGICAL_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "datetime")
SourceFormat = Literal["csv", "parquet", "jsonl"]
ExtraColumns = Literal["error", "ignore"]

BATCH_COLUMN = "batch_id"
ROW_COLUMN = "_source_row"
REASON_COLUMN = "_reason"
META_COLUMNS: tuple[str, ...] = (BATCH_COLUMN, ROW_COLUMN)
RESERVED_COLUMNS = frozenset({BATCH_COLUMN, ROW_COLUMN, REASON_COLUMN, "model_version"})
PART_FILE = "part-0.parquet"

#: A column is inferred as a type when at least this share of its non-missing values fit it;
#: the rest are quarantined.
INFER_MIN_SHARE = 0.95
#: Above this share of uncastable values a column counts as retyped (SchemaError), not dirty.
RETYPE_SHARE = 0.5

_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
}
_MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "nat"})
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


# ----------------------------------------------------------------------------- errors


class LakeError(Exception):
    """Base class of the lake's errors (also raised for bad names and unknown datasets)."""


class SchemaError(LakeError):
    """A batch does not fit the dataset's schema (missing, retyped or unexpected columns)."""


class SourceError(LakeError):
    """A source file cannot be read or parsed as a table."""


def _crash_point(stage: str) -> None:
    """Test seam: called between the steps of a commit; tests patch it to crash there."""


# ----------------------------------------------------------------------------- records


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
        return pa.schema([(c, _ARROW_TYPES[t]) for c, t in self.columns.items()] + [(ROW_COLUMN, pa.int64())])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"columns": dict(self.columns), "time_column": self.time_column}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetSchema":
        """Inverse of :meth:`to_dict`."""
        return cls(columns=dict(data["columns"]), time_column=data.get("time_column"))


@dataclass(frozen=True)
class BatchRecord:
    """One committed batch, as listed in ``_manifest.json``."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchRecord":
        """Build from a manifest entry, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class IngestReport(BatchRecord):
    """The outcome of one ingest; ``skipped`` is true when the content was already committed."""

    dataset: str = ""
    skipped: bool = False


@dataclass
class SourceBatch:
    """A source file read into memory: one frame row per source record (index = record number)."""

    source: str
    format: str
    sha256: str
    frame: pd.DataFrame
    record_errors: dict[int, str] = field(default_factory=dict)

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


# ----------------------------------------------------------------------------- storage


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local file system (where ``os.replace`` gives atomic renames)."""
    return isinstance(fs, LocalFileSystem)


def _atomic_write(
    fs: fsspec.AbstractFileSystem, path: str, payload: Union[pa.Table, bytes], stage: str = "file"
) -> None:
    """Write ``payload`` (a table as Parquet, or bytes) to a hidden temporary name, then rename it to ``path``."""
    parent, name = posixpath.split(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}"
    try:
        local = _is_local(fs)
        with (open(tmp, "wb") if local else fs.open(tmp, "wb")) as handle:
            if isinstance(payload, pa.Table):
                pq.write_table(payload, handle, compression="zstd")
            else:
                handle.write(payload)
            if local:  # durable before it becomes visible
                handle.flush()
                os.fsync(handle.fileno())
        _crash_point(f"{stage}-tmp")
        if local:
            os.replace(tmp, path)
        else:  # object stores: a single-object copy is atomic for readers
            fs.mv(tmp, path)
    except BaseException:
        _remove(fs, tmp)
        raise


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a file or folder if it exists, ignoring errors."""
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError:
        pass


def _remove_stale_tmp(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Delete temporary files a crashed writer left in ``folder``; return their paths."""
    stale = fs.glob(f"{folder}/.tmp-*") if fs.exists(folder) else []
    for path in stale:
        _remove(fs, path)
    return list(stale)


def write_table(path: str, table: Union[pa.Table, pd.DataFrame], **storage_options: Any) -> str:
    """Atomically write a table as one Parquet file.

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the file.
    table : pyarrow.Table or pandas.DataFrame
        The data; a DataFrame's index is not written.
    **storage_options
        Passed to fsspec.

    Returns
    -------
    str
        The file system path written.
    """
    fs, fs_path = fsspec.core.url_to_fs(str(path), **storage_options)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    _atomic_write(fs, fs_path, table)
    return fs_path


# ----------------------------------------------------------------------------- sources


def _format_of(source: str) -> tuple[Optional[str], Optional[str]]:
    """(format, compression) guessed from a file name's extensions."""
    stem = source.split("?", 1)[0].lower()
    compression = None
    for ext, name in _COMPRESSIONS.items():
        if stem.endswith(ext):
            compression, stem = name, stem[: -len(ext)]
            break
    for ext, fmt in _FORMATS.items():
        if stem.endswith(ext):
            return fmt, compression
    return None, compression


def read_source(
    source: Union[str, os.PathLike], format: Optional[SourceFormat] = None, **storage_options: Any
) -> SourceBatch:
    """Read a CSV, Parquet or JSON-lines file into memory and hash its bytes.

    Parameters
    ----------
    source : str or path-like
        Local path or fsspec URL. ``.gz``, ``.bz2``, ``.xz`` and ``.zst`` suffixes are decompressed.
    format : {"csv", "parquet", "jsonl"}, optional
        Overrides the format guessed from the extension (``.csv``, ``.parquet``/``.pq``,
        ``.jsonl``/``.ndjson``/``.json``).
    **storage_options
        Passed to fsspec.

    Returns
    -------
    SourceBatch
        CSV and JSON values are kept as text (parsed later against the schema); Parquet columns
        keep their types. ``sha256`` is the hash of the file's bytes as stored.

    Raises
    ------
    SourceError
        The file is missing, its format is unknown, or it cannot be parsed.
    """
    source = str(source)
    if "://" not in source:
        source = os.path.abspath(source)
    guessed, compression = _format_of(source)
    fmt = format or guessed
    if fmt not in ("csv", "parquet", "jsonl"):
        raise SourceError(f"cannot tell the format of {source!r}; pass format='csv', 'parquet' or 'jsonl'")
    try:
        with fsspec.open(source, "rb", **storage_options) as handle:
            raw = handle.read()
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {source!r}: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    data = raw
    if compression:
        with fsspec.compression.compr[compression](io.BytesIO(raw)) as handle:
            data = handle.read()
    reader = {"csv": _parse_csv, "parquet": _parse_parquet, "jsonl": _parse_jsonl}[fmt]
    try:
        frame, record_errors = reader(data)
    except SourceError as exc:
        raise SourceError(f"{source!r}: {exc}") from exc
    except Exception as exc:  # parsers raise many types; name the file in one place
        raise SourceError(f"cannot parse {source!r} as {fmt}: {exc}") from exc
    frame.index = pd.RangeIndex(len(frame))
    return SourceBatch(source=source, format=fmt, sha256=digest, frame=frame, record_errors=record_errors)


def _parse_csv(data: bytes) -> tuple[pd.DataFrame, dict[int, str]]:
    """All CSV fields as text; no NA conversion here."""
    if not data.strip():
        raise SourceError("the file is empty")
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    return frame.astype(object), {}


def _parse_parquet(data: bytes) -> tuple[pd.DataFrame, dict[int, str]]:
    """Parquet columns normalised to int64 / float64 / bool / timestamp[UTC] / text."""
    table = pq.read_table(io.BytesIO(data))
    columns = [_normalise_arrow(table.column(i)) for i in range(table.num_columns)]
    table = pa.table(columns, names=table.column_names)
    mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    frame = table.to_pandas(types_mapper=mapper)
    for name in frame.columns:
        if _kind(frame[name]) == "text":
            frame[name] = _as_text(frame[name])
    return frame, {}


def _normalise_arrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Map an Arrow column onto the few types the validator understands."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _normalise_arrow(column.cast(kind.value_type))
    try:
        if pa.types.is_integer(kind):
            return column.cast(pa.int64())
        if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            return column.cast(pa.float64())
        if pa.types.is_boolean(kind):
            return column
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            if pa.types.is_timestamp(kind) and kind.tz is not None:
                return column.cast(pa.timestamp("us", tz=kind.tz)).cast(_ARROW_TYPES["datetime"])
            return column.cast(pa.timestamp("us")).cast(_ARROW_TYPES["datetime"])
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])


def _parse_jsonl(data: bytes) -> tuple[pd.DataFrame, dict[int, str]]:
    """One record per non-blank line; bad lines become all-missing rows with an error."""
    text = data.decode("utf-8")
    records: list[dict[str, Any]] = []
    errors: dict[int, str] = {}
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        number = len(records)
        try:
            obj = json.loads(line)
        except ValueError as exc:
            errors[number] = f"invalid JSON ({exc}): {line[:80]!r}"
            obj = {}
        if not isinstance(obj, dict):
            errors[number] = f"a JSON record must be an object, got {line[:80]!r}"
            obj = {}
        records.append(obj)
    names: dict[str, None] = {}
    for obj in records:
        names.update(dict.fromkeys(obj))
    columns = {name: pd.Series([_json_text(r.get(name)) for r in records], dtype=object) for name in names}
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records))), errors


def _json_text(value: Any) -> Optional[str]:
    """A JSON value as the text a CSV would hold (``None`` for null)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


# ----------------------------------------------------------------------------- typing


def _kind(series: pd.Series) -> str:
    """The physical kind of a frame column: int, float, bool, datetime or text."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def _as_text(series: pd.Series) -> pd.Series:
    """Values as ``str`` (object dtype), ``None`` where missing."""
    kind = _kind(series)
    notna = series.notna().to_numpy()
    if kind == "text":
        values = [v if isinstance(v, str) or v is None else str(v) for v in series.astype(object)]
    elif kind == "bool":
        values = ["true" if v else "false" for v in series.astype(object)]
    elif kind == "int":
        values = [str(v) for v in series.astype(object)]
    elif kind == "float":
        values = [repr(float(v)) for v in series.to_numpy(dtype="float64", na_value=np.nan)]
    else:
        values = [v.isoformat() if v is not pd.NaT else None for v in series]
    out = np.array(values, dtype=object)
    out[~notna] = None
    return pd.Series(out, index=series.index, dtype=object)


def _missing(text: pd.Series, ltype: str) -> np.ndarray:
    """Missing-value mask of a text column for the target type."""
    if ltype == "string":
        return text.map(lambda v: v is None or v == "").to_numpy(bool)
    return text.map(lambda v: v is None or v.strip().lower() in _MISSING_TOKENS).to_numpy(bool)


def _infer(series: pd.Series) -> str:
    """The logical type of a source column (tolerating up to 5% odd values)."""
    kind = _kind(series)
    if kind != "text":
        return kind
    values = series[~_missing(series, "float")].map(str.strip)
    if values.empty:
        return "string"
    need = INFER_MIN_SHARE * len(values)
    number = pd.to_numeric(values, errors="coerce")
    numeric = number.notna().to_numpy() & np.isfinite(number.to_numpy(dtype="float64", na_value=np.nan))
    if numeric.sum() >= need:
        integral = values[numeric].str.fullmatch(r"[+-]?\d{1,18}").all()
        return "int" if integral else "float"
    if values.str.lower().isin(("true", "false")).sum() >= need:
        return "bool"
    dates = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    if (dates.notna() & values.str.match(r"\d{4}-\d{2}-\d{2}")).sum() >= need:
        return "datetime"
    return "string"


def infer_schema(frame: pd.DataFrame, time_column: Optional[str] = None) -> DatasetSchema:
    """Infer a :class:`DatasetSchema` from a source frame.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :attr:`SourceBatch.frame`.
    time_column : str, optional
        Forced to ``datetime``.

    Returns
    -------
    DatasetSchema
    """
    columns = {str(c): ("datetime" if c == time_column else _infer(frame[c])) for c in frame.columns}
    return DatasetSchema(columns=columns, time_column=time_column)


@dataclass
class _Cast:
    """One column cast to its logical type, with per-row outcomes."""

    values: pa.Array  # typed, null where missing or bad
    text: pd.Series  # the original values as text (for the quarantine)
    missing: np.ndarray
    bad: np.ndarray  # value present but not acceptable
    why: np.ndarray  # problem per bad row (None elsewhere)
    uncastable: np.ndarray  # bad because of its type (not e.g. infinite)


def _coerce(series: pd.Series, ltype: str) -> _Cast:
    """Cast a column to ``ltype``, flagging values that do not fit."""
    kind = _kind(series)
    text = _as_text(series)
    missing = _missing(text, ltype) if kind == "text" else ~series.notna().to_numpy()
    stripped = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    infinite = np.zeros(len(series), bool)
    if ltype == "string":
        values = pa.array(np.where(missing, None, text.to_numpy(object)), pa.string())
        bad = infinite.copy()
    elif ltype == "datetime":
        if kind == "datetime":
            stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        elif kind == "text":
            stamps = pd.to_datetime(stripped.where(~missing, None), format="ISO8601", utc=True, errors="coerce")
        else:  # numbers and bools are not times (epochs are ambiguous)
            stamps = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
        bad = ~missing & stamps.isna().to_numpy()
        utc_wall = stamps.dt.tz_convert(None).dt.as_unit("us").to_numpy()
        values = pa.array(utc_wall, pa.timestamp("us"), mask=missing | bad).cast(_ARROW_TYPES["datetime"])
    else:
        numbers = _numbers(series, kind, stripped, missing)
        if ltype == "bool":
            flags, bad = _bools(kind, series, stripped, numbers, missing)
            values = pa.array(flags, pa.bool_(), mask=missing | bad)
        elif ltype == "int":
            values, bad = _ints(series, kind, stripped, numbers, missing)
        else:
            bad = ~missing & np.isnan(numbers)
            infinite = ~missing & np.isinf(numbers)
            values = pa.array(numbers, pa.float64(), mask=missing | bad | infinite)
    why = np.full(len(series), None, dtype=object)
    why[bad] = f"cannot parse as {'an' if ltype == 'int' else 'a'} {ltype}"
    why[infinite] = "infinite value"
    return _Cast(values, text, missing, bad | infinite, why, uncastable=bad)


def _numbers(series: pd.Series, kind: str, stripped: pd.Series, missing: np.ndarray) -> np.ndarray:
    """Float view of a column (NaN where missing or not a number; bools and datetimes are not numbers)."""
    if kind in ("int", "float"):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    if kind == "text":
        return pd.to_numeric(stripped.where(~missing, None), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.full(len(series), np.nan)


def _ints(
    series: pd.Series, kind: str, stripped: pd.Series, numbers: np.ndarray, missing: np.ndarray
) -> tuple[pa.Array, np.ndarray]:
    """Exact int64 values (digit strings parsed exactly, whole floats accepted) and the bad mask."""
    n = len(series)
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    if kind == "int":
        ok = ~missing
        out[ok] = series[ok].astype("int64").to_numpy()
    else:
        if kind == "text":
            digits = stripped.str.fullmatch(r"[+-]?\d{1,18}").fillna(False).to_numpy(bool) & ~missing
            out[digits] = stripped[digits].astype("int64").to_numpy()
            ok |= digits
        rest = ~missing & ~ok
        whole = rest & np.isfinite(numbers) & (np.abs(numbers) < 2.0**63)
        whole &= np.floor(np.where(whole, numbers, 0.0)) == np.where(whole, numbers, 0.0)
        out[whole] = numbers[whole].astype(np.int64)
        ok |= whole
    bad = ~missing & ~ok
    return pa.array(out, pa.int64(), mask=~ok), bad


def _bools(
    kind: str, series: pd.Series, stripped: pd.Series, numbers: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bool values and bad mask; accepts true/false, t/f, yes/no, y/n and 1/0."""
    if kind == "bool":
        flags = series.fillna(False).to_numpy(bool)
        return flags, np.zeros(len(series), bool)
    if kind == "text":
        lower = stripped.map(lambda v: v.lower() if isinstance(v, str) else "")
        flags = lower.isin(_TRUE).to_numpy(bool)
        known = flags | lower.isin(_FALSE).to_numpy(bool)
    else:
        flags = numbers == 1.0
        known = flags | (numbers == 0.0)
    return flags, ~missing & ~known


# ----------------------------------------------------------------------------- validation


def _check_name(kind: str, value: str) -> str:
    """Reject names that are unsafe as path components."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise LakeError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return value


def _resolve_schema(
    dataset: str,
    batch: SourceBatch,
    current: Optional[DatasetSchema],
    time_column: Optional[str],
    schema: Optional[dict[str, str]],
) -> tuple[DatasetSchema, bool]:
    """The schema to validate against and whether this batch fixes it."""
    where = f"dataset {dataset!r}, file {batch.source!r}"
    if current is not None:
        if schema is not None and DatasetSchema(dict(schema), time_column or current.time_column) != current:
            raise SchemaError(f"{where}: the schema passed differs from the dataset's fixed schema {current.to_dict()}")
        if time_column is not None and time_column != current.time_column:
            raise SchemaError(
                f"{where}: time column {time_column!r} differs from the dataset's {current.time_column!r}"
            )
        return current, False
    if schema is not None:
        return DatasetSchema(dict(schema), time_column), True
    if batch.rows_read == 0:
        raise SchemaError(f"{where}: cannot infer a schema from an empty file; pass schema=")
    if time_column is not None and time_column not in batch.frame.columns:
        raise SchemaError(f"{where}: time column {time_column!r} is not in the file")
    return infer_schema(batch.frame, time_column), True


def validate_batch(
    dataset: str,
    batch: SourceBatch,
    *,
    current_schema: Optional[DatasetSchema] = None,
    time_column: Optional[str] = None,
    schema: Optional[dict[str, str]] = None,
    batch_id: Optional[str] = None,
    extra_columns: ExtraColumns = "error",
) -> ValidatedBatch:
    """Check a source batch against a schema and split it into accepted and quarantined rows.

    Pure: touches no storage. :meth:`Lake.validate` supplies ``current_schema``.

    Parameters
    ----------
    dataset : str
        Dataset name (for messages).
    batch : SourceBatch
        From :func:`read_source`.
    current_schema : DatasetSchema, optional
        The dataset's fixed schema; ``None`` when this is the first batch.
    time_column : str, optional
        The time column (first batch only, or the same as the fixed one).
    schema : dict, optional
        Column -> logical type, to use instead of inference on the first batch.
    batch_id : str, optional
        Defaults to ``b-<first 16 hex digits of sha256>``.
    extra_columns : {"error", "ignore"}
        What to do with source columns that are not in the schema: raise a
        :class:`SchemaError` naming them, or leave them out (recorded in ``ignored_columns``).

    Returns
    -------
    ValidatedBatch

    Raises
    ------
    SchemaError
        A schema column is missing, a column's values mostly cannot be cast to its type
        (more than ``RETYPE_SHARE`` of the non-missing values), or there are extra columns.
    """
    batch_id = _check_name("batch id", batch_id or f"b-{batch.sha256[:16]}")
    where = f"dataset {dataset!r}, file {batch.source!r}"
    try:
        fixed, is_new = _resolve_schema(dataset, batch, current_schema, time_column, schema)
    except SchemaError as exc:
        message = str(exc)
        raise SchemaError(message if message.startswith(where) else f"{where}: {message}") from None
    present = [str(c) for c in batch.frame.columns]
    missing_cols = [c for c in fixed.columns if c not in present]
    if missing_cols:
        raise SchemaError(f"{where}: missing column(s) {missing_cols} of the dataset's schema")
    extra = [c for c in present if c not in fixed.columns]
    if extra and extra_columns != "ignore":
        raise SchemaError(f"{where}: unexpected column(s) {extra}; pass extra_columns='ignore' to leave them out")

    n = batch.rows_read
    casts: dict[str, _Cast] = {}
    for name, ltype in fixed.columns.items():
        cast = _coerce(batch.frame[name], ltype)
        observed = int((~cast.missing).sum())
        uncastable = int(cast.uncastable.sum())
        if observed and uncastable / observed > RETYPE_SHARE:
            examples = cast.text[cast.uncastable].head(3).tolist()
            raise SchemaError(
                f"{where}: column {name!r} is fixed as {ltype} but {uncastable} of {observed} values "
                f"cannot be cast (e.g. {examples}); was the column retyped?"
            )
        if name == fixed.time_column:
            gap = cast.missing & ~cast.bad
            cast.why[gap] = "missing time value"
            cast.bad = cast.bad | gap
        casts[name] = cast

    rejected = np.zeros(n, bool)
    reasons: dict[int, list[str]] = defaultdict(list)
    by_column: dict[str, int] = {}
    for row, message in batch.record_errors.items():
        rejected[row] = True
        reasons[row].append(f"row {row}: {message}")
    for name, cast in casts.items():
        text = cast.text.to_numpy(object)
        for row in np.flatnonzero(cast.bad):
            rejected[row] = True
            reasons[row].append(f"row {row}, column {name!r}: {cast.why[row]} ({text[row]!r})")
        if cast.bad.any():
            by_column[name] = int(cast.bad.sum())

    rows = np.arange(n, dtype=np.int64)
    keep = pa.array(~rejected)
    arrays = {name: cast.values for name, cast in casts.items()}
    accepted = pa.table({**arrays, ROW_COLUMN: pa.array(rows)}, schema=fixed.arrow_schema()).filter(keep)
    bad_rows = np.flatnonzero(rejected)
    quarantine = pa.table(
        {
            **{c: pa.array(casts[c].text.to_numpy(object)[bad_rows], pa.string()) for c in fixed.columns},
            REASON_COLUMN: pa.array(["; ".join(reasons[r]) for r in bad_rows], pa.string()),
            ROW_COLUMN: pa.array(rows[bad_rows]),
        }
    )
    if accepted.num_rows + quarantine.num_rows != n:  # the lake never drops a row
        raise LakeError(f"{where}: internal error, {n} rows read but {accepted.num_rows}+{quarantine.num_rows} kept")
    return ValidatedBatch(dataset, batch_id, batch, fixed, is_new, accepted, quarantine, by_column, extra)


# ----------------------------------------------------------------------------- the lake


def _utc_now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Lake:
    """A Parquet lake of datasets made of immutable, validated batches.

    Parameters
    ----------
    root : str or path-like, optional
        Local path or fsspec URL (``file://``, ``memory://``, ``s3://`` ...). Defaults to
        :attr:`pipelines.settings.Settings.lake_url`.
    **storage_options
        Passed to fsspec (credentials, endpoint ...).
    """

    def __init__(self, root: Union[str, os.PathLike, None] = None, **storage_options: Any) -> None:
        if root is None:
            root = get_settings().lake_url
        self.url = str(root)
        self.fs, path = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = path.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- paths and metadata

    def _path(self, dataset: str, *parts: str) -> str:
        """Path of ``parts`` inside a dataset's folder."""
        return "/".join([self.root, _check_name("dataset", dataset), *parts])

    def _partition(self, dataset: str, area: str, batch_id: str) -> str:
        """Folder of one batch's partition in ``rows`` or ``quarantine``."""
        return self._path(dataset, area, f"batch_id={batch_id}")

    def _read_json(self, path: str) -> Optional[dict[str, Any]]:
        """Parse a JSON file, or ``None`` if it does not exist."""
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as handle:
            return json.loads(handle.read())

    def _write_json(self, path: str, data: dict[str, Any], stage: str) -> None:
        """Atomically replace a JSON file."""
        _atomic_write(self.fs, path, json.dumps(data, indent=2).encode("utf-8"), stage)

    def _manifest(self, dataset: str) -> list[BatchRecord]:
        """The committed batches, in ingest order."""
        data = self._read_json(self._path(dataset, "_manifest.json")) or {"batches": []}
        return [BatchRecord.from_dict(b) for b in data["batches"]]

    def datasets(self) -> list[str]:
        """Names of the datasets that have a manifest."""
        found = self.fs.glob(f"{self.root}/*/_manifest.json")
        return sorted(posixpath.basename(posixpath.dirname(p)) for p in found)

    def list_batches(self, dataset: str) -> list[BatchRecord]:
        """The committed batches of ``dataset`` in ingest order (empty if it does not exist).

        Parameters
        ----------
        dataset : str

        Returns
        -------
        list of BatchRecord
        """
        return self._manifest(dataset)

    def schema(self, dataset: str) -> Optional[DatasetSchema]:
        """The dataset's fixed schema, or ``None`` before its first committed batch."""
        if not self._manifest(dataset):
            return None
        data = self._read_json(self._path(dataset, "_schema.json"))
        return DatasetSchema.from_dict(data) if data else None

    def find_batch(
        self, dataset: str, *, sha256: Optional[str] = None, batch_id: Optional[str] = None
    ) -> Optional[BatchRecord]:
        """The committed batch with this content hash or id, if any."""
        for record in self._manifest(dataset):
            if (sha256 and record.sha256 == sha256) or (batch_id and record.batch_id == batch_id):
                return record
        return None

    # -- writing

    def ingest(
        self,
        dataset: str,
        source: Union[str, os.PathLike],
        *,
        format: Optional[SourceFormat] = None,
        time_column: Optional[str] = None,
        schema: Optional[dict[str, str]] = None,
        batch_id: Optional[str] = None,
        extra_columns: ExtraColumns = "error",
    ) -> IngestReport:
        """Read, validate and commit one source file as a batch of ``dataset``.

        Parameters
        ----------
        dataset : str
            Dataset name (letters, digits, ``.``, ``_``, ``-``).
        source : str or path-like
            Local path or fsspec URL of a CSV, Parquet or JSON-lines file.
        format : {"csv", "parquet", "jsonl"}, optional
            Overrides the format guessed from the extension.
        time_column : str, optional
            Datetime column required in every row (fixed by the first batch).
        schema : dict, optional
            Column -> logical type for the first batch instead of inference; later batches
            may pass it again only if it equals the fixed schema.
        batch_id : str, optional
            Defaults to ``b-<sha256[:16]>``, so identical content maps to the same batch.
        extra_columns : {"error", "ignore"}
            Source columns not in the schema raise a :class:`SchemaError` or are left out.

        Returns
        -------
        IngestReport
            ``skipped`` is true (and nothing is written) when the same content is already
            committed; its counts are then those of the committed batch.

        Raises
        ------
        SourceError, SchemaError, LakeError
        """
        batch = read_source(source, format)
        existing = self.find_batch(dataset, sha256=batch.sha256)
        if existing is not None:
            return self.skipped(dataset, existing, source=batch.source)
        validated = self.validate(
            dataset, batch, time_column=time_column, schema=schema, batch_id=batch_id, extra_columns=extra_columns
        )
        return self.commit(validated)

    def skipped(self, dataset: str, record: BatchRecord, source: Optional[str] = None) -> IngestReport:
        """The report for content that is already committed as ``record``."""
        data = record.to_dict()
        if source is not None:
            data["source"] = source
        return IngestReport(**data, dataset=dataset, skipped=True)

    def validate(self, dataset: str, batch: SourceBatch, **options: Any) -> ValidatedBatch:
        """:func:`validate_batch` against this dataset's fixed schema (options as in :meth:`ingest`)."""
        _check_name("dataset", dataset)
        wanted = options.get("batch_id")
        if wanted is not None:
            taken = self.find_batch(dataset, batch_id=wanted)
            if taken is not None and taken.sha256 != batch.sha256:
                raise LakeError(f"dataset {dataset!r}: batch id {wanted!r} is already used by {taken.source!r}")
        return validate_batch(dataset, batch, current_schema=self.schema(dataset), **options)

    def commit(self, batch: ValidatedBatch) -> IngestReport:
        """Write a validated batch's partitions, then its schema (first batch), then the manifest.

        Safe to repeat after a crash at any point: leftovers are overwritten or removed.

        Parameters
        ----------
        batch : ValidatedBatch

        Returns
        -------
        IngestReport
        """
        dataset, batch_id = batch.dataset, batch.batch_id
        manifest = self._manifest(dataset)
        for record in manifest:
            if record.sha256 == batch.source.sha256:
                return self.skipped(dataset, record, source=batch.source.source)
            if record.batch_id == batch_id:
                raise LakeError(f"dataset {dataset!r}: batch id {batch_id!r} is already used by {record.source!r}")
        if batch.schema_is_new and manifest:
            raise LakeError(f"dataset {dataset!r} got its first batch from another writer; validate again")

        rows_dir = self._partition(dataset, "rows", batch_id)
        quarantine_dir = self._partition(dataset, "quarantine", batch_id)
        for folder in (self._path(dataset), rows_dir, quarantine_dir):
            _remove_stale_tmp(self.fs, folder)
        _atomic_write(self.fs, f"{rows_dir}/{PART_FILE}", batch.accepted, "rows")
        _crash_point("rows")
        if batch.quarantine.num_rows:
            _atomic_write(self.fs, f"{quarantine_dir}/{PART_FILE}", batch.quarantine, "quarantine")
        else:
            _remove(self.fs, quarantine_dir)
        _crash_point("quarantine")
        if batch.schema_is_new:
            self._write_json(self._path(dataset, "_schema.json"), batch.schema.to_dict(), "schema")
        _crash_point("schema")

        record = BatchRecord(
            batch_id=batch_id,
            source=batch.source.source,
            format=batch.source.format,
            sha256=batch.source.sha256,
            rows_read=batch.source.rows_read,
            rows_accepted=batch.accepted.num_rows,
            rows_quarantined=batch.quarantine.num_rows,
            schema=batch.schema.to_dict(),
            ingested_at=_utc_now(),
            quarantined_by_column=batch.quarantined_by_column,
            ignored_columns=batch.ignored_columns,
        )
        entries = [r.to_dict() for r in manifest] + [record.to_dict()]
        self._write_json(self._path(dataset, "_manifest.json"), {"dataset": dataset, "batches": entries}, "manifest")
        _crash_point("manifest")
        return IngestReport(**record.to_dict(), dataset=dataset)

    def vacuum(self, dataset: str) -> list[str]:
        """Remove temporary files and partitions of batches missing from the manifest; return them."""
        listed = {r.batch_id for r in self._manifest(dataset)}
        removed = []
        for area in ("rows", "quarantine"):
            for folder in self.fs.glob(self._path(dataset, area, "batch_id=*")):
                if posixpath.basename(folder).split("=", 1)[1] not in listed:
                    _remove(self.fs, folder)
                    removed.append(folder)
        for path in self.fs.glob(self._path(dataset, "**", ".tmp-*")):
            _remove(self.fs, path)
            removed.append(path)
        return removed

    # -- reading

    def _arrow_fs(self) -> pafs.FileSystem:
        """The lake's file system as a pyarrow file system."""
        if _is_local(self.fs):
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def _selected(self, dataset: str, batch_ids: Optional[list[str]]) -> list[BatchRecord]:
        """Manifest records for ``batch_ids`` (all when ``None``), in ingest order."""
        records = self._manifest(dataset)
        if batch_ids is None:
            return records
        known = {r.batch_id for r in records}
        unknown = [b for b in batch_ids if b not in known]
        if unknown:
            raise LakeError(f"dataset {dataset!r} has no committed batch(es) {unknown}")
        wanted = set(batch_ids)
        return [r for r in records if r.batch_id in wanted]

    def _dataset(self, dataset: str, area: str, records: list[BatchRecord], file_schema: pa.Schema) -> pds.Dataset:
        """A pyarrow dataset over the listed batches' partition files, with the ``batch_id`` column."""
        base = self._path(dataset, area)
        files = [f"{self._partition(dataset, area, r.batch_id)}/{PART_FILE}" for r in records]
        partitioning = pds.partitioning(pa.schema([(BATCH_COLUMN, pa.string())]), flavor="hive")
        return pds.dataset(
            files,
            schema=file_schema.append(pa.field(BATCH_COLUMN, pa.string())),
            format="parquet",
            filesystem=self._arrow_fs(),
            partitioning=partitioning,
            partition_base_dir=base,
        )

    def _require_schema(self, dataset: str) -> DatasetSchema:
        """The fixed schema, or a LakeError for an unknown or empty dataset."""
        fixed = self.schema(dataset)
        if fixed is None:
            raise LakeError(f"dataset {dataset!r} has no committed batches in {self.url!r}")
        return fixed

    def iter_record_batches(
        self,
        dataset: str,
        batch_ids: Optional[list[str]] = None,
        batch_size: int = 65536,
        columns: Optional[list[str]] = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream accepted rows as Arrow record batches of at most ``batch_size`` rows.

        Parameters
        ----------
        dataset : str
        batch_ids : list of str, optional
            Committed batches to read (default: all), returned in ingest order.
        batch_size : int
            Maximum rows per record batch; memory stays bounded by a few of them.
        columns : list of str, optional
            Subset of the schema columns, ``batch_id`` and ``_source_row``.

        Yields
        ------
        pyarrow.RecordBatch
            Schema columns with their logical types, then ``_source_row`` and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = self._selected(dataset, batch_ids)
        if not records:
            return
        data = self._dataset(dataset, "rows", records, fixed.arrow_schema())
        yield from data.to_batches(batch_size=batch_size, columns=columns)

    def read(
        self, dataset: str, batch_ids: Optional[list[str]] = None, columns: Optional[list[str]] = None
    ) -> pd.DataFrame:
        """Read committed rows into pandas.

        Parameters
        ----------
        dataset : str
        batch_ids : list of str, optional
            Committed batches to read (default: all), in ingest order.
        columns : list of str, optional
            Subset of columns (see :meth:`iter_record_batches`).

        Returns
        -------
        pandas.DataFrame
            dtypes by logical type: ``Int64``, ``float64``, ``boolean``, ``str``,
            ``datetime64[us, UTC]``; plus ``_source_row`` (``Int64``) and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = self._selected(dataset, batch_ids)
        file_schema = fixed.arrow_schema()
        if records:
            table = self._dataset(dataset, "rows", records, file_schema).to_table(columns=columns)
        else:
            table = file_schema.append(pa.field(BATCH_COLUMN, pa.string())).empty_table()
            table = table.select(columns) if columns else table
        return _to_pandas(table)

    def read_quarantine(self, dataset: str, batch_ids: Optional[list[str]] = None) -> pd.DataFrame:
        """Quarantined rows of committed batches.

        Returns
        -------
        pandas.DataFrame
            The schema columns with the original values as text, ``_reason``, ``_source_row``
            and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = [r for r in self._selected(dataset, batch_ids) if r.rows_quarantined]
        file_schema = pa.schema(
            [(c, pa.string()) for c in fixed.columns] + [(REASON_COLUMN, pa.string()), (ROW_COLUMN, pa.int64())]
        )
        if records:
            table = self._dataset(dataset, "quarantine", records, file_schema).to_table()
        else:
            table = file_schema.append(pa.field(BATCH_COLUMN, pa.string())).empty_table()
        return _to_pandas(table)

    # -- scores

    def _scores_dir(self, dataset: str, model_version: Union[str, int, None] = None) -> str:
        """Folder of all scores, or of one model version's scores."""
        if model_version is None:
            return self._path(dataset, "scores")
        return self._path(dataset, "scores", f"model_version={_check_name('model version', str(model_version))}")

    def write_scores(self, dataset: str, model_version: Union[str, int], batch_id: str, frame: pd.DataFrame) -> str:
        """Atomically write one batch's scores for one model version.

        Parameters
        ----------
        dataset : str
        model_version : str or int
            Registered model version (or any safe label).
        batch_id : str
            The scored batch; writing it again replaces the previous scores.
        frame : pandas.DataFrame
            Scores, typically ``_source_row`` plus score columns. ``batch_id`` and
            ``model_version`` columns, if present, must match the arguments; they are
            stored in the path only.

        Returns
        -------
        str
            Path of the written file.
        """
        _check_name("batch id", batch_id)
        frame = frame.copy()
        for name, value in (("batch_id", batch_id), ("model_version", str(model_version))):
            if name in frame.columns:
                if not (frame[name].astype(str) == value).all():
                    raise LakeError(f"scores frame column {name!r} does not match the argument {value!r}")
                frame = frame.drop(columns=name)
        folder = f"{self._scores_dir(dataset, model_version)}/batch_id={batch_id}"
        _remove_stale_tmp(self.fs, folder)
        path = f"{folder}/{PART_FILE}"
        _atomic_write(self.fs, path, pa.Table.from_pandas(frame, preserve_index=False), "scores")
        return path

    def scored_batches(self, dataset: str, model_version: Union[str, int]) -> set[str]:
        """Batch ids that have committed scores for ``model_version`` (the scoring watermark)."""
        pattern = f"{self._scores_dir(dataset, model_version)}/batch_id=*/{PART_FILE}"
        return {posixpath.basename(posixpath.dirname(p)).split("=", 1)[1] for p in self.fs.glob(pattern)}

    def read_scores(self, dataset: str, model_version: Union[str, int, None] = None) -> pd.DataFrame:
        """Scores of one model version (or all), with ``model_version`` and ``batch_id`` columns.

        Batches come in ingest order within each model version; model versions in sorted order.
        """
        order = {r.batch_id: i for i, r in enumerate(self._manifest(dataset))}
        versions = [str(model_version)] if model_version is not None else sorted(
            posixpath.basename(p).split("=", 1)[1] for p in self.fs.glob(f"{self._scores_dir(dataset)}/model_version=*")
        )
        tables = []
        for version in versions:
            for batch_id in sorted(self.scored_batches(dataset, version), key=lambda b: (order.get(b, len(order)), b)):
                path = f"{self._scores_dir(dataset, version)}/batch_id={batch_id}/{PART_FILE}"
                with self.fs.open(path, "rb") as handle:
                    table = pq.read_table(handle)
                n = table.num_rows
                table = table.append_column("model_version", pa.array([version] * n, pa.string()))
                tables.append(table.append_column(BATCH_COLUMN, pa.array([batch_id] * n, pa.string())))
        if not tables:
            return pd.DataFrame({"model_version": pd.Series(dtype=str), BATCH_COLUMN: pd.Series(dtype=str)})
        return _to_pandas(pa.concat_tables(tables, promote_options="default"))


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas keeping nullable ints and bools."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)
