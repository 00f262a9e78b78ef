"""Pure pipeline nodes: drift (PSI), explanations as text, hold-out split, promotion rule."""
import numpy as np
import pandas as pd
import pytest

from pipelines import nodes
from vae_core import DataError, ScoredBatch


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20000)
    same = nodes.psi(ref, rng.normal(size=20000))
    small = nodes.psi(ref, rng.normal(0.2, 1, size=20000))
    large = nodes.psi(ref, rng.normal(1.0, 1, size=20000))
    assert same < 0.01 < small < 0.1 < 0.25 < large


def test_psi_matches_a_hand_computed_value():
    expected = np.arange(100.0)  # deciles at 9.9, 19.8, ...
    actual = np.concatenate([np.full(50, 5.0), np.full(50, 95.0)])  # half in the first decile, half in the last
    e = np.full(10, 0.1)
    a = np.array([0.5] + [1e-4] * 8 + [0.5])
    assert nodes.psi(expected, actual) == pytest.approx(np.sum((a - e) * np.log(a / e)), rel=1e-9)


def test_feature_frame_drops_bookkeeping_and_names_unknown_exclusions():
    frame = pd.DataFrame({"a": [1], "txn_id": ["x"], "batch_id": ["b"], "_source_row": [0]})
    assert list(nodes.feature_frame(frame, ["txn_id"]).columns) == ["a"]
    with pytest.raises(DataError, match="nope"):
        nodes.feature_frame(frame, ["nope"])


def test_holdout_split_is_seeded_and_takes_the_latest_times():
    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=100, freq="h"), "v": np.arange(100)})
    train, hold = nodes.holdout_split(frame, 0.2, seed=0, time_column="t")
    assert len(hold) == 20 and hold["t"].min() > train["t"].max()
    a = nodes.holdout_split(frame, 0.3, seed=1)[1]
    b = nodes.holdout_split(frame, 0.3, seed=1)[1]
    assert a.index.equals(b.index) and 15 < len(a) < 45


def test_promotion_rule():
    assert nodes.promotion_decision(10.0, 9.5, 0.0)[0]
    assert not nodes.promotion_decision(10.0, 10.5, 0.0)[0]
    assert nodes.promotion_decision(10.0, 10.5, 1.0)[0]
    assert not nodes.promotion_decision(10.0, float("nan"), 0.0)[0]
    promoted, rule = nodes.promotion_decision(10.0, 9.0, 0.0)
    assert "challenger" in rule and "9.0000" in rule and "10.0000" in rule


def test_psi_accumulated_over_chunks_equals_psi_of_the_whole():
    rng = np.random.default_rng(3)
    ref, actual = rng.normal(size=5000), rng.normal(0.4, 1.2, size=7001)
    acc = nodes.PSI(ref)
    for part in np.array_split(actual, 7):
        acc.update(part)
    assert acc.value() == pytest.approx(nodes.psi(ref, actual), rel=1e-12)
    assert acc.value() > 0.05  # a real shift, not an empty comparison
    assert np.isnan(nodes.PSI(ref).value()) and np.isnan(nodes.psi(np.array([]), actual))


def test_a_challenger_takes_the_champions_settings_but_its_seed_and_threshold():
    """Retrain fits with what the champion was trained with (a window, the precision mode), not the
    defaults; its seed and threshold rule (which reviews may have moved) stay the flow's own."""
    from vae_core import TimeSeriesVAEDetector
    from vae_core.config import TimeSeriesConfig

    champion = TimeSeriesVAEDetector(seed=7, window=16, max_epochs=3, mask_flagged_past=True, point_score="last")
    champion.config_ = champion._resolve().model_copy(update={"threshold_method": "fixed", "fixed_threshold": 9.0})
    params = nodes.challenger_params(champion, {"max_epochs": 5})
    assert params["window"] == 16 and params["mask_flagged_past"] and params["point_score"] == "last"
    assert params["max_epochs"] == 5  # what the retrain passes wins
    assert not set(nodes.NOT_INHERITED) & set(params)
    challenger = TimeSeriesVAEDetector(seed=0, **params)._resolve()
    defaults = TimeSeriesConfig()
    assert challenger.seed == 0 and challenger.threshold_method == defaults.threshold_method
    assert challenger.fixed_threshold is None
    assert nodes.challenger_params(None, {"max_epochs": 5}) == {"max_epochs": 5}
    assert nodes.challenger_params(None, None) is None


def test_top_anomalies_of_a_time_series_are_one_per_event():
    """A table's top rows are its highest flagged rows; a time series' are each event's peak
    point in the batch, with the event's series, start, end and points."""
    part = pd.DataFrame({"_source_row": np.arange(8), "anomaly_score": [1.0, 9, 8, 7, 0, 5, 6, 2],
                         "is_anomaly": [False, True, True, True, False, True, True, False]})
    table = ScoredBatch.of_rows(part, pd.DataFrame())
    assert nodes.top_anomalies(part, table, 3)["_source_row"].tolist() == [1, 2, 3]
    times = pd.date_range("2024-03-01", periods=2, freq="h", tz="UTC")
    events = pd.DataFrame({"event_id": [0, 1], "series": ["s1", "s2"], "start": times, "end": times + pd.Timedelta("5min"),
                           "points": [3, 2]})
    member = np.array([-1, 0, 0, 0, -1, 1, 1, -1])
    series = ScoredBatch(part, pd.DataFrame(), None, events, member, groups_events=True)
    top = nodes.top_anomalies(part, series, 5)
    assert top["_source_row"].tolist() == [1, 6]
    assert top["event_series"].tolist() == ["s1", "s2"] and top["event_points"].tolist() == [3, 2]
    assert top["event_start"].tolist() == ["2024-03-01T00:00:00+00:00", "2024-03-01T01:00:00+00:00"]
    assert nodes.top_anomalies(part, series, 1)["_source_row"].tolist() == [1]


def test_time_text_keeps_every_digit_of_a_numeric_time():
    from pipelines.reports.build import time_text

    assert time_text(1709251200.0) != time_text(1709251260.0)
    assert (time_text(1709251260.5), time_text(np.float32(3.0)), time_text(np.int64(42))) == ("1709251260.5", "3", "42")
    assert time_text(pd.Timestamp("2024-03-01 01:00", tz="UTC")) == "2024-03-01T01:00:00+00:00"


def test_the_flow_lists_an_event_once_over_batches_at_its_highest_peak():
    from pipelines.flows.score import BatchScores, top_over_batches

    def row(batch, score, start=None):
        event = {} if start is None else {"event_series": "s1", "event_start": start, "event_end": "e", "event_points": 3}
        return {"batch_id": batch, "_source_row": 0, "anomaly_score": score, "p_value": 0.01, "top_features": "", **event}

    b1 = BatchScores("b1", 10, 3, 0.0, [row("b1", 5.0, "t0"), row("b1", 4.0, "t1")], events=2, continued=0)
    b2 = BatchScores("b2", 10, 2, 0.0, [row("b2", 7.0, "t1"), row("b2", 1.0, "t2")], events=1, continued=1)
    assert [(t["batch_id"], t["event_start"]) for t in top_over_batches([b1, b2])] == [("b2", "t1"), ("b1", "t0"), ("b2", "t2")]
    tables = [BatchScores("b", 10, 2, 0.0, [row("b", 2.0), row("b", 3.0)])]
    assert [t["anomaly_score"] for t in top_over_batches(tables)] == [3.0, 2.0]  # rows of a table: all kept


def test_scores_keys_name_the_version_and_the_offline_mode_round_trips():
    key = nodes.score_label("transactions", "3")
    assert key == "transactions-v3"
    assert nodes.mode_scores_key(key, "last") == key  # causal scores: the plain key
    offline = nodes.mode_scores_key(key, "mean")
    assert offline == key + nodes.OFFLINE_SUFFIX
    assert nodes.point_score_of(key) == "last" and nodes.point_score_of(offline) == "mean"
