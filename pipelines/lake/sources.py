"""Reading source files (CSV, Parquet, JSON lines; optionally compressed) into a :class:`SourceBatch`.

CSV and JSON values are kept as text and typed later, against the dataset's schema, by
:mod:`pipelines.lake.validation`; Parquet columns keep their (normalised) types.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from typing import Any, Optional, Union

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.lake.errors import SourceError
from pipelines.lake.records import ARROW_TYPES, SourceBatch, SourceFormat

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


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
        frame, record_errors, table = reader(data)
    except SourceError as exc:
        raise SourceError(f"{source!r}: {exc}") from exc
    except Exception as exc:  # parsers raise many types; name the file in one place
        raise SourceError(f"cannot parse {source!r} as {fmt}: {exc}") from exc
    frame.index = pd.RangeIndex(len(frame))
    return SourceBatch(source=source, format=fmt, sha256=digest, frame=frame, record_errors=record_errors, table=table)


def _parse_csv(data: bytes) -> tuple[pd.DataFrame, dict[int, str], None]:
    """All CSV fields as text; no NA conversion here. A record with too few or too many
    fields becomes an all-missing row with an error (quarantined with its text), so the rest
    of the file is kept."""
    if not data.strip():
        raise SourceError("the file is empty")
    text = data.decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    bad: list[tuple[Optional[int], int, int, str]] = []

    def on_invalid(row: Any) -> str:
        bad.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False,
            quoted_strings_can_be_null=False, null_values=[], auto_dict_encode=False,
        ),
    )
    good = {name: table.column(i).to_numpy(zero_copy_only=False).astype(object) for i, name in enumerate(table.column_names)}
    n = table.num_rows + len(bad)
    places = [number - 2 if number is not None else -1 for number, *_ in bad]  # number 1 is the header
    if len(set(places)) != len(places) or not all(0 <= p < n for p in places):
        places = list(range(table.num_rows, n))  # row numbers unknown: put them last
    errors = {
        place: f"expected {expected} fields, got {actual}: {line[:80]!r}"
        for place, (_, expected, actual, line) in zip(places, bad)
    }
    keep = np.ones(n, bool)
    keep[places] = False
    columns = {}
    for name, values in good.items():
        column = np.full(n, None, dtype=object)
        column[keep] = values
        columns[name] = column
    return pd.DataFrame(columns, index=pd.RangeIndex(n), dtype=object), errors, None


def _parse_parquet(data: bytes) -> tuple[pd.DataFrame, dict[int, str], pa.Table]:
    """Parquet columns normalised to int64 / float64 / bool / timestamp[UTC] / text, as a frame
    and as the Arrow table it is made from."""
    table = pq.read_table(io.BytesIO(data))
    columns = [_normalise_arrow(table.column(i)) for i in range(table.num_columns)]
    mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    parts = {  # text stays Arrow (string[pyarrow], no copy): made str objects (as_text) only where needed
        i: pd.Series(pd.arrays.ArrowExtensionArray(c)) if pa.types.is_string(c.type) else c.to_pandas(types_mapper=mapper)
        for i, c in enumerate(columns)
    }
    frame = pd.DataFrame(parts, index=pd.RangeIndex(table.num_rows), copy=False)  # not consolidated: no copy
    frame.columns = table.column_names
    return frame, {}, pa.table(columns, names=table.column_names)


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
                return column.cast(pa.timestamp("us", tz=kind.tz)).cast(ARROW_TYPES["datetime"])
            return column.cast(pa.timestamp("us")).cast(ARROW_TYPES["datetime"])
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])


def _parse_jsonl(data: bytes) -> tuple[pd.DataFrame, dict[int, str], None]:
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
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records))), errors, None


def _json_text(value: Any) -> Optional[str]:
    """A JSON value as the text a CSV would hold (``None`` for null)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)



#: What ``str.strip()`` removes from ASCII text (``str.isspace`` of the ASCII characters).
_ASCII_SPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def strip_ascii_space(text: pd.Series) -> tuple[pd.Series, pa.Array]:
    """``text`` (``str`` or ``None``, as :func:`as_text` makes it) as ``str.strip()`` leaves
    it, as a Series and as Arrow; Arrow trims all-ASCII columns, Python the others."""
    values = pa.array(text.to_numpy(object), pa.string())
    if pc.all(pc.string_is_ascii(values)).as_py() is False:
        stripped = pd.Series([v.strip() if isinstance(v, str) else v for v in text], index=text.index, dtype=object)
        return stripped, pa.array(stripped.to_numpy(object), pa.string())
    values = pc.ascii_trim(values, _ASCII_SPACE)
    return pd.Series(values.to_numpy(zero_copy_only=False), index=text.index, dtype=object), values


def value_kind(series: pd.Series) -> str:
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


def as_text(series: pd.Series) -> pd.Series:
    """Values as ``str`` (object dtype), ``None`` where missing."""
    kind = value_kind(series)
    notna = series.notna().to_numpy()
    if kind == "text":
        values = series.to_numpy(object)
        if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):  # not all str or None
            values = [v if isinstance(v, str) or v is None else str(v) for v in values]
    elif kind == "bool":  # nullable: no truth value of a missing one (set to None below)
        values = np.where(series.fillna(False).to_numpy(bool), "true", "false").astype(object)
    elif kind == "int":
        values = [str(v) for v in series.astype(object)]
    elif kind == "float":
        values = [repr(float(v)) for v in series.to_numpy(dtype="float64", na_value=np.nan)]
    else:
        values = [v.isoformat() if v is not pd.NaT else None for v in series]
    out = np.array(values, dtype=object)
    out[~notna] = None
    return pd.Series(out, index=series.index, dtype=object)
