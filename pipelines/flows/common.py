"""What the train, score and retrain flows share: settings resolution, lake access, the result
dataclasses, and the tasks both training flows use (read the data, fit and register, aliases)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import nodes, progress
from pipelines.errors import TrackingError
from pipelines.lake import BATCH_COLUMN, Lake, LakeError
from pipelines.settings import apply_torch_threads, get_settings

IO_RETRIES = 2
IO_RETRY_DELAY = 2


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """The I/O tasks' retry condition (Prefect's ``retry_condition_fn``): retry I/O failures, not
    bad input: no ValueError (vae_core's DataError, bad parameters), no TrackingError (MLflow
    retried already), and a LakeError only if an OSError other than not-found caused it."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if isinstance(exc, (ValueError, TrackingError)):
        return False
    if not isinstance(exc, LakeError):
        return True
    cause = exc.__cause__
    return isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError)


def io_task(name: str):
    """Decorator for an I/O task: retried on transient errors, never cached (inputs are large frames)."""
    return task(
        name=name, retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY,
        retry_condition_fn=is_transient, cache_policy=NO_CACHE,
    )


def lake_for(lake_url: Optional[str]) -> Lake:
    """The lake at ``lake_url``, or the configured one."""
    return Lake(lake_url or get_settings().lake_url)


def tracking_for(tracking_uri: Optional[str]):
    """The :mod:`pipelines.tracking` package, pointed at ``tracking_uri`` or the configured store
    (imported here, not at module level, so importing a flow does not import MLflow)."""
    from pipelines import tracking

    s = get_settings()
    tracking.configure(tracking_uri or s.mlflow_tracking_uri, s.mlflow_artifact_root)
    return tracking


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TrainingData:
    """Rows to train on, with what the lake says about them."""

    frame: pd.DataFrame
    batch_ids: list[str]
    time_column: Optional[str]


@dataclass(frozen=True)
class TrainingSpec:
    """What a training needs besides the rows."""

    dataset: str
    model_name: str
    time_column: Optional[str]
    series_column: Optional[str]
    exclude_columns: Optional[list[str]]
    params: Optional[dict]
    seed: int
    run_name: str
    tags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Registered:
    """A trained and registered version; :meth:`to_dict` has the keys of the train flow's result."""

    model_name: str
    version: str
    run_id: str
    model_uri: str
    rows: int
    threshold: float
    device: str
    epochs: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Fitted:
    """The fitted detector and its registered version."""

    detector: nodes.Detector
    registered: Registered


# ----------------------------------------------------------------------------- tasks
@io_task("read-training-data")
def read_training_data(
    lake_url: Optional[str], dataset: str, batch_ids: Optional[list[str]] = None, recent: Optional[int] = None,
) -> TrainingData:
    """Rows of ``batch_ids`` (default: every batch, or the ``recent`` newest), with their lake keys."""
    lake = lake_for(lake_url)
    schema = lake.schema(dataset)
    if schema is None:
        raise LakeError(f"dataset {dataset!r} has no batches in the lake at {lake.url}; ingest some first")
    if batch_ids is None:
        batch_ids = [r.batch_id for r in lake.list_batches(dataset)]
        batch_ids = batch_ids[-recent:] if recent else batch_ids
    return TrainingData(lake.read(dataset, batch_ids=batch_ids), list(batch_ids), schema.time_column)


@task(name="fit-and-register", cache_policy=NO_CACHE)
def fit_and_register(frame: pd.DataFrame, spec: TrainingSpec, tracking_uri: Optional[str]) -> Fitted:
    """Fit a detector inside one MLflow run, log it and register a version (no alias changes)."""
    apply_torch_threads()
    tracking = tracking_for(tracking_uri)
    features = nodes.feature_frame(frame, spec.exclude_columns)
    params = dict(spec.params or {})
    run_params = {
        "dataset": spec.dataset, "rows": len(features), "kind": "timeseries" if spec.time_column else "tabular",
        "time_column": spec.time_column, "series_column": spec.series_column,
        "exclude_columns": spec.exclude_columns, "seed": spec.seed,
        "batches": sorted(frame[BATCH_COLUMN].unique().tolist()) if BATCH_COLUMN in frame else None,
    }
    with tracking.start_training_run(spec.dataset, spec.run_name, run_params, spec.tags) as run:
        det = nodes.fit_detector(
            features, spec.time_column, spec.series_column, params, spec.seed,
            epoch_logger(run, spec.model_name, int(params.get("max_epochs", 200))),
        )
        info = run.log_detector(det, spec.model_name, naive_utc(features.head(5)))
    return Fitted(det, Registered(
        model_name=info.name, version=info.version, run_id=run.run_id, model_uri=info.model_uri,
        rows=len(features), threshold=float(det.threshold_), device=det.device_, epochs=len(det.history_),
    ))


@io_task("set-aliases")
def set_aliases(tracking_uri: Optional[str], model_name: str, version: str) -> list[str]:
    """``challenger`` on ``version``; ``champion`` as well if the model has no champion yet."""
    return tracking_for(tracking_uri).apply_new_version_aliases(model_name, version)


@io_task("read-reviewed-items")
def read_reviewed_items(lake_url: Optional[str], dataset: str, label: Optional[str] = None) -> pd.DataFrame:
    """The reviewed items of ``dataset``'s reports (of version ``label``, if given) with their
    current verdicts (:func:`pipelines.review.labels.reviewed_items`)."""
    from pipelines.reports.store import ReportStore
    from pipelines.review.feedback import FeedbackStore
    from pipelines.review.labels import reviewed_items

    lake = lake_for(lake_url)
    return reviewed_items(ReportStore(lake.url), FeedbackStore(lake.table_uri(dataset, "feedback"), lake.delta_options),
                          dataset, label=label)


@io_task("log-reviewed-precision")
def log_reviewed_precision(tracking_uri: Optional[str], items: pd.DataFrame) -> dict[str, dict]:
    """Each model version's precision of flags from verdicts, as metrics ``reviewed_precision``
    and ``reviewed_items`` (step: the number of reviewed items) on the version's MLflow run.

    ``items`` are :func:`pipelines.review.labels.reviewed_items` (of one version or all). Called
    by the retrain, threshold and report flows, which read the verdicts anyway, rather than by
    each verdict's POST. A run that cannot be written is a warning: the figure is a record."""
    from pipelines.review.labels import version_precision

    tracking, logged = tracking_for(tracking_uri), {}
    for v in version_precision(items).itertuples(index=False):
        if not v.run_id:
            continue
        figures = {"reviewed_items": v.reviewed, **({} if v.precision is None else {"reviewed_precision": v.precision})}
        try:
            tracking.TrainingRun(v.run_id).log_metrics(figures, step=v.reviewed)
        except tracking.TrackingError as exc:
            get_run_logger().warning("reviewed precision of %s not recorded: %s", v.label, exc)
            continue
        logged[v.label] = figures
    return logged


def naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Timezone-aware datetime columns as naive UTC (MLflow signatures take naive datetimes only;
    vae_core reads naive times as UTC, so the served model scores them the same)."""
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def epoch_logger(run: Any, label: str, max_epochs: int):
    """A vae_core epoch callback that logs the epoch to ``run`` and reports progress."""
    def callback(m) -> None:
        d = m.as_dict()
        run.log_epoch({k: v for k, v in d.items() if k not in ("epoch", "best")}, step=m.epoch)
        progress.report("epochs", label, m.epoch, max_epochs, loss=m.train_loss, val_elbo=m.val_neg_elbo)

    return callback
