"""The review loop on real flows: reports from a real score run, verdicts, a threshold from them,
and a retrain that uses them (real Prefect API, real MLflow server, real Delta lake)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 12, "kl_warmup_epochs": 3, "elbo_samples": 4, "iwae_samples": 8}


@pytest.fixture(scope="module")
def env(txn_env, samples_dir):
    from pipelines.flows.ingest import ingest
    from pipelines.flows.score import score
    from pipelines.flows.train import train

    lake_url = txn_env["lake_url"]
    ingest("sensors", str(samples_dir / "sensors_batch1.csv"), time_column="timestamp", lake_url=lake_url)
    ingest("sensors", str(samples_dir / "sensors_batch2.parquet"), time_column="timestamp", lake_url=lake_url)
    env = dict(txn_env)
    train("transactions", model_name="rv", exclude_columns=["txn_id"], params=FAST, **env)
    scored = score("transactions", model_name="rv", **env)
    return {**env, "scored": scored}


def _labels(env, samples_dir) -> pd.DataFrame:
    from pipelines.lake import Lake

    rows = Lake(env["lake_url"]).read("transactions", columns=["batch_id", "_source_row", "txn_id"])
    return rows.merge(pd.read_csv(samples_dir / "transactions_labels.csv"), on="txn_id")


def test_each_scored_batch_has_a_report_with_its_parts(env):
    from pipelines.reports.store import ReportRef, ReportStore

    store = ReportStore(env["lake_url"])
    for batch in env["scored"]["scored"]:
        ref = ReportRef("transactions", "rv-v1", batch["batch_id"])
        report = store.report(ref)
        html = store.html(ref).decode()
        assert batch["report"] and Path(batch["report"]).exists()
        assert report["summary"]["rows"] == batch["rows"] and report["summary"]["flagged"] == batch["anomalies"]
        assert report["model"]["version"] == "1" and "champion" in report["model"]["aliases"] and report["model"]["run_id"]
        cards = re.findall(r'<article class="card".*?</article>', html, flags=re.S)
        assert len(cards) == len(report["items"]) == min(batch["anomalies"], 100)
        assert all("<svg" in c for c in cards)  # a plot per card
        assert all(i["features"] and i["margin"] > 0 for i in report["items"])
        assert "<svg" in html.split('<article', 1)[0]  # the score distribution


def test_time_series_reports_group_flags_into_events(env):
    from pipelines.flows.score import score
    from pipelines.flows.train import train
    from pipelines.lake import Lake
    from pipelines.reports.store import ReportStore

    lake = Lake(env["lake_url"])
    first, second = [r.batch_id for r in lake.list_batches("sensors")]
    train("sensors", model_name="rv-ts", batch_ids=[first], series_column="sensor", params=FAST,
          lake_url=env["lake_url"], tracking_uri=env["tracking_uri"])
    result = score("sensors", model_name="rv-ts", batch_ids=[second], lake_url=env["lake_url"], tracking_uri=env["tracking_uri"])
    store = ReportStore(env["lake_url"])
    report = store.report(store.list("sensors")[0])
    assert report["summary"]["flagged"] == result["scored"][0]["anomalies"] > 0
    assert {i["kind"] for i in report["items"]} == {"event"}
    assert report["summary"]["n_items"] < report["summary"]["flagged"]  # events, not points
    assert all(i["series"] in {"s1", "s2", "s3"} and i["start"] <= i["peak"] <= i["end"] for i in report["items"])
    assert sum(i["flagged_points"] for i in report["items"]) <= report["summary"]["flagged"]


def test_threshold_from_reviews_then_retrain_uses_the_verdicts(env, samples_dir):
    from pipelines import tracking
    from pipelines.flows.retrain import retrain
    from pipelines.flows.score import score
    from pipelines.flows.threshold import threshold
    from pipelines.lake import Lake
    from pipelines.reports.store import ReportStore
    from pipelines.review.app import record_verdict
    from pipelines.review.threshold import best_f1_threshold

    lake = Lake(env["lake_url"])
    store = ReportStore(env["lake_url"])
    truth = _labels(env, samples_dir).set_index(["batch_id", "_source_row"])["is_injected_anomaly"]
    batches = [r.batch_id for r in lake.list_batches("transactions")]
    reviewed = []
    for b in batches[:2]:  # review the first two batches' flags from the label file
        for item in store.report(next(r for r in store.list("transactions") if r.batch_id == b))["items"]:
            real = bool(truth.loc[(b, item["source_row"])])
            record_verdict(store, "transactions", "rv-v1", b, item["key"], "anomaly" if real else "false_alarm", "test")
            reviewed.append((item["score"], real, b, item["source_row"]))
    scores, real = np.array([r[0] for r in reviewed]), np.array([r[1] for r in reviewed])
    assert real.any() and (~real).any()

    result = threshold("transactions", model_name="rv", promote=True, lake_url=env["lake_url"], tracking_uri=env["tracking_uri"])
    det = tracking.load_detector("models:/rv@champion")[0]
    expected = best_f1_threshold(scores, real, result["previous"], det.calibration_.scores)
    assert result["version"] == "2" and result["threshold"] == pytest.approx(expected.threshold)
    assert det.threshold_ == pytest.approx(expected.threshold) and det.config_.threshold_method == "fixed"
    assert result["precision_after"] >= result["precision_before"]

    # the flags change exactly as computed: same weights, so the same scores against the new cut
    score("transactions", model_name="rv", batch_ids=[batches[2]], **{k: env[k] for k in ("lake_url", "tracking_uri")})
    old = lake.read_scores("transactions", "rv-v1").query("batch_id == @batches[2]").sort_values("_source_row")
    new = lake.read_scores("transactions", "rv-v2").query("batch_id == @batches[2]").sort_values("_source_row")
    np.testing.assert_allclose(new["anomaly_score"].to_numpy(), old["anomaly_score"].to_numpy(), rtol=1e-6)
    assert new["is_anomaly"].tolist() == (old["anomaly_score"] > expected.threshold).tolist()

    # retrain: confirmed anomalies of the reviewed batches are left out, false alarms kept as normal
    out = retrain("transactions", model_name="rv", recent_batches=3, params=FAST, **{k: env[k] for k in ("lake_url", "tracking_uri")})
    confirmed = int(real.sum())
    assert out["reviewed_items"] == len(reviewed) and out["rows_confirmed_left_out"] == confirmed
    # rows the champion (v2) flags but a reviewer called false alarms stay in; v2 has v1's scores
    kept = sum(1 for s, r, *_ in reviewed if not r and s > expected.threshold)
    assert out["rows_kept_by_review"] == kept
    assert out["rows_train"] + out["rows_holdout"] + out["rows_excluded"] + confirmed == 3 * 1900
    run = tracking.client().get_run(tracking.get_version("rv", out["challenger_version"]).run_id)
    assert run.data.tags["rows_confirmed_left_out"] == str(confirmed)

    # both models on the reviewed rows: precision at the champion's alert count, recorded with the decision
    rows = lake.read("transactions", batch_ids=batches[:2])
    rows = rows.set_index(["batch_id", "_source_row"]).loc[[(b, r) for *_, b, r in reviewed]].reset_index()
    features = rows.drop(columns=["batch_id", "_source_row"])
    champ = tracking.load_detector(f"models:/rv/{out['champion_version']}")[0].score(features)
    chall = tracking.load_detector(f"models:/rv/{out['challenger_version']}")[0].score(features)
    k = int(champ["is_anomaly"].sum())
    at_k = {name: real[np.argsort(-s["anomaly_score"].to_numpy(), kind="stable")[:k]].mean() for name, s in
            (("champion", champ), ("challenger", chall))}
    figures = out["reviewed_comparison"]
    assert k > 0 and figures["reviewed_alerts_k"] == k and figures["reviewed_compared_items"] == len(reviewed)
    for name in ("champion", "challenger"):
        assert figures[f"reviewed_precision_at_k_{name}"] == pytest.approx(at_k[name])
        assert run.data.metrics[f"reviewed_precision_at_k_{name}"] == pytest.approx(at_k[name])
    assert run.data.metrics["reviewed_alerts_k"] == k
    nll_ok = out["challenger_nll"] <= out["champion_nll"]
    assert out["promoted"] == (nll_ok and at_k["challenger"] >= at_k["champion"])
    assert "reviewed items: precision at the champion's" in run.data.tags["promotion.rule"]
    assert run.data.tags["promotion.decision"] == ("promoted" if out["promoted"] else "rejected")

    # the precision of v1's flags from the verdicts, on v1's run (anomaly confirmed, false_alarm not)
    v1 = tracking.client().get_run(tracking.get_version("rv", "1").run_id).data.metrics
    assert v1["reviewed_items"] == len(reviewed) and v1["reviewed_precision"] == pytest.approx(real.mean())
