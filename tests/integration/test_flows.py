"""ingest -> train -> score -> retrain on a real Prefect API, a real MLflow server and a real lake."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 12, "kl_warmup_epochs": 3, "elbo_samples": 4, "iwae_samples": 8}


@pytest.fixture(scope="module")
def env(txn_env):
    """A lake with the three transaction batches, and the tracking server's URL."""
    return txn_env


def _train(env, model, **kw):
    from pipelines.flows.train import train

    return train("transactions", model_name=model, exclude_columns=["txn_id"], params={**FAST, **kw.pop("params", {})}, **env, **kw)


def test_train_score_and_rescore_is_a_no_op(env, samples_dir):
    from prefect.client.orchestration import get_client

    from pipelines import tracking
    from pipelines.flows.score import score
    from pipelines.lake import Lake
    from pipelines.reports.store import ReportRef, ReportStore

    lake = Lake(env["lake_url"])
    batches = [r.batch_id for r in lake.list_batches("transactions")]
    trained = _train(env, "txn-e2e", batch_ids=batches[:1])
    assert trained["version"] == "1" and set(trained["aliases"]) == {"champion", "challenger"}
    history = tracking.client().get_metric_history(trained["run_id"], "val_neg_elbo")
    assert len(history) == trained["epochs"] >= 5

    first = score("transactions", model_name="txn-e2e", **env)
    assert [s["batch_id"] for s in first["scored"]] == batches and first["skipped"] == []
    scores = lake.read_scores("transactions", model_version="txn-e2e-v1")
    assert len(scores) == 3 * 1900 and scores["_source_row"].notna().all()
    assert {"neg_elbo", "nll_iwae", "recon_error", "anomaly_score", "p_value", "is_anomaly", "top_features", "psi"} <= set(scores.columns)
    flagged = scores[scores["is_anomaly"]]
    assert (flagged["top_features"].str.len() > 0).all() and (scores.loc[~scores["is_anomaly"], "top_features"] == "").all()

    # the injected anomalies rank far above the rest (labels are only used here, to check)
    rows = lake.read("transactions")
    labels = pd.read_csv(samples_dir / "transactions_labels.csv")
    merged = scores.merge(rows[["batch_id", "_source_row", "txn_id"]], on=["batch_id", "_source_row"]).merge(labels, on="txn_id")
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(merged["is_injected_anomaly"], merged["anomaly_score"]) > 0.9

    again = score("transactions", model_name="txn-e2e", **env)
    assert again["scored"] == [] and again["skipped"] == batches and again["reports_rebuilt"] == []
    pd.testing.assert_frame_equal(lake.read_scores("transactions", model_version="txn-e2e-v1"), scores)

    # a run that died between a batch's scores commit and its report: the next run writes it
    store = ReportStore(lake.url)
    ref = ReportRef("transactions", "txn-e2e-v1", batches[1])
    written = store.report(ref)
    shutil.rmtree(Path(store.folder(ref)))
    healed = score("transactions", model_name="txn-e2e", **env)
    assert healed["scored"] == [] and healed["reports_rebuilt"] == [batches[1]]
    rebuilt = store.report(ref)
    assert rebuilt is not None and rebuilt["items"] == written["items"]  # the same flags, from the stored scores
    assert score("transactions", model_name="txn-e2e", **env)["reports_rebuilt"] == []
    pd.testing.assert_frame_equal(lake.read_scores("transactions", model_version="txn-e2e-v1"), scores)

    async def artifacts():
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["top-anomalies-transactions", "score-summary-transactions"]))
            )

    import asyncio

    kinds = {a.key: a.type for a in asyncio.run(artifacts())}
    assert kinds == {"top-anomalies-transactions": "table", "score-summary-transactions": "markdown"}


def test_promotion_both_ways_and_a_failed_retrain_changes_nothing(env):
    from pipelines import tracking
    from pipelines.flows.retrain import retrain

    weak = _train(env, "txn-promo", params={"max_epochs": 1, "kl_warmup_epochs": 0})
    assert weak["aliases"] == ["challenger", "champion"]

    better = retrain("transactions", model_name="txn-promo", params=FAST, **env)
    assert better["promoted"] and better["challenger_nll"] < better["champion_nll"]
    assert tracking.get_alias_version("txn-promo", "champion") == better["challenger_version"] == "2"

    worse = retrain("transactions", model_name="txn-promo", params={"max_epochs": 1, "kl_warmup_epochs": 0}, **env)
    assert not worse["promoted"] and worse["challenger_nll"] > worse["champion_nll"]
    assert tracking.get_alias_version("txn-promo", "champion") == "2"
    assert tracking.get_alias_version("txn-promo", "challenger") == "3"
    run = tracking.client().get_run(tracking.get_version("txn-promo", "3").run_id)
    assert run.data.tags["promotion.decision"] == "rejected"
    assert run.data.metrics["holdout_nll_champion"] == pytest.approx(worse["champion_nll"])

    with pytest.raises(ValueError, match="latent_dimm"):
        retrain("transactions", model_name="txn-promo", params={"latent_dimm": 3}, **env)
    assert tracking.get_alias_version("txn-promo", "champion") == "2"
    assert tracking.get_alias_version("txn-promo", "challenger") == "3"
    assert len(tracking.client().search_model_versions("name='txn-promo'")) == 3


def test_dask_scoring_gives_the_same_scores(env, tmp_path):
    from pipelines.flows.ingest import ingest
    from pipelines.flows.score import score
    from pipelines.lake import Lake

    trained = _train(env, "txn-dask")
    other = str(tmp_path / "lake")
    # a second lake with the same batches, scored in parallel on a local Dask cluster
    src = Lake(env["lake_url"])
    dst = Lake(other)
    for rec in src.list_batches("transactions"):
        path = tmp_path / f"{rec.batch_id}.parquet"
        src.read("transactions", [rec.batch_id]).drop(columns=["batch_id", "_source_row"]).to_parquet(path)
        ingest("transactions", str(path), lake_url=other)
    serial = score("transactions", model_name="txn-dask", version=trained["version"], **env)
    parallel = score("transactions", model_name="txn-dask", version=trained["version"], workers=2,
                     lake_url=other, tracking_uri=env["tracking_uri"])
    assert len(parallel["scored"]) == 3
    # the workers reported to this API (not to temporary APIs of their own)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["score-partitions"])), sort=FlowRunSort.START_TIME_DESC, limit=1
        )
        tasks = [t for t in client.read_task_runs() if t.flow_run_id == run.id]
    assert sorted((t.name.split("-")[0:2] == ["score", "batch"], t.state_type.value) for t in tasks) == [(True, "COMPLETED")] * 3
    cols = ["_source_row", "neg_elbo", "nll_iwae", "recon_error", "anomaly_score", "is_anomaly"]
    assert serial["scores_key"] == parallel["scores_key"] == f"txn-dask-v{trained['version']}"
    a = src.read_scores("transactions", serial["scores_key"])[cols]
    b = dst.read_scores("transactions", serial["scores_key"])[cols]
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-6)


def test_time_series_dataset_end_to_end(prefect_harness, mlflow_server, tmp_path, samples_dir):
    """A time series scored by the score flow in uneven batches (one holding a single sensor)
    gets, causally by default, the scores of one long series scored at once; the offline mode is
    an option with its own key; a report card draws the expected band."""
    from pipelines.flows.ingest import ingest
    from pipelines.flows.score import score
    from pipelines.flows.train import train
    from pipelines.lake import Lake

    env = {"lake_url": str(tmp_path / "lake"), "tracking_uri": mlflow_server}
    for name in ["sensors_batch1.csv", "sensors_batch2.parquet"]:
        ingest("sensors", str(samples_dir / name), time_column="timestamp", lake_url=env["lake_url"])
    third = pd.read_json(samples_dir / "sensors_batch3.jsonl", lines=True).sort_values("timestamp", kind="stable")
    cut = third["timestamp"].quantile([0.2, 0.25, 0.6]).to_list()
    pieces = [third[third["timestamp"] < cut[0]], third[(third["timestamp"] >= cut[0]) & (third["timestamp"] < cut[1])],
              third[(third["timestamp"] >= cut[1]) & (third["timestamp"] < cut[2])], third[third["timestamp"] >= cut[2]]]
    pieces[1], moved = pieces[1][pieces[1]["sensor"] == "s1"], pieces[1][pieces[1]["sensor"] == "s2"]
    pieces[2] = pd.concat([moved, pieces[2]])  # s2's context for piece 3 lies two batches back
    for i, piece in enumerate(pieces):
        piece.to_parquet(tmp_path / f"piece{i}.parquet", index=False)
        ingest("sensors", str(tmp_path / f"piece{i}.parquet"), time_column="timestamp", lake_url=env["lake_url"])
    lake = Lake(env["lake_url"])
    first = lake.list_batches("sensors")[0].batch_id
    trained = train("sensors", model_name="sensors-e2e", batch_ids=[first], series_column="sensor",
                    params={**FAST, "window": 16}, **env)
    result = score("sensors", model_name="sensors-e2e", **env)
    assert len(result["scored"]) == 6 and result["scores_key"] == "sensors-e2e-v1"
    scores = lake.read_scores("sensors", result["scores_key"])
    assert {"timestamp", "sensor", "anomaly_score", "is_anomaly"} <= set(scores.columns)
    assert len(scores) == len(lake.read("sensors"))
    labels = pd.read_csv(samples_dir / "sensors_labels.csv", parse_dates=["timestamp"])
    merged = scores.merge(labels, on=["timestamp", "sensor"])
    assert len(merged) == len(scores)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(merged["is_injected_anomaly"], merged["anomaly_score"]) > 0.8
    assert trained["aliases"] == ["challenger", "champion"]

    # causal by default: every batch holds the scores of the one long series scored at once
    from pipelines import nodes, tracking

    det, _ = tracking.load_detector(trained["model_uri"])
    both = lake.read("sensors")
    key = ["sensor", "timestamp"]
    whole = pd.concat([both[key], det.with_point_score("last").score(nodes.feature_frame(both))], axis=1)
    stored = scores.merge(whole, on=key, suffixes=("", "_whole"))
    assert len(stored) == len(both)
    np.testing.assert_allclose(stored["anomaly_score"], stored["anomaly_score_whole"], rtol=1e-4, atol=1e-5)
    assert (stored["is_anomaly"] == stored["is_anomaly_whole"]).mean() > 0.999
    # the flow deals in events: counted per batch, and one top entry per event (its peak point)
    assert result["events"] == sum(b["events"] for b in result["scored"]) >= 1
    assert all(b["events"] <= b["anomalies"] for b in result["scored"])
    top = result["top"]
    assert top and all(t["event_series"] in ("s1", "s2") and t["event_start"] <= t["event_end"] for t in top)
    assert len({(t["event_series"], t["event_start"]) for t in top}) == len(top)  # an event once, over batches too
    assert any(t["event_points"] > 1 for t in top) and len(top) < result["anomalies"]
    # the offline mode is an option, under a key of its own; its newest batch has no future to miss
    last = lake.list_batches("sensors")[-1].batch_id
    offline = score("sensors", model_name="sensors-e2e", point_score="mean", batch_ids=[last], **env)
    assert offline["scores_key"] == "sensors-e2e-v1-offline" and len(offline["scored"]) == 1
    newest = both["batch_id"] == last
    off_whole = det.score(nodes.feature_frame(both))["anomaly_score"].to_numpy()[newest.to_numpy()]
    off_stored = lake.read_scores("sensors", offline["scores_key"])
    np.testing.assert_allclose(off_stored.loc[off_stored["batch_id"] == last, "anomaly_score"], off_whole, rtol=1e-4, atol=1e-5)
    pd.testing.assert_frame_equal(lake.read_scores("sensors", result["scores_key"]), scores)  # untouched
    # a report card of an event draws the model's expected band beneath the observed values
    from pipelines.reports.store import ReportStore

    store = ReportStore(lake.url)
    refs = [r for r in store.list("sensors") if r.label == result["scores_key"]]
    with_events = [r for r in refs if store.report(r)["items"]]
    assert with_events and all("expected (mean ± 2 sd)" in store.html(r).decode() for r in with_events)

    # with the flagged past masked, each batch reads twice the context and still equals one long series
    masked = train("sensors", model_name="sensors-e2e-masked", batch_ids=[first], series_column="sensor",
                   params={**FAST, "window": 16, "mask_flagged_past": True}, **env)
    mresult = score("sensors", model_name="sensors-e2e-masked", **env)
    mdet = tracking.load_detector(masked["model_uri"])[0].with_point_score("last")
    assert mdet.context_points == 30
    mwhole = pd.concat([both[key], mdet.score(nodes.feature_frame(both))], axis=1)
    mstored = lake.read_scores("sensors", mresult["scores_key"]).merge(mwhole, on=key, suffixes=("", "_whole"))
    assert len(mstored) == len(both)
    np.testing.assert_allclose(mstored["anomaly_score"], mstored["anomaly_score_whole"], rtol=1e-4, atol=1e-5)
    assert (mstored["is_anomaly"] == mstored["is_anomaly_whole"]).mean() > 0.999
    # a retrain without params keeps the champion's settings, the mask among them
    from pipelines.flows.retrain import retrain

    again = retrain("sensors", model_name="sensors-e2e-masked", recent_batches=2, **env)
    challenger = tracking.load_detector(tracking.model_uri("sensors-e2e-masked", version=again["challenger_version"]))[0]
    assert challenger.config_.mask_flagged_past and challenger.config_.window == 16
    assert challenger.config_.max_epochs == FAST["max_epochs"]


def _threads_in_a_new_thread() -> int:
    import threading

    import torch

    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_streamed_scoring_in_small_record_batches_matches(env, monkeypatch):
    import torch

    from pipelines.flows.score import score
    from pipelines.lake import Lake

    trained = _train(env, "txn-stream")
    lake = Lake(env["lake_url"])
    batch = lake.list_batches("transactions")[0].batch_id
    before = torch.get_num_threads()
    monkeypatch.setenv("VAE_ANOMALY_TORCH_THREADS", "3")  # the score task applies it in its own thread
    try:
        small = score("transactions", model_name="txn-stream", batch_ids=[batch], batch_rows=250, **env)
        assert _threads_in_a_new_thread() == 3
    finally:
        torch.set_num_threads(before)
    whole = Lake(env["lake_url"]).read_scores("transactions", small["scores_key"])
    assert len(whole) == 1900
    det, _ = __import__("pipelines.tracking", fromlist=["x"]).load_detector(trained["model_uri"])
    from pipelines import nodes

    direct = det.score(nodes.feature_frame(lake.read("transactions", [batch]), ["txn_id"]).reset_index(drop=True))
    np.testing.assert_allclose(whole["anomaly_score"], direct["anomaly_score"], rtol=1e-5, atol=1e-6)


def test_drift_past_the_threshold_triggers_a_retrain(env):
    from pipelines import tracking
    from pipelines.flows.score import score
    from pipelines.lake import Lake

    first = Lake(env["lake_url"]).list_batches("transactions")[0].batch_id
    _train(env, "txn-drift", batch_ids=[first])
    calm = score("transactions", model_name="txn-drift", batch_ids=[first], drift_threshold=10.0, retrain_on_drift=True, **env)
    assert not calm["drift"] and calm["retrain"] is None and calm["max_psi"] < 10.0
    drifted = score("transactions", model_name="txn-drift", drift_threshold=0.0, retrain_on_drift=True, **env)
    assert drifted["drift"] and drifted["max_psi"] > 0.0
    assert drifted["retrain"]["challenger_version"] == "2"
    assert tracking.get_alias_version("txn-drift", "challenger") == "2"


def test_scoring_on_an_existing_dask_scheduler(env, tmp_path):
    from distributed import LocalCluster

    from pipelines.flows.ingest import ingest
    from pipelines.flows.score import score
    from pipelines.lake import Lake

    trained = _train(env, "txn-scheduler")
    src = Lake(env["lake_url"])
    rec = src.list_batches("transactions")[0]
    path = tmp_path / "batch.parquet"
    src.read("transactions", [rec.batch_id]).drop(columns=["batch_id", "_source_row"]).to_parquet(path)
    other = str(tmp_path / "lake")
    ingest("transactions", str(path), lake_url=other)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = score("transactions", model_name="txn-scheduler", dask_address=cluster.scheduler_address,
                       lake_url=other, tracking_uri=env["tracking_uri"])
    local = score("transactions", model_name="txn-scheduler", batch_ids=[rec.batch_id], **env)
    a = Lake(other).read_scores("transactions", remote["scores_key"])["anomaly_score"]
    b = src.read_scores("transactions", local["scores_key"])["anomaly_score"]
    assert len(a) == len(b) == 1900 and trained["version"] == remote["model_version"]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-6)


def test_mistyped_or_unsafe_model_names_fail_before_any_work(env):
    """Issue 8 case 10: no training, no run, no registered model, no scores for a bad name."""
    from pipelines import tracking
    from pipelines.flows.retrain import retrain
    from pipelines.flows.score import score
    from pipelines.flows.train import train
    from pipelines.lake import Lake, LakeError
    from pipelines.tracking import TrackingError

    client = tracking.client()
    experiment = tracking.get_or_create_experiment("transactions")

    def runs() -> int:
        return len(client.search_runs([experiment], max_results=1000))

    before = runs()
    with pytest.raises(TrackingError, match="^no registered model 'txn-typo'"):
        retrain("transactions", model_name="txn-typo", params=FAST, **env)
    with pytest.raises(TrackingError, match="^invalid model name '../evil/x'"):
        train("transactions", model_name="../evil/x", params=FAST, **env)
    with pytest.raises(TrackingError, match="^no registered model 'txn-nope'"):
        score("transactions", model_name="txn-nope", **env)
    with pytest.raises(LakeError, match="invalid dataset"):  # a bad dataset name is bad input, not a model error
        score("../../etc", **env)
    assert runs() == before
    assert client.search_registered_models("name='txn-typo'") == []
    assert not any("txn-nope" in key for key in _scores_keys(Lake(env["lake_url"])))


def _scores_keys(lake) -> set[str]:
    scores = lake.read_scores("transactions")
    return set(scores["model_version"]) if len(scores) else set()
