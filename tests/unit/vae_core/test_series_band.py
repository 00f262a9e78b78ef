"""vae_core.series_band: the expected band (decoder mean +- 2 sd) covers normal points, in the
data's units, and not a spike."""
import numpy as np
import pandas as pd
import pytest

from test_timeseries import TS_FAST, series_frame
from vae_core import TimeSeriesVAEDetector


def _in_units(frame):
    """The two-host frame in other units: cpu around 50 with 10x the spread."""
    return frame.assign(cpu=50 + 10 * frame["cpu"])


@pytest.fixture(scope="module")
def det():
    train = pd.concat([series_frame(name="a", seed=0), series_frame(name="b", seed=1)], ignore_index=True)
    return TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(_in_units(train), time_column="timestamp", series_column="host")


@pytest.mark.parametrize("mode", ["mean", "last"])
def test_the_band_covers_normal_points_and_not_a_spike(det, mode):
    det = det.with_point_score(mode)
    test = _in_units(series_frame(n=300, seed=5, start="2024-02-01", name="a", spike_at=150))
    band = det.expected(test)
    assert band.index.equals(test.index)
    assert list(band.columns) == [("cpu", "mean"), ("cpu", "std"), ("mem", "mean"), ("mem", "std")]
    mean, sd = band[("cpu", "mean")], band[("cpu", "std")]
    inside = ((test["cpu"] - mean).abs() <= 2 * sd).to_numpy()
    assert inside[np.arange(300) != 150].mean() >= 0.95
    assert not inside[150]
    # the data's units: the mean follows the daily cycle around 50, the spread well below it
    assert abs(mean.median() - 50) < 3 and 0.1 < sd.median() < 10
    normal = np.arange(300) != 150
    assert np.corrcoef(mean[normal], test["cpu"][normal])[0, 1] > 0.9


def test_the_band_after_a_context_equals_the_long_series(det):
    causal = det.with_point_score("last")
    long = _in_units(series_frame(n=200, seed=5, start="2024-02-01", name="a"))
    W = causal.config_.window
    whole = causal.expected(long)
    tail = causal.expected(long.iloc[120:], context=long.iloc[120 - (W - 1):120])
    np.testing.assert_allclose(tail.to_numpy(), whole.iloc[120:].to_numpy(), rtol=1e-5, atol=1e-6)
