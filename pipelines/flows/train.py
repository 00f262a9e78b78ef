"""The ``train`` flow: read batches from the lake, fit vae_core, track and register in MLflow.

Tasks: ``read-training-data`` (I/O, retried) -> ``fit-and-register`` (one MLflow run: params,
per-epoch metrics, the model with its signature, a registered version) -> ``set-aliases``
(``challenger`` on the new version; ``champion`` too when the model has none yet).
The model name is checked before anything is read; a failure before ``set-aliases`` leaves the
aliases as they were.
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from pipelines import defaults
from pipelines.flows.common import TrainingSpec, fit_and_register, read_training_data, set_aliases, tracking_for


@flow(name="train")
def train(
    dataset: str,
    model_name: Optional[str] = None,
    batch_ids: Optional[list[str]] = None,
    series_column: Optional[str] = None,
    exclude_columns: Optional[list[str]] = None,
    params: Optional[dict] = None,
    seed: int = defaults.SEED,
    lake_url: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> dict:
    """Train a model on ``dataset`` (all batches, or ``batch_ids``) and register it.

    The dataset's schema decides the kind: a time column gives a time-series model.
    ``params`` are :class:`vae_core.VAEConfig` overrides, e.g. ``{"max_epochs": 50}``.

    Returns
    -------
    dict
        :class:`~pipelines.flows.common.Registered` as a dict, plus ``aliases`` and ``dataset``.
    """
    log = get_run_logger()
    model_name = tracking_for(tracking_uri).check_model_name(model_name or dataset)
    data = read_training_data(lake_url, dataset, batch_ids)
    spec = TrainingSpec(
        dataset=dataset, model_name=model_name, time_column=data.time_column, series_column=series_column,
        exclude_columns=exclude_columns, params=params, seed=seed, run_name=f"train-{dataset}",
    )
    registered = fit_and_register(data.frame, spec, tracking_uri).registered
    aliases = set_aliases(tracking_uri, model_name, registered.version)
    log.info("registered %s version %s (%s) on %d rows", model_name, registered.version, ", ".join(aliases), registered.rows)
    return {**registered.to_dict(), "aliases": aliases, "dataset": dataset}
