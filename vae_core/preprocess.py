"""Column typing, robust standardisation and encoding of mixed-type frames.

A fitted :class:`Preprocessor` turns a DataFrame into an :class:`Encoded` set of arrays:
numeric columns standardised with the median and the inter-quartile range, booleans as 0/1,
categoricals as integer codes (one extra slot per column collects rare and unseen
categories), and a mask per value that is 0 where the value is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import pandas as pd

from .errors import DataError

Kind = Literal["numeric", "bool", "categorical"]
IQR_TO_SIGMA = 1.349  # IQR of a standard normal
MAX_RARE = 10000  # rare categories remembered per column; past that, unknown values count as rare
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class ColumnSpec:
    """What was learned about one column at fit time."""

    name: str
    kind: Kind
    center: float = 0.0
    scale: float = 1.0
    low: float = 0.0  # typical range (5th..95th percentile, original units) of a numeric column
    high: float = 0.0
    categories: list[str] = field(default_factory=list)
    rare: list[str] = field(default_factory=list)  # seen in training, beyond the kept categories
    novelty_nll: float = 0.0  # -log P(a never-seen category), Good-Turing estimate
    true_rate: float = 0.0


@dataclass
class Encoded:
    """Model-ready arrays for ``n`` rows; masks are 1.0 where a value is observed."""

    num: np.ndarray  # (n, n_num) float32, standardised, 0 where missing
    num_mask: np.ndarray  # (n, n_num) float32
    bools: np.ndarray  # (n, n_bool) float32
    bool_mask: np.ndarray
    cats: np.ndarray  # (n, n_cat) int64 codes
    cat_mask: np.ndarray  # 0 where missing or never seen in training
    cat_novelty: np.ndarray  # (n, n_cat) float32: -log P(new category) where never seen, else 0
    cond: Optional[np.ndarray] = None  # (n, n_cond) float32 conditioning inputs of a conditional VAE

    def __len__(self) -> int:
        return self.num.shape[0]

    def take(self, rows: np.ndarray) -> "Encoded":
        """The subset of rows at integer positions ``rows``."""
        return Encoded(*(a[rows] for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in a fixed order (the fields of :class:`~vae_core.model.Batch`); ``cond`` last, when set."""
        base = (self.num, self.num_mask, self.bools, self.bool_mask, self.cats, self.cat_mask, self.cat_novelty)
        return base if self.cond is None else (*base, self.cond)

    @staticmethod
    def numeric(values: np.ndarray, cond: Optional[np.ndarray] = None) -> "Encoded":
        """Encode an already standardised float matrix; NaN marks a missing value. ``cond``:
        optional conditioning inputs, one row per row of ``values``."""
        mask = np.isfinite(values)
        n = values.shape[0]
        empty_f = np.zeros((n, 0), np.float32)
        return Encoded(
            np.where(mask, values, 0.0).astype(np.float32),
            mask.astype(np.float32),
            empty_f,
            empty_f,
            np.zeros((n, 0), np.int64),
            empty_f,
            empty_f,
            None if cond is None else np.asarray(cond, np.float32),
        )


def _row_label(frame: pd.DataFrame, position: int) -> str:
    return f"row {frame.index[position]!r}"


def infer_kind(series: pd.Series) -> Kind:
    """The column kind of a training column; raises :class:`DataError` for unsupported types."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise DataError(
            f"column {series.name!r} holds datetimes; drop it, derive numeric features from it, "
            "or use TimeSeriesVAEDetector with time_column"
        )
    observed = series.dropna()
    if len(observed) and observed.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "bool"
    return "categorical"


class Preprocessor:
    """Learns column kinds and scales from a training frame and encodes frames the same way."""

    def __init__(self, columns: Optional[list[ColumnSpec]] = None, max_categories: int = 64, scaling: str = "robust"):
        self.columns = columns or []
        self.max_categories = max_categories
        self.scaling = scaling

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        """Learn each column's kind, centre, scale and vocabulary."""
        check_frame(frame)
        specs = []
        for name in frame.columns:
            series = frame[name]
            kind = infer_kind(series)
            if kind == "numeric":
                values = _numeric_values(frame, name)
                _refuse_counter(name, values)
                specs.append(_fit_numeric(name, values, self.scaling))
            elif kind == "bool":
                values, mask = _bool_values(frame, name)
                rate = float(values[mask].mean()) if mask.any() else 0.0
                specs.append(ColumnSpec(str(name), "bool", true_rate=rate))
            else:
                counts = series.dropna().astype(str).value_counts(sort=True)
                if len(counts) >= 50 and len(counts) == series.notna().sum():
                    raise DataError(
                        f"column {name!r} looks like an identifier ({len(counts)} distinct values in as many "
                        "rows): every new value would count as unseen; leave it out of the features"
                    )
                keep = [str(c) for c in counts.index[: self.max_categories]]
                rare = [str(c) for c in counts.index[self.max_categories : self.max_categories + MAX_RARE]]
                # Good-Turing: the chance that the next value is new is about (values seen once) / n
                p_new = max(int((counts == 1).sum()), 1) / (int(counts.sum()) + 1)
                specs.append(ColumnSpec(str(name), "categorical", categories=keep, rare=rare, novelty_nll=-float(np.log(p_new))))
        self.columns = specs
        return self

    # ------------------------------------------------------------------ encoding
    def transform(self, frame: pd.DataFrame) -> Encoded:
        """Encode ``frame``; raises :class:`DataError` naming the column (and row) of bad input."""
        check_frame(frame)
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise DataError(f"missing column(s) the model was fitted on: {', '.join(map(repr, missing))}")
        n = len(frame)
        nums, num_masks, bools, bool_masks, cats, cat_masks, novelties = [], [], [], [], [], [], []
        for spec in self.columns:
            if spec.kind == "numeric":
                values = _numeric_values(frame, spec.name)
                mask = ~np.isnan(values)
                nums.append(np.where(mask, (values - spec.center) / spec.scale, 0.0))
                num_masks.append(mask)
            elif spec.kind == "bool":
                values, mask = _bool_values(frame, spec.name)
                bools.append(np.where(mask, values, 0.0))
                bool_masks.append(mask)
            else:
                series = frame[spec.name]
                observed = series.notna().to_numpy()
                text = series.astype(str).where(observed)
                codes = pd.Categorical(text, categories=spec.categories).codes
                other = observed & (codes < 0)
                novel = other & ~text.isin(spec.rare).to_numpy() if len(spec.rare) < MAX_RARE else np.zeros_like(other)
                cats.append(np.where(codes < 0, len(spec.categories), codes).astype(np.int64))
                cat_masks.append(observed & ~novel)  # a new category is no input to the encoder...
                novelties.append(np.where(novel, spec.novelty_nll, 0.0))  # ...but a fixed cost in the NLL

        def stack(parts, dtype):
            return np.stack(parts, axis=1).astype(dtype) if parts else np.zeros((n, 0), dtype)

        return Encoded(
            stack(nums, np.float32),
            stack(num_masks, np.float32),
            stack(bools, np.float32),
            stack(bool_masks, np.float32),
            stack(cats, np.int64),
            stack(cat_masks, np.float32),
            stack(novelties, np.float32),
        )

    # ------------------------------------------------------------------ layout
    def by_kind(self, kind: Kind) -> list[ColumnSpec]:
        """The fitted columns of one kind, in model order."""
        return [c for c in self.columns if c.kind == kind]

    def log_scales(self) -> np.ndarray:
        """log(scale) of each numeric column: the Jacobian term between data and standardised units."""
        return np.log(np.array([c.scale for c in self.by_kind("numeric")], dtype=np.float64))

    @property
    def feature_names(self) -> list[str]:
        """Column names in the order of the model's per-feature outputs."""
        return [c.name for k in ("numeric", "bool", "categorical") for c in self.by_kind(k)]

    @property
    def cat_sizes(self) -> list[int]:
        """Slots per categorical column: the kept categories plus one for rare/unseen."""
        return [len(c.categories) + 1 for c in self.by_kind("categorical")]

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"max_categories": self.max_categories, "scaling": self.scaling, "columns": [vars(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, state: dict) -> "Preprocessor":
        """Rebuild from :meth:`to_dict` output."""
        return cls([ColumnSpec(**c) for c in state["columns"]], state["max_categories"], state.get("scaling", "robust"))


def check_frame(frame: pd.DataFrame) -> None:
    """Reject what is not a non-empty DataFrame with at least one column."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if frame.shape[1] == 0:
        raise DataError("the frame has no columns")
    if len(frame) == 0:
        raise DataError("the frame is empty (0 rows)")
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()].tolist()
        raise DataError(f"duplicate column name(s): {dup}")


def _numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Float64 values of a numeric column; names the row of a non-numeric string or an inf."""
    series = frame[name]
    if pd.api.types.is_bool_dtype(series.dtype):
        values = series.astype("float64").to_numpy()
    elif pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna().to_numpy() & series.notna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"column {name!r}, {_row_label(frame, pos)}: {series.iloc[pos]!r} is not a number "
                f"({int(bad.sum())} such value(s) in the column)"
            )
        values = coerced.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise DataError(f"column {name!r}, {_row_label(frame, pos)}: infinite value ({int(inf.sum())} in the column)")
    return values


def _bool_values(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """0/1 values and the observed mask of a boolean column."""
    series = frame[name]
    mask = series.notna().to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype("float64").to_numpy(na_value=np.nan)
        bad = mask & ~np.isin(values, (0.0, 1.0))
    else:
        text = series.astype(str).str.strip().str.lower()
        values = np.where(text.isin(_TRUE), 1.0, np.where(text.isin(_FALSE), 0.0, np.nan))
        bad = mask & np.isnan(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"column {name!r}, {_row_label(frame, pos)}: {series.iloc[pos]!r} is not a boolean")
    return np.nan_to_num(values), mask


def _refuse_counter(name: str, values: np.ndarray) -> None:
    """Refuse an integer column that only ever increases: an identifier or a counter, which
    would make every new row look unseen."""
    if len(values) >= 50 and not np.isnan(values).any() and np.all(values == np.round(values)):
        if np.all(np.diff(values) > 0):
            raise DataError(
                f"column {name!r} looks like an identifier or a counter (integers that only increase); "
                "leave it out of the features"
            )


def _fit_numeric(name: str, values: np.ndarray, scaling: str = "robust") -> ColumnSpec:
    """Median/IQR ("robust") or mean/std ("standard") scaling; constant columns get a tiny scale."""
    observed = values[~np.isnan(values)]
    if observed.size == 0:
        raise DataError(f"column {name!r} has no observed value in the training frame")
    q05, q25, q50, q75, q95 = np.quantile(observed, [0.05, 0.25, 0.5, 0.75, 0.95])
    if scaling == "robust":
        center, scale = q50, (q75 - q25) / IQR_TO_SIGMA
    else:
        center, scale = float(observed.mean()), 0.0
    if not scale > 1e-12:
        scale = float(observed.std())
    if not scale > 1e-12:
        # a constant column: any other value is strong evidence of an anomaly
        scale = 1e-3 * max(abs(float(q50)), 1.0)
    return ColumnSpec(name, "numeric", center=float(center), scale=float(scale), low=float(q05), high=float(q95))
