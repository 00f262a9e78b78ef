"""Repeated timestamps in one series: refused by default, else duplicates="first" | "last" | "mean"."""
import numpy as np
import pandas as pd
import pytest

from vae_core import DataError, TimeSeriesConfig, TimeSeriesVAEDetector
from vae_core.series_grid import build_grids

TINY = dict(max_epochs=2, kl_warmup_epochs=1, elbo_samples=2, iwae_samples=2, window=8)


def grid_of(frame, duplicates, series_column=None):
    values = frame[["v"]].to_numpy(np.float32)
    times = frame["t"].to_numpy(np.float64)
    names = sorted(frame[series_column].unique()) if series_column else [""]
    return build_grids(frame, times, values, "t", series_column, names, 1.0, 2, duplicates)


def test_the_grid_keeps_the_first_the_last_or_the_mean_of_a_repeated_time():
    # time 1 three times (rows 1, 3, 4 in frame order, not adjacent), a NaN in one of them
    frame = pd.DataFrame({"t": [0, 1, 2, 1, 1, 3], "v": [0.0, 10.0, 2.0, np.nan, 40.0, 3.0]})
    with pytest.raises(DataError, match=r"series: rows 1 and 3 have the same time '1' in column 't'.*duplicates="):
        grid_of(frame, None)
    expect = {"first": 10.0, "last": 40.0, "mean": 25.0}  # "last" is row 4's value; "mean" skips the NaN
    for mode, at_1 in expect.items():
        (g,) = grid_of(frame, mode)
        np.testing.assert_array_equal(g.values[:, 0], [0.0, at_1, 2.0, 3.0])
        # every row still has its grid point, so each repeat gets its time's score
        np.testing.assert_array_equal(g.rows, np.arange(6))
        np.testing.assert_array_equal(g.points, [0, 1, 2, 1, 1, 3])
    # a kept row whose value is missing leaves the point missing ("first" takes the whole row)
    frame.loc[1, "v"] = np.nan
    (g,) = grid_of(frame, "first")
    assert np.isnan(g.values[1, 0])


def test_the_rule_applies_within_a_series_only():
    frame = pd.DataFrame({"s": ["a", "b", "a", "b", "a"], "t": [0, 0, 1, 1, 1], "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    with pytest.raises(DataError, match=r"series 'a': rows 2 and 4 have the same time"):
        grid_of(frame, None, "s")
    a, b = grid_of(frame, "first", "s")
    np.testing.assert_array_equal(a.values[:, 0], [1.0, 3.0])
    np.testing.assert_array_equal(b.values[:, 0], [2.0, 4.0])


def test_an_unknown_rule_is_refused_by_the_config():
    with pytest.raises(ValueError, match="duplicates"):
        TimeSeriesConfig(duplicates="max")


def dst_frame(n=240, seed=0):
    """Naive local times every 5 minutes with one hour repeated (the autumn clock change)."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2024-10-27", periods=n, freq="5min")
    t = t.append(t[24:36]).sort_values()  # 02:00-02:55 twice, the second hour's rows after the first's
    phase = 2 * np.pi * np.arange(len(t)) / 48
    return pd.DataFrame({"timestamp": t, "x": np.sin(phase) + rng.normal(scale=0.05, size=len(t))})


def test_a_model_fitted_with_a_rule_scores_repeats_by_it_and_keeps_it_when_saved(tmp_path):
    frame = dst_frame()
    with pytest.raises(DataError, match="have the same time '2024-10-27 02:00:00'"):
        TimeSeriesVAEDetector(seed=0, **TINY).fit(frame)
    det = TimeSeriesVAEDetector(seed=0, duplicates="last", **TINY).fit(frame)
    out = det.score(frame)
    # the frame's first copies of the repeated hour left out: the same grid, so the same scores
    first_copies = frame.index[frame["timestamp"].duplicated(keep="last")]
    assert len(first_copies) == 12
    rest = frame.drop(index=first_copies)
    pd.testing.assert_frame_equal(out.loc[rest.index], det.score(rest), check_exact=True)
    # each dropped copy has its time's score
    later = frame.index[frame["timestamp"].duplicated(keep="first")]
    np.testing.assert_array_equal(out.loc[first_copies, "anomaly_score"], out.loc[later, "anomaly_score"])
    det.save(tmp_path / "m")
    loaded = TimeSeriesVAEDetector.load(tmp_path / "m")
    assert loaded.config_.duplicates == "last"
    pd.testing.assert_frame_equal(loaded.score(frame), out, check_exact=True)
