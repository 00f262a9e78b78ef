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

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

import vae_core
from pipelines import nodes, progress
from pipelines.escaping import markdown as md
from pipelines.flows.common import artifact_key, io_task, lake_for, tracking_for
from pipelines.lake import BATCH_COLUMN, META_COLUMNS, ROW_COLUMN
from pipelines.lake.context import series_context
from pipelines.reports.batch import ReportParts, write_batch_report
from pipelines.reports.store import ReportStore
from pipelines.settings import apply_torch_threads

TOP_N = 20
TOP_COLUMNS = [BATCH_COLUMN, ROW_COLUMN, "anomaly_score", "p_value", "top_features"]


@dataclass(frozen=True)
class ScoreModel:
    """The registered version a score run uses, resolved once, and the lake key of its scores."""

    info: Any  # a pipelines.tracking.ModelVersionInfo (not imported here: importing a flow imports no MLflow)
    scores_key: str
    point_score: Optional[str] = None  # a time series' per-point mode: "last" (causal) or "mean" (offline)


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


@lru_cache(maxsize=4)
def _load(info: Any, tracking_uri: Optional[str]):
    """The detector of one resolved version, loaded once per process (and per Dask worker)."""
    return tracking_for(tracking_uri).load_version(info)


def _frame(batch: pa.RecordBatch) -> pd.DataFrame:
    return batch.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)


def scored_chunks(lake, dataset: str, batch_id: str, det, batch_rows: int):
    """Yield ``(part, explanation, rows, band, events)`` per chunk of a batch: the keys and scores
    to write, the flagged rows' explanation (by position in ``part``), and for a time series the
    feature rows, (when something is flagged) the model's expected band of each row, and the
    events with the event id of each row (:class:`vae_core.series_batch.ScoredBatch`).

    A time-series batch is one chunk, scored after its context
    (:func:`pipelines.lake.context.series_context`): in the causal mode its scores are those of
    one long series, whatever the batch boundaries, and an event that began in an earlier batch
    keeps its start. A table is streamed in Arrow record batches of ``batch_rows`` rows.
    """
    is_ts = getattr(det, "time_column_", None) is not None
    if is_ts:  # windows need their neighbours: a time-series batch is scored whole
        chunks = [lake.read(dataset, batch_ids=[batch_id])]
    else:
        chunks = (_frame(b) for b in lake.iter_record_batches(dataset, [batch_id], batch_size=batch_rows))
    extra = ([det.time_column_] + ([det.series_column_] if det.series_column_ else [])) if is_ts else []
    for chunk in chunks:
        keys = chunk[list(META_COLUMNS)].reset_index(drop=True)  # the row's key in the lake
        rows = nodes.feature_frame(chunk).reset_index(drop=True)
        band = events = None
        if is_ts:
            context = series_context(lake, dataset, batch_id, rows, det.time_column_, det.series_column_,
                                     list(det.value_columns_), det.batch_context_points)
            b = det.score_explain_and_expect(rows, context=context)
            scored, explanation, band, events = b.scores, b.explanation, b.band, (b.events, b.event_of_row)
        else:
            scored, explanation = vae_core.score_and_explain(det, rows)
        yield (pd.concat([keys, chunk[extra].reset_index(drop=True), scored], axis=1), explanation,
               rows if is_ts else None, band, events)


def scoring_detector(model: ScoreModel, tracking_uri: Optional[str]):
    """The loaded detector of ``model``, scoring in its point-score mode."""
    det = _load(model.info, tracking_uri)
    return det.with_point_score(model.point_score) if model.point_score else det


@io_task("resolve-point-score")
def resolve_point_score(model: ScoreModel, point_score: str, tracking_uri: Optional[str]) -> ScoreModel:
    """``model`` in ``point_score`` mode for a time series (a model that cannot score in it fails
    here, before any work); offline scores get their own key (``<model>-v<N>-offline``), so a
    version's causal scores are never mixed with them. Tables have no modes."""
    det = _load(model.info, tracking_uri)
    if getattr(det, "time_column_", None) is None:
        return model
    det.with_point_score(point_score)
    return replace(model, scores_key=nodes.mode_scores_key(model.scores_key, point_score), point_score=point_score)


@io_task("list-batches")
def list_batches(lake_url: Optional[str], dataset: str, batch_ids: Optional[list[str]]) -> list[str]:
    """``batch_ids``, or every committed batch of ``dataset`` in ingest order (a bad dataset name
    fails here, as bad input, before the registry is asked)."""
    records = {r.batch_id: r for r in lake_for(lake_url).list_batches(dataset)}
    wanted = list(batch_ids) if batch_ids else list(records)
    # a batch whose rows were all quarantined has nothing to score: skipped, never a blocker
    return [b for b in wanted if b not in records or records[b].rows_accepted]


@io_task("resolve-model")
def resolve_model(tracking_uri: Optional[str], model_name: str, alias: str, version: Optional[str]) -> ScoreModel:
    """The registry version to score with: ``version`` if given, else the one behind ``alias``.

    One registry call; a missing model, alias or version is a TrackingError (not retried)."""
    tracking = tracking_for(tracking_uri)
    tracking.check_model_name(model_name)
    info = tracking.get_version(model_name, version) if version is not None else tracking.get_alias(model_name, alias)
    return ScoreModel(info, nodes.score_label(model_name, info.version))


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
        for part, explanation, rows, band, events in scored_chunks(lake, dataset, batch_id, det, batch_rows):
            part["scored_at"] = scored_at  # the scores key and batch_id live in the path
            writer.write(part)
            parts.add(part, explanation, rows, band, events)
            drift_acc.update(part["anomaly_score"].to_numpy())
            anomalies += int(part["is_anomaly"].to_numpy(bool).sum())
            if events is not None:  # a time series: one chunk, whose events the top lists
                n_continued = int(events[0]["began_before"].sum())
                n_events = len(events[0]) - n_continued
            chunk_top = nodes.top_anomalies(part, events, TOP_N)
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
    top = _top(results)
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


def _top(results: list[BatchScores]) -> list[dict]:
    """The ``TOP_N`` highest-scoring anomalies over all scored batches; an event that goes on over
    several batches once, at its highest peak."""
    out, seen = [], set()
    for t in sorted((t for r in results for t in r.top), key=lambda t: -t["anomaly_score"]):
        event = (t["event_series"], t["event_start"]) if "event_start" in t else None
        if event is None or event not in seen:
            out.append(t)
            seen.add(event)
    return out[:TOP_N]


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
    point_score: str = "last",
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
        a batch's scores left it without one).
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
        "max_psi": max_psi, "drift": drift, "retrain": None, "top": _top(results), "reports_rebuilt": rebuilt,
    }
    log.info("scored %d batch(es), %d rows, %d anomalies; skipped %d", len(results), summary["rows"], summary["anomalies"], len(plan.skipped))
    if drift and retrain_on_drift:
        from pipelines.flows.retrain import retrain

        log.info("PSI %.3f > %.3f: retraining", max_psi, drift_threshold)
        summary["retrain"] = retrain(dataset, model_name=model_name, lake_url=lake_url, tracking_uri=tracking_uri)
    return summary


def _rebuild_reports(dataset: str, batch_ids: list[str], args: dict) -> list[str]:
    """Write the missing reports of scored batches (the report flow's task); a failure is a
    warning, as for a report the run itself writes. Returns the batches whose report was written."""
    from pipelines.flows.report import rebuild_report  # that flow imports this module

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
    @flow(name="score-partitions", task_runner=_task_runner(workers, dask_address))
    def score_partitions() -> list[BatchScores]:
        futures = [score_batch.submit(dataset, b, **args) for b in pending]
        out = []
        for i, f in enumerate(futures, 1):
            out.append(f.result())
            progress.report("batches", dataset, i, len(pending))
        return out

    return score_partitions()
