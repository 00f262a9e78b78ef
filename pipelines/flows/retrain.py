"""The ``retrain`` flow: a challenger on recent batches, compared with the champion.

Tasks: ``check-model`` (the registered model must exist: a mistyped name fails here, before any
work) -> ``read-training-data`` (the ``recent_batches`` newest) -> ``load-champion`` ->
``read-reviewed-items`` (every version's reviewed items with their verdicts) ->
``log-reviewed-precision`` (each version's precision of flags, on its MLflow run) ->
``split-holdout`` (rows the champion flags are left out; the rest is split into training rows
and held-out rows) -> ``fit-and-register`` (the challenger) -> ``set-aliases`` (``challenger``)
-> ``read-reviewed-rows`` and ``score-reviewed-items`` (both models on the reviewed items) ->
``compare-models`` (both scored on the same held-out rows; the decision and every figure are
logged to the challenger's MLflow run) -> ``promote`` (moves ``champion`` only if the rule says
so; it is the last step, so a failure anywhere before leaves the champion as it was).

The rule has two parts:

1. held-out (:func:`pipelines.nodes.promotion_decision`): the challenger's held-out -log p(x)
   per row, in the data's own units, is at most the champion's + ``tolerance``;
2. reviewed items (:func:`pipelines.review.comparison.combined_decision`), where there are at
   least 10 and the champion flags one of them: both models rank the reviewed items by score,
   each takes as many as the champion flags (``k``), and the challenger's precision at ``k``
   (share of verdict ``anomaly``; ``expected`` counts as not confirmed) must not be below the
   champion's. A challenger worse on reviewed items is not promoted even if its -log p is
   better; a better one is still not promoted when its -log p is worse.

Metrics on the challenger's run: ``holdout_nll_*``, ``holdout_rows``,
``reviewed_precision_at_k_champion``/``_challenger``, ``reviewed_alerts_k``,
``reviewed_compared_items``, ``reviewed_compared_confirmed``; tag ``promotion.rule`` says both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import defaults, nodes
from pipelines.flows.common import (
    TrainingSpec, fit_and_register, io_task, lake_for, log_reviewed_precision, read_reviewed_items, read_training_data,
    set_aliases, tracking_for,
)
from pipelines.lake import BATCH_COLUMN, ROW_COLUMN
from pipelines.review.comparison import (
    CONFIRMED, ReviewedComparison, both_item_scores, combined_decision, compare_reviewed,
)
from pipelines.review.labels import covered, without_confirmed
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
    """Both models' held-out -log p per row, their precision on reviewed items, and the decision."""

    champion_nll: float
    challenger_nll: float
    promoted: bool
    rule: str
    reviewed: Optional[ReviewedComparison] = None


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


@io_task("read-reviewed-rows")
def read_reviewed_rows(lake_url: Optional[str], dataset: str, items: pd.DataFrame, time_column: Optional[str]) -> pd.DataFrame:
    """The lake rows of the reviewed items: a table's item rows, a series' whole batches."""
    lake = lake_for(lake_url)
    committed = {r.batch_id for r in lake.list_batches(dataset)}
    batches = [b for b in dict.fromkeys(items["batch_id"]) if b in committed]
    if not batches:
        return pd.DataFrame(columns=[BATCH_COLUMN, ROW_COLUMN])
    rows = lake.read(dataset, batch_ids=batches)
    if time_column is not None:
        return rows
    keys = set(zip(items["batch_id"], items["source_row"].astype("int64")))
    return rows[[k in keys for k in zip(rows[BATCH_COLUMN], rows[ROW_COLUMN].astype("int64"))]]


@task(name="score-reviewed-items", cache_policy=NO_CACHE)
def score_reviewed(champion: Champion, challenger: nodes.Detector, items: pd.DataFrame, rows: pd.DataFrame,
              time_column: Optional[str], series_column: Optional[str]) -> Optional[ReviewedComparison]:
    """Both models on the reviewed items found in ``rows``, a series' in the mode its reviewed scores
    were made in (None without a champion or items)."""
    if champion.detector is None or items.empty:
        return None
    items = items.drop_duplicates("key").reset_index(drop=True)  # an item in two versions' reports
    s = both_item_scores(champion.detector, challenger, rows, items, time_column, series_column)
    confirmed, found = items["verdict"].isin(CONFIRMED).to_numpy(bool), s["found"]
    return compare_reviewed(s["champion"][found], s["flags"][found], s["challenger"][found], confirmed[found])


@task(name="compare-models", cache_policy=NO_CACHE)
def compare_models(
    tracking_uri: Optional[str], run_id: str, champion: Champion, challenger: nodes.Detector,
    holdout: pd.DataFrame, tolerance: float, challenger_version: str,
    reviewed: Optional[ReviewedComparison] = None,
) -> Comparison:
    """Both models' held-out -log p per row and precision on reviewed items, the decision, and
    its record on the challenger's run."""
    rows = nodes.feature_frame(holdout).reset_index(drop=True)
    challenger_nll = float(np.mean(challenger.data_nll(rows)))
    champion_nll = float(np.mean(champion.detector.data_nll(rows))) if champion.detector is not None else float("inf")
    promoted, rule = nodes.promotion_decision(champion_nll, challenger_nll, tolerance)
    if champion.detector is not None:
        promoted, rule = combined_decision(promoted, rule, reviewed)
    tracking_for(tracking_uri).TrainingRun(run_id).log_comparison(
        metrics={"holdout_nll_challenger": challenger_nll, "holdout_nll_champion": champion_nll, "holdout_rows": len(rows),
                 **(reviewed.metrics() if reviewed is not None else {})},
        decision="promoted" if promoted else "rejected",
        details={"rule": rule, "champion_version": champion.version or "", "challenger_version": challenger_version},
    )
    return Comparison(champion_nll, challenger_nll, promoted, rule, reviewed)


@io_task("promote")
def promote(tracking_uri: Optional[str], model_name: str, version: str) -> None:
    """Move the ``champion`` alias to ``version``."""
    tracking = tracking_for(tracking_uri)
    tracking.promote(model_name, version, alias=tracking.CHAMPION)


@flow(name="retrain")
def retrain(
    dataset: str,
    model_name: Optional[str] = None,
    recent_batches: int = defaults.RECENT_BATCHES,
    holdout_fraction: float = defaults.HOLDOUT_FRACTION,
    tolerance: float = defaults.TOLERANCE,
    params: Optional[dict] = None,
    seed: int = defaults.SEED,
    series_column: Optional[str] = None,
    exclude_columns: Optional[list[str]] = None,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Train a challenger on the newest ``recent_batches`` batches and promote it if not worse.

    The registered model must exist (train it first). ``series_column`` and ``exclude_columns``
    default to the champion's own choices, and the challenger is fitted with the champion's
    settings (but its seed and threshold rule: :func:`pipelines.nodes.challenger_params`) with
    ``params`` over them, so a setting chosen at ``train`` survives the nightly retrain.

    Returns
    -------
    dict
        ``dataset``, ``model_name``, ``batches``, both versions and their held-out -log p,
        ``promoted``, ``rule``, the row counts (``rows_train``, ``rows_excluded``, ``rows_holdout``,
        ``rows_confirmed_left_out``, ``rows_kept_by_review``), ``reviewed_items`` and
        ``reviewed_comparison`` (the reviewed items' figures, None without a champion or verdicts).
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
    params = nodes.challenger_params(champion.detector, params)
    verdicts = read_reviewed_items(lake_url, dataset)  # every version's
    log_reviewed_precision(tracking_uri, verdicts)
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
    reviewed_rows = read_reviewed_rows(lake_url, dataset, verdicts, data.time_column)
    on_reviewed = score_reviewed(champion, challenger.detector, verdicts, reviewed_rows, data.time_column, series_column)
    decision = compare_models(
        tracking_uri, challenger.registered.run_id, champion, challenger.detector, holdout, tolerance, version, on_reviewed,
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
        "reviewed_comparison": None if decision.reviewed is None else decision.reviewed.metrics(),
    }
