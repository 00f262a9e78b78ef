"""MLflow experiment tracking and model registry for the pipelines.

This is the only module of the project that imports :mod:`mlflow`. It gives the flows a small,
explicit API:

- :func:`configure` points MLflow at a tracking server or a local SQLite store.
- :class:`TrainingRun` (from :func:`start_training_run`) records one training: parameters,
  per-epoch metrics (pass :meth:`TrainingRun.log_epoch` to ``fit(callback=...)``), and the fitted
  detector as a registered MLflow **pyfunc** model (:meth:`TrainingRun.log_detector`). Inside
  ``with start_training_run(...):`` the module-level :func:`log_epoch`, :func:`log_detector`,
  :func:`log_params`, :func:`log_metrics`, :func:`set_tags` and :func:`log_comparison` log to
  that run.
- Registry helpers work with aliases, not the deprecated stages: :func:`apply_new_version_aliases`
  gives a new version ``challenger``, and ``champion`` too when the model has none;
  :func:`promote` moves ``champion``.
- :func:`load_detector` returns the vae_core detector behind a registered version (cached on
  disk by model name and version), for the flows that need more than pyfunc ``predict``.

Every run operation goes through :class:`mlflow.MlflowClient` with an explicit run id, never
through MLflow's fluent "active run" (thread-local global state): a :class:`TrainingRun` object
may be used from any thread, and :meth:`TrainingRun.attach` reopens a run by id in another
process. The "current run" of the module-level functions is the innermost ``with`` block of
this context (a :mod:`contextvars` variable), else the only run open in the process.
Failures surface as :class:`TrackingError` with a one-line message.

The served model
----------------
:class:`VAEAnomalyModel` is the pyfunc wrapper. Its only artifact is the vae_core save folder,
and the vae_core package travels with the model (``code_paths``), so a served model needs
torch, pandas, numpy, pyarrow, pydantic and mlflow, but not this project. The wrapper is pickled
*by value* (see :func:`_pickled_by_value`), so loading it never imports ``pipelines``.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import quote

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT_NAME = "detector"  # key of the vae_core save folder among the pyfunc artifacts
HISTOGRAM_FILE = "plots/calibration_scores.png"
TOP_FEATURES_COLUMN = "top_features"
DEFAULT_TOP_K = 3
# packages the served model imports; pinned to the versions installed here
SERVING_PACKAGES = ("mlflow", "torch", "pandas", "numpy", "pyarrow", "pydantic", "cloudpickle")
_HINT = "run `vae-anomaly train` first"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
_BATCH = 100  # MLflow's limit on params/tags per log_batch call

_state: dict[str, Optional[str]] = {"tracking_uri": None, "artifact_root": None}
_current: contextvars.ContextVar[tuple["TrainingRun", ...]] = contextvars.ContextVar("vae_anomaly_runs", default=())
_open_runs: dict[str, "TrainingRun"] = {}  # started here and not ended yet, by run id
_open_lock = threading.Lock()
_reachable: set[str] = set()  # tracking servers that answered once in this process


class TrackingError(RuntimeError):
    """A tracking or registry operation failed; the message is one line and says what to do."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version.

    Attributes
    ----------
    name, version : str
        Registered model name and version number (as a string, like MLflow).
    run_id : str or None
        The training run that logged it.
    model_uri : str
        ``models:/<name>/<version>``: a URI that keeps pointing at this exact version.
    aliases : tuple of str
        Aliases on the version when this object was made.
    """

    name: str
    version: str
    run_id: Optional[str]
    model_uri: str
    aliases: tuple[str, ...] = ()


# --------------------------------------------------------------------------------- configuration
def configure(tracking_uri: Optional[str] = None, artifact_root: Optional[str] = None, check: bool = True) -> str:
    """Point MLflow at a tracking store and model registry.

    Parameters
    ----------
    tracking_uri : str, optional
        ``http(s)://`` for a tracking server, ``sqlite:///path.db`` for a local store. ``None``
        keeps MLflow's current choice (an earlier ``configure``, else ``MLFLOW_TRACKING_URI``,
        else MLflow's default).
    artifact_root : str, optional
        Stores the client writes to directly (SQLite, other databases, ``file:``) only: folder
        (path or ``file://`` URI) under which experiments created by this module keep their
        artifacts. Default for SQLite: ``mlartifacts`` next to the database file. A tracking
        server decides its artifact location itself, so this is ignored for ``http(s)://``.
    check : bool
        For a tracking server, make sure it answers (once per process, 5 s timeout): MLflow's
        own HTTP retries take about four minutes to give up on a server that is not running.

    Returns
    -------
    str
        The tracking URI in use. The registry URI is set to the same store.
    """
    if check and tracking_uri and re.match(r"^https?://", tracking_uri):
        _check_reachable(tracking_uri)
    with _errors("cannot configure MLflow"):
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        uri = mlflow.get_tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        if artifact_root is None:
            artifact_root = str(db.parent / "mlartifacts")
    _state["tracking_uri"] = uri
    _state["artifact_root"] = artifact_root if _is_client_side_store(uri) else None
    return uri


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless the server at ``uri`` answers HTTP at all."""
    if uri in _reachable:
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (auth, a path prefix...): reachable
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({_one_line(str(reason))}); "
            "start it or point MLFLOW_TRACKING_URI at a running one"
        ) from e
    _reachable.add(uri)


def _sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (None for other URIs and in-memory SQLite)."""
    m = re.match(r"^sqlite:///(.+)$", uri)
    if not m or m.group(1).startswith(":memory:"):
        return None
    return Path(m.group(1).split("?")[0]).absolute()


def _is_client_side_store(uri: str) -> bool:
    """True unless ``uri`` is a server that places artifacts itself."""
    return not re.match(r"^(https?|databricks[^:]*|uc):", uri)


def client() -> MlflowClient:
    """An :class:`mlflow.MlflowClient` on the configured tracking store and registry
    (configured from the environment on first use), for reads this module doesn't wrap."""
    if _state["tracking_uri"] is None:
        configure(None)
    uri = mlflow.get_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=mlflow.get_registry_uri())


_client = client


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    """Turn MLflow and HTTP failures into a one-line :class:`TrackingError`."""
    try:
        yield
    except TrackingError:
        raise
    except MlflowException as e:
        raise TrackingError(f"{action}: {_one_line(e.message)}") from e
    except OSError as e:  # includes requests' ConnectionError
        raise TrackingError(f"{action}: {_one_line(str(e))}") from e


def _one_line(text: str, limit: int = 300) -> str:
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "unknown error")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _error_code(e: MlflowException) -> str:
    return str(getattr(e, "error_code", ""))


def get_or_create_experiment(name: str) -> str:
    """The id of experiment ``name``, created (or restored from the trash) when needed.

    Against a local store a new experiment keeps its artifacts under the configured artifact
    root (``<root>/<name>``), not MLflow's default ``./mlruns`` in the current directory.
    """
    client = _client()
    with _errors(f"cannot open experiment {name!r}"):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if _state["artifact_root"]:
            location = _join_uri(_state["artifact_root"], re.sub(r"[^A-Za-z0-9._-]+", "_", name))
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as e:  # created by a concurrent flow in the meantime
            if "RESOURCE_ALREADY_EXISTS" not in _error_code(e):
                raise
            return client.get_experiment_by_name(name).experiment_id


def _join_uri(root: str, name: str) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", root):
        return root.rstrip("/") + "/" + name
    return (Path(root).expanduser().absolute() / name).as_uri()


# --------------------------------------------------------------------------------- runs
def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts become ``a.b`` keys; lists, None and the rest become strings."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."
    return out


def _metric_items(metrics: Any) -> dict[str, float]:
    """Finite numeric entries of a dict or of an object with ``as_dict()`` (bools as 0/1)."""
    if hasattr(metrics, "as_dict"):
        metrics = metrics.as_dict()
    out = {}
    for key, value in dict(metrics).items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
            out[str(key)] = float(value.item())
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrainingRun:
    """One MLflow run that records a training; a context manager.

    >>> with start_training_run("transactions", "train-2024-06-01", {"rows": 5000}) as run:  # doctest: +SKIP
    ...     det = VAEDetector(seed=0).fit(frame, callback=run.log_epoch)
    ...     info = run.log_detector(det, "transactions", frame.head(5))
    ...     apply_new_version_aliases(info.name, info.version)

    Inside the ``with`` block the module-level ``log_epoch``/``log_detector``/... do the same.
    Leaving the ``with`` block ends the run as FINISHED, or FAILED (KILLED on Ctrl-C) when an
    exception escapes. Use :meth:`attach` to log into an existing run from another process.
    """

    def __init__(self, run_id: str, experiment_id: str, owned: bool = True):
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._owned = owned
        self._last_step: Optional[int] = None
        self._ended = False
        self._tokens: list[contextvars.Token] = []
        self._epoch_logging_failed = False

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def start(
        cls,
        experiment: str,
        run_name: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
    ) -> "TrainingRun":
        """Create a run in ``experiment`` (created if needed) and log ``params`` and ``tags``."""
        experiment_id = get_or_create_experiment(experiment)
        client = _client()
        all_tags = _context_tags({str(k): str(v) for k, v in (tags or {}).items()})
        with _errors(f"cannot start a run in experiment {experiment!r}"):
            run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        self = cls(run.info.run_id, experiment_id)
        with _open_lock:
            _open_runs[self.run_id] = self
        try:
            if params:
                self.log_params(params)
        except BaseException:
            with contextlib.suppress(TrackingError):
                self.end("FAILED")
            raise
        return self

    @classmethod
    def attach(cls, run_id: str) -> "TrainingRun":
        """Log into the existing run ``run_id``; leaving a ``with`` block does not end it."""
        with _errors(f"cannot open run {run_id!r}"):
            run = _client().get_run(run_id)
        return cls(run.info.run_id, run.info.experiment_id, owned=False)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED (once; later calls do nothing)."""
        if self._ended:
            return
        with _open_lock:
            _open_runs.pop(self.run_id, None)
        with _errors(f"cannot end run {self.run_id}"):
            _client().set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.from_string(status)))
        self._ended = True

    def __enter__(self) -> "TrainingRun":
        self._tokens.append(_current.set(_current.get() + (self,)))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        token = self._tokens.pop() if self._tokens else None
        try:
            if token is not None:
                _current.reset(token)
        except ValueError:  # left in another context than it was entered in
            _current.set(tuple(r for r in _current.get() if r is not self))
        if not self._owned:
            return
        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except TrackingError:
            if exc_type is None:
                raise
            log.warning("could not mark run %s as %s", self.run_id, status, exc_info=True)

    # ------------------------------------------------------------ plain logging
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (flattened; lists and None as strings)."""
        items = [Param(k, v) for k, v in _flat_params(params).items()]
        with _errors(f"cannot log params to run {self.run_id}"):
            for i in range(0, len(items), _BATCH):
                _client().log_batch(self.run_id, params=items[i : i + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values as strings)."""
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        with _errors(f"cannot set tags on run {self.run_id}"):
            for i in range(0, len(items), _BATCH):
                _client().log_batch(self.run_id, tags=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Log the finite numeric entries of ``metrics`` at ``step`` (default 0)."""
        ts, step = _now_ms(), int(step or 0)
        items = [Metric(k, v, ts, step) for k, v in _metric_items(metrics).items() if math.isfinite(v)]
        if items:
            with _errors(f"cannot log metrics to run {self.run_id}"):
                _client().log_batch(self.run_id, metrics=items)

    def log_epoch(self, metrics: Any, step: Optional[int] = None) -> None:
        """Log one epoch's metrics; usable as the vae_core ``fit(callback=...)``.

        Parameters
        ----------
        metrics : vae_core.EpochMetrics or dict
            ``train_loss``, ``train_recon``, ``train_kl``, ``val_neg_elbo``, ``val_recon``,
            ``val_kl``, ``beta``, ``seconds`` and ``best`` (as 0/1) become metrics.
        step : int, optional
            Default: the ``epoch`` entry.

        A tracking failure here is logged as a warning and training goes on (an unreachable
        server must not throw away a long training); later epochs of this run are then not
        sent at all, since each failed call can take minutes of MLflow's retries. Returns None,
        so training never stops here.
        """
        values = _metric_items(metrics)
        epoch = values.pop("epoch", None)
        step = int(step if step is not None else epoch if epoch is not None else (self._last_step or 0) + 1)
        self._last_step = step
        if self._epoch_logging_failed:
            return None
        try:
            self.log_metrics(values, step=step)
        except TrackingError as e:
            self._epoch_logging_failed = True
            log.warning("epoch metrics from epoch %s on are not recorded in run %s: %s", step, self.run_id, e)
        return None

    __call__ = log_epoch

    # ------------------------------------------------------------ the model
    def log_detector(
        self,
        detector: Any,
        registered_model_name: str,
        input_example: pd.DataFrame,
        *,
        top_k: int = DEFAULT_TOP_K,
        set_aliases: bool = False,
    ) -> ModelVersionInfo:
        """Log a fitted vae_core detector as a pyfunc model and register a new version.

        Also logs the detector config as params (existing run params of the same name win),
        summary metrics (``threshold``, ``calibration_size``, ``epochs_trained``,
        ``best_val_neg_elbo``), a histogram of the calibration scores with the threshold
        (``plots/calibration_scores.png``), and the run tags ``registered_model`` and
        ``registered_version``. Aliases are left to the caller (the flows own that policy)
        unless ``set_aliases``: then :func:`apply_new_version_aliases` runs on the new version.

        Parameters
        ----------
        detector : VAEDetector or TimeSeriesVAEDetector
            Fitted.
        registered_model_name : str
        input_example : DataFrame
            A few rows in the form the served model receives (for the time-series detector:
            with the time, series and value columns); used for the signature and stored with
            the model.
        top_k : int
            Default number of features in the ``top_features`` output column (a request may
            pass the ``top_k`` param).
        set_aliases : bool
            Give the new version ``challenger`` (and ``champion`` if the model has none).

        Returns
        -------
        ModelVersionInfo
        """
        if not isinstance(input_example, pd.DataFrame) or input_example.empty:
            raise TrackingError("input_example must be a non-empty DataFrame of model input rows")
        self._log_detector_summary(detector)
        self._log_histogram(detector)
        with tempfile.TemporaryDirectory(prefix="vae-anomaly-model-") as tmp:
            saved = detector.save(Path(tmp) / MODEL_ARTIFACT_NAME)
            output = score_with_explanations(detector, input_example, top_k)
            with _errors("cannot infer the model signature"):
                signature = mlflow.models.infer_signature(input_example, output, params={"top_k": int(top_k)})
            model_info = self._log_pyfunc(saved, signature, input_example, top_k)
        info = register_and_alias(
            model_info.model_uri, registered_model_name, run_id=self.run_id,
            tags={"kind": _detector_kind(detector)}, set_aliases=set_aliases,
        )
        self.set_tags({"registered_model": info.name, "registered_version": info.version})
        return info

    def _log_pyfunc(self, saved: Path, signature: Any, input_example: pd.DataFrame, top_k: int) -> Any:
        """Log the pyfunc model as a LoggedModel of this run's experiment; its ModelInfo."""
        import vae_core

        with _errors(f"cannot log the model of run {self.run_id}"):
            params = _client().get_run(self.run_id).data.params
            # Model.log(run_id=...) alone would file the LoggedModel under the *active*
            # experiment (Default, "0", when no fluent run is active): create it here instead.
            logged = mlflow.initialize_logged_model(
                name="vae_detector", source_run_id=self.run_id, params=params,
                experiment_id=self.experiment_id,
            )
            try:
                with _pickled_by_value():
                    return mlflow.models.Model.log(
                        artifact_path=None,  # a required positional in 3.17, though deprecated for `name`
                        name="vae_detector",
                        flavor=mlflow.pyfunc,
                        run_id=self.run_id,
                        model_id=logged.model_id,
                        python_model=VAEAnomalyModel(top_k=top_k),
                        artifacts={MODEL_ARTIFACT_NAME: str(saved)},
                        code_paths=[str(Path(vae_core.__file__).parent)],
                        pip_requirements=serving_requirements(),
                        signature=signature,
                        input_example=input_example,
                        step=self._last_step or 0,
                    )
            except BaseException:
                with contextlib.suppress(Exception):  # already FAILED if Model.log got that far
                    mlflow.finalize_logged_model(logged.model_id, "FAILED")
                raise

    def _log_detector_summary(self, detector: Any) -> None:
        config = detector.config_.model_dump()
        with _errors(f"cannot read the params of run {self.run_id}"):
            existing = _client().get_run(self.run_id).data.params
        fresh = {}
        for key, value in _flat_params(config).items():
            if key not in existing:
                fresh[key] = value
            elif existing[key] != value:
                log.warning("run param %r=%r kept; the detector config says %r", key, existing[key], value)
        fresh["kind"] = _detector_kind(detector)
        fresh["n_features"] = str(len(detector.feature_names_in_))
        self.log_params({k: v for k, v in fresh.items() if k not in existing})
        history = list(detector.history_)
        val = [h["val_neg_elbo"] for h in history if math.isfinite(h.get("val_neg_elbo", math.nan))]
        self.log_metrics(
            {
                "threshold": float(detector.threshold_),
                "calibration_size": len(detector.calibration_.scores),
                "epochs_trained": len(history),
                "best_val_neg_elbo": min(val) if val else math.nan,
                "train_seconds": sum(h.get("seconds", 0.0) for h in history),
            },
            step=self._last_step,
        )

    def _log_histogram(self, detector: Any) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        scores = detector.calibration_.scores
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend state
        ax = fig.add_subplot()
        ax.hist(scores, bins=min(50, max(10, len(scores) // 5)), color="#4C72B0", alpha=0.85)
        ax.axvline(detector.threshold_, color="#C44E52", linestyle="--", label=f"threshold {detector.threshold_:.4g}")
        ax.set_xlabel(f"anomaly score ({detector.config_.anomaly_score})")
        ax.set_ylabel("calibration rows")
        ax.set_title(f"Held-out calibration scores (n={len(scores)})")
        ax.legend()
        fig.tight_layout()
        with _errors(f"cannot log the score histogram of run {self.run_id}"):
            _client().log_figure(self.run_id, fig, HISTOGRAM_FILE)

    def log_comparison(
        self, metrics: Mapping[str, Any], decision: str, details: Optional[Mapping[str, Any]] = None
    ) -> None:
        """See :func:`log_comparison`."""
        log_comparison(self.run_id, metrics, decision, details)


def start_training_run(
    experiment: str,
    run_name: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    tags: Optional[Mapping[str, Any]] = None,
) -> TrainingRun:
    """Start a :class:`TrainingRun` (use it in a ``with`` block)."""
    return TrainingRun.start(experiment, run_name, params, tags)


def _context_tags(tags: dict[str, str]) -> dict[str, str]:
    """MLflow's source/user tags, as ``mlflow.start_run`` would add them, plus ``tags``."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return {str(k): str(v) for k, v in resolve_tags(tags).items()}
    except Exception:  # best effort: these tags only help browsing in the UI
        return tags


def log_comparison(
    run_id: Optional[str],
    metrics: Mapping[str, Any],
    decision: str,
    details: Optional[Mapping[str, Any]] = None,
) -> None:
    """Record a champion-vs-challenger comparison and the promotion decision on a run.

    Parameters
    ----------
    run_id : str or None
        Usually the challenger's training run; None: the current run (see :func:`current_run`).
    metrics : dict
        Figures of both models, e.g. ``{"holdout_nll_champion": 3.1, "holdout_nll_challenger":
        2.9}``; logged as metrics (non-numeric and non-finite entries are left out).
    decision : str
        E.g. ``"promoted"`` or ``"rejected"``; tag ``promotion.decision``.
    details : dict, optional
        More tags, as ``promotion.<key>``, e.g. ``{"rule": "...", "champion_version": "3"}``.
    """
    run = current_run() if run_id is None else TrainingRun(run_id, experiment_id="", owned=False)
    run.log_metrics(metrics)
    run.set_tags({"promotion.decision": decision, **{f"promotion.{k}": v for k, v in (details or {}).items()}})


def current_run() -> TrainingRun:
    """The run of the innermost ``with start_training_run(...)`` block of this context, else the
    only run started in this process and not yet ended."""
    stack = _current.get()
    if stack:
        return stack[-1]
    with _open_lock:
        runs = list(_open_runs.values())
    if len(runs) == 1:
        return runs[0]
    raise TrackingError(
        "no current training run: call this inside `with start_training_run(...):`"
        if not runs else f"{len(runs)} training runs are open; call the TrainingRun's own method instead"
    )


def log_epoch(metrics: Any, step: Optional[int] = None) -> None:
    """:meth:`TrainingRun.log_epoch` on the current run."""
    current_run().log_epoch(metrics, step)


def log_metrics(metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
    """:meth:`TrainingRun.log_metrics` on the current run."""
    current_run().log_metrics(metrics, step)


def log_params(params: Mapping[str, Any]) -> None:
    """:meth:`TrainingRun.log_params` on the current run."""
    current_run().log_params(params)


def set_tags(tags: Mapping[str, Any]) -> None:
    """:meth:`TrainingRun.set_tags` on the current run."""
    current_run().set_tags(tags)


def log_detector(
    detector: Any,
    registered_model_name: str,
    input_example: pd.DataFrame,
    *,
    top_k: int = DEFAULT_TOP_K,
    set_aliases: bool = False,
) -> ModelVersionInfo:
    """:meth:`TrainingRun.log_detector` on the current run."""
    return current_run().log_detector(
        detector, registered_model_name, input_example, top_k=top_k, set_aliases=set_aliases
    )


# --------------------------------------------------------------------------------- registry
def model_uri(name: str, alias: Optional[str] = None, version: Optional[str | int] = None) -> str:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (give exactly one of them)."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    return f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"


def _version_info(mv: Any) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name, version=str(mv.version), run_id=mv.run_id or None,
        model_uri=model_uri(mv.name, version=mv.version), aliases=tuple(mv.aliases or ()),
    )


def get_version(name: str, version: str | int) -> ModelVersionInfo:
    """Version ``version`` of registered model ``name``."""
    client = _client()
    try:
        return _version_info(client.get_model_version(name, str(version)))
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(e):
            raise TrackingError(f"no version {version} of registered model {name!r}; {_HINT}") from e
        raise TrackingError(f"cannot read version {version} of model {name!r}: {_one_line(e.message)}") from e


def get_aliases(name: str) -> dict[str, str]:
    """Alias -> version of registered model ``name`` (empty when the model does not exist)."""
    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(e):
            return {}
        raise TrackingError(f"cannot read registered model {name!r}: {_one_line(e.message)}") from e
    return {str(k): str(v) for k, v in (model.aliases or {}).items()}


def get_alias_version(name: str, alias: str) -> Optional[str]:
    """The version that ``alias`` points at, or None when the alias or the model doesn't exist."""
    return get_aliases(name).get(alias)


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of model ``name`` at ``version`` (moving it from any other version)."""
    with _errors(f"cannot set alias {alias!r} of model {name!r} to version {version}"):
        _client().set_registered_model_alias(name, alias, str(version))


def promote(name: str, version: str | int, alias: str = CHAMPION) -> Optional[str]:
    """Make ``version`` the ``alias`` (champion) of model ``name``.

    Returns
    -------
    str or None
        The version that held the alias before (None if none did), for logs and rollback.
    """
    get_version(name, version)  # a clear error for a version that does not exist
    previous = get_alias_version(name, alias)
    set_alias(name, alias, version)
    return previous


def apply_new_version_aliases(name: str, version: str | int) -> list[str]:
    """Aliases for a freshly registered version: ``challenger``, plus ``champion`` if there is none.

    Returns the aliases set.
    """
    set_alias(name, CHALLENGER, version)
    if get_alias_version(name, CHAMPION) is None:
        set_alias(name, CHAMPION, version)
        return [CHALLENGER, CHAMPION]
    return [CHALLENGER]


def register_and_alias(
    source_uri: str,
    name: str,
    *,
    run_id: Optional[str] = None,
    tags: Optional[Mapping[str, Any]] = None,
    set_aliases: bool = True,
) -> ModelVersionInfo:
    """Register the logged model at ``source_uri`` as a new version of ``name`` and alias it.

    Parameters
    ----------
    source_uri : str
        A logged model: ``models:/<model_id>`` (what ``Model.log`` returns) or ``runs:/...``.
    name : str
        Registered model name (created on first use).
    run_id : str, optional
        Only used in error messages.
    tags : dict, optional
        Model version tags.
    set_aliases : bool
        Apply :func:`apply_new_version_aliases`.
    """
    with _errors(f"cannot register {source_uri} as model {name!r}" + (f" (run {run_id})" if run_id else "")):
        mv = mlflow.register_model(source_uri, name, tags={str(k): str(v) for k, v in (tags or {}).items()})
    if set_aliases:
        apply_new_version_aliases(name, mv.version)
    return get_version(name, mv.version)


def resolve(uri: str) -> ModelVersionInfo:
    """The registered version behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    m = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))/?$", uri.strip())
    if not m:
        raise TrackingError(
            f"unsupported model URI {uri!r}; expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name, alias, version = m.groups()
    if version is not None:
        return get_version(name, version)
    aliases = get_aliases(name)
    if alias not in aliases:
        if not aliases and not _model_exists(name):
            raise TrackingError(f"no registered model {name!r}; {_HINT}")
        raise TrackingError(f"no model version with alias {alias!r} for model {name!r}; {_HINT}")
    return get_version(name, aliases[alias])


def _model_exists(name: str) -> bool:
    try:
        _client().get_registered_model(name)
        return True
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(e):
            return False
        raise TrackingError(f"cannot read registered model {name!r}: {_one_line(e.message)}") from e


# --------------------------------------------------------------------------------- loading
def load_detector(
    model_uri: str,
    cache_dir: Optional[str | Path] = None,
    device: Optional[str] = None,
) -> tuple[Any, ModelVersionInfo]:
    """The vae_core detector behind a registered model version.

    Parameters
    ----------
    model_uri : str
        ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
    cache_dir : path, optional
        Downloads are kept in ``<cache_dir>/<name>/<version>`` and reused while the registry
        still says that version came from the same logged model. ``None``: download to a
        temporary folder that is removed after loading.
    device : str, optional
        Passed to the detector's ``load`` (default: its configured device).

    Returns
    -------
    (detector, ModelVersionInfo)
    """
    info = resolve(model_uri)
    with _errors(f"cannot read {info.model_uri}"):
        source = _client().get_model_version(info.name, info.version).source
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="vae-anomaly-download-") as tmp:
            local = _download(info, Path(tmp) / "model")
            return _load_saved_detector(_detector_dir(local), device), info
    final = Path(cache_dir).expanduser().absolute() / quote(info.name, safe="") / info.version
    marker = final / ".vae-anomaly-source.json"
    stamp = {"source": source, "run_id": info.run_id}
    if not (marker.exists() and json.loads(marker.read_text()) == stamp):
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            _download(info, staging)
            (staging / marker.name).write_text(json.dumps(stamp))
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(staging, final)
            except OSError:  # a concurrent loader put it there first
                if not marker.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _load_saved_detector(_detector_dir(final), device), info


def _download(info: ModelVersionInfo, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    with _errors(f"cannot download {info.model_uri}"):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(dst)))


def _detector_dir(model_dir: Path) -> Path:
    """The vae_core save folder inside a downloaded pyfunc model."""
    try:
        flavor = mlflow.models.Model.load(str(model_dir)).flavors["python_function"]
        sub = flavor["artifacts"][MODEL_ARTIFACT_NAME]["path"]
    except (MlflowException, OSError, KeyError, TypeError) as e:
        raise TrackingError(f"{model_dir} is not a vae-anomaly pyfunc model: {_one_line(str(e))}") from e
    return model_dir / sub


def serving_requirements() -> list[str]:
    """``package==version`` for what the served model imports, pinned to this environment."""
    reqs = []
    for package in SERVING_PACKAGES:
        version = importlib.metadata.version(package).split("+")[0]  # "2.13.0+cpu" -> any 2.13.0 build
        reqs.append(f"{package}=={version}")
    return reqs


# --------------------------------------------------------------------------------- pyfunc model
# Everything below is pickled by value with the model (see _pickled_by_value): keep it free of
# module state, and import vae_core inside the functions.
def _load_saved_detector(directory: str | Path, device: Optional[str] = None) -> Any:
    """A detector from a vae_core save folder, tabular or time-series (from ``config.json``)."""
    import json as _json
    from pathlib import Path as _Path

    from vae_core import TimeSeriesVAEDetector, VAEDetector

    path = _Path(directory)
    meta_file = path / "config.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no saved vae_core detector in {path} (config.json is missing)")
    kind = _json.loads(meta_file.read_text()).get("kind")
    classes = {"tabular": VAEDetector, "timeseries": TimeSeriesVAEDetector}
    if kind not in classes:
        raise ValueError(f"{path}: unknown detector kind {kind!r}")
    return classes[kind].load(path, device=device)


def _detector_kind(detector: Any) -> str:
    return "timeseries" if hasattr(detector, "time_column_") else "tabular"


def score_with_explanations(detector: Any, frame: Any, top_k: int = 3) -> Any:
    """``detector.score(frame)`` plus a ``top_features`` column like ``"amount (72%), fee (20%)"``.

    The features are the ``top_k`` largest contributors of :meth:`explain` whose share of the
    row's excess negative log-likelihood rounds to at least 1% (empty when none stands out).
    """
    scores = detector.score(frame)
    if len(frame) == 0:
        return scores.assign(top_features=pd.Series([], dtype=object, index=scores.index))
    explained = detector.explain(frame, top_k=max(1, int(top_k)))
    k = len(explained) // len(frame)
    features = explained["feature"].to_numpy().reshape(len(frame), k)
    shares = explained["share"].to_numpy(dtype=float).reshape(len(frame), k)
    text = [
        ", ".join(f"{f} ({round(100 * s)}%)" for f, s in zip(row_f, row_s) if round(100 * s) >= 1)
        for row_f, row_s in zip(features, shares)
    ]
    out = scores.copy()
    out["top_features"] = pd.Series(text, index=scores.index, dtype=object)
    return out


class VAEAnomalyModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper of a vae_core detector (artifact ``detector``: its save folder).

    ``predict`` returns one row per input row: ``neg_elbo``, ``nll_iwae``, ``recon_error``,
    ``anomaly_score``, ``p_value``, ``is_anomaly`` and ``top_features``. The request param
    ``top_k`` sets how many features ``top_features`` lists.
    """

    def __init__(self, top_k: int = 3):
        self.top_k = int(top_k)
        self.detector = None

    def __getstate__(self) -> dict:
        return {"top_k": self.top_k}  # never pickle a loaded detector

    def __setstate__(self, state: dict) -> None:
        self.top_k = state["top_k"]
        self.detector = None

    def load_context(self, context: Any) -> None:
        self.detector = _load_saved_detector(context.artifacts["detector"])

    # MLflow reads these type hints: pd.DataFrame means "no type-hint validation, signature from
    # the input example" (it logs an INFO line saying so on load; without hints it warns).
    def predict(self, context: Any, model_input: pd.DataFrame, params: Optional[dict] = None) -> pd.DataFrame:
        if self.detector is None:
            raise RuntimeError("the model is not loaded (load_context was not called)")
        top_k = (params or {}).get("top_k") or self.top_k
        return score_with_explanations(self.detector, model_input, int(top_k))


@contextlib.contextmanager
def _pickled_by_value() -> Iterator[None]:
    """While logging, cloudpickle this module's classes and functions by value.

    By reference, unpickling :class:`VAEAnomalyModel` would import ``pipelines.tracking`` and
    so need this project in the serving environment; by value it needs only mlflow and the
    vae_core copy that travels in ``code_paths``.
    """
    import sys

    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)
