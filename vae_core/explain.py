"""Why a row scored high: per-column attribution, the long-form ``explain()`` table, and the one
``top_features`` text used wherever scores are stored or shown.

The ``top_features`` format
---------------------------
``"amount=912.5 (81%), channel='atm' (12%)"``: up to ``top_k`` columns, largest share first, each
as ``name=value (share%)`` with the value's ``repr`` (cut to :data:`MAX_VALUE_CHARS` characters,
ending in "…") and its share of the row's positive excess negative log-likelihood, rounded to a
whole percent. Columns whose share rounds to 0% are left out.

The row rule: only flagged rows (``is_anomaly``) are explained; every other row gets ``""``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from .preprocess import ColumnSpec, Preprocessor
from .scored import ScoredBatch

TOP_FEATURES_COLUMN = "top_features"
MAX_VALUE_CHARS = 40  # longer values are cut in explain()'s ``value`` and in the top_features text
ELLIPSIS = "…"


@dataclass
class Attribution:
    """How much each column contributes to a row's score, relative to the calibration rows."""

    n_num: int
    typical_sq: np.ndarray  # (n_num,) median squared residual of each numeric column
    median: np.ndarray  # (n_features,) median contribution on the calibration rows

    def contributions(self, feature_nll: np.ndarray, feature_sq: np.ndarray) -> np.ndarray:
        """Per column: 0.5 * residual^2 / typical residual^2 (numeric), else the NLL."""
        out = np.array(feature_nll, dtype=np.float64, copy=True)
        out[:, : self.n_num] = 0.5 * feature_sq[:, : self.n_num] / self.typical_sq
        return out

    def excess(self, feature_nll: np.ndarray, feature_sq: np.ndarray) -> np.ndarray:
        """Contributions minus their calibration medians."""
        return self.contributions(feature_nll, feature_sq) - self.median

    @classmethod
    def fit(cls, feature_nll: np.ndarray, feature_sq: np.ndarray, n_num: int) -> "Attribution":
        """Typical residuals and median contributions of held-out normal rows."""
        typical = np.maximum(np.median(feature_sq[:, :n_num], axis=0), 1e-6)
        self = cls(n_num, typical, np.zeros(feature_nll.shape[1]))
        self.median = np.median(self.contributions(feature_nll, feature_sq), axis=0)
        return self

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"n_num": self.n_num, "typical_sq": self.typical_sq.tolist(), "median": self.median.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Attribution":
        """Rebuild from :meth:`to_dict` output."""
        return cls(d["n_num"], np.asarray(d["typical_sq"], float), np.asarray(d["median"], float))


def short_value(value: Any) -> Any:
    """``value``, with a string longer than :data:`MAX_VALUE_CHARS` cut to that length ("…" last)."""
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[: MAX_VALUE_CHARS - 1] + ELLIPSIS
    return value


def value_text(value: Any) -> str:
    """The ``repr`` of :func:`short_value`, itself cut to about :data:`MAX_VALUE_CHARS` characters."""
    text = repr(short_value(value))
    return text if len(text) <= MAX_VALUE_CHARS + 2 else text[: MAX_VALUE_CHARS - 1] + ELLIPSIS


def typical_text(spec: ColumnSpec) -> str:
    """A short human description of a column's normal values."""
    if spec.kind == "numeric":
        return f"{spec.low:.4g} to {spec.high:.4g}"
    if spec.kind == "bool":
        return f"true in {100 * spec.true_rate:.0f}% of rows"
    return ", ".join(value_text(c) for c in spec.categories[:3]) + (", ..." if len(spec.categories) > 3 else "")


def explain_rows(
    frame: pd.DataFrame, excess: np.ndarray, pp: Preprocessor, top_k: int, index: Optional[pd.Index] = None
) -> pd.DataFrame:
    """Long-form top-``top_k`` features per row from an (n, n_features) excess-NLL matrix.

    ``index`` labels the rows of ``frame`` in the output (default: ``frame.index``)."""
    names = pp.feature_names
    specs = {c.name: c for c in pp.columns}
    index = frame.index if index is None else pd.Index(index)
    top_k = int(min(max(top_k, 1), len(names)))
    positive = np.clip(excess, 0.0, None)
    total = positive.sum(1, keepdims=True)
    share = np.divide(positive, total, out=np.zeros_like(positive), where=total > 0)
    order = np.argsort(-excess, axis=1, kind="stable")[:, :top_k]
    rows = np.repeat(np.arange(len(frame)), top_k)
    cols = order.ravel()
    values = np.empty(len(rows), dtype=object)
    for j in np.unique(cols):
        at = cols == j
        values[at] = [short_value(v) for v in frame[names[j]].to_numpy(dtype=object)[rows[at]]]
    typical = np.array([typical_text(specs[n]) for n in names], dtype=object)
    return pd.DataFrame(
        {
            "rank": np.tile(np.arange(1, top_k + 1), len(frame)),
            "feature": np.array(names, dtype=object)[cols],
            "share": share[rows, cols],
            "excess_nll": excess[rows, cols],
            "value": values,
            "typical": typical[cols],
        },
        index=index[rows],
    )


def top_features_text(explanation: pd.DataFrame) -> pd.Series:
    """One ``top_features`` string per explained row (see the module docstring for the format).

    Parameters
    ----------
    explanation : DataFrame
        The output of a detector's ``explain()``: long form, the row's index label repeated.

    Returns
    -------
    Series of str, one per distinct index label of ``explanation``, in order of appearance.
    """
    if explanation.empty:
        return pd.Series(dtype=object)
    percents = np.rint(100 * explanation["share"].to_numpy(dtype=float)).astype(np.int64)
    parts = [
        f"{f}={value_text(v)} ({p}%)" if p >= 1 else ""
        for f, v, p in zip(explanation["feature"], explanation["value"], percents)
    ]
    rows: dict = {}  # label -> its parts, labels in order of appearance (a groupby with a
    for label, part in zip(explanation.index, parts):  # Python lambda cost ~50 us a row)
        kept = rows.setdefault(label, [])
        if part:
            kept.append(part)
    index = pd.Index(list(rows), name=explanation.index.name)
    return pd.Series([", ".join(p) for p in rows.values()], index=index)


def score_and_explain(detector: Any, frame: pd.DataFrame, context: Optional[pd.DataFrame] = None,
                      top_k: int = 3, band: bool = True) -> ScoredBatch:
    """Score a batch and explain its flagged rows in one pass, for either detector kind.

    Parameters
    ----------
    detector : VAEDetector or TimeSeriesVAEDetector
        A fitted (or loaded) detector.
    frame : DataFrame
        The rows to score, as for ``detector.score``.
    context : DataFrame, optional
        A time series' earlier rows of the same series, scored before ``frame`` and left out
        of the result (see :meth:`TimeSeriesVAEDetector.score`), e.g. the last
        ``detector.batch_context_points`` of each series; a table takes none.
    top_k : int, default 3
        The most columns named per flagged row.
    band : bool, default True
        A time series' expected band of the rows when one is flagged.

    Returns
    -------
    ScoredBatch
        :class:`vae_core.scored.ScoredBatch`: ``scores`` as :func:`score_with_explanations`
        gives them, ``explanation`` (``explain``'s long form for the flagged rows only, indexed
        by their position in ``frame``), and for a time series ``band``, ``events`` and
        ``event_of_row`` (empty for a table).
    """
    return detector.score_batch(frame, top_k=max(1, int(top_k)), context=context, band=band)


def with_top_features(scores: pd.DataFrame, explanation: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``scores`` with the ``top_features`` column: each flagged row's text from
    ``explanation`` (indexed by position in ``scores``), ``""`` for the others."""
    text = np.full(len(scores), "", dtype=object)
    if len(explanation):
        per_row = top_features_text(explanation)
        text[per_row.index.to_numpy(dtype=np.int64)] = per_row.to_numpy()
    out = scores.copy()
    out[TOP_FEATURES_COLUMN] = pd.Series(text, index=scores.index, dtype=object)
    return out


def score_with_explanations(detector: Any, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
    """Scores of every row plus the ``top_features`` text of the flagged ones
    (:func:`score_and_explain`'s ``scores``, without a time series' band; ``detector``, ``frame``
    and ``top_k`` as there).

    Returns
    -------
    DataFrame
        ``detector.score(frame)`` (same index and order) with a ``top_features`` column: the
        text described in this module's docstring for rows with ``is_anomaly``, ``""`` for the
        others. A time series is explained from the same windows that scored it, so a flagged
        point is explained with its neighbours in context, and every flagged point of one event
        names the event's columns (its excess summed over the event's points), with the point's
        own values.
    """
    return score_and_explain(detector, frame, top_k=top_k, band=False).scores
