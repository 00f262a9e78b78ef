"""One fitted series model, two per-point scores: offline (``"mean"``) and causal (``"last"``).

``TimeSeriesConfig.point_score`` names the mode a detector was fitted in; the network serves both,
since the modes differ only in which windows' terms a point takes (:mod:`vae_core.series_scores`):

- ``"mean"`` (offline): the mean over every window covering the point, which reaches up to
  ``window - 1`` points into the future; the most accurate, for whole histories.
- ``"last"`` (causal): the one window that ends at the point, so its score depends on its past
  only. A batch scored after the previous ``window - 1`` points of each series (its context)
  gets the scores that one long series scored at once gives, and a stored score never changes
  when later data arrives: the score flow's default. (The first ``window - 1`` points of a
  series, which no full window ends at, are scored from the series' first window.)

Normal scores are distributed differently in the two modes, so ``fit`` scores the held-out tail
in the other mode too and keeps that mode's threshold, per-series thresholds and attribution
medians, and (unless ``rate_weight`` is set) the rate weight balanced on that mode's tail
(:class:`ModeCalibration`); :func:`switch` gives the detector that scores in it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np

from . import series_thresholds
from .series_scores import balanced_rate_weight
from .config import TimeSeriesConfig
from .explain import Attribution
from .threshold import Calibration, inliers

POINT_SCORES = ("mean", "last")


@dataclass
class ModeCalibration:
    """What a detector needs to score in one point-score mode besides the network."""

    calibration: Calibration
    series_calibration: dict[str, Calibration]
    attribution: Attribution
    rate_weight: Optional[float] = None  # None: a model saved before the weight was balanced per mode

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"calibration": self.calibration.to_dict(), "attribution": self.attribution.to_dict(),
                "series_calibration": {k: c.to_dict() for k, c in self.series_calibration.items()},
                "rate_weight": self.rate_weight}

    @classmethod
    def from_dict(cls, d: dict) -> "ModeCalibration":
        """Rebuild from :meth:`to_dict` output."""
        series = {k: Calibration.from_dict(c) for k, c in d["series_calibration"].items()}
        return cls(Calibration.from_dict(d["calibration"]), series, Attribution.from_dict(d["attribution"]),
                   d.get("rate_weight"))


def other_mode(mode: str) -> str:
    """The point-score mode a detector fitted in ``mode`` also calibrates."""
    return "last" if mode == "mean" else "mean"


def fit_mode(scored: tuple[dict, np.ndarray, np.ndarray], tail: np.ndarray, names: Optional[np.ndarray],
             config: TimeSeriesConfig, score_fn: Callable[[dict, float], np.ndarray], n_values: int) -> ModeCalibration:
    """A mode's calibration from its scores of the fitting rows (``score_grids``' output) on the
    ``tail`` rows, less those beyond ``config.tail_fence`` (:func:`~vae_core.threshold.inliers`);
    ``score_fn(raw, rate_weight)`` is the detector's anomaly score."""
    raw, feat, feat_sq = scored
    weight = (config.rate_weight if config.rate_weight is not None
              else balanced_rate_weight(raw["nll_iwae"][tail], raw["kl"][tail]))
    score = score_fn(raw, weight)[tail]
    c = config
    normal = inliers(score, c.tail_fence)
    cal = Calibration.fit(score[normal], c.threshold_method, c.contamination, c.pot_risk, c.pot_level,
                          fixed=c.fixed_threshold)
    per_series = (series_thresholds.fit_series_calibrations(score, names[tail], c)
                  if c.threshold_per_series and names is not None else {})
    return ModeCalibration(cal, per_series, Attribution.fit(feat[tail], feat_sq[tail], n_values), weight)


def tail_grid(grid: Any, cut: int, window: int, step: float) -> Optional[Any]:
    """The part of a :class:`~vae_core.series_grid.SeriesGrid` that scores its points at ``cut``
    and after exactly as the whole grid does (their windows start ``window - 1`` points earlier);
    None when the grid has no point there."""
    keep = grid.points >= cut
    if not keep.any():
        return None
    start = max(0, cut - window + 1)
    return replace(grid, rows=grid.rows[keep], points=grid.points[keep] - start, values=grid.values[start:],
                   origin=grid.origin + start * step)


def switch(det: Any, mode: str) -> Any:
    """``det`` scoring in ``mode`` (itself, or a copy sharing its network and preprocessing)."""
    if mode not in POINT_SCORES:
        raise ValueError(f"point_score must be one of {POINT_SCORES}, got {mode!r}")
    own = det.config_.point_score
    if mode == own:
        return det
    if mode not in det.point_modes_:
        raise ValueError(f"this model has no calibration for point_score={mode!r} (it was saved before a model "
                         f"calibrated both modes); retrain it, or score with its own point_score={own!r}")
    target = det.point_modes_[mode]
    cal = target.calibration
    out = copy.copy(det)
    out.config_ = det.config_.model_copy(update={
        "point_score": mode, "threshold_method": cal.method, "contamination": cal.contamination,
        "pot_risk": cal.risk, "pot_level": cal.level, "fixed_threshold": cal.threshold if cal.method == "fixed" else None,
    })
    out.calibration_, out.series_calibration_, out.attribution_ = cal, target.series_calibration, target.attribution
    out.rate_weight_ = det.rate_weight_ if target.rate_weight is None else target.rate_weight
    out.point_modes_ = {own: ModeCalibration(det.calibration_, det.series_calibration_, det.attribution_, det.rate_weight_)}
    return out
