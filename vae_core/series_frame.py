"""Reading a time-series frame: value columns as floats, times as numbers, series keys, the grid step."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .errors import DataError


def values_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The value columns as floats (booleans become 0/1); rejects non-numeric columns."""
    out = {}
    for c in columns:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            s = s.astype("float64")
        elif not pd.api.types.is_numeric_dtype(s.dtype):
            coerced = pd.to_numeric(s, errors="coerce")
            bad = coerced.isna() & s.notna()
            if bad.any():
                row = s.index[np.flatnonzero(bad.to_numpy())[0]]
                raise DataError(f"value column {c!r}, row {row!r}: {s[row]!r} is not a number "
                                "(TimeSeriesVAEDetector models numeric columns; pass value_columns= to choose them)")
            s = coerced
        out[c] = s
    return pd.DataFrame(out, index=frame.index)


def is_datetime(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return True
    return not pd.api.types.is_numeric_dtype(series.dtype)


def parse_times(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Times as float64 (nanoseconds for datetimes); names the row of a missing or bad time."""
    s = frame[column]
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        t = s.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(t)
    else:
        parsed = pd.to_datetime(s, errors="coerce", utc=True) if not pd.api.types.is_datetime64_any_dtype(s.dtype) else s
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        t = parsed.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
        bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"column {column!r}, row {frame.index[pos]!r}: missing or unparseable time {s.iloc[pos]!r}")
    return t


def series_codes(frame: pd.DataFrame, column: Optional[str]) -> np.ndarray:
    if column is None:
        return np.zeros(len(frame), np.int64)
    s = frame[column]
    if s.isna().any():
        pos = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DataError(f"column {column!r}, row {frame.index[pos]!r}: missing series key")
    return pd.factorize(s, sort=True)[0].astype(np.int64)


def series_names(frame: pd.DataFrame, column: Optional[str]) -> list[str]:
    """The series' names in code order (:func:`series_codes`), as strings; one unnamed series without a column."""
    if column is None:
        return [""]
    return [str(v) for v in pd.factorize(frame[column], sort=True)[1]]


def infer_step(times: np.ndarray, codes: np.ndarray) -> float:
    """The median positive spacing between consecutive timestamps within each series."""
    diffs = []
    for code in np.unique(codes):
        t = np.unique(times[codes == code])
        if len(t) > 1:
            diffs.append(np.diff(t))
    if not diffs:
        return 1.0
    step = float(np.median(np.concatenate(diffs)))
    return step if step > 0 else 1.0
