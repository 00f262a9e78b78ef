"""The ``score`` flow: score every batch the model version has not scored yet.

Tasks: ``resolve-model`` -> ``score-batch`` per pending batch (I/O retried; streams the batch
in Arrow record batches so memory stays bounded; writes the scores atomically, so a re-run
skips finished batches and redoes an interrupted one) -> ``publish-score-report`` (a table
artifact of the top anomalies and a markdown summary with the drift figure).

With ``workers`` (a local Dask cluster) or ``dask_address`` (an existing scheduler) the
batches are scored in parallel through prefect-dask's ``DaskTaskRunner``. Scores do not depend
on how rows are split (vae_core shares its Monte Carlo draws across rows), so parallel and
serial runs give the same scores.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Optional

import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import nodes, progress
from pipelines.escaping import markdown as md
from pipelines.flows.common import artifact_key, io_task, lake_for, tracking_for
from pipelines.settings import apply_torch_threads

TOP_N = 20


@lru_cache(maxsize=4)
def _load(model_uri: str, version: str, tracking_uri: Optional[str]):
    """The detector of one model version, loaded once per process (and per Dask worker)."""
    det, _ = tracking_for(tracking_uri).load_detector(model_uri)
    return det


def _frame(batch: pa.RecordBatch) -> pd.DataFrame:
    return batch.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)


def _context(lake, dataset: str, batch_id: str, det) -> pd.DataFrame:
    """The last ``window - 1`` points of each series from the batch ingested just before
    ``batch_id`` (if it comes earlier in time), so a batch's first points are scored from full
    windows, as they would be in one long series. Empty for the first batch."""
    order = [r.batch_id for r in lake.list_batches(dataset)]
    i = order.index(batch_id)
    if i == 0:
        return lake.read(dataset, batch_ids=[batch_id]).iloc[:0]
    prev = lake.read(dataset, batch_ids=[order[i - 1]])
    start = lake.read(dataset, batch_ids=[batch_id], columns=[det.time_column_])[det.time_column_].min()
    prev = prev[prev[det.time_column_] < start].sort_values(det.time_column_, kind="stable")
    by = [det.series_column_] if det.series_column_ else None
    tail = prev.groupby(by, sort=False).tail(det.config_.window - 1) if by else prev.tail(det.config_.window - 1)
    return tail


@io_task("resolve-model")
def resolve_model(tracking_uri: Optional[str], model_name: str, alias: str, version: Optional[str]) -> Optional[dict]:
    """The registry version to score with: ``version`` if given, else the one behind ``alias``
    (None when there is none: not an I/O failure, so not retried)."""
    tracking = tracking_for(tracking_uri)
    if version is None:
        version = tracking.get_alias_version(model_name, alias)
        if version is None:
            return None
    version = str(version)
    return {"version": version, "uri": tracking.model_uri(model_name, version=version), "label": nodes.score_label(model_name, version)}


@io_task("score-batch")
def score_batch(
    dataset: str, batch_id: str, model_uri: str, model_version: str, label: str, lake_url: Optional[str],
    tracking_uri: Optional[str], batch_rows: int,
) -> dict:
    """Score one lake batch and write its scores under ``label``; returns counts, PSI and the top anomalies."""
    apply_torch_threads()
    det = _load(model_uri, model_version, tracking_uri)
    lake = lake_for(lake_url)
    is_ts = getattr(det, "time_column_", None) is not None
    if is_ts:  # windows need their neighbours: a time-series batch is scored whole
        chunks = [lake.read(dataset, batch_ids=[batch_id])]
    else:
        chunks = (_frame(b) for b in lake.iter_record_batches(dataset, [batch_id], batch_size=batch_rows))
    scored_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    drift_acc = nodes.PSI(det.calibration_.scores)
    anomalies, top = 0, None
    # each chunk is scored, written and dropped: memory stays bounded by one chunk, and the
    # batch's scores still become visible at once (or not at all) when the writer closes
    with lake.scores_writer(dataset, label, batch_id) as writer:
        for chunk in chunks:
            keys = chunk[nodes.KEY_COLUMNS].reset_index(drop=True)
            extra = [det.time_column_] + ([det.series_column_] if det.series_column_ else []) if is_ts else []
            rows = nodes.feature_frame(chunk).reset_index(drop=True)
            if is_ts:
                context = nodes.feature_frame(_context(lake, dataset, batch_id, det))
                full = pd.concat([context, rows], ignore_index=True)
                scored = nodes.score_with_reasons(det, full).iloc[len(context):].reset_index(drop=True)
            else:
                scored = nodes.score_with_reasons(det, rows)
            part = pd.concat([keys, chunk[extra].reset_index(drop=True), scored], axis=1)
            part["scored_at"] = scored_at  # model_version (the label) and batch_id live in the path
            writer.write(part)
            drift_acc.update(part["anomaly_score"].to_numpy())
            flagged = part[part["is_anomaly"].to_numpy(bool)]
            anomalies += len(flagged)
            top = (flagged if top is None else pd.concat([top, flagged])).nlargest(TOP_N, "anomaly_score")
            progress.report("rows", f"{dataset} {batch_id}", writer.rows)
        drift = drift_acc.value()
        writer.set_constants({"psi": drift})
    top_records = [] if top is None else top[["batch_id", "_source_row", "anomaly_score", "p_value", "top_features"]].astype(
        {"_source_row": "int64"}
    ).to_dict("records")
    return {"batch_id": batch_id, "rows": writer.rows, "anomalies": anomalies, "psi": drift, "top": top_records}


@task(name="publish-score-report", cache_policy=NO_CACHE)
def publish_report(dataset: str, model_name: str, version: str, results: list[dict], skipped: list[str], drift_threshold: float) -> None:
    """A table artifact of the top anomalies and a markdown summary."""
    top = sorted((r for res in results for r in res["top"]), key=lambda r: -r["anomaly_score"])[:TOP_N]
    if top:
        create_table_artifact(
            key=artifact_key("top-anomalies", dataset), table=top,
            description=f"Top {len(top)} anomalies of {dataset}, model {model_name} v{version}",
        )
    lines = [
        f"# Scoring {md(dataset)} with {md(model_name)} v{md(version)}", "",
        f"{len(results)} batch(es) scored, {len(skipped)} already scored by this version.", "",
        "| batch | rows | anomalies | rate | PSI |", "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        flag = " (drift)" if r["psi"] > drift_threshold else ""
        lines.append(f"| {md(r['batch_id'])} | {r['rows']} | {r['anomalies']} | {r['anomalies'] / max(r['rows'], 1):.2%} | {r['psi']:.3f}{flag} |")
    create_markdown_artifact(key=artifact_key("score-summary", dataset), markdown="\n".join(lines))


def _task_runner(workers: Optional[int], dask_address: Optional[str]):
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"})


@flow(name="score")
def score(
    dataset: str,
    model_name: Optional[str] = None,
    alias: str = "champion",
    version: Optional[str] = None,
    batch_ids: Optional[list[str]] = None,
    batch_rows: int = 65536,
    workers: Optional[int] = None,
    dask_address: Optional[str] = None,
    drift_threshold: float = 0.25,
    retrain_on_drift: bool = False,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Score the batches of ``dataset`` not yet scored by the chosen model version.

    ``workers``/``dask_address`` (or ``VAE_ANOMALY_DASK_ADDRESS``) run the batches on Dask.
    When a batch's PSI against the calibration scores exceeds ``drift_threshold`` and
    ``retrain_on_drift`` is set, the ``retrain`` flow runs afterwards.
    """
    from pipelines.settings import get_settings

    log = get_run_logger()
    model_name = model_name or dataset
    dask_address = dask_address or get_settings().dask_address
    model = resolve_model(tracking_uri, model_name, alias, version)
    if model is None:
        raise tracking_for(tracking_uri).TrackingError(
            f"model {model_name!r} has no version with alias {alias!r}; run `vae-anomaly train` first"
        )
    lake = lake_for(lake_url)
    wanted = batch_ids or [r.batch_id for r in lake.list_batches(dataset)]
    done = lake.scored_batches(dataset, model["label"])
    pending = [b for b in wanted if b not in done]
    skipped = [b for b in wanted if b in done]
    args = dict(model_uri=model["uri"], model_version=model["version"], label=model["label"], lake_url=lake_url, tracking_uri=tracking_uri, batch_rows=batch_rows)
    if pending and (workers or dask_address):
        results = _score_parallel(dataset, pending, args, workers, dask_address)
    else:
        results = []
        for i, b in enumerate(pending, 1):
            results.append(score_batch(dataset, b, **args))
            progress.report("batches", dataset, i, len(pending))
    publish_report(dataset, model_name, model["version"], results, skipped, drift_threshold)
    max_psi = max((r["psi"] for r in results), default=None)
    drift = bool(max_psi is not None and max_psi > drift_threshold)
    summary = {
        "dataset": dataset, "model_name": model_name, "model_version": model["version"], "scores_key": model["label"],
        "scored": [{k: r[k] for k in ("batch_id", "rows", "anomalies", "psi")} for r in results],
        "skipped": skipped, "rows": sum(r["rows"] for r in results), "anomalies": sum(r["anomalies"] for r in results),
        "max_psi": max_psi, "drift": drift, "retrain": None,
        "top": sorted((t for r in results for t in r["top"]), key=lambda t: -t["anomaly_score"])[:TOP_N],
    }
    log.info("scored %d batch(es), %d rows, %d anomalies; skipped %d", len(results), summary["rows"], summary["anomalies"], len(skipped))
    if drift and retrain_on_drift:
        from pipelines.flows.retrain import retrain

        log.info("PSI %.3f > %.3f: retraining", max_psi, drift_threshold)
        summary["retrain"] = retrain(dataset, model_name=model_name, lake_url=lake_url, tracking_uri=tracking_uri)
    return summary


def _score_parallel(dataset: str, pending: list[str], args: dict, workers: Optional[int], dask_address: Optional[str]) -> list[dict]:
    """The batches as a Dask-run subflow, one task per batch."""
    @flow(name="score-partitions", task_runner=_task_runner(workers, dask_address))
    def score_partitions() -> list[dict]:
        futures = [score_batch.submit(dataset, b, **args) for b in pending]
        out = []
        for i, f in enumerate(futures, 1):
            out.append(f.result())
            progress.report("batches", dataset, i, len(pending))
        return out

    return score_partitions()
