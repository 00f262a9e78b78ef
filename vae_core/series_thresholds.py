"""Thresholds per series: one fleet can mix quiet and noisy sensors, whose normal scores differ.

With ``TimeSeriesConfig.threshold_per_series`` each series gets its own :class:`Calibration`,
placed by the same rule (quantile or POT) on that series' held-out tail. A series with fewer than
:data:`MIN_TAIL_POINTS` tail points, or one not seen in training, keeps the shared threshold.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .config import VAEConfig
from .threshold import Calibration

MIN_TAIL_POINTS = 20


def fit_series_calibrations(scores: np.ndarray, series: np.ndarray, config: VAEConfig) -> dict[str, Calibration]:
    """One calibration per series name in ``series`` with enough points in ``scores``.

    Parameters
    ----------
    scores : array of shape (n,)
        Anomaly scores of held-out (tail) points.
    series : array of str, shape (n,)
        Each point's series name.
    config : VAEConfig
        Threshold method, contamination, POT risk and level.
    """
    out = {}
    for name in pd.unique(series):
        s = scores[series == name]
        if len(s) >= MIN_TAIL_POINTS:
            out[str(name)] = Calibration.fit(s, config.threshold_method, config.contamination, config.pot_risk,
                                             config.pot_level)
    return out


def refit(calibrations: dict[str, Calibration], config: VAEConfig) -> dict[str, Calibration]:
    """The same series' stored scores under a new threshold ``config`` (``calibrate()``); a fixed
    threshold (``threshold_method="fixed"``, e.g. from reviews) is the one cut of every series,
    whose p-values still come from its own scores."""
    return {name: Calibration.fit(c.scores, config.threshold_method, config.contamination, config.pot_risk,
                                  config.pot_level, fixed=config.fixed_threshold) for name, c in calibrations.items()}


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
