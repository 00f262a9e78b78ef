"""The served model, logged as code (MLflow's models-from-code): MLflow runs this file.

Never imported by the project: :func:`pipelines.tracking.pyfunc.log_pyfunc` passes this file's
path as ``python_model``, MLflow copies it into the model and, on load, runs it with the model's
``code/`` folder (the vae_core copy logged with it) on ``sys.path``. So no pickle is written or
read, and a served model needs mlflow, pandas and vae_core only, never ``pipelines``.

The model's config (``model_config``) names the artifact that holds the vae_core save folder
(``detector_artifact``), the default number of features in ``top_features`` (``top_k``) and, for
a time series, the point-score mode it serves (``point_score``): ``"last"``, causal, the mode the
score flow stores and reviewers see, so a served score of a point is the stored one when the
request holds the point's ``context_points`` predecessors (``window - 1``, twice that with
``mask_flagged_past``); a request may pass ``point_score="mean"``
(offline). A model logged before the key existed serves in its fitted mode.
"""
from __future__ import annotations

from typing import Any, Optional

import mlflow
import pandas as pd

import vae_core


class VAEAnomalyModel(mlflow.pyfunc.PythonModel):
    """A vae_core detector behind MLflow's pyfunc ``predict``.

    ``predict`` returns one row per input row: the score columns of the detector and
    ``top_features`` (see :func:`vae_core.score_with_explanations`). The request param ``top_k``
    sets how many features ``top_features`` lists.
    """

    def __init__(self) -> None:
        self.detector: Any = None
        self.top_k = 3
        self.point_score: Optional[str] = None  # a time series' mode; None: the fitted one

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.top_k = int(config.get("top_k", self.top_k))
        self.detector = vae_core.load(context.artifacts[config.get("detector_artifact", "detector")])
        self.point_score = config.get("point_score")

    # MLflow reads these type hints: pd.DataFrame means "no type-hint validation, signature from
    # the input example" (it logs an INFO line saying so on load; without hints it warns).
    def predict(self, context: Any, model_input: pd.DataFrame, params: Optional[dict] = None) -> pd.DataFrame:
        if self.detector is None:
            raise RuntimeError("the model is not loaded (load_context was not called)")
        top_k = (params or {}).get("top_k") or self.top_k
        mode = (params or {}).get("point_score") or self.point_score
        det = self.detector
        if mode and getattr(det, "time_column_", None) is not None:  # a table's detector has no modes
            det = det.with_point_score(mode)
        return vae_core.score_with_explanations(det, model_input, top_k=int(top_k))


mlflow.models.set_model(VAEAnomalyModel())
