"""Pure functions the flows put in order: no Prefect, no MLflow, no I/O.

Scores with their top features come from :func:`vae_core.score_with_explanations` directly.

Kedro's split: these are the nodes, ``pipelines/flows/*`` are the wiring.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import pandas as pd

from pipelines.lake import META_COLUMNS
from pipelines.reports.build import time_text
from vae_core import DataError, ScoredBatch, TimeSeriesVAEDetector, VAEDetector

Detector = Union[VAEDetector, TimeSeriesVAEDetector]


def score_label(model_name: str, version: str) -> str:
    """The scores key: the lake's key for scores of one registered model version, e.g.
    ``transactions-v3`` (the score flow's ``scores_key``, the lake's ``model_version``)."""
    return f"{model_name}-v{version}"


#: What ends the scores key of a time series' offline (``point_score="mean"``) scores; causal
#: scores, the score flow's default, have the plain key.
OFFLINE_SUFFIX = "-offline"


def mode_scores_key(scores_key: str, point_score: str) -> str:
    """The scores key of a time series' scores in ``point_score`` mode (``"last"`` or ``"mean"``)."""
    return scores_key + (OFFLINE_SUFFIX if point_score == "mean" else "")


def point_score_of(scores_key: str) -> str:
    """The point-score mode a time series' scores under ``scores_key`` (or a report label) were made in."""
    return "mean" if scores_key.endswith(OFFLINE_SUFFIX) else "last"


def feature_frame(frame: pd.DataFrame, exclude: Optional[list[str]] = None) -> pd.DataFrame:
    """The columns a model sees: everything but the lake's bookkeeping and ``exclude``."""
    exclude = list(exclude or [])
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise DataError(f"cannot exclude column(s) {unknown}: not in the dataset (columns: {list(frame.columns)})")
    drop = [c for c in (*META_COLUMNS, *exclude) if c in frame.columns]
    return frame.drop(columns=drop)


def fit_detector(
    frame: pd.DataFrame,
    time_column: Optional[str],
    series_column: Optional[str],
    params: Optional[dict],
    seed: int,
    callback: Optional[Callable] = None,
) -> Detector:
    """A tabular detector, or a time-series one when the dataset has a time column."""
    params = dict(params or {})
    if time_column:
        det = TimeSeriesVAEDetector(seed=seed, **params)
        return det.fit(frame, time_column=time_column, series_column=series_column, callback=callback)
    return VAEDetector(seed=seed, **params).fit(frame, callback=callback)


#: Settings of the champion that a retrain does not take over: its seed (the flow's own) and its
#: threshold rule, which reviews may have moved (``calibrate``) on the champion's own score scale.
NOT_INHERITED = ("seed", "threshold_method", "contamination", "pot_risk", "pot_level", "fixed_threshold")


def challenger_params(champion: Optional[Detector], params: Optional[dict]) -> Optional[dict]:
    """The settings a retrain fits its challenger with: the champion's own (its window, epochs,
    ``mask_flagged_past`` ...), less :data:`NOT_INHERITED`, with ``params`` over them; ``params``
    alone without a champion."""
    if champion is None:
        return params
    own = {k: v for k, v in champion.config_.model_dump().items() if k not in NOT_INHERITED}
    return {**own, **(params or {})}


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``, on the expected deciles.

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i). Rule of thumb: < 0.1 stable, 0.1-0.25 some
    drift, > 0.25 a shift worth acting on.
    """
    acc = PSI(expected, bins, eps)
    acc.update(actual)
    return acc.value()


class PSI:
    """:func:`psi` accumulated over parts of ``actual`` (a batch scored in chunks)."""

    def __init__(self, expected: np.ndarray, bins: int = 10, eps: float = 1e-4):
        expected = np.asarray(expected, float)
        self.eps = eps
        self.edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1])) if len(expected) else None
        self.expected = self._counts(expected) / len(expected) if len(expected) else None
        self.counts = np.zeros(len(self.edges) + 1 if self.edges is not None else 0, np.int64)

    def _counts(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=len(self.edges) + 1)

    def update(self, actual: np.ndarray) -> None:
        """Add a part of the scored values."""
        if self.edges is not None:
            self.counts += self._counts(np.asarray(actual, float))

    def value(self) -> float:
        """PSI of everything added so far (NaN when either side is empty)."""
        n = int(self.counts.sum())
        if self.expected is None or n == 0:
            return float("nan")
        e, a = np.clip(self.expected, self.eps, None), np.clip(self.counts / n, self.eps, None)
        return float(np.sum((a - e) * np.log(a / e)))


def holdout_split(
    frame: pd.DataFrame, fraction: float, seed: int, time_column: Optional[str] = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the latest ``fraction`` of time for a time series, else a seeded random split."""
    if len(frame) < 10:
        raise ValueError(f"too few rows ({len(frame)}) to hold any out")
    if time_column:
        cut = frame[time_column].quantile(1 - fraction)
        hold = frame[time_column] > cut
    else:
        rng = np.random.default_rng(seed)
        hold = pd.Series(rng.random(len(frame)) < fraction, index=frame.index)
    return frame[~hold], frame[hold]


def promotion_decision(champion_nll: float, challenger_nll: float, tolerance: float) -> tuple[bool, str]:
    """Promote when the challenger's held-out -log p (data units, per row) is not worse.

    The rule: promote if ``challenger_nll <= champion_nll + tolerance``. Both models are scored
    on the same held-out rows, which neither was trained on, by their importance-weighted
    estimate of -log p(x) in the data's own units (so different scalings compare fairly).
    """
    promoted = bool(np.isfinite(challenger_nll) and challenger_nll <= champion_nll + tolerance)
    verb = "promoted" if promoted else "kept the champion"
    rule = (
        f"{verb}: challenger -log p {challenger_nll:.4f} vs champion {champion_nll:.4f} nats/row "
        f"on the same held-out rows (promote if challenger <= champion + {tolerance:g})"
    )
    return promoted, rule


#: What :func:`top_anomalies` adds to a time series' top rows: the event each row is the peak of.
EVENT_TOP_COLUMNS = ["event_series", "event_start", "event_end", "event_points"]


def top_anomalies(part: pd.DataFrame, scored: ScoredBatch, n: int) -> pd.DataFrame:
    """The ``n`` highest-scoring flagged rows of a scored chunk ``part``. Where the detector
    groups flags into events (``scored``: the chunk's :class:`vae_core.ScoredBatch`, a time
    series) one row per event, its highest-scoring flagged point in the batch, with the event's
    series, start, end (as text) and points: a long event takes one place, not ``n``."""
    flags = part["is_anomaly"].to_numpy(bool)
    flagged = part[flags]
    if not scored.groups_events:
        return flagged.nlargest(n, "anomaly_score")
    peaks = (flagged.assign(_event=scored.event_of_row[flags])
             .sort_values("anomaly_score", ascending=False, kind="stable").drop_duplicates("_event").head(n))
    ev = scored.events.set_index("event_id").loc[peaks["_event"].to_numpy()]
    return peaks.drop(columns="_event").assign(
        event_series=[None if x is None else str(x) for x in ev["series"]],
        event_start=[time_text(t) for t in ev["start"]], event_end=[time_text(t) for t in ev["end"]],
        event_points=ev["points"].to_numpy(dtype=np.int64))
