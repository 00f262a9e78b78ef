"""Thin adapters that run ``vae_core`` detectors and the baselines uniformly.

Each ``run_*`` function fits one detector, scores one part and returns the
scores with fit/score wall times.  ``vae_core`` is imported lazily so that the
benchmark still runs (baselines only) while it is missing or broken.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import baselines

#: Score columns of ``VAEDetector.score`` reported separately.
VAE_SCORES = ("neg_elbo", "nll_iwae", "recon_error", "anomaly_score")
#: The column the summary tables use for vae_core.
VAE_MAIN_SCORE = "anomaly_score"

__all__ = ["VAE_SCORES", "VAE_MAIN_SCORE", "Scored", "DetectorTimeout", "time_limit", "vae_core_status",
           "vae_core_fingerprint", "run_vae_tabular", "tab_params",
           "run_baseline_tabular", "run_vae_timeseries"]


@dataclass
class Scored:
    """Scores of one detector on one evaluation part.

    ``scores`` maps a score name (``"score"`` for baselines, the score column
    for vae_core) to a float array aligned with the evaluated rows.
    """

    scores: dict[str, np.ndarray]
    fit_s: float
    score_s: float
    extra: dict = field(default_factory=dict)


class DetectorTimeout(Exception):
    """A detector ran past its time limit (see :func:`time_limit`)."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`DetectorTimeout` in the block once ``seconds`` of wall time have passed.

    SIGALRM-based: only in the main thread of a POSIX process, and it interrupts Python code
    between bytecodes (a single long C call finishes first). ``None`` or ``0``: no limit.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise DetectorTimeout(f"ran past the time limit of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def vae_core_status() -> tuple[bool, str]:
    """Whether ``vae_core``'s detectors import, and the error if not.

    Returns
    -------
    (bool, str)
        ``(True, "")`` or ``(False, "<ExceptionType>: <message>")``.
    """
    try:
        from vae_core import TimeSeriesVAEDetector, VAEDetector  # noqa: F401
    except Exception as exc:  # any failure means: run baselines only
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def vae_core_fingerprint() -> dict:
    """Short sha256 over ``vae_core/*.py`` (names and contents) and the newest file time.

    Returns
    -------
    dict
        ``sha256`` (16 hex digits), ``files`` and ``newest_mtime`` (ISO 8601).
    """
    import datetime as dt
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "vae_core"
    files = sorted(root.glob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    newest = max((f.stat().st_mtime for f in files), default=0.0)
    return {"sha256": h.hexdigest()[:16], "files": len(files),
            "newest_mtime": dt.datetime.fromtimestamp(newest).astimezone().isoformat(timespec="seconds")}


def _check_score_frame(out, n_rows: int, index) -> tuple[dict[str, np.ndarray], dict]:
    """Validate a ``score()`` frame and pull out the score columns."""
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"score() returned {type(out).__name__}, expected DataFrame")
    if len(out) != n_rows:
        raise ValueError(f"score() returned {len(out)} rows for {n_rows} input rows")
    missing = [c for c in VAE_SCORES if c not in out.columns]
    if missing:
        raise KeyError(f"score() lacks columns {missing}; has {list(out.columns)}")
    extra = {"index_preserved": bool(out.index.equals(index))}
    scores = {c: out[c].to_numpy(dtype=np.float64) for c in VAE_SCORES}
    if "is_anomaly" in out.columns:
        extra["is_anomaly"] = out["is_anomaly"].to_numpy().astype(np.int64)
    if "p_value" in out.columns:
        p = out["p_value"].to_numpy(dtype=np.float64)
        extra["p_value_range"] = [float(np.nanmin(p)), float(np.nanmax(p))] if len(p) else None
    return scores, extra


def run_vae_tabular(X_train: pd.DataFrame, X_test: pd.DataFrame, seed: int) -> Scored:
    """Fit ``VAEDetector(seed=seed, **tab_params())`` on ``X_train`` and ``score()`` ``X_test``.

    Parameters
    ----------
    X_train, X_test : pandas.DataFrame
        Feature frames (no label column).
    seed : int
        Detector seed.

    Returns
    -------
    Scored
        The four score columns, all from one ``score()`` call.
    """
    from vae_core import VAEDetector

    det = VAEDetector(seed=seed, **tab_params())
    t0 = time.perf_counter()
    det.fit(X_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = det.score(X_test)
    score_s = time.perf_counter() - t0
    scores, extra = _check_score_frame(out, len(X_test), X_test.index)
    return Scored(scores, fit_s, score_s, extra)


def run_baseline_tabular(name: str, X_train, X_test, seed: int) -> Scored:
    """Fit a tabular baseline on ``X_train`` and score ``X_test``.

    Parameters
    ----------
    name : str
        One of :data:`benchmarks.baselines.TABULAR_BASELINES`.
    X_train, X_test : array_like
        Raw (unscaled) features.
    seed : int
        Seed.

    Returns
    -------
    Scored
        One score, ``"score"``.
    """
    Xtr = np.asarray(X_train, dtype=np.float64)
    Xte = np.asarray(X_test, dtype=np.float64)
    det = baselines.make_tabular_baseline(name, seed)
    t0 = time.perf_counter()
    det.fit(Xtr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = np.asarray(det.decision_function(Xte), dtype=np.float64)
    score_s = time.perf_counter() - t0
    return Scored({"score": s}, fit_s, score_s)


def tab_params() -> dict:
    """Extra ``VAEDetector`` settings from ``$VAE_ANOMALY_BENCH_TAB_PARAMS`` (a JSON object, e.g.
    ``{"trim_fraction": 0.05}`` to measure a non-default option); empty when unset."""
    import json
    import os

    return json.loads(os.environ.get("VAE_ANOMALY_BENCH_TAB_PARAMS") or "{}")


def ts_params() -> dict:
    """Extra ``TimeSeriesVAEDetector`` settings from ``$VAE_ANOMALY_BENCH_TS_PARAMS`` (a JSON
    object, e.g. ``{"point_score": "last"}`` for the causal mode); empty when unset."""
    import json
    import os

    return json.loads(os.environ.get("VAE_ANOMALY_BENCH_TS_PARAMS") or "{}")


def run_vae_timeseries(
    train: pd.DataFrame,
    test: pd.DataFrame,
    time_column: str,
    seed: int,
    window: int,
    series_column: str | None = None,
    both_modes: bool = False,
) -> Scored:
    """Fit ``TimeSeriesVAEDetector`` on ``train`` and score ``test``.

    Parameters
    ----------
    train, test : pandas.DataFrame
        A time column plus numeric value columns (no labels).  ``test`` may
        be the same frame as ``train``.
    time_column : str
        Name of the time column.
    seed : int
        Detector seed.
    window : int
        Detector window length.
    series_column : str, optional
        Column naming the series when the frames hold several (one model for all of them).
    both_modes : bool
        Also score ``test`` with the same fitted model in the other point-score mode
        (``with_point_score``; training does not depend on the mode), as
        ``"anomaly_score@last"`` (or ``"@mean"``); ``score_s`` stays the model's own mode's.

    Returns
    -------
    Scored
        The four score columns, one row per ``test`` row; ``extra["is_anomaly"]`` holds the
        flags at the detector's calibrated threshold.
    """
    from vae_core import TimeSeriesVAEDetector

    det = TimeSeriesVAEDetector(seed=seed, window=window, **ts_params())
    t0 = time.perf_counter()
    det.fit(train, time_column=time_column, series_column=series_column)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = det.score(test)
    score_s = time.perf_counter() - t0
    scores, extra = _check_score_frame(out, len(test), test.index)
    if both_modes:
        other = "mean" if det.config_.point_score == "last" else "last"
        more, _ = _check_score_frame(det.with_point_score(other).score(test), len(test), test.index)
        scores[f"anomaly_score@{other}"] = more["anomaly_score"]
    return Scored(scores, fit_s, score_s, extra)
