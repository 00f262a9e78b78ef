"""Baseline detectors the benchmark compares ``vae_core`` against.

Tabular baselines are used with their library defaults (PyOD's deep models
standardise features internally, ``preprocessing=True``); only the seed, the
progress bar (``verbose=0``) and DIF's device (``"cpu"``) are set.  Libraries are imported when a
detector is built, not when this module is imported.

Every detector here has ``fit(X) -> self`` and ``decision_function(X) ->
ndarray`` with higher = more anomalous, on 2-D float arrays.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "TABULAR_BASELINES",
    "make_tabular_baseline",
    "IsolationForestDetector",
    "rolling_robust_zscore",
    "sliding_windows",
    "WindowIsolationForest",
]

#: Tabular baseline names (the peers of issue 27), in report order.  ``pyod_vae`` is the
#: reference that speed ratios are taken against.
TABULAR_BASELINES = ("pyod_vae", "pyod_ae", "iforest", "knn", "lof", "ecod", "copod", "mcd", "cblof", "dif")


class IsolationForestDetector:
    """sklearn ``IsolationForest`` with defaults, scored as ``-score_samples``.

    Parameters
    ----------
    seed : int
        ``random_state`` of the forest.
    """

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(random_state=seed)

    def fit(self, X) -> "IsolationForestDetector":
        """Fit the forest on ``X`` (n, d)."""
        self.model.fit(np.asarray(X, dtype=np.float64))
        return self

    def decision_function(self, X) -> np.ndarray:
        """Anomaly scores, higher = more anomalous."""
        return -self.model.score_samples(np.asarray(X, dtype=np.float64))


def _pyod_vae(seed: int):
    from pyod.models.vae import VAE

    return VAE(random_state=seed, verbose=0)


def _pyod_ae(seed: int):
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(random_state=seed, verbose=0)


def _ecod(seed: int):  # ECOD is deterministic and has no seed
    from pyod.models.ecod import ECOD

    return ECOD()


def _knn(seed: int):  # deterministic
    from pyod.models.knn import KNN

    return KNN()


def _lof(seed: int):  # deterministic
    from pyod.models.lof import LOF

    return LOF()


def _copod(seed: int):  # deterministic
    from pyod.models.copod import COPOD

    return COPOD()


def _mcd(seed: int):
    from pyod.models.mcd import MCD

    return MCD(random_state=seed)


def _cblof(seed: int):
    from pyod.models.cblof import CBLOF

    return CBLOF(random_state=seed)


def _dif(seed: int):
    from pyod.models.dif import DIF

    return DIF(random_state=seed, device="cpu")


_FACTORIES: dict[str, Callable[[int], object]] = {
    "pyod_vae": _pyod_vae,
    "pyod_ae": _pyod_ae,
    "iforest": IsolationForestDetector,
    "knn": _knn,
    "lof": _lof,
    "ecod": _ecod,
    "copod": _copod,
    "mcd": _mcd,
    "cblof": _cblof,
    "dif": _dif,
}


def make_tabular_baseline(name: str, seed: int):
    """Build an unfitted tabular baseline.

    Parameters
    ----------
    name : str
        One of :data:`TABULAR_BASELINES`.
    seed : int
        Random seed (ignored by the deterministic kNN, LOF, ECOD and COPOD).

    Returns
    -------
    object
        A detector with ``fit(X)`` and ``decision_function(X)``.

    Raises
    ------
    ImportError
        If the library is missing (PyOD 3.6's deep models also need ``tqdm``).
    """
    return _FACTORIES[name](seed)


def sliding_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Flattened trailing windows of a (multivariate) series.

    Parameters
    ----------
    values : numpy.ndarray, shape (n,) or (n, d)
        The series.
    window : int
        Window length.

    Returns
    -------
    numpy.ndarray, shape (n - window + 1, window * d)
        Row ``i`` holds points ``i .. i + window - 1``, time-major.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.shape[0] < window:
        raise ValueError(f"series of {v.shape[0]} points is shorter than window {window}")
    w = sliding_window_view(v, window, axis=0)  # (n-w+1, d, w)
    return np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(w.shape[0], -1)


def _with_context(values: np.ndarray, context: np.ndarray | None, window: int):
    """Prepend the last ``window - 1`` context rows; return (series, n_context)."""
    if context is None or len(context) == 0:
        return values, 0
    ctx = np.asarray(context, dtype=np.float64)
    if ctx.ndim == 1:
        ctx = ctx[:, None]
    ctx = ctx[-(window - 1):]
    return np.concatenate([ctx, values]), len(ctx)


def rolling_robust_zscore(
    values: np.ndarray,
    window: int = 32,
    context: np.ndarray | None = None,
    rel_eps: float = 1e-6,
) -> np.ndarray:
    """Rolling robust z-score, max over features.

    For each point and feature: ``|x - median| / (1.4826 * MAD)`` over the
    trailing window of ``window`` points that ends at (and includes) the point.
    The first ``window - 1`` points use the shorter window available
    (expanding), unless ``context`` supplies earlier points.  The scale is
    floored at ``rel_eps`` times the feature's standard deviation, so a
    locally constant feature gives a large but finite score on a change.

    Parameters
    ----------
    values : numpy.ndarray, shape (n,) or (n, d)
        The series to score.
    window : int, default 32
        Window length.
    context : numpy.ndarray, optional
        Points that precede ``values`` (e.g. the end of a training part).
    rel_eps : float, default 1e-6
        Scale floor relative to each feature's standard deviation.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Scores, higher = more anomalous.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    full, n_ctx = _with_context(v, context, window)
    n_full, d = full.shape
    floor = rel_eps * full.std(axis=0) + 1e-300
    z = np.zeros((n_full, d))
    for j in range(d):  # per feature keeps the window array small
        x = full[:, j]
        med = np.empty(n_full)
        mad = np.empty(n_full)
        head = min(window - 1, n_full)
        for i in range(head):  # expanding start
            seg = x[: i + 1]
            med[i] = np.median(seg)
            mad[i] = np.median(np.abs(seg - med[i]))
        if n_full >= window:
            w = sliding_window_view(x, window)
            m = np.median(w, axis=1)
            med[window - 1:] = m
            mad[window - 1:] = np.median(np.abs(w - m[:, None]), axis=1)
        z[:, j] = np.abs(x - med) / np.maximum(1.4826 * mad, floor[j])
    return z.max(axis=1)[n_ctx:]


class WindowIsolationForest:
    """IsolationForest on flattened sliding windows.

    Each window's score is assigned to its last point.  Points without a full
    window (the first ``window - 1``) get the first window's score unless a
    context is passed to :meth:`decision_function`.

    Parameters
    ----------
    window : int, default 32
        Window length.
    seed : int, default 0
        ``random_state`` of the forest (other settings: sklearn defaults).
    """

    def __init__(self, window: int = 32, seed: int = 0) -> None:
        self.window = window
        self.seed = seed

    def fit(self, values) -> "WindowIsolationForest":
        """Fit on all windows of ``values`` (n,) or (n, d), or of each series in a list of them."""
        from sklearn.ensemble import IsolationForest

        series = values if isinstance(values, (list, tuple)) else [values]
        self.model_ = IsolationForest(random_state=self.seed)
        self.model_.fit(np.concatenate([sliding_windows(v, self.window) for v in series]))
        return self

    def decision_function(self, values: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Per-point scores of ``values``, higher = more anomalous.

        Parameters
        ----------
        values : numpy.ndarray, shape (n,) or (n, d)
            Series to score.
        context : numpy.ndarray, optional
            Points preceding ``values``; with at least ``window - 1`` of them
            every point gets its own full window.

        Returns
        -------
        numpy.ndarray, shape (n,)
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        full, n_ctx = _with_context(v, context, self.window)
        s = -self.model_.score_samples(sliding_windows(full, self.window))
        pad = len(v) - len(s)
        if pad > 0:
            s = np.concatenate([np.full(pad, s[0]), s])
        return s
