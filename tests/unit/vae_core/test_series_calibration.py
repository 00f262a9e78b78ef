"""How a time-series detector's threshold is placed on its held-out tail (series_modes.fit_mode):
the defaults hold their false-alarm rate on a clean tail, anomalies in the tail do not lift the
threshold, and the balanced rate weight stays bounded when the rate hardly varies."""
import numpy as np

from vae_core.config import TimeSeriesConfig
from vae_core.series_modes import fit_mode
from vae_core.series_scores import MAX_BALANCED_RATE_WEIGHT, balanced_rate_weight


def _tail(nll: np.ndarray, kl: np.ndarray):
    """``fit_mode``'s input for a tail of these per-point terms (two value columns)."""
    n = len(nll)
    return {"nll_iwae": nll, "kl": kl}, np.ones((n, 2)), np.ones((n, 2))


def _score(raw, weight):
    return raw["nll_iwae"] + weight * raw["kl"]


def _mode(nll, kl, **config):
    return fit_mode(_tail(nll, kl), np.ones(len(nll), bool), None, TimeSeriesConfig(**config), _score, 2)


def test_the_default_threshold_keeps_a_clean_tail_under_its_share_of_anomalies():
    """On a tail without anomalies (a retrained model's, whose champion's flags were left out),
    the 1% quantile flags 1% of normal points, as many as the demo sensors' injected anomalies
    (1.2%): the default (POT at risk 1e-3) flags a few per thousand."""
    rng = np.random.default_rng(0)
    nll, kl = rng.gumbel(size=1000), np.full(1000, 0.1)
    fresh = rng.gumbel(size=200_000) + 0.1 * _mode(nll, kl).rate_weight
    default = _mode(nll, kl).calibration.threshold
    quantile = _mode(nll, kl, threshold_method="quantile").calibration.threshold
    assert (fresh > quantile).mean() > 0.007
    assert (fresh > default).mean() < 0.004


def test_anomalies_in_the_tail_do_not_lift_the_threshold():
    rng = np.random.default_rng(1)
    nll, kl = rng.gumbel(size=1000), rng.gamma(4.0, 0.05, size=1000)
    clean = _mode(nll, kl)
    dirty_nll = nll.copy()
    dirty_nll[::80] = rng.uniform(60.0, 500.0, size=len(dirty_nll[::80]))  # 13 spikes, as a first model's tail holds
    dirty = _mode(dirty_nll, kl)
    kept = _mode(dirty_nll, kl, tail_fence=None)
    assert kept.calibration.threshold > 3 * clean.calibration.threshold  # POT on the spikes: far out
    assert abs(dirty.calibration.threshold - clean.calibration.threshold) < 0.25 * clean.calibration.threshold
    assert len(dirty.calibration.scores) == 1000 - 13


def test_the_balanced_rate_weight_is_bounded_when_the_rate_hardly_varies():
    rng = np.random.default_rng(2)
    nll = rng.normal(size=1000)
    assert balanced_rate_weight(nll, 0.1 * rng.normal(size=1000)) < MAX_BALANCED_RATE_WEIGHT  # a spread rate: the ratio
    assert balanced_rate_weight(nll, 1e-4 * rng.normal(size=1000)) == MAX_BALANCED_RATE_WEIGHT  # a collapsed encoder's
    assert balanced_rate_weight(nll, np.zeros(1000)) == 2.0  # no spread at all: the fallback


def test_each_series_threshold_is_placed_on_its_own_tail():
    """threshold_per_series: a quiet and a noisy series each get the default rule (POT) placed on
    their own tail points, fenced on their own (the noisy one's normal highs stay in its
    calibration; its anomaly is left out); a series with too few tail points keeps the shared
    threshold; a fixed cut is every series' threshold."""
    from vae_core.series_thresholds import MIN_TAIL_POINTS
    from vae_core.threshold import Calibration, inliers

    rng = np.random.default_rng(1)
    quiet, noisy = rng.gumbel(size=2400), 8.0 + 6.0 * rng.gumbel(size=300)
    noisy[100] = 400.0  # an anomaly the noisy tail held
    short = rng.gumbel(size=MIN_TAIL_POINTS - 1)
    before = rng.gumbel(size=300) + 1e3  # points before the tail: never calibrated on
    nll = np.concatenate([before, quiet, noisy, short])
    names = np.array(["quiet"] * 300 + ["quiet"] * 2400 + ["noisy"] * 300 + ["short"] * len(short))
    tail = np.arange(len(nll)) >= 300
    cfg = dict(threshold_per_series=True, rate_weight=0.0)
    mode = fit_mode(_tail(nll, np.zeros(len(nll))), tail, names, TimeSeriesConfig(**cfg), _score, 2)
    assert set(mode.series_calibration) == {"quiet", "noisy"}
    for name, own in (("quiet", quiet), ("noisy", np.delete(noisy, 100))):
        cal = mode.series_calibration[name]
        c = TimeSeriesConfig()
        want = Calibration.fit(own[inliers(own, c.tail_fence)], "pot", c.contamination, c.pot_risk, c.pot_level)
        assert cal.method == "pot" and cal.threshold == want.threshold
        np.testing.assert_array_equal(cal.scores, want.scores)
    assert mode.series_calibration["quiet"].threshold < mode.series_calibration["noisy"].threshold
    assert 400.0 not in mode.series_calibration["noisy"].scores
    # pooled, the noisy series' normal highs would be fenced off as the quiet ones' outliers
    assert (noisy > mode.calibration.scores.max()).sum() > 10
    fixed = fit_mode(_tail(nll, np.zeros(len(nll))), tail, names,
                     TimeSeriesConfig(**cfg, threshold_method="fixed", fixed_threshold=7.5), _score, 2)
    assert {c.threshold for c in fixed.series_calibration.values()} == {7.5} and fixed.calibration.threshold == 7.5
