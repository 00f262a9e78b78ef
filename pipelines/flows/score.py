"""The ``score`` flow: score every batch the model version has not scored yet.

Tasks: ``list-batches`` (a bad dataset name fails here) -> ``resolve-model`` (one registry call:
a mistyped model name fails here, before any work) -> ``plan-scoring`` (the batches this
version has not scored) -> ``score-batch`` per pending batch (I/O retried; streams the batch
in Arrow record batches so memory stays bounded; writes the scores atomically, so a re-run
skips finished batches and redoes an interrupted one) -> ``publish-score-report`` (a table
artifact of the top anomalies and a markdown summary with the drift figure).

With ``workers`` (a local Dask cluster) or ``dask_address`` (an existing scheduler) the
batches are scored in parallel through prefect-dask's ``DaskTaskRunner``. Scores do not depend
on how rows are split (vae_core shares its Monte Carlo draws across rows), so parallel and
serial runs give the same scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import defaults, nodes, progress
from pipelines.escaping import markdown as md
from pipelines.flows.common import artifact_key, io_task, lake_for, tracking_for
from pipelines.flows.report import rebuild_report
from pipelines.flows.scoring import ScoreModel, resolve_model, resolve_point_score, scored_chunks, scoring_detector
from pipelines.lake import BATCH_COLUMN, ROW_COLUMN
from pipelines.reports.batch import ReportParts, write_batch_report
from pipelines.reports.store import ReportStore
from pipelines.settings import apply_torch_threads

TOP_N = 20
TOP_COLUMNS = [BATCH_COLUMN, ROW_COLUMN, "anomaly_score", "p_value", "top_features"]


@dataclass(frozen=True)
class ScorePlan:
    """The wanted batches split into those to score and those this version scored already, and
    which of the latter have no report (a run that died between its commit and its report)."""

    pending: list[str]
    skipped: list[str]
    unreported: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchScores:
    """One scored batch: counts, drift against the calibration scores, and its top anomalies."""

    batch_id: str
    rows: int
    anomalies: int
    psi: float
    top: list[dict]
    report: Optional[str] = None  # path of the batch's report.html (None if it could not be written)
    events: Optional[int] = None  # a time series' events that began in the batch
    continued: Optional[int] = None  # and those that began in an earlier batch and go on in it

    def summary(self) -> dict:
        """The batch's entry in the flow's ``scored`` list."""
        return {"batch_id": self.batch_id, "rows": self.rows, "anomalies": self.anomalies, "events": self.events,
                "continued": self.continued, "psi": self.psi, "report": self.report}


@io_task("list-batches")
def list_batches(lake_url: Optional[str], dataset: str, batch_ids: Optional[list[str]]) -> list[str]:
    """``batch_ids``, or every committed batch of ``dataset`` in ingest order (a bad dataset name
    fails here, as bad input, before the registry is asked)."""
    records = {r.batch_id: r for r in lake_for(lake_url).list_batches(dataset)}
    wanted = list(batch_ids) if batch_ids else list(records)
    # a batch whose rows were all quarantined has nothing to score: skipped, never a blocker
    return [b for b in wanted if b not in records or records[b].rows_accepted]


@io_task("plan-scoring")
def plan_scoring(lake_url: Optional[str], dataset: str, wanted: list[str], scores_key: str) -> ScorePlan:
    """Which of ``wanted`` have no scores under ``scores_key`` yet, and which scored ones no report."""
    lake = lake_for(lake_url)
    done = lake.scored_batches(dataset, scores_key)
    reported = {r.batch_id for r in ReportStore(lake.url).list(dataset, scores_key)}
    skipped = [b for b in wanted if b in done]
    return ScorePlan([b for b in wanted if b not in done], skipped, [b for b in skipped if b not in reported])


@io_task("score-batch")
def score_batch(
    dataset: str, batch_id: str, model: ScoreModel, lake_url: Optional[str], tracking_uri: Optional[str], batch_rows: int,
) -> BatchScores:
    """Score one lake batch and write its scores under ``model.scores_key``."""
    apply_torch_threads()
    det = scoring_detector(model, tracking_uri)
    lake = lake_for(lake_url)
    scored_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    drift_acc = nodes.PSI(det.calibration_.scores)
    anomalies, n_events, n_continued, top = 0, None, None, None
    parts = ReportParts(det)
    # each chunk is scored, written and dropped: memory stays bounded by one chunk, and the
    # batch's scores still become visible at once (or not at all) when the writer closes
    with lake.scores_writer(dataset, model.scores_key, batch_id) as writer:
        for chunk in scored_chunks(lake, dataset, batch_id, det, batch_rows):
            part = chunk.part
            part["scored_at"] = scored_at  # the scores key and batch_id live in the path
            writer.write(part)
            parts.add(chunk)
            drift_acc.update(part["anomaly_score"].to_numpy())
            anomalies += int(part["is_anomaly"].to_numpy(bool).sum())
            if chunk.scored.groups_events:  # a batch with events is one chunk
                n_events, n_continued = chunk.scored.new_events, chunk.scored.continued_events
            chunk_top = nodes.top_anomalies(part, chunk.scored, TOP_N)
            top = (chunk_top if top is None else pd.concat([top, chunk_top])).nlargest(TOP_N, "anomaly_score")
            progress.report("rows", f"{dataset} {batch_id}", writer.rows)
        drift = drift_acc.value()
        writer.set_constants({"psi": drift})
    report = _write_report(lake, dataset, batch_id, model, det, parts, drift, tracking_uri)
    columns = TOP_COLUMNS + [c for c in nodes.EVENT_TOP_COLUMNS if top is not None and c in top.columns]
    top_records = [] if top is None else top[columns].astype({ROW_COLUMN: "int64"}).to_dict("records")
    return BatchScores(batch_id, writer.rows, anomalies, drift, top_records, report, n_events, n_continued)


def _write_report(lake, dataset: str, batch_id: str, model: ScoreModel, det, parts: ReportParts, psi: float,
                  tracking_uri: Optional[str]) -> Optional[str]:
    """The batch's report beside its scores, logged to the version's MLflow run. The scores are
    committed already: a failed report is a warning (rebuild it with `vae-anomaly report`)."""
    try:
        path = write_batch_report(lake, dataset, batch_id, model.scores_key, det, model.info, parts, psi)
        if model.info.run_id:
            tracking_for(tracking_uri).log_report(model.info.run_id, path, f"reports/{dataset}/{batch_id}")
    except Exception as exc:  # noqa: BLE001 - the scores stand; say what failed and how to redo it
        get_run_logger().warning("report of %s batch %s failed (%s); rebuild it with `vae-anomaly report %s`",
                                 dataset, batch_id, exc, dataset)
        return None
    return path


@task(name="publish-score-report", cache_policy=NO_CACHE)
def publish_report(
    dataset: str, model_name: str, version: str, results: list[BatchScores], skipped: list[str], drift_threshold: float,
) -> None:
    """A table artifact of the top anomalies and a markdown summary."""
    top = top_over_batches(results)
    if top:
        create_table_artifact(
            key=artifact_key("top-anomalies", dataset), table=top,
            description=f"Top {len(top)} anomalies of {dataset}, model {model_name} v{version}",
        )
    lines = [
        f"# Scoring {md(dataset)} with {md(model_name)} v{md(version)}", "",
        f"{len(results)} batch(es) scored, {len(skipped)} already scored by this version.", "",
        "| batch | rows | anomalies | events | rate | PSI | report |", "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        flag = " (drift)" if r.psi > drift_threshold else ""
        events = "" if r.events is None else r.events if not r.continued else f"{r.events} (+{r.continued} continued)"
        lines.append(f"| {md(r.batch_id)} | {r.rows} | {r.anomalies} | {events} | {r.anomalies / max(r.rows, 1):.2%} "
                     f"| {r.psi:.3f}{flag} | {_report_link(r.report)} |")
    create_markdown_artifact(key=artifact_key("score-summary", dataset), markdown="\n".join(lines))


def _report_link(path: Optional[str]) -> str:
    """A markdown link to a report (a file:// URI for a local lake; names in it passed the lake's rule)."""
    if path is None:
        return "not written (see the log)"
    uri = Path(path).as_uri() if "://" not in path else path
    return f"[report.html]({uri})"


def _events(results: list[BatchScores]) -> Optional[int]:
    """The events that began in a time series' scored batches (None for a table)."""
    counts = [r.events for r in results if r.events is not None]
    return sum(counts) if counts else None


def top_over_batches(results: list[BatchScores]) -> list[dict]:
    """The ``TOP_N`` highest-scoring anomalies over all scored batches; an event that goes on over
    several batches once, at its highest peak."""
    out, seen = [], set()
    for t in sorted((t for r in results for t in r.top), key=lambda t: -t["anomaly_score"]):
        event = (t["event_series"], t["event_start"]) if "event_start" in t else None
        if event is None or event not in seen:
            out.append(t)
            seen.add(event)
    return out[:TOP_N]


def task_runner(workers: Optional[int], dask_address: Optional[str]):
    """prefect-dask's runner on the scheduler at ``dask_address``, else on a local cluster of
    ``workers`` single-threaded processes on 127.0.0.1."""
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"})


@flow(name="score")
def score(
    dataset: str,
    model_name: Optional[str] = None,
    alias: str = defaults.CHAMPION,
    version: Optional[str] = None,
    batch_ids: Optional[list[str]] = None,
    batch_rows: int = defaults.BATCH_ROWS,
    workers: Optional[int] = None,
    dask_address: Optional[str] = None,
    drift_threshold: float = defaults.DRIFT_THRESHOLD,
    retrain_on_drift: bool = False,
    point_score: str = defaults.POINT_SCORE,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Score the batches of ``dataset`` not yet scored by the chosen model version.

    A time series is scored causally by default (``point_score="last"``: each point from the
    window that ends at it, after the previous points of its series from earlier batches), so a
    stored score never changes and batch boundaries change nothing; ``point_score="mean"`` is
    the offline mode (every window covering a point, later points included), stored under the
    key ``<model>-v<N>-offline`` (:mod:`vae_core.series_modes`).

    ``workers``/``dask_address`` (or ``VAE_ANOMALY_DASK_ADDRESS``) run the batches on Dask.
    When a batch's PSI against the calibration scores exceeds ``drift_threshold`` and
    ``retrain_on_drift`` is set, the ``retrain`` flow runs afterwards.

    Returns
    -------
    dict
        ``dataset``, ``model_name``, ``model_version``, ``scores_key`` (the lake's key of these
        scores), ``scored`` (per batch: ``batch_id``, ``rows``, ``anomalies``, ``events`` (that
        began in it), ``continued`` (begun earlier), ``psi``), ``skipped``, ``rows``, ``anomalies``
        (flagged rows), ``events`` (a time series' flagged runs that began in these batches, None
        for a table), ``max_psi``, ``drift``, ``retrain`` (the retrain
        flow's result or None), ``top`` (the highest-scoring anomalies; for a time series one per
        event, its peak, with ``event_series``, ``event_start``, ``event_end``, ``event_points``) and
        ``reports_rebuilt``
        (skipped batches whose missing report this run wrote: a run that died after committing
        a batch's scores left it without one), and ``alerts``: what the dataset's alert rules
        did once the scores and reports were committed (:func:`pipelines.alerts.alert_scored`:
        ``rules``, ``alerts`` with one entry per rule and key (a batch id, ``digest:<window>``
        or ``stale:<batch>``) whose ``state`` is ``sent``, ``failed``, ``held``, ``quiet``,
        ``already`` or ``no report``, URLs masked; ``not_sent``, the keys whose delivery failed
        after its retries; ``error``, why alerting stopped, or None). Alerting never fails the run.
    """
    from pipelines.settings import get_settings

    log = get_run_logger()
    model_name = model_name or dataset
    dask_address = dask_address or get_settings().dask_address
    wanted = list_batches(lake_url, dataset, batch_ids)
    model = resolve_point_score(resolve_model(tracking_uri, model_name, alias, version), point_score, tracking_uri)
    plan = plan_scoring(lake_url, dataset, wanted, model.scores_key)
    args = dict(model=model, lake_url=lake_url, tracking_uri=tracking_uri, batch_rows=batch_rows)
    if plan.pending and (workers or dask_address):
        results = _score_parallel(dataset, plan.pending, args, workers, dask_address)
    else:
        results = []
        for i, b in enumerate(plan.pending, 1):
            results.append(score_batch(dataset, b, **args))
            progress.report("batches", dataset, i, len(plan.pending))
    rebuilt = _rebuild_reports(dataset, plan.unreported, args)
    version_number = model.info.version
    publish_report(dataset, model_name, version_number, results, plan.skipped, drift_threshold)
    max_psi = max((r.psi for r in results), default=None)
    drift = bool(max_psi is not None and max_psi > drift_threshold)
    summary = {
        "dataset": dataset, "model_name": model_name, "model_version": version_number, "scores_key": model.scores_key,
        "scored": [r.summary() for r in results], "skipped": plan.skipped,
        "rows": sum(r.rows for r in results), "anomalies": sum(r.anomalies for r in results),
        "events": _events(results),
        "max_psi": max_psi, "drift": drift, "retrain": None, "top": top_over_batches(results), "reports_rebuilt": rebuilt,
    }
    log.info("scored %d batch(es), %d rows, %d anomalies; skipped %d", len(results), summary["rows"], summary["anomalies"], len(plan.skipped))
    from pipelines.alerts import alert_scored  # after the scores and reports are committed; never raises

    summary["alerts"] = alert_scored(summary, lake_url)
    if drift and retrain_on_drift:
        from pipelines.flows.retrain import retrain

        log.info("PSI %.3f > %.3f: retraining", max_psi, drift_threshold)
        summary["retrain"] = retrain(dataset, model_name=model_name, lake_url=lake_url, tracking_uri=tracking_uri)
    return summary


def _rebuild_reports(dataset: str, batch_ids: list[str], args: dict) -> list[str]:
    """Write the missing reports of scored batches (the report flow's task); a failure is a
    warning, as for a report the run itself writes. Returns the batches whose report was written."""
    done = []
    for batch_id in batch_ids:
        try:
            rebuild_report(args["lake_url"], dataset, batch_id, args["model"], args["tracking_uri"], args["batch_rows"])
            done.append(batch_id)
        except Exception as exc:  # noqa: BLE001 - the scores stand; say what failed and how to redo it
            get_run_logger().warning("report of %s batch %s is missing and could not be rebuilt (%s); "
                                     "run `vae-anomaly report %s`", dataset, batch_id, exc, dataset)
    return done


def _score_parallel(
    dataset: str, pending: list[str], args: dict, workers: Optional[int], dask_address: Optional[str],
) -> list[BatchScores]:
    """The batches as a Dask-run subflow, one task per batch."""
    @flow(name="score-partitions", task_runner=task_runner(workers, dask_address))
    def score_partitions() -> list[BatchScores]:
        futures = [score_batch.submit(dataset, b, **args) for b in pending]
        out = []
        for i, f in enumerate(futures, 1):
            out.append(f.result())
            progress.report("batches", dataset, i, len(pending))
        return out

    return score_partitions()
