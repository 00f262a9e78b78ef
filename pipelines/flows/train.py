"""The ``train`` flow: read batches from the lake, fit vae_core, track and register in MLflow.

Tasks: ``read-batches`` (I/O, retried) -> ``fit-and-register`` (one MLflow run: params,
per-epoch metrics, the model with its signature, a registered version) -> ``set-aliases``
(``challenger`` on the new version; ``champion`` too when the model has none yet).
A failure before ``set-aliases`` leaves the aliases as they were.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines.flows.common import io_task, lake_for, read_batches, tracking_for, train_and_register


@task(name="fit-and-register", cache_policy=NO_CACHE)
def fit_and_register(frame: pd.DataFrame, **kwargs) -> dict:
    """Fit, log and register; returns the version's description."""
    _, result = train_and_register(frame, **kwargs)
    return result


@io_task("set-aliases")
def set_aliases(tracking_uri: Optional[str], model_name: str, version: str) -> list[str]:
    """``challenger`` on ``version``; ``champion`` as well if the model has no champion yet."""
    tracking = tracking_for(tracking_uri)
    tracking.set_alias(model_name, "challenger", version)
    aliases = ["challenger"]
    if tracking.get_alias_version(model_name, "champion") is None:
        tracking.promote(model_name, version, alias="champion")
        aliases.append("champion")
    return aliases


@flow(name="train")
def train(
    dataset: str,
    model_name: Optional[str] = None,
    batch_ids: Optional[list[str]] = None,
    series_column: Optional[str] = None,
    exclude_columns: Optional[list[str]] = None,
    params: Optional[dict] = None,
    seed: int = 0,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Train a model on ``dataset`` (all batches, or ``batch_ids``) and register it.

    The dataset's schema decides the kind: a time column gives a time-series model.
    ``params`` are :class:`vae_core.VAEConfig` overrides, e.g. ``{"max_epochs": 50}``.
    """
    log = get_run_logger()
    model_name = model_name or dataset
    schema = lake_for(lake_url).schema(dataset)
    frame = read_batches(lake_url, dataset, batch_ids)
    result = fit_and_register(
        frame, dataset=dataset, model_name=model_name, time_column=schema.time_column if schema else None,
        series_column=series_column, exclude_columns=exclude_columns, params=params, seed=seed,
        tracking_uri=tracking_uri, run_name=f"train-{dataset}",
    )
    result["aliases"] = set_aliases(tracking_uri, model_name, result["version"])
    result["dataset"] = dataset
    log.info("registered %s version %s (%s) on %d rows", model_name, result["version"], ", ".join(result["aliases"]), result["rows"])
    return result
