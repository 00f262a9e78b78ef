"""vae_core.series_modes: one fitted series model scores offline ("mean") and causally ("last"),
each mode with its own calibration; a batch scored after its context equals one long series;
flagged points are explained by their event."""
import numpy as np
import pandas as pd
import pytest

from test_timeseries import TS_FAST, series_frame
import vae_core
from vae_core import TimeSeriesVAEDetector
from vae_core.events import find_events


def _train():
    return pd.concat([series_frame(name="a", seed=0), series_frame(name="b", seed=1)], ignore_index=True)


@pytest.fixture(scope="module")
def offline():
    return TimeSeriesVAEDetector(seed=0, **TS_FAST).fit(_train(), time_column="timestamp", series_column="host")


def test_the_other_mode_is_calibrated_as_if_fitted_in_it(offline, tmp_path):
    """A model fitted offline, switched to the causal mode, has the threshold, calibration scores,
    attribution and scores of the same model fitted causally (training does not depend on the mode)."""
    causal = TimeSeriesVAEDetector(seed=0, point_score="last", **TS_FAST).fit(
        _train(), time_column="timestamp", series_column="host")
    switched = offline.with_point_score("last")
    assert offline.with_point_score("mean") is offline and switched.config_.point_score == "last"
    np.testing.assert_allclose(switched.calibration_.scores, causal.calibration_.scores, rtol=1e-5, atol=1e-5)
    assert switched.threshold_ == pytest.approx(causal.threshold_, rel=1e-5)
    assert switched.threshold_ != pytest.approx(offline.threshold_, rel=1e-3)  # the modes differ
    np.testing.assert_allclose(switched.attribution_.median, causal.attribution_.median, rtol=1e-5, atol=1e-6)
    test = series_frame(n=300, seed=5, start="2024-02-01", name="a", spike_at=150)
    pd.testing.assert_frame_equal(switched.score(test), causal.score(test), rtol=1e-5, atol=1e-6)
    # and back: the causal model switched offline is the offline model
    back = causal.with_point_score("mean")
    np.testing.assert_allclose(back.score(test)["anomaly_score"], offline.score(test)["anomaly_score"], rtol=1e-5)
    assert back.threshold_ == pytest.approx(offline.threshold_, rel=1e-5)
    # both modes survive save/load; a model saved without them says what to do
    loaded = TimeSeriesVAEDetector.load(offline.save(tmp_path / "m"))
    assert loaded.with_point_score("last").threshold_ == switched.threshold_
    loaded.point_modes_ = {}
    with pytest.raises(ValueError, match="no calibration for point_score='last'.*retrain"):
        loaded.with_point_score("last")
    with pytest.raises(ValueError, match="point_score must be one of"):
        offline.with_point_score("future")


def test_both_modes_are_calibrated_from_the_tail_as_from_the_whole_series(offline):
    """fit scores only the held-out tail's windows; each mode's calibration is the one that scoring
    every window of the fitting frame and keeping the tail's points gives."""
    from vae_core import series_modes
    from vae_core.series_frame import parse_times

    frame = _train()
    grids = offline._grids(frame, parse_times(frame, "timestamp"))
    tail = np.zeros(len(frame), bool)
    for g in grids:
        tail[g.rows] = g.points >= int(round(len(g.values) * (1 - offline.config_.validation_fraction)))
    assert 0 < tail.sum() < len(frame) // 3
    names, d = offline._row_series(frame), len(offline.value_columns_)
    for mode in ("mean", "last"):
        det = offline.with_point_score(mode)
        whole = series_modes.fit_mode(det.score_grids(grids, len(frame)), tail, names, det.config_,
                                      det._anomaly_score, d)
        np.testing.assert_allclose(whole.calibration.scores, det.calibration_.scores, rtol=1e-5, atol=1e-5)
        assert whole.calibration.threshold == pytest.approx(det.threshold_, rel=1e-5)
        assert whole.rate_weight == pytest.approx(det.rate_weight_, rel=1e-5)
        np.testing.assert_allclose(whole.attribution.median, det.attribution_.median, rtol=1e-5, atol=1e-6)


def test_a_recalibrated_mode_keeps_the_other(offline):
    switched = offline.with_point_score("last").calibrate(threshold=5.0)
    assert switched.threshold_ == 5.0 and offline.threshold_ != 5.0
    again = switched.with_point_score("mean")
    assert again.threshold_ == offline.threshold_ and again.config_.threshold_method == offline.config_.threshold_method
    assert again.with_point_score("last").threshold_ == 5.0


def test_causal_batches_after_their_context_equal_one_long_series(offline):
    """Causal scores of a long series in uneven batches, each after the previous window - 1 points
    of its series as context, equal the series scored at once; offline ones do not."""
    causal = offline.with_point_score("last")
    W = causal.config_.window
    long = pd.concat([series_frame(n=400, seed=s, start="2024-02-01", name=h, spike_at=200) for s, h in ((5, "a"), (6, "b"))],
                     ignore_index=True)
    at = long.groupby("host").cumcount().to_numpy()  # each row's position in its series
    for det, same in ((causal, True), (offline, False)):
        whole = det.score(long)
        cuts = [0, 37, 90, 91, 250, 400]  # a one-point batch too
        parts = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            batch, before = long[(at >= lo) & (at < hi)], long[(at >= lo - (W - 1)) & (at < lo)]
            parts.append(det.score(batch, context=before if len(before) else None))
        batched = pd.concat(parts).loc[whole.index]
        assert np.allclose(batched["anomaly_score"], whole["anomaly_score"], rtol=1e-5, atol=1e-5) is same
    with pytest.raises(vae_core.DataError, match="the context: missing column"):
        causal.score(long, context=long.drop(columns="mem"))


def test_flagged_points_are_explained_by_their_event(offline):
    """Every flagged point of an event names its event's columns with the event's shares, from
    the excess summed over its points; a level shift of one column names that column."""
    test = series_frame(n=300, seed=5, start="2024-02-01", name="a")
    test.loc[120:139, "mem"] += 3.0  # a level shift of 20 points
    got = vae_core.score_and_explain(offline, test, top_k=2)
    scored, explanation = got.scores, got.explanation
    _, member = find_events(test["timestamp"], scored["is_anomaly"].to_numpy(), scored["anomaly_score"].to_numpy())
    shift = member[130]
    assert shift >= 0
    rows = explanation[np.isin(explanation.index, np.flatnonzero(member == shift))]
    per_point = rows.groupby(level=0)
    assert per_point.ngroups >= 5
    assert (per_point["feature"].first() == "mem").all()
    assert per_point["share"].first().nunique() == 1  # one event, one set of shares
    texts = scored.loc[scored.index[member == shift], "top_features"]
    texts = texts[texts != ""]
    # the text carries each point's own value of the event's columns
    assert texts.str.startswith("mem=").all() and texts.nunique() > 1


def test_an_event_that_began_in_the_previous_batch_keeps_its_start_and_columns(offline):
    """A batch cut inside a level shift, scored causally after its context: the shift is one
    event that began before the batch, with the whole series' start, and its flagged points in
    the batch are explained as in the whole series (the context's points included); scored
    without the context, it would start at the batch's first flag and lose those points."""
    causal = offline.with_point_score("last")
    W = causal.config_.window
    test = series_frame(n=300, seed=5, start="2024-02-01", name="a")
    test.loc[120:139, "mem"] += 3.0
    whole = vae_core.score_and_explain(causal, test)
    shift = whole.event_of_row[130]
    (start,) = whole.events.loc[whole.events["event_id"] == shift, "start"]
    first = int(np.flatnonzero(whole.event_of_row == shift)[0])
    cut = first + 4  # the event's first points in the context, the rest in the batch
    assert causal.batch_context_points == 2 * (W - 1)
    batch, context = test.iloc[cut:], test.iloc[cut - causal.batch_context_points : cut]
    got = vae_core.score_and_explain(causal, batch, context=context)
    pd.testing.assert_frame_equal(got.scores, whole.scores.iloc[cut:], rtol=1e-5, atol=1e-5)
    ours = got.event_of_row[130 - cut]
    event = got.events.set_index("event_id").loc[ours]
    assert event["began_before"] and event["start"] == start
    assert not got.events.set_index("event_id").drop(index=ours)["began_before"].any()
    in_batch = np.flatnonzero((got.event_of_row == ours) & got.scores["is_anomaly"].to_numpy(bool))
    assert len(in_batch) >= 5
    want = whole.explanation.loc[in_batch + cut].set_axis(whole.explanation.loc[in_batch + cut].index - cut)
    pd.testing.assert_frame_equal(got.explanation.loc[in_batch], want, rtol=1e-5, atol=1e-5)
    alone = vae_core.score_and_explain(causal, batch)  # no context: the event starts in the batch
    (alone_start,) = alone.events.loc[alone.events["event_id"] == alone.event_of_row[130 - cut], "start"]
    assert alone_start > start and not alone.events["began_before"].any()
