"""Conditioning inputs of the time-series VAE: where in the day and week a window is, and which
series it belongs to.

A level shift is only visible to a model that knows what level to expect at this time: a window
3 degrees warmer than usual looks normal at 15:00 and not at 06:00. The detector gives these
features to the encoder and the decoder as inputs (a conditional VAE), not as values to model, so
they add nothing to the likelihood and the scores keep their units.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

DAY_NS = 86_400e9
WEEK_NS = 7 * DAY_NS
MIN_WEEKS_FOR_WEEKDAY = 2  # day of week is used when the training data spans this many weeks


def calendar_periods(time_kind: str, step: float, span: float, enabled: bool) -> list[float]:
    """The cycles (in nanoseconds) worth conditioning on, from the training data's step and span.

    Parameters
    ----------
    time_kind : {"datetime", "numeric"}
        Numeric times have no calendar: no periods.
    step, span : float
        Grid step and the longest series' span, in the time column's units.
    enabled : bool
        ``TimeSeriesConfig.calendar``; False gives no periods.
    """
    if not enabled or time_kind != "datetime":
        return []
    periods = []
    if step < DAY_NS / 4:  # at least four points a day: a daily cycle can be seen
        periods.append(DAY_NS)
    if step < DAY_NS and span >= MIN_WEEKS_FOR_WEEKDAY * WEEK_NS:
        periods.append(WEEK_NS)
    return periods


def cycle_features(times: np.ndarray, periods: list[float]) -> np.ndarray:
    """(n, 2 * len(periods)) sin and cos of each time's phase in each period (times in ns)."""
    cols = []
    for p in periods:
        phase = 2 * np.pi * np.mod(times, p) / p
        cols += [np.sin(phase), np.cos(phase)]
    return np.stack(cols, 1).astype(np.float32) if cols else np.zeros((len(times), 0), np.float32)


def series_one_hot(code: Optional[int], n_series: int, rows: int) -> np.ndarray:
    """(rows, n_series) one-hot of a fitted series; all zeros for a series not seen in training."""
    out = np.zeros((rows, n_series), np.float32)
    if code is not None and 0 <= code < n_series:
        out[:, code] = 1.0
    return out
