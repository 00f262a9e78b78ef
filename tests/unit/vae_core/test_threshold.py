"""Threshold rules: quantile, peaks-over-threshold (GPD), p-values."""
import numpy as np
import pytest

from vae_core.threshold import Calibration, fit_gpd, inliers


def test_quantile_threshold_gives_the_target_false_positive_rate():
    scores = np.random.default_rng(0).normal(size=20000)
    cal = Calibration.fit(scores, "quantile", contamination=0.05, risk=1e-3, level=0.95)
    fresh = np.random.default_rng(1).normal(size=20000)
    assert abs((fresh > cal.threshold).mean() - 0.05) < 0.006


@pytest.mark.parametrize("xi", [0.0, 0.2, -0.2])
def test_gpd_fit_recovers_the_shape(xi):
    rng = np.random.default_rng(0)
    u = rng.random(20000)
    sigma = 2.0
    y = sigma * (-np.log(u)) if xi == 0 else sigma / xi * (u ** (-xi) - 1)
    xi_hat, sigma_hat = fit_gpd(y)
    assert abs(xi_hat - xi) < 0.05
    assert abs(sigma_hat - sigma) / sigma < 0.06


def test_pot_threshold_matches_the_true_tail_quantile():
    scores = np.random.default_rng(0).exponential(size=20000)
    cal = Calibration.fit(scores, "pot", contamination=0.01, risk=1e-4, level=0.98)
    # for Exp(1), P(S > z) = exp(-z): the 1e-4 quantile is 9.21, beyond every calibration score's typical range
    assert abs(cal.threshold - (-np.log(1e-4))) < 1.0
    assert cal.tail is not None and abs(cal.tail.xi) < 0.15


def test_p_values_are_monotone_and_calibrated():
    rng = np.random.default_rng(0)
    cal = Calibration.fit(rng.normal(size=5000), "quantile", 0.01, 1e-3, 0.95)
    grid = np.linspace(-4, 8, 200)
    p = cal.p_values(grid)
    assert np.all(np.diff(p) <= 1e-12) and p[0] > 0.99 and 1e-16 <= p[-1] < 1e-6
    fresh = cal.p_values(rng.normal(size=5000))
    # under the null, p-values are close to uniform
    assert abs((fresh < 0.1).mean() - 0.1) < 0.02


def test_round_trip_through_dict_is_exact():
    import json

    cal = Calibration.fit(np.random.default_rng(0).gamma(2, size=777), "pot", 0.01, 1e-3, 0.95)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    s = np.linspace(0, 20, 50)
    assert back.threshold == cal.threshold
    np.testing.assert_array_equal(back.p_values(s), cal.p_values(s))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown threshold method"):
        Calibration.fit(np.arange(100.0), "magic", 0.01, 1e-3, 0.95)


def test_inliers_leave_out_only_far_out_scores():
    scores = np.concatenate([np.random.default_rng(0).normal(size=500), [40.0, 90.0]])
    keep = inliers(scores, fence=6.0)
    assert keep[:500].all() and not keep[500:].any()
    assert inliers(scores, fence=None).all()
    few = np.r_[np.zeros(19), np.full(6, 1e6)]
    assert inliers(np.r_[np.zeros(30), np.full(6, 1e6)], fence=6.0).sum() == 30
    assert inliers(few, fence=6.0).all()  # 19 would be left, under 20: every score is kept
