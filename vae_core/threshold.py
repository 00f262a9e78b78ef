"""Thresholds calibrated on held-out normal scores: a quantile rule and peaks-over-threshold.

The POT rule follows Siffer et al. (2017), "Anomaly Detection in Streams with Extreme Value
Theory" (SPOT): excesses over an initial high quantile ``t`` are fitted with a generalised Pareto
distribution (GPD), and the threshold for risk ``q`` is

    z_q = t + sigma / xi * ((q * n / N_t) ** -xi - 1)        (xi != 0)
    z_q = t - sigma * log(q * n / N_t)                       (xi == 0)

The GPD is fitted by maximum likelihood with Grimshaw's reduction to one parameter
theta = xi / sigma, profiled on a grid (no SciPy needed).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

MIN_EXCESSES = 5
P_FLOOR = 1e-16


@dataclass
class TailModel:
    """A GPD fitted to the excesses over ``t``; ``rate`` = N_t / n."""

    t: float
    sigma: float
    xi: float
    rate: float

    def survival(self, s: np.ndarray) -> np.ndarray:
        """P(S > s) for s above ``t``."""
        y = np.maximum(np.asarray(s, float) - self.t, 0.0)
        if abs(self.xi) < 1e-9:
            return self.rate * np.exp(-y / self.sigma)
        base = np.maximum(1.0 + self.xi * y / self.sigma, 0.0)
        with np.errstate(divide="ignore"):
            return self.rate * np.where(base > 0, base ** (-1.0 / self.xi), 0.0)

    def quantile(self, risk: float) -> float:
        """The score exceeded with probability ``risk`` (SPOT's z_q)."""
        r = risk / self.rate
        if abs(self.xi) < 1e-9:
            return float(self.t - self.sigma * np.log(r))
        return float(self.t + self.sigma / self.xi * (r ** (-self.xi) - 1.0))


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (xi, sigma) of a GPD for positive ``excesses``."""
    y = np.asarray(excesses, float)
    y = y[y > 0]
    n, ymean, ymax = len(y), float(y.mean()), float(y.max())
    # theta = 0 is the exponential limit: sigma = mean, xi = 0
    best = (-n * np.log(ymean) - n, 0.0, ymean)
    mags = np.logspace(-4, 4, 200) / ymean
    thetas = np.concatenate([mags, -mags[mags < 1.0 / ymax * (1 - 1e-6)]])
    for theta in thetas:
        logs = np.log1p(theta * y)
        xi = float(logs.mean())
        sigma = xi / theta
        if sigma <= 0 or not np.isfinite(sigma):
            continue
        ll = -n * np.log(sigma) - n * (1.0 + xi)
        if ll > best[0]:
            best = (ll, xi, sigma)
    return best[1], best[2]


def fit_tail(scores: np.ndarray, level: float) -> Optional[TailModel]:
    """A GPD over the scores above their ``level`` quantile, or None with too few excesses."""
    scores = np.asarray(scores, float)
    t = float(np.quantile(scores, level))
    excesses = scores[scores > t] - t
    if len(excesses) < MIN_EXCESSES:
        return None
    xi, sigma = fit_gpd(excesses)
    return TailModel(t, sigma, xi, len(excesses) / len(scores))


def inliers(scores: np.ndarray, fence: Optional[float]) -> np.ndarray:
    """Which ``scores`` lie at or below Tukey's fence ``q75 + fence * IQR`` (all, with
    ``fence=None``, or when fewer than 20 would be left): held-out scores beyond it are anomalies
    the held-out data held, left out so they do not raise the threshold placed on the rest."""
    scores = np.asarray(scores, float)
    keep = np.ones(len(scores), bool)
    if fence is None or len(scores) == 0:
        return keep
    q25, q75 = np.percentile(scores, [25, 75])
    keep = scores <= q75 + fence * (q75 - q25)
    return keep if keep.sum() >= 20 else np.ones(len(scores), bool)


@dataclass
class Calibration:
    """Scores of held-out normal rows, and the threshold chosen from them."""

    scores: np.ndarray  # sorted
    method: str
    threshold: float
    contamination: float
    risk: float
    level: float
    tail: Optional[TailModel]

    @classmethod
    def fit(cls, scores: np.ndarray, method: str, contamination: float, risk: float, level: float,
            fixed: Optional[float] = None) -> "Calibration":
        """Sort ``scores``, fit the tail and place the threshold by ``method`` (``fixed``: as given)."""
        scores = np.sort(np.asarray(scores, float))
        if len(scores) == 0:
            raise ValueError("no calibration scores")
        tail = fit_tail(scores, level)
        if method == "quantile":
            threshold = float(np.quantile(scores, 1.0 - contamination))
        elif method == "fixed":
            if fixed is None or not np.isfinite(fixed):
                raise ValueError("a fixed threshold needs a finite value")
            threshold = float(fixed)
        elif method == "pot":
            if tail is not None and risk < tail.rate:
                threshold = tail.quantile(risk)
            else:  # too few excesses to extrapolate, or the risk is not in the tail
                threshold = float(np.quantile(scores, 1.0 - risk))
        else:
            raise ValueError(f"unknown threshold method {method!r}; use 'quantile', 'pot' or 'fixed'")
        return cls(scores, method, threshold, contamination, risk, level, tail)

    def p_values(self, s: np.ndarray) -> np.ndarray:
        """P(score >= s) under the calibration scores: empirical, and the GPD tail above ``t``.

        Floored at 1e-16, so a p-value is never exactly zero."""
        s = np.asarray(s, float)
        n = len(self.scores)
        at_least = n - np.searchsorted(self.scores, s, side="left")
        p = (1.0 + at_least) / (n + 1.0)
        if self.tail is not None:
            above = s > self.tail.t
            p = np.where(above, self.tail.survival(s), p)
        # past a fitted finite tail end the model says 0; report "below 1e-16" instead
        return np.clip(p, P_FLOOR, 1.0)

    def to_dict(self) -> dict:
        """JSON-ready state (floats round-trip exactly through ``json``)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("scores", "tail")}
        d["scores"] = [float(x) for x in self.scores]
        d["tail"] = asdict(self.tail) if self.tail else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Rebuild from :meth:`to_dict` output."""
        tail = TailModel(**d["tail"]) if d.get("tail") else None
        return cls(np.asarray(d["scores"], float), d["method"], d["threshold"], d["contamination"], d["risk"], d["level"], tail)
