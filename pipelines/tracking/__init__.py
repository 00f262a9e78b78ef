"""MLflow experiment tracking and model registry for the pipelines.

This package is the only importer of :mod:`mlflow` in the project. One module per job:

- :mod:`~pipelines.tracking.store`: :func:`configure` (a tracking server or a local SQLite
  store), :func:`client`, :class:`TrackingError` (one-line messages).
- :mod:`~pipelines.tracking.runs`: :class:`TrainingRun` (from :func:`start_training_run`), the
  one explicit run object a training passes to whoever logs: params, per-epoch metrics
  (``fit(callback=run.log_epoch)``), the detector (:meth:`TrainingRun.log_detector`), the
  champion/challenger comparison.
- :mod:`~pipelines.tracking.registry`: versions and aliases (``challenger`` on a new version,
  ``champion`` moved by :func:`promote`), and :func:`resolve`, one registry call per URI.
- :mod:`~pipelines.tracking.loading`: :func:`load_detector` / :func:`load_version`, the vae_core
  detector behind a version, with an on-disk download cache.
- :mod:`~pipelines.tracking.pyfunc`: logs the served model from code
  (:mod:`~pipelines.tracking.served_model`, which MLflow runs; no pickle).
"""
from pipelines.tracking.loading import load_detector, load_version
from pipelines.tracking.pyfunc import DETECTOR_ARTIFACT, SERVED_MODEL_FILE, serving_requirements
from pipelines.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    ModelVersionInfo,
    apply_new_version_aliases,
    check_model_name,
    find_alias,
    get_alias,
    get_alias_version,
    get_aliases,
    get_version,
    model_uri,
    promote,
    register,
    require_model,
    resolve,
    set_alias,
)
from pipelines.tracking.runs import HISTOGRAM_FILE, TrainingRun, log_report, start_training_run
from pipelines.tracking.store import TrackingError, client, configure, get_or_create_experiment

__all__ = [
    "CHALLENGER", "CHAMPION", "DETECTOR_ARTIFACT", "HISTOGRAM_FILE", "SERVED_MODEL_FILE", "ModelVersionInfo",
    "TrackingError", "TrainingRun", "apply_new_version_aliases", "check_model_name", "client", "configure", "find_alias",
    "get_alias", "get_alias_version", "get_aliases", "get_or_create_experiment", "get_version",
    "load_detector", "load_version", "log_report", "model_uri", "promote", "register", "require_model", "resolve",
    "serving_requirements", "set_alias", "start_training_run",
]
