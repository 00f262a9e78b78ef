"""TimeSeriesVAEDetector: windows, gaps, several series, persistence and bad input."""
import numpy as np
import pandas as pd
import pytest

from vae_fixtures import FAST, assert_scores_close
import vae_core
from vae_core import SCORE_COLUMNS, DataError, TimeSeriesVAEDetector
from vae_core.series_scores import balanced_rate_weight

TS_FAST = {**FAST, "max_epochs": 25, "window": 16}


def series_frame(n=600, seed=0, start="2024-01-01", name=None, spike_at=None):
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=n, freq="5min")
    phase = 2 * np.pi * np.arange(n) / 48
    frame = pd.DataFrame(
        {
            "timestamp": t,
            "cpu": np.sin(phase) + rng.normal(scale=0.05, size=n),
            "mem": np.cos(phase) + rng.normal(scale=0.05, size=n),
        }
    )
    if spike_at is not None:
        frame.loc[spike_at, "cpu"] += 4.0
    if name is not None:
        frame.insert(1, "host", name)
    return frame


@pytest.fixture(scope="module")
def ts_fitted():
    frame = pd.concat([series_frame(name="a", seed=0), series_frame(name="b", seed=1)], ignore_index=True)
    return TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(frame, time_column="timestamp", series_column="host")


def test_a_spike_is_the_top_score_and_flagged(ts_fitted):
    test = series_frame(n=300, seed=5, start="2024-02-01", name="a", spike_at=150)
    out = ts_fitted.score(test)
    assert list(out.columns) == SCORE_COLUMNS and out.index.equals(test.index)
    assert out["anomaly_score"].idxmax() == 150
    assert out.loc[150, "is_anomaly"]
    # a spike still lifts the rate share of the windows that hold it (and, less, its neighbours'
    # NLL under a posterior pulled towards it), so only points a window away count here; the first
    # points of a frame, seen by fewer windows, are noisier (the score flow scores a batch with the
    # previous batch's tail as context)
    window = ts_fitted.config_.window
    away = (abs(out.index - 150) >= window) & (out.index >= window)
    assert out.loc[away, "is_anomaly"].mean() < 0.03
    expl = ts_fitted.explain(test.iloc[[150]], top_k=2)
    assert expl["feature"].iloc[0] == "cpu"


def test_rows_in_any_order_and_several_series(ts_fitted):
    test = pd.concat(
        [series_frame(n=200, seed=7, name="a"), series_frame(n=200, seed=8, name="b")], ignore_index=True
    )
    shuffled = test.sample(frac=1.0, random_state=0)
    a = ts_fitted.score(test)
    b = ts_fitted.score(shuffled)
    assert_scores_close(a.loc[shuffled.index], b)
    # each series is windowed on its own: series b's scores do not depend on series a
    only_b = ts_fitted.score(test[test["host"] == "b"])
    assert_scores_close(only_b, a[test["host"] == "b"])


def test_missing_timestamps_and_values_are_masked_not_imputed(ts_fitted):
    test = series_frame(n=300, seed=9, name="a")
    gappy = test.drop(index=range(100, 110)).copy()  # ten missing timestamps
    gappy.loc[200, "mem"] = np.nan
    out = ts_fitted.score(gappy)
    assert out.index.equals(gappy.index) and np.isfinite(out["neg_elbo"]).all()
    # the points beside a gap are not made anomalous by it
    assert not out.loc[[99, 110], "is_anomaly"].any()


def test_integer_time_and_short_batches():
    frame = series_frame(n=400).assign(timestamp=np.arange(400) * 10)
    det = TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(frame, time_column="timestamp")
    short = frame.iloc[:5]  # fewer points than the window: padded with missing points
    assert len(det.score(short)) == 5
    with pytest.raises(DataError, match="integer|numeric|datetime"):
        det.score(series_frame(n=50))


def test_save_load_gives_identical_scores(ts_fitted, tmp_path):
    test = series_frame(n=200, seed=11, name="b", spike_at=50)
    ts_fitted.save(tmp_path / "ts")
    loaded = TimeSeriesVAEDetector.load(tmp_path / "ts")
    pd.testing.assert_frame_equal(ts_fitted.score(test), loaded.score(test), check_exact=True)


def test_bad_time_values_name_the_row(ts_fitted):
    test = series_frame(n=100, name="a").astype({"timestamp": object})
    test.loc[42, "timestamp"] = "not a time"
    with pytest.raises(DataError, match=r"column 'timestamp', row 42: missing or unparseable time"):
        ts_fitted.score(test)
    with pytest.raises(DataError, match=r"missing column\(s\).*'mem'"):
        ts_fitted.score(series_frame(n=100, name="a").drop(columns="mem"))


def test_too_short_to_fit():
    with pytest.raises(DataError, match="too few points"):
        TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(series_frame(n=10), time_column="timestamp")


def test_last_point_scores_use_only_the_past(ts_fitted):
    """point_score="last": a point's score never changes when later points arrive (streaming),
    and a spike raises no score before it; the default "mean" does both, by design."""
    train = pd.concat([series_frame(name="a", seed=0), series_frame(name="b", seed=1)], ignore_index=True)
    last = TimeSeriesVAEDetector(seed=0, point_score="last", **TS_FAST).fit(
        train, time_column="timestamp", series_column="host"
    )
    full = series_frame(n=300, seed=5, start="2024-02-01", name="a", spike_at=150)
    window = last.config_.window
    for det, streaming in ((last, True), (ts_fitted, False)):
        whole = det.score(full)
        prefix = det.score(full.iloc[:200])
        same = np.allclose(prefix["nll_iwae"], whole["nll_iwae"].iloc[:200], rtol=1e-6, atol=1e-6)
        assert same is streaming
    out = last.score(full)
    # nll_iwae scores the window that ends at a point, so the spike shows in the next `window` points
    assert 150 <= out["anomaly_score"].idxmax() < 150 + window and out["is_anomaly"].iloc[150 : 150 + window].any()
    assert out["neg_elbo"].idxmax() == 150  # the point's own term in the window ending at it
    calm = last.score(series_frame(n=300, seed=5, start="2024-02-01", name="a"))
    np.testing.assert_allclose(out["anomaly_score"].iloc[:150], calm["anomaly_score"].iloc[:150], rtol=1e-6)  # the spike changes nothing before it
    assert not np.allclose(out["anomaly_score"].iloc[150:], calm["anomaly_score"].iloc[150:])
    assert out["is_anomaly"].iloc[window:].mean() < 0.15  # the spike lifts only the windows that contain it


def test_point_anomaly_score_adds_the_weighted_rate_of_the_covering_windows():
    frame = series_frame(n=300)
    fit = lambda **kw: TimeSeriesVAEDetector(seed=0, **TS_FAST, **kw).fit(frame, time_column="timestamp")
    default, two, plain = fit(), fit(rate_weight=2.0), fit(rate_weight=0.0)  # the weight does not change training
    a, b = two.score(frame), plain.score(frame)
    np.testing.assert_array_equal(a["nll_iwae"], b["nll_iwae"])
    np.testing.assert_array_equal(b["anomaly_score"], b["nll_iwae"])
    rate = a["anomaly_score"] - a["nll_iwae"]
    assert (rate > 0).all()
    # the added term is linear in the weight
    half = fit(rate_weight=1.0).score(frame)
    np.testing.assert_allclose(half["anomaly_score"] - half["nll_iwae"], rate / 2, rtol=1e-9)
    # by default the weight is balanced in fit: the rate part spreads like nll_iwae over the tail
    assert two.rate_weight_ == 2.0 and 0 < default.rate_weight_ < np.inf
    c = default.score(frame)
    np.testing.assert_allclose(c["anomaly_score"] - c["nll_iwae"], rate / 2 * default.rate_weight_, rtol=1e-6)


def test_balanced_rate_weight_is_the_ratio_of_the_spreads():
    nll, kl = np.arange(101.0), np.arange(101.0) / 40 + 7
    assert balanced_rate_weight(nll, kl) == pytest.approx(40.0)
    assert balanced_rate_weight(nll, np.full(101, 3.0)) == 2.0  # a rate that does not vary: the fallback


def test_load_returns_the_time_series_detector(ts_fitted, tmp_path):
    ts_fitted.save(tmp_path / "m")
    det = vae_core.load(tmp_path / "m")
    assert type(det) is TimeSeriesVAEDetector
    test = series_frame(n=100, seed=3, name="a")
    pd.testing.assert_frame_equal(det.score(test), ts_fitted.score(test))


def test_two_flags_far_apart_are_explained_within_their_series(ts_fitted):
    # explaining only the flagged rows would lay two distant points on one grid (MAX_GRID_GROWTH);
    # score_with_explanations explains them from the windows that scored them
    test = series_frame(n=6000, seed=6, start="2024-03-01", name="a", spike_at=100)
    test.loc[5900, "cpu"] += 4.0
    out = vae_core.score_with_explanations(ts_fitted, test, top_k=2)
    assert out.loc[[100, 5900], "is_anomaly"].all()
    assert out.loc[100, "top_features"].startswith("cpu=") and out.loc[5900, "top_features"].startswith("cpu=")
    assert (out.loc[~out["is_anomaly"], "top_features"] == "").all()
    pd.testing.assert_frame_equal(out.drop(columns="top_features"), ts_fitted.score(test))
    # what used to fail the batch: the flagged rows alone, laid on one grid, span too many steps
    flagged = test.loc[out["is_anomaly"].to_numpy(bool)]
    assert len(flagged) * 50 < 5800
    with pytest.raises(DataError, match=r"series 'a' spans \d+ steps of .* for only \d+ rows"):
        ts_fitted.explain(flagged)


def test_a_repeated_time_in_one_series_is_refused_naming_the_series_time_and_rows(ts_fitted):
    test = pd.concat([series_frame(n=100, seed=3, name="a"), series_frame(n=100, seed=4, name="b")], ignore_index=True)
    test.loc[150, "timestamp"] = test.loc[149, "timestamp"]  # series b, a duplicate with another value
    with pytest.raises(DataError, match=r"series 'b': rows 149 and 150 have the same time '2024-01-01 04:05:00' in column 'timestamp'"):
        ts_fitted.score(test)
    # the same time in two different series is fine
    ts_fitted.score(test.drop(index=150))
    single = series_frame(n=80, seed=2)
    single.loc[10, "timestamp"] = single.loc[40, "timestamp"]
    with pytest.raises(DataError, match=r"series: rows 10 and 40 have the same time"):
        TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(single)


def test_scaling_and_max_categories_reach_the_preprocessor():
    frame = series_frame(n=120, seed=1)
    det = TimeSeriesVAEDetector(seed=0, scaling="standard", max_categories=5, **{**TS_FAST, "max_epochs": 2}).fit(frame)
    assert det.preprocessor_.scaling == "standard" and det.preprocessor_.max_categories == 5
    spec = det.preprocessor_.columns[0]
    assert spec.center == pytest.approx(frame["cpu"].mean())
