"""The ``threshold`` flow: recalibrate a model version's threshold from reviewers' verdicts.

Tasks: ``resolve-model`` (the version behind ``alias``, default champion) -> ``read-reviewed-items``
(the version's reviewed report items with their current verdicts) -> ``log-reviewed-precision``
(the version's precision of flags on its MLflow run) -> ``choose-threshold`` (best
F1 on the reviewed items, or an alert budget: :mod:`pipelines.review.threshold`, bounded) ->
``register-recalibrated`` (the same weights with the new threshold as a new registered version,
its own MLflow run holding the rule and the before/after figures) -> ``set-aliases``
(``challenger``; ``champion`` too with ``promote``).
"""
from __future__ import annotations

from typing import Optional

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import defaults, nodes
from pipelines.flows.common import (
    io_task, lake_for, log_reviewed_precision, naive_utc, read_reviewed_items, tracking_for,
)
from pipelines.flows.scoring import resolve_model, resolve_point_score, scoring_detector
from pipelines.reports.store import ReportStore
from pipelines.review.threshold import ThresholdChoice, best_f1_threshold, budget_threshold


def _days(lake, dataset: str, scores_key: str, time_column: Optional[str]) -> float:
    """The days the version's scored data covers: its time span (series), else the batches' ingest span."""
    if time_column:
        t = pd.to_datetime(lake.read_scores(dataset, scores_key)[time_column], utc=True)
    else:
        t = pd.to_datetime(pd.Series([r.ingested_at for r in lake.list_batches(dataset)]), utc=True)
    return max((t.max() - t.min()).total_seconds() / 86400.0, 1.0) if len(t) else 1.0


@task(name="choose-threshold", cache_policy=NO_CACHE)
def choose_threshold(items: pd.DataFrame, det, lake_url: Optional[str], dataset: str, scores_key: str,
                     alerts_per_day: Optional[float]) -> ThresholdChoice:
    """The new threshold from the verdicts (or from an alert budget)."""
    if alerts_per_day is None:
        return best_f1_threshold(items["score"].to_numpy(float), items["real"].to_numpy(bool), det.threshold_,
                                 det.calibration_.scores)
    lake = lake_for(lake_url)
    store = ReportStore(lake.url)
    scores = [i["score"] for ref in store.list(dataset, scores_key) for i in (store.report(ref) or {}).get("items", [])]
    days = _days(lake, dataset, scores_key, next(iter(det.key_columns_), None))
    return budget_threshold(scores, days, alerts_per_day, det.threshold_,
                            items["score"].to_numpy(float), items["real"].to_numpy(bool))


@task(name="register-recalibrated", cache_policy=NO_CACHE)
def register_recalibrated(det, choice: ThresholdChoice, dataset: str, model_name: str, source_version: str,
                          lake_url: Optional[str], tracking_uri: Optional[str]):
    """The same weights with the chosen threshold, registered as a new version with its own run."""
    tracking = tracking_for(tracking_uri)
    det.calibrate(threshold=choice.threshold)
    lake = lake_for(lake_url)
    last = lake.list_batches(dataset)[-1].batch_id
    example = lake.read(dataset, batch_ids=[last]).head(5)
    columns = det.key_columns_ + list(det.feature_names_in_)
    params = {"dataset": dataset, "recalibrated_from": source_version, "threshold_rule": choice.rule}
    with tracking.start_training_run(dataset, f"threshold-{dataset}", params, {"kind": "threshold-from-reviews"}) as run:
        run.log_metrics({f"reviews_{k}": v for k, v in choice.to_dict().items() if isinstance(v, (int, float))})
        info = run.log_detector(det, model_name, naive_utc(nodes.feature_frame(example)[columns]))
    return info


@io_task("set-threshold-aliases")
def set_threshold_aliases(tracking_uri: Optional[str], model_name: str, version: str, promote: bool) -> list[str]:
    """``challenger`` on the recalibrated version; ``champion`` too when promoting."""
    tracking = tracking_for(tracking_uri)
    aliases = tracking.apply_new_version_aliases(model_name, version)
    if promote and tracking.CHAMPION not in aliases:
        tracking.promote(model_name, version)
        aliases.append(tracking.CHAMPION)
    return aliases


@flow(name="threshold")
def threshold(
    dataset: str,
    model_name: Optional[str] = None,
    alias: str = defaults.CHAMPION,
    alerts_per_day: Optional[float] = None,
    promote: bool = False,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Recalibrate the threshold of ``model_name@alias`` from the verdicts on its report items."""
    log = get_run_logger()
    model_name = model_name or dataset
    # the verdicts are on the scheduled (causal) scores: a time series' threshold moves in that mode
    model = resolve_point_score(resolve_model(tracking_uri, model_name, alias, None), defaults.POINT_SCORE, tracking_uri)
    det = scoring_detector(model, tracking_uri)
    items = read_reviewed_items(lake_url, dataset, model.scores_key)
    log_reviewed_precision(tracking_uri, items)
    choice = choose_threshold(items, det, lake_url, dataset, model.scores_key, alerts_per_day)
    # recalibrated in place: scoring_detector hands out a copy, never the cached detector
    info = register_recalibrated(det, choice, dataset, model_name, model.info.version, lake_url, tracking_uri)
    aliases = set_threshold_aliases(tracking_uri, model_name, info.version, promote)
    log.info("threshold %.4g -> %.4g (%s): registered %s v%s (%s)", choice.previous, choice.threshold, choice.rule,
             model_name, info.version, ", ".join(aliases))
    return {"dataset": dataset, "model_name": model_name, "from_version": model.info.version, "version": info.version,
            "aliases": aliases, **choice.to_dict()}
