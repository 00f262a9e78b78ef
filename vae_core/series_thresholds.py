"""Thresholds per series: one fleet can mix quiet and noisy sensors, whose normal scores differ.

With ``TimeSeriesConfig.threshold_per_series`` each series gets its own :class:`Calibration`,
placed by the same rule (quantile, POT or a fixed cut) on that series' held-out tail. A series with fewer than
:data:`MIN_TAIL_POINTS` tail points, or one not seen in training, keeps the shared threshold.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .config import TimeSeriesConfig
from .threshold import Calibration, inliers

MIN_TAIL_POINTS = 20


def fit_series_calibrations(scores: np.ndarray, series: np.ndarray, config: TimeSeriesConfig) -> dict[str, Calibration]:
    """One calibration per series name in ``series`` with enough points in ``scores``, each on that
    series' own inliers (``config.tail_fence`` applied per series: a noisy series' normal highs are
    not the quiet ones' outliers).

    Parameters
    ----------
    scores : array of shape (n,)
        Anomaly scores of held-out (tail) points.
    series : array of str, shape (n,)
        Each point's series name.
    config : TimeSeriesConfig
        Threshold method, contamination, POT risk and level, the fixed cut, the tail fence.
    """
    out = {}
    for name in pd.unique(series):
        s = scores[series == name]
        if len(s) >= MIN_TAIL_POINTS:
            out[str(name)] = _fit(s[inliers(s, config.tail_fence)], config)
    return out


def refit(calibrations: dict[str, Calibration], config: TimeSeriesConfig) -> dict[str, Calibration]:
    """The same series' stored scores under a new threshold ``config`` (``calibrate()``); a fixed
    threshold (``threshold_method="fixed"``, e.g. from reviews) is the one cut of every series,
    whose p-values still come from its own scores."""
    return {name: _fit(c.scores, config) for name, c in calibrations.items()}


def _fit(scores: np.ndarray, config: TimeSeriesConfig) -> Calibration:
    return Calibration.fit(scores, config.threshold_method, config.contamination, config.pot_risk, config.pot_level,
                           fixed=config.fixed_threshold)


def apply(scored: pd.DataFrame, series: Optional[np.ndarray], calibrations: dict[str, Calibration]) -> pd.DataFrame:
    """``scored`` with ``p_value`` and ``is_anomaly`` of each calibrated series' rows from its own calibration."""
    if series is None or not calibrations:
        return scored
    scored = scored.copy()
    score = scored["anomaly_score"].to_numpy()
    p, flag = scored["p_value"].to_numpy().copy(), scored["is_anomaly"].to_numpy().copy()
    for name, cal in calibrations.items():
        rows = series == name
        p[rows] = cal.p_values(score[rows])
        flag[rows] = score[rows] > cal.threshold
    scored["p_value"], scored["is_anomaly"] = p, flag
    return scored
