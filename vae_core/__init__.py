"""vae_core: variational auto-encoder anomaly detection for tables and time series.

>>> import vae_core
>>> det = vae_core.VAEDetector(seed=0).fit(train_frame)  # doctest: +SKIP
>>> det.score(new_frame)                                 # doctest: +SKIP
>>> det.save("model/")                                   # doctest: +SKIP
>>> det = vae_core.load("model/")                        # the class is read from the folder  # doctest: +SKIP
>>> vae_core.score_with_explanations(det, new_frame)     # scores + top_features  # doctest: +SKIP
>>> vae_core.score_and_explain(det, new_frame)           # a ScoredBatch: scores, explanation, events  # doctest: +SKIP

This package depends on torch, numpy, pandas and pydantic only; it never imports Prefect or
MLflow and never reads environment variables.
"""
from .base import SCORE_COLUMNS, DetectorBase
from .config import TimeSeriesConfig, VAEConfig
from .detector import VAEDetector
from .device import select_device
from .errors import DataError, NotFittedError
from .explain import score_and_explain, score_with_explanations, top_features_text
from .loading import load
from .scored import ScoredBatch
from .timeseries import TimeSeriesVAEDetector
from .train import EpochMetrics

__all__ = [
    "VAEDetector",
    "score_and_explain",
    "ScoredBatch",
    "TimeSeriesVAEDetector",
    "DetectorBase",
    "VAEConfig",
    "TimeSeriesConfig",
    "DataError",
    "NotFittedError",
    "EpochMetrics",
    "SCORE_COLUMNS",
    "select_device",
    "load",
    "score_with_explanations",
    "top_features_text",
]
