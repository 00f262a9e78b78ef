"""One settings object, read from the environment, with embedded local defaults.

Every address that points at a server or at storage (the lake, MLflow, the Prefect API,
a Dask scheduler) lives here. Nothing is read at import time: call :func:`get_settings`.

Environment variables and their defaults:

- ``VAE_ANOMALY_HOME``: local state (MLflow store, Prefect home); ``<project root>/.state``.
- ``VAE_ANOMALY_LAKE``: root of the Parquet lake, a local path or fsspec URL;
  ``<project root>/data/lake``.
- ``MLFLOW_TRACKING_URI``: ``sqlite:///<home>/mlflow.db``.
- ``VAE_ANOMALY_MLFLOW_ARTIFACTS``: ``file://<home>/mlartifacts``; used with the local default
  store only (a tracking server keeps its own artifact root).
- ``PREFECT_API_URL``: unset, meaning Prefect's ephemeral API with state under ``PREFECT_HOME``.
- ``PREFECT_HOME``: ``<home>/prefect``.
- ``VAE_ANOMALY_DASK_ADDRESS``: unset, meaning no Dask cluster.
- ``VAE_ANOMALY_BENCHDATA``: ``<project root>/../shared/benchdata``.
- ``VAE_ANOMALY_REVIEW_URL``: the review page's base URL that alerts link to (the batch's
  report and review page); ``http://127.0.0.1:8765``, where ``vae-anomaly review`` listens.
- ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` /
  ``MLFLOW_HTTP_REQUEST_TIMEOUT``: MLflow's own; set to ``2`` / ``1`` / ``60`` when unset, by
  :func:`apply_mlflow_env` (MLflow's defaults, 7 retries with backoff factor 2, spend about four
  minutes retrying a server that answers 503 before anything is reported).
- ``VAE_ANOMALY_TORCH_THREADS``: unset, meaning torch's own default (one thread per core). Set it
  to cap the CPU threads a training or scoring task uses, e.g. ``1`` on a shared machine or when
  several Dask workers share a host.
- ``VAE_ANOMALY_LAKE_RETENTION``: how long the lake keeps its history (``7d``; a duration in
  whole hours, :func:`pipelines.durations.whole_hours`): ``vae-anomaly maintain`` cleans Delta
  log entries and vacuums removed files older than this, so ``vae-anomaly lake restore`` (time
  travel) works for batches removed less than this long ago (:mod:`pipelines.lake.maintenance`).

The project root is the parent of the ``pipelines`` package directory. Empty variables count
as unset. Relative paths are resolved against the current directory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from pydantic import BaseModel, ConfigDict

from pipelines.durations import whole_hours

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The lake's default history: 7 days, Delta's own default for keeping removed files.
LAKE_RETENTION_HOURS = 7 * 24


class Settings(BaseModel):
    """Where the pipelines find their storage and servers.

    Attributes
    ----------
    project_root : Path
        The repository root (parent of the ``pipelines`` package).
    home : Path
        Folder for local state: the default MLflow store and Prefect home.
    lake_url : str
        Root of the Parquet lake: a local path or an fsspec URL (``file://``, ``memory://``,
        ``s3://`` ...).
    mlflow_tracking_uri : str
        MLflow tracking URI.
    mlflow_artifact_root : str
        Artifact root for experiments created against the local default store.
    prefect_api_url : str or None
        Prefect API; ``None`` means Prefect's ephemeral local API.
    prefect_home : Path
        ``PREFECT_HOME`` to use when it is not set already (see :func:`apply_prefect_env`).
    dask_address : str or None
        Address of a Dask scheduler, or ``None`` to run tasks in-process.
    benchdata_dir : Path
        Labelled benchmark data (``tabular/``, ``timeseries/``).
    torch_threads : int or None
        CPU threads for torch in the training and scoring tasks; ``None`` leaves torch's default.
    review_url : str
        Base URL of the review page, for the links in alerts (:mod:`pipelines.alerts`).
    lake_retention_hours : int
        History the lake keeps, in hours (:data:`LAKE_RETENTION_HOURS` by default): the
        retention of ``vae-anomaly maintain``'s log cleanup and vacuum.
    """

    model_config = ConfigDict(frozen=True)

    project_root: Path
    home: Path
    lake_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    prefect_api_url: Optional[str] = None
    prefect_home: Path
    dask_address: Optional[str] = None
    benchdata_dir: Path
    torch_threads: Optional[int] = None
    review_url: str = "http://127.0.0.1:8765"
    lake_retention_hours: int = LAKE_RETENTION_HOURS

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Build settings from ``environ`` (default: ``os.environ``) and the local defaults.

        Parameters
        ----------
        environ : mapping, optional
            Variables to read; tests pass a plain dict.

        Returns
        -------
        Settings
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> Optional[str]:
            value = env.get(name, "")
            return value.strip() or None

        home = _path(get("VAE_ANOMALY_HOME") or PROJECT_ROOT / ".state")
        return cls(
            project_root=PROJECT_ROOT,
            home=home,
            lake_url=get("VAE_ANOMALY_LAKE") or str(PROJECT_ROOT / "data" / "lake"),
            mlflow_tracking_uri=get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            mlflow_artifact_root=get("VAE_ANOMALY_MLFLOW_ARTIFACTS") or (home / "mlartifacts").as_uri(),
            prefect_api_url=get("PREFECT_API_URL"),
            prefect_home=_path(get("PREFECT_HOME") or home / "prefect"),
            dask_address=get("VAE_ANOMALY_DASK_ADDRESS"),
            benchdata_dir=_path(get("VAE_ANOMALY_BENCHDATA") or PROJECT_ROOT.parent / "shared" / "benchdata"),
            torch_threads=_positive_int("VAE_ANOMALY_TORCH_THREADS", get("VAE_ANOMALY_TORCH_THREADS")),
            review_url=get("VAE_ANOMALY_REVIEW_URL") or "http://127.0.0.1:8765",
            lake_retention_hours=_retention(get("VAE_ANOMALY_LAKE_RETENTION")),
        )

    def ensure_home(self) -> Path:
        """Create the local state folder if needed and return it."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


def _positive_int(name: str, value: Optional[str]) -> Optional[int]:
    """``value`` as a whole number >= 1, or None when unset; anything else is a clear error."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return number


def _retention(value: Optional[str]) -> int:
    """``VAE_ANOMALY_LAKE_RETENTION`` in hours (the default when unset); a clear error otherwise."""
    if value is None:
        return LAKE_RETENTION_HOURS
    return whole_hours(value, "VAE_ANOMALY_LAKE_RETENTION")


def apply_torch_threads(settings: Optional[Settings] = None) -> Optional[int]:
    """Set torch's CPU thread count from ``VAE_ANOMALY_TORCH_THREADS``, if it is set.

    Called at the start of every task that trains or scores, in the thread that runs it: with
    OpenMP, torch's count is per thread (new threads start from the last value set anywhere), and
    Prefect runs tasks in worker threads, or on Dask workers. Returns the count applied, or None
    when the setting is unset.
    """
    threads = (settings or get_settings()).torch_threads
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return threads


def _path(value: "str | Path") -> Path:
    """An absolute path with ``~`` expanded."""
    return Path(value).expanduser().absolute()


def get_settings() -> Settings:
    """Read the settings from the current environment (not cached, so cheap to re-read in tests)."""
    return Settings.from_env()


# MLflow's HTTP client reads these on every request: a few seconds of retries, not four minutes
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def apply_mlflow_env() -> dict[str, str]:
    """Cap MLflow's HTTP retries and timeout (:data:`MLFLOW_HTTP_DEFAULTS`) unless the
    environment sets them; returns the variables this call set."""
    return _set_unset(MLFLOW_HTTP_DEFAULTS)


def _set_unset(wanted: Mapping[str, str]) -> dict[str, str]:
    """Set each variable of ``wanted`` in ``os.environ`` that is unset or empty; those set."""
    applied = {}
    for name, value in wanted.items():
        if not os.environ.get(name):
            os.environ[name] = value
            applied[name] = value
    return applied


def apply_prefect_env(settings: Optional[Settings] = None) -> dict[str, str]:
    """Point Prefect at the project's local state unless the environment already says otherwise.

    Sets ``PREFECT_HOME`` (to ``settings.prefect_home``), ``PREFECT_SERVER_ANALYTICS_ENABLED``
    (to ``false``) and ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (to 120) in
    ``os.environ`` when they are not set.

    The import-order rule (written here once): Prefect reads its settings when it is first
    imported, so every entry point (the CLI, :func:`pipelines.deployments.serve_all`, a script)
    calls this **before anything imports prefect**, and imports ``pipelines.flows`` and
    ``pipelines.deployments``' flows inside its functions, not at module level.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :func:`get_settings`.

    Returns
    -------
    dict
        The variables that were set by this call (empty if all were set already).
    """
    settings = settings or get_settings()
    wanted = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the ephemeral API starts in a subprocess; 20 s (Prefect's default) is too short on a busy 2-core machine
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    applied = _set_unset(wanted)
    # Prefect's ephemeral API keeps its SQLite database there and fails if the folder is missing
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    return applied
