"""What the train, score and retrain flows share: settings resolution, lake access, tasks."""
from __future__ import annotations

import re
from typing import Any, Optional

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from pipelines import nodes, progress
from pipelines.lake import Lake, LakeError
from pipelines.settings import apply_torch_threads, get_settings

IO_RETRIES = 2
IO_RETRY_DELAY = 2


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, not bad input: no ValueError (vae_core's DataError, bad parameters),
    and a LakeError only if an OSError other than not-found caused it."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if isinstance(exc, ValueError):
        return False
    if not isinstance(exc, LakeError):
        return True
    cause = exc.__cause__
    return isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError)


def io_task(name: str):
    """Decorator for an I/O task: retried on transient errors, never cached (inputs are large frames)."""
    return task(
        name=name, retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY,
        retry_condition_fn=_transient, cache_policy=NO_CACHE,
    )


def lake_for(lake_url: Optional[str]) -> Lake:
    """The lake at ``lake_url``, or the configured one."""
    return Lake(lake_url or get_settings().lake_url)


def tracking_for(tracking_uri: Optional[str]):
    """The tracking module, pointed at ``tracking_uri`` or the configured store."""
    from pipelines import tracking

    s = get_settings()
    tracking.configure(tracking_uri or s.mlflow_tracking_uri, s.mlflow_artifact_root)
    return tracking


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@io_task("read-batches")
def read_batches(lake_url: Optional[str], dataset: str, batch_ids: Optional[list[str]] = None) -> pd.DataFrame:
    """Rows of the listed batches (all batches by default), with their lake keys."""
    lake = lake_for(lake_url)
    if lake.schema(dataset) is None:
        raise LakeError(f"dataset {dataset!r} has no batches in the lake at {lake.url}; ingest some first")
    return lake.read(dataset, batch_ids=batch_ids)


def naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Timezone-aware datetime columns as naive UTC (MLflow signatures take naive datetimes only;
    vae_core reads naive times as UTC, so the served model scores them the same)."""
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def epoch_logger(tracking, label: str, max_epochs: int):
    """A vae_core epoch callback that logs MLflow metrics and reports progress."""
    def callback(m) -> None:
        d = m.as_dict()
        tracking.log_epoch({k: v for k, v in d.items() if k not in ("epoch", "best")}, step=m.epoch)
        progress.report("epochs", label, m.epoch, max_epochs, loss=m.train_loss, val_elbo=m.val_neg_elbo)

    return callback


def train_and_register(
    frame: pd.DataFrame,
    *,
    dataset: str,
    model_name: str,
    time_column: Optional[str],
    series_column: Optional[str],
    exclude_columns: Optional[list[str]],
    params: Optional[dict],
    seed: int,
    tracking_uri: Optional[str],
    run_name: str,
    tags: Optional[dict] = None,
) -> tuple[nodes.Detector, dict]:
    """Fit a detector inside an MLflow run, log it and register a version (no alias changes)."""
    apply_torch_threads()
    tracking = tracking_for(tracking_uri)
    features = nodes.feature_frame(frame, exclude_columns)
    params = dict(params or {})
    run_params = {
        "dataset": dataset, "rows": len(features), "kind": "timeseries" if time_column else "tabular",
        "time_column": time_column, "series_column": series_column, "exclude_columns": exclude_columns,
        "seed": seed, "batches": sorted(frame["batch_id"].unique().tolist()) if "batch_id" in frame else None,
    }
    with tracking.start_training_run(experiment=dataset, run_name=run_name, params=run_params, tags=tags or {}):
        max_epochs = int(params.get("max_epochs", 200))
        det = nodes.fit_detector(
            features, time_column, series_column, params, seed, epoch_logger(tracking, model_name, max_epochs)
        )
        info = tracking.log_detector(det, registered_model_name=model_name, input_example=naive_utc(features.head(5)))
    result = {
        "model_name": info.name, "version": str(info.version), "run_id": info.run_id, "model_uri": info.model_uri,
        "rows": len(features), "threshold": float(det.threshold_), "device": det.device_,
        "epochs": len(det.history_),
    }
    return det, result
