"""Schema inference and batch validation: cast each column to its logical type, quarantine the
rows that do not fit, and reject batches whose columns are missing, extra or retyped.

Pure functions: nothing here touches storage.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lake.errors import LakeError, SchemaError, SourceError
from pipelines.lake.identity import content_hash
from pipelines.lake.records import (
    ARROW_TYPES,
    INFER_MIN_SHARE,
    REASON_COLUMN,
    RETYPE_SHARE,
    ROW_COLUMN,
    DatasetSchema,
    ExtraColumns,
    SourceBatch,
    ValidatedBatch,
)
from pipelines.lake.sources import as_text, value_kind, strip_ascii_space

_MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "nat"})
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Codes of what is wrong with a value (:attr:`_Cast.why`; the text is :meth:`_Cast.problem`).
_FINE, _UNPARSABLE, _INFINITE, _NO_TIME = range(4)
_INFER_PROBE = 10_000  # first rows whose share of distinct values picks how _infer tests a column


def _missing(text: pd.Series, ltype: str, stripped: Optional[pa.Array] = None) -> np.ndarray:
    """Missing-value mask of a text column for the target type (``stripped``: from :func:`strip_ascii_space`)."""
    if ltype == "string":
        values = text.to_numpy(object)
        return pd.isna(values) | (values == "")  # values are str or None
    stripped = strip_ascii_space(text)[1] if stripped is None else stripped
    # Arrow's lower-casing differs from str.lower only off ASCII, where no value can be a token
    token = pc.is_in(pc.utf8_lower(stripped), value_set=pa.array(sorted(_MISSING_TOKENS)))
    return pc.or_(pc.is_null(stripped), token).to_numpy(zero_copy_only=False)


def _infer(series: pd.Series) -> str:
    """The logical type of a source column (tolerating up to 5% odd values)."""
    kind = value_kind(series)
    if kind != "text":
        return kind
    text = as_text(series)  # str objects, None where missing
    head = text.iloc[:_INFER_PROBE]
    count = np.ones(len(text), np.int64)  # mostly distinct values (ids): every row is tested
    if head.nunique() <= len(head) // 2:  # each distinct text once, weighted by its rows: the same shares
        codes, distinct = pd.factorize(text)  # missing -> -1
        count, text = np.bincount(codes[codes >= 0], minlength=len(distinct)), pd.Series(distinct, dtype=object)
    stripped, trimmed = strip_ascii_space(text)
    present = ~_missing(text, "float", trimmed)
    values, count = stripped[present], count[present]
    need = INFER_MIN_SHARE * count.sum()
    if not need:
        return "string"
    number = pd.to_numeric(values, errors="coerce")
    numeric = number.notna().to_numpy() & np.isfinite(number.to_numpy(dtype="float64", na_value=np.nan))
    if count[numeric].sum() >= need:
        integral = values[numeric].str.fullmatch(r"[+-]?\d{1,18}").all()
        return "int" if integral else "float"
    if count[values.str.lower().isin(("true", "false")).to_numpy(bool)].sum() >= need:
        return "bool"
    dates = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    if count[(dates.notna() & values.str.match(r"\d{4}-\d{2}-\d{2}")).to_numpy(bool)].sum() >= need:
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
    source: pd.Series  # the column as read
    missing: np.ndarray
    bad: np.ndarray  # value present but not acceptable
    why: np.ndarray  # problem code per row (uint8, _FINE where none)
    uncastable: np.ndarray  # bad because of its type (not e.g. infinite)
    ltype: str = "string"
    _text: Optional[pd.Series] = None

    def problem(self, row: int) -> str:
        """What is wrong with the value in ``row``."""
        code = self.why[row]
        if code == _UNPARSABLE:
            return f"cannot parse as {'an' if self.ltype == 'int' else 'a'} {self.ltype}"
        return {_INFINITE: "infinite value", _NO_TIME: "missing time value"}.get(code, "")

    @property
    def text(self) -> pd.Series:
        """The original values as text, for the quarantine (rendered only when needed: typed
        columns without bad rows never need it, and rendering is most of the cost)."""
        if self._text is None:
            self._text = as_text(self.source)
        return self._text

    def text_at(self, rows: np.ndarray) -> np.ndarray:
        """The original values of ``rows`` as text (object array)."""
        if self._text is not None:
            return self._text.to_numpy(object)[rows]
        return as_text(self.source.iloc[rows]).to_numpy(object)


def _coerce(series: pd.Series, ltype: str, typed: Optional[pa.ChunkedArray] = None) -> _Cast:
    """Cast a column to ``ltype``, flagging values that do not fit; ``typed`` is the column as
    Arrow (:attr:`SourceBatch.table`), used as it is when it already has ``ltype``'s type."""
    if typed is not None and typed.type == ARROW_TYPES[ltype]:
        return _as_typed(series, ltype, typed.combine_chunks())
    kind = value_kind(series)
    needs_text = kind == "text" or ltype == "string"
    text = as_text(series) if needs_text else None
    stripped, trimmed = strip_ascii_space(text) if kind == "text" and ltype != "string" else (None, None)
    missing = _missing(text, ltype, trimmed) if kind == "text" else ~series.notna().to_numpy()
    infinite = np.zeros(len(series), bool)
    if ltype == "string":
        values = pa.array(text.to_numpy(object), pa.string(), mask=missing)
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
        values = pa.array(utc_wall, pa.timestamp("us"), mask=missing | bad).cast(ARROW_TYPES["datetime"])
    else:
        numbers = _numbers(series, kind, stripped, missing)
        if ltype == "bool":
            flags, bad = _bools(kind, series, trimmed, numbers, missing)
            values = pa.array(flags, pa.bool_(), mask=missing | bad)
        elif ltype == "int":
            values, bad = _ints(series, kind, stripped, numbers, missing)
        else:
            bad = ~missing & np.isnan(numbers)
            infinite = ~missing & np.isinf(numbers)
            values = pa.array(numbers, pa.float64(), mask=missing | bad | infinite)
    why = np.zeros(len(series), np.uint8)
    why[bad] = _UNPARSABLE
    why[infinite] = _INFINITE
    return _Cast(values, series, missing, bad | infinite, why, uncastable=bad, ltype=ltype, _text=text)


def _as_typed(series: pd.Series, ltype: str, values: pa.Array) -> _Cast:
    """What :func:`_coerce` makes of a column that already has the Arrow type of ``ltype``:
    nulls are missing, and so are NaN (as in pandas) and, for strings, empty values;
    infinite floats are bad."""
    n = len(values)
    if ltype == "string":
        missing = pc.fill_null(pc.equal(values, ""), True)
    else:
        missing = pc.is_null(values, nan_is_null=ltype == "float")
    infinite = pc.and_not(pc.is_inf(values), missing).fill_null(False) if ltype == "float" else None
    hidden = missing if infinite is None else pc.or_(missing, infinite)
    if (pc.sum(hidden).as_py() or 0) > values.null_count:  # values to null out (empty, NaN, infinite)
        values = pc.if_else(hidden, pa.scalar(None, values.type), values)
    none = np.zeros(n, bool)
    bad = none if infinite is None else infinite.to_numpy(zero_copy_only=False)
    why = np.zeros(n, np.uint8)
    why[bad] = _INFINITE
    return _Cast(values, series, missing.to_numpy(zero_copy_only=False), bad, why, uncastable=none, ltype=ltype)


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
    kind: str, series: pd.Series, trimmed: Optional[pa.Array], numbers: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bool values and bad mask; accepts true/false, t/f, yes/no, y/n and 1/0 (``trimmed``: the
    stripped text of a text column, from :func:`strip_ascii_space`)."""
    if kind == "bool":
        flags = series.fillna(False).to_numpy(bool)
        return flags, np.zeros(len(series), bool)
    if kind == "text":
        lower = pc.utf8_lower(trimmed)  # as str.lower wherever a value can be a token (ASCII)
        flags = pc.is_in(lower, value_set=pa.array(sorted(_TRUE))).to_numpy(zero_copy_only=False)
        known = flags | pc.is_in(lower, value_set=pa.array(sorted(_FALSE))).to_numpy(zero_copy_only=False)
    else:
        flags = numbers == 1.0
        known = flags | (numbers == 0.0)
    return flags, ~missing & ~known




def check_name(kind: str, value: str) -> str:
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
        raise SchemaError(
            f"{where}: cannot infer a schema from a file without rows; give the column types "
            "(Lake.ingest(schema=...), the ingest flow's column_types) or ingest a file with rows first"
        )
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
        Defaults to ``b-<first 16 hex digits of the content hash>``
        (:func:`~pipelines.lake.identity.content_hash`), so the same rows from any file
        format get the same id.
    extra_columns : {"error", "ignore"}
        What to do with source columns that are not in the schema: raise a
        :class:`SchemaError` naming them, or leave them out (recorded in ``ignored_columns``).

    Returns
    -------
    ValidatedBatch

    Raises
    ------
    SourceError
        The file has no rows (e.g. a CSV with a header only): an empty batch is refused.
    SchemaError
        A schema column is missing, a column's values mostly cannot be cast to its type
        (more than ``RETYPE_SHARE`` of the non-missing values), or there are extra columns.
    """
    if batch_id is not None:
        check_name("batch id", batch_id)
    where = f"dataset {dataset!r}, file {batch.source!r}"
    if batch.rows_read == 0:
        raise SourceError(f"{where}: the file has no rows (a header only?); nothing to ingest")
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
        cast = _coerce(batch.frame[name], ltype, batch.table.column(name) if batch.table is not None else None)
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
            cast.why[gap] = _NO_TIME
            cast.bad = cast.bad | gap
        casts[name] = cast

    rejected = np.zeros(n, bool)
    reasons: dict[int, list[str]] = defaultdict(list)
    by_column: dict[str, int] = {}
    for row, message in batch.record_errors.items():
        rejected[row] = True
        reasons[row].append(f"row {row}: {message}")
    for name, cast in casts.items():
        if not cast.bad.any():
            continue
        bad = np.flatnonzero(cast.bad)
        rejected[bad] = True
        for row, text in zip(bad.tolist(), cast.text_at(bad)):  # only the bad rows rendered as text
            reasons[row].append(f"row {row}, column {name!r}: {cast.problem(row)} ({text!r})")
        by_column[name] = len(bad)

    rows = np.arange(n, dtype=np.int64)
    arrays = {name: cast.values for name, cast in casts.items()}
    accepted = pa.table({**arrays, ROW_COLUMN: pa.array(rows)}, schema=fixed.arrow_schema())
    if rejected.any():  # filtering copies every column
        accepted = accepted.filter(pa.array(~rejected))
    bad_rows = np.flatnonzero(rejected)
    quarantine = pa.table(
        {
            **{c: pa.array(casts[c].text_at(bad_rows), pa.string()) for c in fixed.columns},
            REASON_COLUMN: pa.array(["; ".join(reasons[r]) for r in bad_rows], pa.string()),
            ROW_COLUMN: pa.array(rows[bad_rows]),
        }
    )
    if accepted.num_rows + quarantine.num_rows != n:  # the lake never drops a row
        raise LakeError(f"{where}: internal error, {n} rows read but {accepted.num_rows}+{quarantine.num_rows} kept")
    digest = content_hash(fixed, accepted, quarantine)
    batch_id = batch_id or f"b-{digest[:16]}"
    return ValidatedBatch(dataset, batch_id, batch, fixed, is_new, accepted, quarantine, by_column, extra, digest)
