"""The ``retrain`` flow: a challenger on recent batches, compared with the champion.

Tasks: ``read-batches`` (the ``recent_batches`` newest) -> ``load-champion`` ->
``split-holdout`` (rows the champion flags are left out; the rest is split into training rows
and held-out rows) -> ``fit-and-register`` (the challenger, alias ``challenger``) ->
``compare-models`` (both scored on the same held-out rows; the decision and both figures are
logged to the challenger's MLflow run) -> ``promote`` (moves ``champion`` only if the rule
says so; it is the last step, so a failure anywhere before leaves the registry as it was).

The rule (see :func:`pipelines.nodes.promotion_decision`): promote when the challenger's
held-out -log p(x) per row, in the data's own units, is at most the champion's + ``tolerance``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import nodes
from pipelines.flows.common import io_task, lake_for, read_batches, tracking_for, train_and_register
from pipelines.flows.train import set_aliases
from pipelines.settings import apply_torch_threads


@io_task("load-champion")
def load_champion(tracking_uri: Optional[str], model_name: str):
    """(detector, version) behind the ``champion`` alias, or (None, None)."""
    tracking = tracking_for(tracking_uri)
    version = tracking.get_alias_version(model_name, "champion")
    if version is None:
        return None, None
    det, _ = tracking.load_detector(tracking.model_uri(model_name, version=version))
    return det, str(version)


@task(name="split-holdout", cache_policy=NO_CACHE)
def split_holdout(frame: pd.DataFrame, champion, fraction: float, seed: int, time_column: Optional[str]) -> dict:
    """Leave out the rows the champion flags, then hold out ``fraction`` of the rest."""
    flagged = np.zeros(len(frame), bool)
    if champion is not None:
        flagged = champion.score(nodes.feature_frame(frame).reset_index(drop=True))["is_anomaly"].to_numpy()
    clean = frame[~flagged]
    train, holdout = nodes.holdout_split(clean, fraction, seed, time_column)
    return {"train": train, "holdout": holdout, "excluded": int(flagged.sum())}


@task(name="compare-models", cache_policy=NO_CACHE)
def compare_models(
    tracking_uri: Optional[str], run_id: str, champion, challenger, holdout: pd.DataFrame, tolerance: float,
    champion_version: Optional[str], challenger_version: str,
) -> dict:
    """Both models' held-out -log p per row, the decision, and its record in MLflow."""
    rows = nodes.feature_frame(holdout).reset_index(drop=True)
    challenger_nll = float(np.mean(challenger.data_nll(rows)))
    champion_nll = float(np.mean(champion.data_nll(rows))) if champion is not None else float("inf")
    promoted, rule = nodes.promotion_decision(champion_nll, challenger_nll, tolerance)
    tracking_for(tracking_uri).log_comparison(
        run_id,
        metrics={"holdout_nll_challenger": challenger_nll, "holdout_nll_champion": champion_nll, "holdout_rows": len(rows)},
        decision="promoted" if promoted else "rejected",
        details={"rule": rule, "champion_version": champion_version or "", "challenger_version": challenger_version},
    )
    return {"champion_nll": champion_nll, "challenger_nll": challenger_nll, "promoted": promoted, "rule": rule}


@io_task("promote")
def promote(tracking_uri: Optional[str], model_name: str, version: str) -> None:
    """Move the ``champion`` alias to ``version``."""
    tracking_for(tracking_uri).promote(model_name, version, alias="champion")


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

    ``series_column`` and ``exclude_columns`` default to the champion's own choices.
    """
    log = get_run_logger()
    apply_torch_threads()  # the champion scores the new rows here, before the challenger is fitted
    model_name = model_name or dataset
    lake = lake_for(lake_url)
    batches = [r.batch_id for r in lake.list_batches(dataset)][-recent_batches:]
    schema = lake.schema(dataset)
    time_column = schema.time_column if schema else None
    frame = read_batches(lake_url, dataset, batches)
    champion, champion_version = load_champion(tracking_uri, model_name)
    if champion is not None:
        series_column = series_column or getattr(champion, "series_column_", None)
        if exclude_columns is None:
            used = set(champion.feature_names_in_) | {time_column, series_column}
            exclude_columns = [c for c in nodes.feature_frame(frame).columns if c not in used]
    parts = split_holdout(frame, champion, holdout_fraction, seed, time_column)
    challenger, result = train_and_register_task(
        parts["train"], dataset=dataset, model_name=model_name, time_column=time_column, series_column=series_column,
        exclude_columns=exclude_columns, params=params, seed=seed, tracking_uri=tracking_uri,
        run_name=f"retrain-{dataset}", tags={"trigger": "retrain", "champion_version": champion_version or ""},
    )
    # challenger on the new version (and champion too when the model had none)
    set_aliases(tracking_uri, model_name, result["version"])
    holdout = parts["holdout"].drop(columns=exclude_columns or [])
    decision = compare_models(
        tracking_uri, result["run_id"], champion, challenger, holdout, tolerance, champion_version, result["version"]
    )
    if decision["promoted"] and champion is not None:
        promote(tracking_uri, model_name, result["version"])
    log.info(decision["rule"])
    return {
        "dataset": dataset, "model_name": model_name, "batches": batches,
        "champion_version": champion_version, "challenger_version": result["version"],
        "champion_nll": decision["champion_nll"], "challenger_nll": decision["challenger_nll"],
        "promoted": decision["promoted"] or champion is None, "rule": decision["rule"],
        "rows_train": len(parts["train"]), "rows_excluded": parts["excluded"], "rows_holdout": len(parts["holdout"]),
    }


@task(name="fit-and-register", cache_policy=NO_CACHE)
def train_and_register_task(frame: pd.DataFrame, **kwargs):
    """The challenger: fit, log and register."""
    return train_and_register(frame, **kwargs)
