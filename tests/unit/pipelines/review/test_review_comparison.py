"""pipelines.review.comparison: challenger vs champion at the champion's alert count on reviewed items."""
import numpy as np
import pandas as pd
import pytest

from pipelines.review.comparison import both_item_scores, combined_decision, compare_reviewed, item_scores, precision_at_k
from pipelines.review.labels import ITEM_COLUMNS


def test_precision_at_k_ranks_by_score():
    scores = np.array([0.1, 5.0, 3.0, 4.0, 0.2])
    confirmed = np.array([True, True, False, True, False])
    assert precision_at_k(scores, confirmed, 2) == 1.0  # 5.0 and 4.0
    assert precision_at_k(scores, confirmed, 3) == pytest.approx(2 / 3)
    assert precision_at_k(scores, confirmed, 0) is None


def test_compare_at_the_champions_alert_count():
    confirmed = np.array([True, True, False, False] * 3)
    champion = np.array([1.0, 2.0, 3.0, 4.0] * 3)  # ranks the false alarms first
    challenger = np.array([4.0, 3.0, 2.0, 1.0] * 3)  # ranks the confirmed ones first
    flags = champion > 2.5  # the champion flags 6 of 12
    r = compare_reviewed(champion, flags, challenger, confirmed)
    assert (r.items, r.confirmed, r.k) == (12, 6, 6) and r.applies
    assert r.champion_precision == 0.0 and r.challenger_precision == 1.0
    assert r.metrics()["reviewed_precision_at_k_challenger"] == 1.0 and r.metrics()["reviewed_alerts_k"] == 6


def test_a_challenger_worse_on_reviewed_items_is_not_promoted():
    confirmed = np.array([True, False] * 6)
    good, bad = np.where(confirmed, 9.0, 1.0), np.where(confirmed, 1.0, 9.0)
    worse = compare_reviewed(good, good > 5, bad, confirmed)
    promoted, rule = combined_decision(True, "promoted: nll", worse)
    assert not promoted and rule.startswith("kept the champion") and "challenger 0% vs champion 100%" in rule
    assert combined_decision(True, "promoted: nll", compare_reviewed(bad, bad > 5, good, confirmed))[0]
    assert not combined_decision(False, "kept: nll", compare_reviewed(bad, bad > 5, good, confirmed))[0]  # -log p still counts
    few = compare_reviewed(good[:4], good[:4] > 5, bad[:4], confirmed[:4])  # too few to veto
    assert not few.applies and combined_decision(True, "promoted: nll", few)[0]
    none_flagged = compare_reviewed(good, np.zeros(12, bool), bad, confirmed)
    assert none_flagged.k == 0 and combined_decision(True, "promoted: nll", none_flagged)[0]


def test_item_scores_of_table_rows(fitted, frame):
    rows = frame.iloc[:6].assign(batch_id="b1", _source_row=range(6)).reset_index(drop=True)
    rows.loc[2, "amount"] = 50_000.0
    items = pd.DataFrame([{"key": f"k{i}", "batch_id": "b1", "source_row": i, "verdict": "anomaly"} for i in (2, 4, 9)],
                         columns=ITEM_COLUMNS)
    score, flag, found = item_scores(fitted, rows, items, None, None)
    expected = fitted.score(rows.drop(columns=["batch_id", "_source_row"]))
    assert found.tolist() == [True, True, False]  # row 9 is not in the rows
    np.testing.assert_allclose(score[:2], expected["anomaly_score"].to_numpy()[[2, 4]])
    assert flag[0] and score[0] > score[1]


def test_item_scores_of_series_events_take_the_peak_of_their_span():
    from pipelines.reports import BatchFacts, build_report, detector_facts
    from vae_core import TimeSeriesVAEDetector

    rng = np.random.default_rng(0)
    t = pd.date_range("2026-01-01", periods=480, freq="5min", tz="UTC")

    def frame(shift: bool):
        parts = []
        for name, phase in (("s1", 0.0), ("s2", 1.0)):
            v = np.sin(np.arange(len(t)) * 2 * np.pi / 96 + phase) + rng.normal(scale=0.05, size=len(t))
            v[300:330] += 4.0 if shift and name == "s2" else 0.0
            parts.append(pd.DataFrame({"ts": t, "host": name, "load": v}))
        return pd.concat(parts, ignore_index=True)

    det = TimeSeriesVAEDetector(seed=0, window=16, max_epochs=6).fit(frame(False), time_column="ts", series_column="host")
    batch = frame(True)
    scores = det.score(batch).assign(_source_row=np.arange(len(batch)))
    report = build_report(scores, batch, None, detector_facts(det, "load", "1"), BatchFacts(dataset="h", batch_id="b2", rows=len(batch)))
    items = pd.DataFrame([{**e, "batch_id": "b2", "verdict": "anomaly"} for e in report["items"]], columns=ITEM_COLUMNS)
    rows = batch.assign(batch_id="b2", _source_row=np.arange(len(batch)))
    score, flag, found = item_scores(det, rows, items, "ts", "host")
    assert len(items) >= 1 and found.all() and flag.all()
    for i, e in enumerate(report["items"]):
        span = (batch["host"] == e["series"]) & (batch["ts"] >= pd.Timestamp(e["start"])) & (batch["ts"] <= pd.Timestamp(e["end"]))
        assert score[i] == pytest.approx(scores.loc[span.to_numpy(), "anomaly_score"].max())


def test_series_items_are_judged_in_the_mode_their_scores_were_made_in():
    """A report of causal scores (the score flow's default, key ``<model>-v<N>``) has its items
    scored causally by both models; one of offline scores (``-offline``) offline; a table's
    items as they are."""
    from vae_core import TimeSeriesVAEDetector

    rng = np.random.default_rng(1)
    t = pd.date_range("2026-01-01", periods=400, freq="5min", tz="UTC")
    v = np.sin(np.arange(len(t)) * 2 * np.pi / 96) + rng.normal(scale=0.05, size=len(t))
    train = pd.DataFrame({"ts": t, "load": v})
    champion = TimeSeriesVAEDetector(seed=0, window=16, max_epochs=4).fit(train, time_column="ts")
    challenger = TimeSeriesVAEDetector(seed=1, window=16, max_epochs=4).fit(train, time_column="ts")
    batch = train.assign(load=v + np.where(np.arange(len(t)) == 200, 3.0, 0.0))
    rows = batch.assign(batch_id="b1", _source_row=np.arange(len(batch)))
    item = {"kind": "event", "batch_id": "b1", "verdict": "anomaly", "series": None,
            "start": str(t[195]), "end": str(t[210])}
    items = pd.DataFrame([{**item, "key": "causal", "label": "load-v1"}, {**item, "key": "offline", "label": "load-v1-offline"}],
                         columns=ITEM_COLUMNS)
    s = both_item_scores(champion, challenger, rows, items, "ts", None)
    span = slice(195, 211)
    for i, mode in enumerate(("last", "mean")):
        for name, det in (("champion", champion), ("challenger", challenger)):
            want = det.with_point_score(mode).score(batch)["anomaly_score"].to_numpy()[span].max()
            assert s[name][i] == pytest.approx(want), (name, mode)
    assert s["found"].all() and s["champion"][0] != pytest.approx(s["champion"][1])  # the modes differ
