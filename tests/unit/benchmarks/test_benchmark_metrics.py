"""Unit tests of benchmarks.metrics: hand-computed values and brute-force agreement."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from benchmarks.metrics import auprc, auroc, best_composite_f1, best_f1, best_f1_pa, composite_f1, point_adjust, segments


def _brute_best_f1(y, s, adjust=False):
    best = 0.0
    for t in np.unique(s):
        pred = (s >= t).astype(int)
        if adjust:
            pred = _brute_point_adjust(y, pred)
        best = max(best, f1_score(y, pred, zero_division=0.0))
    return best


def _brute_point_adjust(y, pred):
    out = np.array(pred, dtype=int).copy()
    i, n = 0, len(y)
    while i < n:
        if y[i] == 1:
            j = i
            while j < n and y[j] == 1:
                j += 1
            if out[i:j].any():
                out[i:j] = 1
            i = j
        else:
            i += 1
    return out


def test_segments():
    y = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(segments(y), [[0, 2], [4, 5], [6, 9]])
    assert segments(np.zeros(4, dtype=int)).shape == (0, 2)


def test_point_adjust_small_example():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    pred = np.array([0, 0, 1, 0, 0, 1, 0, 0, 0])
    # segment [1,4) has a hit -> all of it; segment [6,8) has none; the FP at 5 stays
    np.testing.assert_array_equal(point_adjust(y, pred), [0, 1, 1, 1, 0, 1, 0, 0, 0])


def test_point_adjust_edges():
    y = np.array([1, 1, 0, 1, 1])
    pred = np.array([0, 1, 0, 1, 0])
    np.testing.assert_array_equal(point_adjust(y, pred), [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(point_adjust(np.zeros(3, int), [1, 0, 1]), [1, 0, 1])


def test_best_f1_tiny_example():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    # at t=0.35: 4 flagged, 3 true -> F1 = 2*3 / (4 + 3) = 6/7
    f1, thr = best_f1(y, s, return_threshold=True)
    assert f1 == pytest.approx(6 / 7)
    assert thr == pytest.approx(0.35)


def test_best_f1_ties_are_one_threshold():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.5, 0.5, 0.2, 0.1])
    # t=0.5 flags both tied points (F1 0.5); t=0.2 -> 3 flagged, 2 true -> 4/5
    assert best_f1(y, s) == pytest.approx(0.8)


def test_best_f1_pa_small_example():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.9, 0.3, 0.5, 0.4, 0.35, 0.3, 0.0])
    # t=0.35 detects both segments (5 TP) with 2 FP (0.5, 0.4): F1 = 10/12
    f1, thr = best_f1_pa(y, s, return_threshold=True)
    assert f1 == pytest.approx(10 / 12)
    assert thr == pytest.approx(0.35)
    # without adjustment the best is t=0.2: 5 TP, 2 FP -> also 10/12, at a lower threshold
    f1, thr = best_f1(y, s, return_threshold=True)
    assert f1 == pytest.approx(10 / 12)
    assert thr == pytest.approx(0.2)


def test_best_f1_pa_single_hit_segment():
    y = np.array([0, 1, 1, 1, 1, 0, 0, 0])
    s = np.array([0, 0, 0, 5, 0, 0, 0, 0], dtype=float)
    # plain: t=5 gives 2*1/(1+4) = 0.4, flagging all gives 2*4/(8+4) = 2/3;
    # adjusted: t=5 detects the whole segment -> 1.0
    assert best_f1(y, s) == pytest.approx(2 / 3)
    assert best_f1_pa(y, s) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_best_f1_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.15).astype(int)
    # rounded scores give many ties
    s = np.round(rng.normal(size=n) + 1.2 * y, 1)
    assert best_f1(y, s) == pytest.approx(_brute_best_f1(y, s), abs=1e-12)


def _segment_labels_and_scores(seed: int, n: int, count: int, max_len: int, lift: float):
    """Segment-structured labels, as in time series, and rounded scores (many ties)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    for start in rng.choice(n - max_len, size=count, replace=False):
        y[start : start + rng.integers(1, max_len)] = 1
    return y, np.round(rng.normal(size=n) + lift * y, 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_best_f1_pa_matches_brute_force(seed):
    y, s = _segment_labels_and_scores(seed, n=400, count=6, max_len=20, lift=0.8)
    assert best_f1_pa(y, s) == pytest.approx(_brute_best_f1(y, s, adjust=True), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_adjust_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.3).astype(int)
    pred = (rng.random(200) < 0.2).astype(int)
    np.testing.assert_array_equal(point_adjust(y, pred), _brute_point_adjust(y, pred))


def test_auroc_auprc_match_sklearn_and_handle_inf():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.2).astype(int)
    s = rng.normal(size=200) + y
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s))
    s_inf = s.copy()
    top = np.argmax(s)
    s_inf[top] = np.inf
    assert auroc(y, s_inf) == pytest.approx(roc_auc_score(y, s))
    assert auprc(y, s_inf) == pytest.approx(average_precision_score(y, s))


def test_degenerate_inputs():
    assert np.isnan(auroc([0, 0, 0], [1.0, 2.0, 3.0]))
    assert np.isnan(auprc([0, 0, 0], [1.0, 2.0, 3.0]))
    assert np.isnan(best_f1([0, 0], [1.0, 2.0]))
    assert np.isnan(best_f1_pa([0, 0], [1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [np.nan, 1.0])
    with pytest.raises(ValueError):
        best_f1([0, 1, 1], [1.0, 2.0])



def test_composite_f1_is_point_precision_with_event_recall():
    y = np.array([0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    # one hit inside the first event, two false alarms, the second event missed:
    # precision 1/3 (points), recall 1/2 (events) -> F1 0.4
    pred = np.array([0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    assert composite_f1(y, pred) == pytest.approx(0.4)
    assert composite_f1(y, y) == 1.0
    assert composite_f1(y, np.zeros_like(y)) == 0.0
    assert composite_f1(y, np.ones_like(y)) == pytest.approx(2 * (4 / 12) / (1 + 4 / 12))
    assert np.isnan(composite_f1(np.zeros(4), np.ones(4)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_best_composite_f1_matches_brute_force(seed):
    y, s = _segment_labels_and_scores(seed, n=300, count=5, max_len=15, lift=1.0)
    brute = max(composite_f1(y, s >= t) for t in np.unique(s))
    assert best_composite_f1(y, s) == pytest.approx(brute, abs=1e-12)


def test_composite_f1_does_not_reward_random_scores_as_point_adjustment_does():
    rng = np.random.default_rng(0)
    y = np.zeros(5000, dtype=int)
    for start in range(200, 5000, 1000):
        y[start : start + 100] = 1  # long segments, 10% of points, as in NAB
    s = rng.random(5000)
    assert best_f1_pa(y, s) > 0.8
    # its floor is one lucky point: precision 1 at recall 1/5 gives 0.33
    assert best_composite_f1(y, s) < 0.4
    assert best_composite_f1(y, y + 0.0) == 1.0
