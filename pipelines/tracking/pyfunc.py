"""Logging a fitted detector as an MLflow pyfunc model, from code (no pickle).

The model is :mod:`pipelines.tracking.served_model`, logged by path (MLflow's models-from-code),
with the vae_core save folder as its one artifact and the vae_core package in ``code_paths``.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

import vae_core
from pipelines.tracking.store import TrackingError, client, errors

DETECTOR_ARTIFACT = "detector"  # key of the vae_core save folder among the pyfunc artifacts
LOGGED_MODEL_NAME = "vae_detector"
SERVED_MODEL_FILE = Path(__file__).with_name("served_model.py")
#: The mode a time series' served model scores in unless a request passes ``point_score``: causal,
#: as the score flow stores scores and as the thresholds set from reviews were placed.
SERVED_POINT_SCORE = "last"
# packages the served model imports (and vae_core's own); pinned to the versions installed here
SERVING_PACKAGES = ("mlflow", "torch", "pandas", "numpy", "pyarrow", "pydantic")


def serving_requirements() -> list[str]:
    """``package==version`` for what the served model imports, pinned to this environment."""
    reqs = []
    for package in SERVING_PACKAGES:
        version = importlib.metadata.version(package).split("+")[0]  # "2.13.0+cpu" -> any 2.13.0 build
        reqs.append(f"{package}=={version}")
    return reqs


def log_pyfunc(
    detector: Any, run_id: str, experiment_id: str, input_example: pd.DataFrame, top_k: int, step: int = 0,
) -> Any:
    """Log ``detector`` as a pyfunc LoggedModel of run ``run_id``; MLflow's ``ModelInfo``.

    Parameters
    ----------
    detector : fitted vae_core detector
    run_id, experiment_id : str
        The training run, and its experiment (the LoggedModel is filed there, not under the
        fluent "active" experiment).
    input_example : DataFrame
        A few input rows: stored with the model, and the signature is inferred from them and
        the scores they get.
    top_k : int
        Default number of features in ``top_features`` (a request may pass ``top_k``).
    step : int
        The run's last step, recorded on the LoggedModel.
    """
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise TrackingError("input_example must be a non-empty DataFrame of model input rows")
    series = getattr(detector, "time_column_", None) is not None
    modes = {"point_score": SERVED_POINT_SCORE} if series else {}  # what the score flow stores
    served = detector.with_point_score(SERVED_POINT_SCORE) if series else detector
    output = vae_core.score_with_explanations(served, input_example, top_k=top_k)
    with errors("cannot infer the model signature"):
        signature = mlflow.models.infer_signature(input_example, output, params={"top_k": int(top_k), **modes})
    with tempfile.TemporaryDirectory(prefix="vae-anomaly-model-") as tmp, errors(f"cannot log the model of run {run_id}"):
        saved = detector.save(Path(tmp) / DETECTOR_ARTIFACT)
        params = client().get_run(run_id).data.params
        # Model.log(run_id=...) alone would file the LoggedModel under the *active* experiment
        # (Default, "0", when no fluent run is active): create it in the run's experiment here.
        logged = mlflow.initialize_logged_model(
            name=LOGGED_MODEL_NAME, source_run_id=run_id, params=params, experiment_id=experiment_id,
        )
        try:
            # what mlflow.pyfunc.log_model does, with an explicit run instead of the active one
            return mlflow.models.Model.log(
                artifact_path=None,  # a required positional in 3.17, though deprecated for `name`
                name=LOGGED_MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged.model_id,
                python_model=str(SERVED_MODEL_FILE),  # models from code: a file path, not an object
                model_config={"top_k": int(top_k), "detector_artifact": DETECTOR_ARTIFACT, **modes},
                artifacts={DETECTOR_ARTIFACT: str(saved)},
                code_paths=[str(Path(vae_core.__file__).parent)],
                pip_requirements=serving_requirements(),
                signature=signature,
                input_example=input_example,
                step=step,
            )
        except BaseException:
            with contextlib.suppress(Exception):  # already FAILED if Model.log got that far
                mlflow.finalize_logged_model(logged.model_id, "FAILED")
            raise
