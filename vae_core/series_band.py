"""The model's expected band of a series: the decoder's mean and spread at each point.

A Gaussian VAE gives it for free: each window decoded at the posterior mean z = mu(x) gives, per
position and column, a mean and a variance. A point's expectation combines the windows that
score it (every covering window offline, the one ending at it in the causal mode: the same
windows as its score, :mod:`vae_core.series_modes`) as an equal mixture: its mean is the mean of
the windows' means, its variance the mixture's (the windows' variances plus the spread of their
means). With ``mask_flagged_past`` a point's window is the one its score reads, the flagged earlier
points hidden (:mod:`vae_core.series_masking`), so the band after an event is not pulled towards
the event. Both are turned back into the data's units with each column's centre and scale. With
``student_dof`` the spread is the t's scale. Plotted as mean +- 2 sd under the observed values,
a point outside the band is one the model did not expect.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from . import series_masking
from .series_scores import window_chunks


def series_expectation(engine: Any, values: np.ndarray, window: int, last_only: bool, cond: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation, standardised units, of each grid point: arrays (L, d) from a
    series ``values`` of shape (L, d) (NaN where missing), as in :func:`vae_core.series_scores.score_series`."""
    L, d = values.shape
    W = window
    mean, second, cover = np.zeros((L, d)), np.zeros((L, d)), np.zeros(L)
    for st, enc in window_chunks(values, W, cond):
        mu, logvar = (a.reshape(len(st), W, d) for a in engine.reconstruct(enc))
        weight = np.ones((len(st), W))
        if last_only:  # only the window that ends at a point (the first window: its first points too)
            weight[st != 0, :-1] = 0.0
        idx = (st[:, None] + np.arange(W)).ravel()
        np.add.at(mean, idx, (mu * weight[..., None]).reshape(-1, d))
        np.add.at(second, idx, ((np.exp(logvar) + mu**2) * weight[..., None]).reshape(-1, d))
        cover += np.bincount(idx, weights=weight.ravel(), minlength=L)
    mean /= cover[:, None]
    var = second / cover[:, None] - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def hide_flagged_past(engine: Any, values: np.ndarray, window: int, cond: Any, hide: np.ndarray,
                      mean: np.ndarray, std: np.ndarray) -> None:
    """Replace, in place, the causal ``mean`` / ``std`` of each point whose window (the one ending
    at it) hides earlier points (``hide``: :func:`vae_core.series_masking.hidden_past`) by its
    expectation in that window with them marked missing, as its score is."""
    d = values.shape[1]
    for at, enc in series_masking.holed_windows(values, window, cond, hide):
        mu, logvar = (a.reshape(len(at), window, d) for a in engine.reconstruct(enc))
        mean[at], std[at] = mu[:, -1], np.sqrt(np.exp(logvar[:, -1]))


def expected(det: Any, grids: list, n_rows: int, skip: int, index: pd.Index,
             past_flags: Optional[list[np.ndarray]] = None) -> pd.DataFrame:
    """:meth:`TimeSeriesVAEDetector.expected` of the rows after the first ``skip`` (the context)
    of the ``n_rows`` rows laid on ``grids``; ``past_flags``: each grid's plain causal flags,
    when the scoring pass has already found them (else, with ``mask_flagged_past``, worked out here)."""
    W = det.config_.window
    last_only = det.config_.point_score == "last"
    d = len(det.value_columns_)
    mean, std = np.full((n_rows, d), np.nan), np.full((n_rows, d), np.nan)
    for i, g in enumerate(grids):
        cond = det.window_cond(g, np.arange(len(g.values) - W + 1)) if det.engine_.model.n_cond else None
        m, s = series_expectation(det.engine_, g.values, W, last_only, cond)
        if det.masks_past() and len(g.values) >= W:
            flagged = past_flags[i] if past_flags is not None else det.causal_flags(g, cond)
            hide = series_masking.hidden_past(flagged, W)
            hide_flagged_past(det.engine_, g.values, W, cond, hide, m, s)
        mean[g.rows], std[g.rows] = m[g.points], s[g.points]
    specs = det.preprocessor_.by_kind("numeric")  # the value columns, in order
    center = np.array([c.center for c in specs], float)
    scale = np.array([c.scale for c in specs], float)
    data = {}
    for j, name in enumerate(det.value_columns_):
        data[(name, "mean")] = center[j] + scale[j] * mean[skip:, j]
        data[(name, "std")] = scale[j] * std[skip:, j]
    return pd.DataFrame(data, index=index)
