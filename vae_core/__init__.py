"""vae_core: variational auto-encoder anomaly detection for tables and time series.

>>> from vae_core import VAEDetector
>>> det = VAEDetector(seed=0).fit(train_frame)          # doctest: +SKIP
>>> det.score(new_frame)                                 # doctest: +SKIP
>>> det.save("model/")                                   # doctest: +SKIP
>>> score_with_explanations(load("model/"), new_frame)   # doctest: +SKIP

This package depends on torch, numpy, pandas and pydantic only; it never imports Prefect or
MLflow and never reads environment variables.
"""
from .config import TimeSeriesConfig, VAEConfig
from .detector import SCORE_COLUMNS, VAEDetector
from .errors import DataError, NotFittedError
from .explain import score_with_explanations, top_features_text
from .loading import load
from .timeseries import TimeSeriesVAEDetector
from .device import select_device
from .train import EpochMetrics

__all__ = [
    "VAEDetector",
    "TimeSeriesVAEDetector",
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
