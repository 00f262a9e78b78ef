"""The ``report`` flow: rebuild the reports of scored batches (``vae-anomaly report``).

The score flow writes each batch's report as it scores it; this flow writes them again (after a
failed report, or to pick up the latest verdicts' precision) from the lake's rows and the same
model version. Scores do not depend on how rows are chunked, so the rebuilt report shows the
scores the lake holds. The version's precision of flags from verdicts is then logged to its
MLflow run (``reviewed_precision``, ``reviewed_items``).
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from pipelines import defaults
from pipelines.flows.common import io_task, lake_for, log_reviewed_precision, read_reviewed_items
from pipelines.flows.scoring import resolve_model, resolve_point_score, scored_chunks, scoring_detector
from pipelines.reports.batch import ReportParts, write_batch_report
from pipelines.settings import apply_torch_threads


@io_task("rebuild-report")
def rebuild_report(lake_url: Optional[str], dataset: str, batch_id: str, model, tracking_uri: Optional[str],
                   batch_rows: int) -> str:
    """One batch's report from its rows, scored again by the same version."""
    apply_torch_threads()
    det = scoring_detector(model, tracking_uri)
    lake = lake_for(lake_url)
    parts = ReportParts(det)
    for chunk in scored_chunks(lake, dataset, batch_id, det, batch_rows):
        parts.add(chunk)
    psi = lake.read_scores(dataset, model.scores_key, batch_ids=[batch_id])["psi"]  # that batch's partition only
    return write_batch_report(lake, dataset, batch_id, model.scores_key, det, model.info, parts,
                              float(psi.iloc[0]) if len(psi) else None)


@flow(name="report")
def report(
    dataset: str,
    model_name: Optional[str] = None,
    alias: str = defaults.CHAMPION,
    version: Optional[str] = None,
    batch_ids: Optional[list[str]] = None,
    batch_rows: int = defaults.BATCH_ROWS,
    point_score: str = defaults.POINT_SCORE,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Rebuild the reports of the batches the version has scored (or of ``batch_ids``); a time
    series' offline scores (``point_score="mean"``) have reports of their own."""
    model = resolve_model(tracking_uri, model_name or dataset, alias, version)
    model = resolve_point_score(model, point_score, tracking_uri)
    lake = lake_for(lake_url)
    done = lake.scored_batches(dataset, model.scores_key)
    wanted = list(batch_ids) if batch_ids else [r.batch_id for r in lake.list_batches(dataset) if r.batch_id in done]
    missing = [b for b in wanted if b not in done]
    if missing:
        raise ValueError(f"batch(es) {', '.join(missing)} of {dataset!r} have no scores by {model.scores_key}: run `vae-anomaly score` first")
    paths = [rebuild_report(lake_url, dataset, b, model, tracking_uri, batch_rows) for b in wanted]
    log_reviewed_precision(tracking_uri, read_reviewed_items(lake_url, dataset, model.scores_key))
    get_run_logger().info("wrote %d report(s) of %s by %s", len(paths), dataset, model.scores_key)
    return {"dataset": dataset, "scores_key": model.scores_key, "reports": dict(zip(wanted, paths))}
