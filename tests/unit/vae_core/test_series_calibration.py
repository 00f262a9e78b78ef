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
