"""Unit tests of benchmarks.vus: worked examples, limits, and a brute-force reading of the definition."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from benchmarks.vus import buffered_labels, buffered_ranges, range_pr_auc, range_pr_surface, vus_pr


def _brute_range_ap(y, s, w):
    """Range-AP at buffer w, point by point and threshold by threshold (every distinct score)."""
    n, half = len(y), w // 2
    starts = [i for i in range(n) if y[i] == 1 and (i == 0 or y[i - 1] == 0)]
    ends = [i for i in range(n) if y[i] == 1 and (i == n - 1 or y[i + 1] == 0)]
    lab = [float(v) for v in y]
    for a, b in zip(starts, ends):
        for d in range(1, half + 1):
            for i in (b + d, a - d):
                if 0 <= i < n:
                    lab[i] += math.sqrt(1 - d / w)
    lab = [min(v, 1.0) for v in lab]
    ranges = []  # widened, merged where they overlap, inclusive ends
    for a, b in zip(starts, ends):
        lo, hi = max(a - half, 0), min(b + half, n - 1)
        if ranges and lo <= ranges[-1][1]:
            ranges[-1][1] = hi
        else:
            ranges.append([lo, hi])
    P = sum(y)
    ap, prev = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        flagged = [i for i in range(n) if s[i] >= t]
        tp = sum(1.0 if y[i] else lab[i] for i in flagged)
        credit = sum(lab[i] for i in flagged if not y[i])
        hit = sum(any(lo <= i <= hi for i in flagged) for lo, hi in ranges)
        recall = min(tp / (P + credit / 2), 1.0) * hit / len(ranges)
        ap += (recall - prev) * tp / len(flagged)
        prev = recall
    return ap


def test_buffered_labels_ramp_and_overlap():
    r1, r2 = math.sqrt(1 - 1 / 4), math.sqrt(1 - 2 / 4)
    np.testing.assert_allclose(buffered_labels([0, 0, 0, 1, 0, 0, 0], 4), [0, r2, r1, 1, r1, r2, 0])
    # w=4 reaches 2 points: ramps of two ranges add up and are capped at 1; clipped at the edges
    np.testing.assert_allclose(buffered_labels([1, 0, 1, 0, 0], 4), [1, 1, 1, r1, r2])
    # odd w: w // 2 points, each sqrt(1 - d / w)
    np.testing.assert_allclose(buffered_labels([0, 0, 1, 0], 3), [0, math.sqrt(2 / 3), 1, math.sqrt(2 / 3)])
    np.testing.assert_array_equal(buffered_labels([0, 1, 0], 1), [0, 1, 0])


def test_buffered_ranges_merge_overlaps_only():
    y = np.array([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(buffered_ranges(y, 0), [[1, 2], [5, 6], [12, 13]])
    # h=1: [0,3), [4,7) and [11,13) stay apart
    np.testing.assert_array_equal(buffered_ranges(y, 2), [[0, 3], [4, 7], [11, 13]])
    # h=2: [0,4) and [3,8) overlap -> merged; [10,13) apart
    np.testing.assert_array_equal(buffered_ranges(y, 4), [[0, 8], [10, 13]])
    # h=3 on ranges 4 apart: [0,5) and [2,9) merge; [9,13) touches [2,9) and stays apart
    np.testing.assert_array_equal(buffered_ranges(y, 6), [[0, 9], [9, 13]])


def test_single_range_without_buffer_is_average_precision():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    s = np.array([0.1, 0.5, 0.9, 0.3, 0.2, 0.0, 0.4, 0.6])
    # t=0.9: recall 1/2 at precision 1; t=0.3: recall 1 at precision 2/5 -> 0.5 + 0.5 * 0.4
    assert range_pr_auc(y, s, 0, n_thresholds=None) == pytest.approx(0.7)
    assert average_precision_score(y, s) == pytest.approx(0.7)
    rng = np.random.default_rng(0)
    y = np.zeros(300, dtype=int)
    y[100:130] = 1
    s = rng.normal(size=300) + y
    assert range_pr_auc(y, s, 0, n_thresholds=None) == pytest.approx(average_precision_score(y, s))


def test_several_ranges_without_buffer_multiply_point_and_event_recall():
    y = np.array([1, 0, 0, 1, 1, 0])
    s = np.array([0.2, 0.1, 0.0, 0.9, 0.3, 0.5])
    # recall = point recall x event recall: 1/3*1/2 at p=1, 2/3*1/2 at p=2/3, 1 at p=3/4
    expected = 1 / 6 + (1 / 3 - 1 / 6) * 2 / 3 + (1 - 1 / 3) * 3 / 4
    assert range_pr_auc(y, s, 0, n_thresholds=None) == pytest.approx(expected)
    assert expected < average_precision_score(y, s)  # 1/3 + 2/9 + 1/4: events are not points


def test_buffer_credits_points_next_to_a_range():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    s = np.array([0.1, 0.5, 0.9, 0.3, 0.2, 0.0, 0.4, 0.6])
    r = math.sqrt(0.5)  # w=2: points 1 and 4 are buffer points of weight sqrt(1 - 1/2)
    mid = (1 + r) / (2 + r / 2)  # recall once point 1 (score 0.5) is flagged
    ap2 = 0.5 * 1 + (mid - 0.5) * (1 + r) / 3 + (1 - mid) * (2 + r) / 5
    assert range_pr_auc(y, s, 2, n_thresholds=None) == pytest.approx(ap2)
    # w=1 has no buffer point (1 // 2 = 0): same as w=0
    np.testing.assert_allclose(range_pr_surface(y, s, 2, n_thresholds=None), [0.7, 0.7, ap2])
    assert vus_pr(y, s, 2, n_thresholds=None) == pytest.approx((0.7 + 0.7 + ap2) / 3)


@pytest.mark.parametrize("max_buffer", [0, 5, 40])
def test_perfect_detector_scores_one(max_buffer):
    y = np.zeros(500, dtype=int)
    y[[3, 4, 5, 100, 250, 251, 497, 498, 499]] = 1
    assert vus_pr(y, y.astype(float), max_buffer) == pytest.approx(1.0)
    assert vus_pr(y, y.astype(float), max_buffer, n_thresholds=None) == pytest.approx(1.0)


def test_random_scores_give_the_labelled_share():
    rng = np.random.default_rng(1)
    n = 40_000
    y = np.zeros(n, dtype=int)
    for start in rng.choice(n - 100, size=40, replace=False):
        y[start : start + rng.integers(20, 80)] = 1
    s = rng.random(n)
    assert vus_pr(y, s, 0) == pytest.approx(y.mean(), rel=0.1)
    # with a buffer, precision also counts the buffer labels: their share is the floor
    floor = np.mean([buffered_labels(y, w).mean() for w in range(17)])
    assert floor > y.mean()
    assert vus_pr(y, s, 16) == pytest.approx(floor, rel=0.1)


def test_rank_sample_of_thresholds_covers_every_rank_of_a_short_series():
    rng = np.random.default_rng(2)
    y = (rng.random(120) < 0.2).astype(int)
    s = rng.normal(size=120) + y
    # linspace(0, 119, 250) hits every rank: the same curve as every distinct score
    assert vus_pr(y, s, 6) == pytest.approx(vus_pr(y, s, 6, n_thresholds=None))
    assert abs(vus_pr(y, s, 6, n_thresholds=10) - vus_pr(y, s, 6, n_thresholds=None)) < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_surface_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 80
    y = np.zeros(n, dtype=int)
    for start in rng.choice(n - 6, size=int(rng.integers(1, 5)), replace=False):
        y[start : start + rng.integers(1, 6)] = 1
    y[: seed % 3] = 1  # ranges at the very start ...
    if seed % 2:
        y[-2:] = 1  # ... and end
    s = np.round(rng.normal(size=n) + y, 1)  # ties
    surface = range_pr_surface(y, s, 9, n_thresholds=None)
    np.testing.assert_allclose(surface, [_brute_range_ap(list(y), list(s), w) for w in range(10)],
                               atol=1e-12)


def test_degenerate_inputs():
    assert math.isnan(vus_pr([0, 0, 0], [1.0, 2.0, 3.0], 4))
    assert np.isnan(range_pr_surface([0, 0], [1.0, 2.0], 2)).all()
    with pytest.raises(ValueError, match="NaN"):
        vus_pr([0, 1], [np.nan, 1.0], 2)
    with pytest.raises(ValueError, match="max_buffer"):
        vus_pr([0, 1], [0.0, 1.0], -1)
    with pytest.raises(ValueError, match="n_thresholds"):
        vus_pr([0, 1], [0.0, 1.0], 2, n_thresholds=0)
