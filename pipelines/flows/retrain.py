"""The ``retrain`` flow: a challenger on recent batches, compared with the champion.

Tasks: ``check-model`` (the registered model must exist: a mistyped name fails here, before any
work) -> ``read-training-data`` (the ``recent_batches`` newest) -> ``load-champion`` ->
``split-holdout`` (rows the champion flags are left out; the rest is split into training rows
and held-out rows) -> ``fit-and-register`` (the challenger) -> ``set-aliases`` (``challenger``)
-> ``compare-models`` (both scored on the same held-out rows; the decision and both figures are
logged to the challenger's MLflow run) -> ``promote`` (moves ``champion`` only if the rule says
so; it is the last step, so a failure anywhere before leaves the champion as it was).

The rule (see :func:`pipelines.nodes.promotion_decision`): promote when the challenger's
held-out -log p(x) per row, in the data's own units, is at most the champion's + ``tolerance``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import nodes
from pipelines.flows.common import (
    TrainingSpec, fit_and_register, io_task, lake_for, read_training_data, set_aliases, tracking_for,
)
from pipelines.reports.store import ReportStore
from pipelines.review.feedback import FeedbackStore
from pipelines.review.labels import covered, reviewed_items, without_confirmed
from pipelines.review.threshold import FALSE
from pipelines.settings import apply_torch_threads


@dataclass(frozen=True)
class Champion:
    """The current champion, or ``detector=None``/``version=None`` when the model has none."""

    detector: Optional[nodes.Detector]
    version: Optional[str]


@dataclass(frozen=True)
class Holdout:
    """Training rows, held-out rows, how many rows the champion flagged and left out, and what
    the reviewers' verdicts changed: confirmed anomalies left out (masked in a series), flagged
    rows kept because a reviewer called them normal."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    excluded: int
    confirmed: int = 0
    kept_by_review: int = 0


@dataclass(frozen=True)
class Comparison:
    """Both models' held-out -log p per row and the promotion decision."""

    champion_nll: float
    challenger_nll: float
    promoted: bool
    rule: str


@io_task("check-model")
def check_model(tracking_uri: Optional[str], model_name: str) -> None:
    """Fail with a TrackingError unless registered model ``model_name`` exists."""
    tracking_for(tracking_uri).require_model(model_name)


@io_task("load-champion")
def load_champion(tracking_uri: Optional[str], model_name: str) -> Champion:
    """The detector behind the ``champion`` alias (one registry call), if there is one."""
    tracking = tracking_for(tracking_uri)
    info = tracking.find_alias(model_name, tracking.CHAMPION)
    if info is None:
        return Champion(None, None)
    return Champion(tracking.load_version(info), info.version)


@io_task("read-verdicts")
def read_verdicts(lake_url: Optional[str], dataset: str) -> pd.DataFrame:
    """Every reviewed report item of ``dataset`` (any model version) with its current verdict."""
    lake = lake_for(lake_url)
    return reviewed_items(ReportStore(lake.url), FeedbackStore(lake.table_uri(dataset, "feedback"), lake.delta_options), dataset)


@task(name="split-holdout", cache_policy=NO_CACHE)
def split_holdout(frame: pd.DataFrame, champion: Champion, fraction: float, seed: int, time_column: Optional[str],
                  verdicts: pd.DataFrame, series_column: Optional[str]) -> Holdout:
    """Leave out the rows the champion flags, except those a reviewer called normal
    (``false_alarm``, ``new_normal``), and the confirmed anomalies (a series' are masked, so its
    grid stays whole); then hold out ``fraction`` of the rest."""
    frame = frame.reset_index(drop=True)
    flagged = np.zeros(len(frame), bool)
    if champion.detector is not None:
        flagged = champion.detector.score(nodes.feature_frame(frame))["is_anomaly"].to_numpy(bool).copy()
    normal = covered(frame, verdicts, FALSE, time_column, series_column)
    kept = int((flagged & normal).sum())
    flagged &= ~normal
    frame, confirmed = without_confirmed(frame, verdicts, time_column, series_column)
    if time_column is None:  # without_confirmed dropped the confirmed rows: align the flags
        flagged = flagged[frame.index.to_numpy()]
    train, holdout = nodes.holdout_split(frame[~flagged], fraction, seed, time_column)
    return Holdout(train, holdout, int(flagged.sum()), confirmed, kept)


@task(name="compare-models", cache_policy=NO_CACHE)
def compare_models(
    tracking_uri: Optional[str], run_id: str, champion: Champion, challenger: nodes.Detector,
    holdout: pd.DataFrame, tolerance: float, challenger_version: str,
) -> Comparison:
    """Both models' held-out -log p per row, the decision, and its record on the challenger's run."""
    rows = nodes.feature_frame(holdout).reset_index(drop=True)
    challenger_nll = float(np.mean(challenger.data_nll(rows)))
    champion_nll = float(np.mean(champion.detector.data_nll(rows))) if champion.detector is not None else float("inf")
    promoted, rule = nodes.promotion_decision(champion_nll, challenger_nll, tolerance)
    tracking_for(tracking_uri).TrainingRun(run_id).log_comparison(
        metrics={"holdout_nll_challenger": challenger_nll, "holdout_nll_champion": champion_nll, "holdout_rows": len(rows)},
        decision="promoted" if promoted else "rejected",
        details={"rule": rule, "champion_version": champion.version or "", "challenger_version": challenger_version},
    )
    return Comparison(champion_nll, challenger_nll, promoted, rule)


@io_task("promote")
def promote(tracking_uri: Optional[str], model_name: str, version: str) -> None:
    """Move the ``champion`` alias to ``version``."""
    tracking = tracking_for(tracking_uri)
    tracking.promote(model_name, version, alias=tracking.CHAMPION)


@flow(name="retrain")
def retrain(
    dataset: str,
    model_name: Optional[str] = None,
    recent_batches: int = 3,
    holdout_fraction: float = 0.2,
    tolerance: float = 0.0,
    params: Optional[dict] = None,
    seed: int = 0,
    series_column: Optional[str] = None,
    exclude_columns: Optional[list[str]] = None,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Train a challenger on the newest ``recent_batches`` batches and promote it if not worse.

    The registered model must exist (train it first). ``series_column`` and ``exclude_columns``
    default to the champion's own choices.

    Returns
    -------
    dict
        ``dataset``, ``model_name``, ``batches``, both versions and their held-out -log p,
        ``promoted``, ``rule`` and the row counts (``rows_train``, ``rows_excluded``, ``rows_holdout``).
    """
    log = get_run_logger()
    apply_torch_threads()  # the champion scores the new rows here, before the challenger is fitted
    model_name = model_name or dataset
    check_model(tracking_uri, model_name)
    data = read_training_data(lake_url, dataset, recent=recent_batches)
    champion = load_champion(tracking_uri, model_name)
    if champion.detector is not None:
        series_column = series_column or getattr(champion.detector, "series_column_", None)
        if exclude_columns is None:
            used = set(champion.detector.feature_names_in_) | {data.time_column, series_column}
            exclude_columns = [c for c in nodes.feature_frame(data.frame).columns if c not in used]
    verdicts = read_verdicts(lake_url, dataset)
    parts = split_holdout(data.frame, champion, holdout_fraction, seed, data.time_column, verdicts, series_column)
    spec = TrainingSpec(
        dataset=dataset, model_name=model_name, time_column=data.time_column, series_column=series_column,
        exclude_columns=exclude_columns, params=params, seed=seed, run_name=f"retrain-{dataset}",
        tags={"trigger": "retrain", "champion_version": champion.version or "", "reviewed_items": str(len(verdicts)),
              "rows_confirmed_left_out": str(parts.confirmed), "rows_kept_by_review": str(parts.kept_by_review)},
    )
    challenger = fit_and_register(parts.train, spec, tracking_uri)
    version = challenger.registered.version
    set_aliases(tracking_uri, model_name, version)  # challenger (and champion when the model had none)
    holdout = parts.holdout.drop(columns=exclude_columns or [])
    decision = compare_models(
        tracking_uri, challenger.registered.run_id, champion, challenger.detector, holdout, tolerance, version,
    )
    if decision.promoted and champion.detector is not None:
        promote(tracking_uri, model_name, version)
    log.info(decision.rule)
    return {
        "dataset": dataset, "model_name": model_name, "batches": data.batch_ids,
        "champion_version": champion.version, "challenger_version": version,
        "champion_nll": decision.champion_nll, "challenger_nll": decision.challenger_nll,
        "promoted": decision.promoted or champion.detector is None, "rule": decision.rule,
        "rows_train": len(parts.train), "rows_excluded": parts.excluded, "rows_holdout": len(parts.holdout),
        "reviewed_items": len(verdicts), "rows_confirmed_left_out": parts.confirmed, "rows_kept_by_review": parts.kept_by_review,
    }
