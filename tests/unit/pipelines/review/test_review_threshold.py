"""pipelines.review.threshold on worked examples."""
import numpy as np
import pytest

from pipelines.review.threshold import ThresholdError, best_f1_threshold, budget_threshold

CAL = np.linspace(0.0, 10.0, 101)  # calibration scores: 90th percentile = 9


def test_best_f1_cuts_between_the_false_and_the_real_scores():
    scores = np.array([11, 12, 13, 14, 15, 40, 50, 60, 70, 80], float)
    real = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], bool)
    c = best_f1_threshold(scores, real, current=10.0, calibration=CAL)
    assert 15 < c.threshold < 40 and c.threshold == pytest.approx(np.sqrt(15 * 40))
    assert (c.precision_before, c.recall_before) == (0.5, 1.0)
    assert (c.precision_after, c.recall_after, c.f1_after) == (1.0, 1.0, 1.0)
    assert c.reviewed == 10 and c.real == 5 and "best F1" in c.rule


def test_the_threshold_never_drops_below_the_calibration_floor():
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 8, 20, 30], float)  # real items score low: a lower cut would help
    real = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    c = best_f1_threshold(scores, real, current=10.0, calibration=CAL)
    assert c.threshold >= 9.0


def test_too_few_or_one_sided_verdicts_are_refused():
    with pytest.raises(ThresholdError, match="at least 10"):
        best_f1_threshold(np.arange(5.0) + 20, np.array([1, 0, 1, 0, 1], bool), 10.0, CAL)
    with pytest.raises(ThresholdError, match="1 false"):
        best_f1_threshold(np.arange(12.0) + 20, np.array([1] * 11 + [0], bool), 10.0, CAL)


def test_alert_budget():
    scores = np.array([11, 12, 13, 14, 15, 40, 50, 60, 70, 80], float)  # 10 items over 2 days
    c = budget_threshold(scores, days=2, alerts_per_day=2, current=10.0)
    assert (scores > c.threshold).sum() == 4 and 40 < c.threshold < 50
    assert budget_threshold(scores, days=2, alerts_per_day=10, current=10.0).threshold == 10.0  # already within
    with pytest.raises(ThresholdError):
        budget_threshold(scores, days=0, alerts_per_day=1, current=10.0)
