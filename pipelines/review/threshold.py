"""A threshold from verdicts: the best F1 on reviewed items, or an alert budget, within bounds.

Pure functions: reviewed items' scores and whether each was a real anomaly go in; the new
threshold, the rule and the figures that justify it come out. The pipelines record the result as
a new model version (same weights, new calibration).

What keeps a handful of verdicts from moving the threshold wildly:
- at least ``min_reviews`` reviewed items, with at least ``min_each`` real and ``min_each`` false
  ones, else :class:`ThresholdError`;
- the new threshold sits between two reviewed scores (midway, on a log scale when both are
  positive), so it never leaves the range the verdicts cover;
- it never drops below the calibration scores' ``floor_quantile`` (lowering it would flood the
  reviewers with flags no verdict has seen).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

REAL = ("anomaly", "expected")  # verdicts that say the flag was right
FALSE = ("false_alarm", "new_normal")


class ThresholdError(ValueError):
    """Too few or one-sided verdicts to set a threshold from."""


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    previous: float
    rule: str
    reviewed: int
    real: int
    precision_before: float
    recall_before: float
    f1_before: float
    precision_after: float
    recall_after: float
    f1_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def _prf(scores: np.ndarray, real: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of flagging ``scores > threshold`` among reviewed items."""
    flagged = scores > threshold
    tp = float((flagged & real).sum())
    p = tp / flagged.sum() if flagged.any() else 1.0
    r = tp / real.sum() if real.any() else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _between(a: float, b: float) -> float:
    """A cut between two scores: the geometric mean when both are positive, else the midpoint."""
    return float(np.sqrt(a * b)) if a > 0 and b > 0 else (a + b) / 2.0


def _check(scores: np.ndarray, real: np.ndarray, min_reviews: int, min_each: int) -> None:
    n, k = len(scores), int(real.sum())
    if n < min_reviews or k < min_each or n - k < min_each:
        raise ThresholdError(
            f"{n} reviewed item(s), {k} real and {n - k} false: at least {min_reviews} with {min_each} of each are needed"
        )


def _choice(scores, real, current, threshold, rule) -> ThresholdChoice:
    before, after = _prf(scores, real, current), _prf(scores, real, threshold)
    return ThresholdChoice(float(threshold), float(current), rule, len(scores), int(real.sum()), *before, *after)


def best_f1_threshold(scores: np.ndarray, real: np.ndarray, current: float, calibration: np.ndarray,
                      min_reviews: int = 10, min_each: int = 2, floor_quantile: float = 0.9) -> ThresholdChoice:
    """The threshold with the best F1 on reviewed items (ties: the higher threshold).

    Parameters
    ----------
    scores : array, shape (n,)
        Each reviewed item's score (a row's anomaly score, an event's peak).
    real : array of bool, shape (n,)
        Whether each item's verdict says it was a real anomaly (``anomaly`` or ``expected``).
    current : float
        The threshold in use.
    calibration : array
        The model's calibration scores (held-out normal rows).
    """
    scores, real = np.asarray(scores, float), np.asarray(real, bool)
    _check(scores, real, min_reviews, min_each)
    floor = float(np.quantile(calibration, floor_quantile))
    ordered = np.unique(scores)
    cuts = [_between(a, b) for a, b in zip(ordered[:-1], ordered[1:])] + [float(ordered[0]) - 1e-9]
    cuts = [c for c in cuts if c >= floor] or [max(floor, current)]
    best = max(cuts, key=lambda c: (round(_prf(scores, real, c)[2], 12), c))
    rule = (f"best F1 on {len(scores)} reviewed items ({int(real.sum())} real), cut between two reviewed scores, "
            f"not below the calibration {100 * floor_quantile:g}th percentile ({floor:.4g})")
    return _choice(scores, real, current, best, rule)


def budget_threshold(scores: np.ndarray, days: float, alerts_per_day: float, current: float,
                     reviewed_scores: Optional[np.ndarray] = None, reviewed_real: Optional[np.ndarray] = None) -> ThresholdChoice:
    """The lowest threshold that keeps alerts within ``alerts_per_day`` over ``days`` of items.

    ``scores`` are every item's score over those days (reviewed or not); the reviewed items
    (optional) only feed the before/after figures.
    """
    if days <= 0 or alerts_per_day <= 0:
        raise ThresholdError("an alert budget needs a positive number of days and alerts per day")
    ranked = np.sort(np.asarray(scores, float))[::-1]
    allowed = int(np.floor(alerts_per_day * days))
    if allowed >= len(ranked):  # the budget already holds: keep the threshold
        threshold = current
    elif allowed == 0:
        threshold = float(ranked[0])
    else:
        threshold = _between(ranked[allowed], ranked[allowed - 1])
    rule = f"at most {alerts_per_day:g} alerts per day over {days:.3g} day(s) of items ({len(ranked)} items)"
    rs = np.asarray([] if reviewed_scores is None else reviewed_scores, float)
    rr = np.asarray([] if reviewed_real is None else reviewed_real, bool)
    return _choice(rs, rr, current, threshold, rule)
