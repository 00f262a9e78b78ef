"""Training runs: one explicit :class:`TrainingRun` object per MLflow run, passed to whoever logs.

Every operation goes through :class:`mlflow.MlflowClient` with the run's id, never through
MLflow's fluent "active run" (thread-local global state), so a run object may be used from any
thread or task. Leaving ``with start_training_run(...) as run:`` ends the run.

>>> with start_training_run("transactions", "train-2024-06-01", {"rows": 5000}) as run:  # doctest: +SKIP
...     det = VAEDetector(seed=0).fit(frame, callback=run.log_epoch)
...     info = run.log_detector(det, "transactions", frame.head(5))
>>> apply_new_version_aliases(info.name, info.version)  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from typing import Any, Mapping, Optional

from mlflow.entities import Metric, Param, RunStatus, RunTag

from pipelines.tracking import pyfunc
from pipelines.tracking.registry import ModelVersionInfo, register
from pipelines.tracking.store import TrackingError, client, errors, get_or_create_experiment

log = logging.getLogger("pipelines.tracking")

HISTOGRAM_FILE = "plots/calibration_scores.png"
DEFAULT_TOP_K = 3
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
_BATCH = 100  # MLflow's limit on params/tags per log_batch call


class TrainingRun:
    """One MLflow run that records a training; a context manager.

    Leaving the ``with`` block ends the run as FINISHED, or FAILED (KILLED on Ctrl-C) when an
    exception escapes. ``TrainingRun(run_id, experiment_id)`` logs into an existing run (e.g. the
    retrain flow's comparison, after the challenger's run ended).
    """

    def __init__(self, run_id: str, experiment_id: str = ""):
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._last_step: Optional[int] = None
        self._ended = False
        self._epoch_logging_failed = False

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
        all_tags = _context_tags({str(k): str(v) for k, v in (tags or {}).items()})
        with errors(f"cannot start a run in experiment {experiment!r}"):
            run = client().create_run(experiment_id, tags=all_tags, run_name=run_name)
        self = cls(run.info.run_id, experiment_id)
        try:
            if params:
                self.log_params(params)
        except BaseException:
            with contextlib.suppress(TrackingError):
                self.end("FAILED")
            raise
        return self

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED (once; later calls do nothing)."""
        if self._ended:
            return
        with errors(f"cannot end run {self.run_id}"):
            client().set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.from_string(status)))
        self._ended = True

    def __enter__(self) -> "TrainingRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
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
        with errors(f"cannot log params to run {self.run_id}"):
            for i in range(0, len(items), _BATCH):
                client().log_batch(self.run_id, params=items[i : i + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values as strings)."""
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        with errors(f"cannot set tags on run {self.run_id}"):
            for i in range(0, len(items), _BATCH):
                client().log_batch(self.run_id, tags=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Log the finite numeric entries of ``metrics`` at ``step`` (default 0)."""
        ts, step = int(time.time() * 1000), int(step or 0)
        items = [Metric(k, v, ts, step) for k, v in _metric_items(metrics).items() if math.isfinite(v)]
        if items:
            with errors(f"cannot log metrics to run {self.run_id}"):
                client().log_batch(self.run_id, metrics=items)

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
        sent at all. Returns None, so training never stops here.
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

    def log_comparison(self, metrics: Mapping[str, Any], decision: str, details: Optional[Mapping[str, Any]] = None) -> None:
        """Record a champion-vs-challenger comparison and the promotion decision on this run.

        Parameters
        ----------
        metrics : dict
            Figures of both models, e.g. ``{"holdout_nll_champion": 3.1, "holdout_nll_challenger":
            2.9}``; logged as metrics (non-numeric and non-finite entries are left out).
        decision : str
            E.g. ``"promoted"`` or ``"rejected"``; tag ``promotion.decision``.
        details : dict, optional
            More tags, as ``promotion.<key>``, e.g. ``{"rule": "...", "champion_version": "3"}``.
        """
        self.log_metrics(metrics)
        self.set_tags({"promotion.decision": decision, **{f"promotion.{k}": v for k, v in (details or {}).items()}})

    # ------------------------------------------------------------ the model
    def log_detector(
        self, detector: Any, registered_model_name: str, input_example: Any, *, top_k: int = DEFAULT_TOP_K,
    ) -> ModelVersionInfo:
        """Log a fitted vae_core detector as a pyfunc model and register a new version.

        Also logs the detector config as params (existing run params of the same name win),
        summary metrics (``threshold``, ``calibration_size``, ``epochs_trained``,
        ``best_val_neg_elbo``, ``train_seconds``), a histogram of the calibration scores with the
        threshold (:data:`HISTOGRAM_FILE`), and the run tags ``registered_model`` and
        ``registered_version``. Aliases are left to the caller
        (:func:`pipelines.tracking.apply_new_version_aliases`).

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
            Default number of features in the ``top_features`` output column.

        Returns
        -------
        ModelVersionInfo
        """
        self._log_detector_summary(detector)
        self._log_histogram(detector)
        model_info = pyfunc.log_pyfunc(
            detector, self.run_id, self.experiment_id, input_example, top_k, step=self._last_step or 0,
        )
        info = register(
            model_info.model_uri, registered_model_name, run_id=self.run_id, tags={"kind": detector_kind(detector)},
        )
        self.set_tags({"registered_model": info.name, "registered_version": info.version})
        return info

    def _log_detector_summary(self, detector: Any) -> None:
        with errors(f"cannot read the params of run {self.run_id}"):
            existing = client().get_run(self.run_id).data.params
        fresh = {}
        for key, value in _flat_params(detector.config_.model_dump()).items():
            if key not in existing:
                fresh[key] = value
            elif existing[key] != value:
                log.warning("run param %r=%r kept; the detector config says %r", key, existing[key], value)
        fresh["kind"] = detector_kind(detector)
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
        with errors(f"cannot log the score histogram of run {self.run_id}"):
            client().log_figure(self.run_id, calibration_histogram(detector), HISTOGRAM_FILE)


def log_report(run_id: str, path: str, artifact_path: str) -> None:
    """Attach a batch's report (``report.html`` on a local lake) to a model version's run."""
    if "://" in path:  # a report in an object store stays there; the run keeps its link
        with errors(f"cannot tag run {run_id} with its report"):
            client().set_tag(run_id, f"report.{artifact_path.replace('/', '.')}", path)
        return
    with errors(f"cannot log the report {path} to run {run_id}"):
        client().log_artifact(run_id, path, artifact_path)


def start_training_run(
    experiment: str,
    run_name: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    tags: Optional[Mapping[str, Any]] = None,
) -> TrainingRun:
    """Start a :class:`TrainingRun` (use it in a ``with`` block, and pass it to whoever logs)."""
    return TrainingRun.start(experiment, run_name, params, tags)


def detector_kind(detector: Any) -> str:
    """``"timeseries"`` or ``"tabular"``, the registry tag and run param ``kind``."""
    return "timeseries" if getattr(detector, "time_column_", None) is not None else "tabular"


def calibration_histogram(detector: Any) -> Any:
    """A matplotlib figure of the held-out calibration scores with the threshold."""
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
    return fig


def _context_tags(tags: dict[str, str]) -> dict[str, str]:
    """MLflow's source/user tags, as ``mlflow.start_run`` would add them, plus ``tags``."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return {str(k): str(v) for k, v in resolve_tags(tags).items()}
    except Exception:  # best effort: these tags only help browsing in the UI
        return tags


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
        if isinstance(value, (int, float)):
            out[str(key)] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
            out[str(key)] = float(value.item())
    return out
