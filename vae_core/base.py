"""DetectorBase: what the tabular and the time-series detector share.

A detector holds, once fitted, a network (``engine_``), the column encoding (``preprocessor_``),
the per-column attribution of the calibration rows (``attribution_``) and the threshold
(``calibration_``). From those this base gives the calibrated score frame, re-calibration, the
PyOD-style ``decision_function``/``predict``, and saving and loading as weights plus JSON files.
A subclass fits, scores and explains rows and names what it adds to ``config.json``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import pandas as pd

from .config import VAEConfig
from .engine import FORMAT, Engine, iwae_rate, read_json, write_json
from .errors import NotFittedError
from .explain import Attribution
from .preprocess import Preprocessor
from .scored import ScoredBatch
from .threshold import Calibration

SCORE_COLUMNS = ["neg_elbo", "nll_iwae", "recon_error", "anomaly_score", "p_value", "is_anomaly"]


def resolve_config(cls: type[VAEConfig], seed: int, config: Optional[VAEConfig], overrides: dict) -> VAEConfig:
    """``config`` (or the defaults) with ``overrides`` and ``seed`` applied, validated."""
    base = config.model_dump() if config is not None else {}
    return cls(**{**base, **overrides, "seed": seed})


def read_meta(directory: str | Path) -> dict:
    """The parsed ``config.json`` of a folder written by a detector's ``save()``, format checked."""
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"no saved detector in {d} (config.json is missing)")
    meta = read_json(d / "config.json")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{d}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


class DetectorBase(ABC):
    """The shared part of :class:`~vae_core.VAEDetector` and :class:`~vae_core.TimeSeriesVAEDetector`."""

    kind: ClassVar[str]  # "tabular" or "timeseries": saved in config.json, picks the class on load
    config_class: ClassVar[type[VAEConfig]]

    # set by fit() (or load()); _check_fitted() tells whether they are there
    config_: VAEConfig
    engine_: Engine
    preprocessor_: Preprocessor
    attribution_: Attribution
    calibration_: Calibration
    history_: list[dict]

    # ---------------------------------------------------------------- what a detector implements
    @abstractmethod
    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row of :data:`SCORE_COLUMNS` per input row (same index and order)."""

    @abstractmethod
    def explain(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """The long-form top-``top_k`` columns behind each row's score."""

    @abstractmethod
    def score_batch(self, frame: pd.DataFrame, top_k: int = 3, context: Optional[pd.DataFrame] = None,
                    band: bool = True) -> ScoredBatch:
        """:func:`vae_core.score_and_explain`: ``score(frame)`` with ``top_features``, the explanation
        of its flagged rows, and what the kind adds (a series' events and band)."""

    #: Whether a batch is scored whole (a series: windows need their neighbours) rather than in
    #: chunks of rows.
    scores_whole_batches: ClassVar[bool] = False

    #: The per-point score modes the detector can score in (:meth:`with_point_score`); none for a table.
    point_score_modes: ClassVar[tuple[str, ...]] = ()

    @property
    def batch_context_points(self) -> int:
        """The rows of each series before a batch that scoring it needs as ``context``: 0 for a table."""
        return 0

    @property
    def key_columns_(self) -> list[str]:
        """The input columns that place a row (a series' time and series columns), stored beside
        its scores; none for a table."""
        return []

    @abstractmethod
    def _saved_attributes(self) -> dict:
        """What ``save()`` writes into ``config.json`` beside the config (JSON-ready)."""

    @abstractmethod
    def _restore(self, meta: dict) -> None:
        """Set the attributes :meth:`_saved_attributes` stored, from the parsed ``config.json``."""

    # ---------------------------------------------------------------- calibration
    @property
    def threshold_(self) -> float:
        """Scores above this are flagged."""
        self._check_fitted()
        return self.calibration_.threshold

    @property
    def device_(self) -> str:
        """Where the model runs ("cpu" or "cuda")."""
        self._check_fitted()
        return str(self.engine_.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _calibrate(self, scores: np.ndarray) -> None:
        c = self.config_
        self.calibration_ = Calibration.fit(scores, c.threshold_method, c.contamination, c.pot_risk, c.pot_level,
                                            fixed=c.fixed_threshold)

    def calibrate(
        self,
        method: Optional[str] = None,
        contamination: Optional[float] = None,
        risk: Optional[float] = None,
        level: Optional[float] = None,
        scores: Optional[np.ndarray] = None,
        threshold: Optional[float] = None,
    ):
        """Place the threshold again without retraining.

        Parameters
        ----------
        method : {"quantile", "pot", "fixed"}, optional
            Quantile at ``1 - contamination``, peaks-over-threshold at tail probability ``risk``, or
            ``threshold`` as given (p-values still come from the calibration scores).
        threshold : float, optional
            The threshold of ``method="fixed"`` (giving it implies that method).
        contamination, risk, level : float, optional
            New target false-positive rate, POT risk, and POT tail start quantile.
        scores : array of shape (n,), optional
            New anomaly scores of rows known to be normal; default: the stored calibration scores.

        Returns
        -------
        self
        """
        self._check_fitted()
        if threshold is not None:
            method = method or "fixed"
        updates = {"threshold_method": method, "contamination": contamination, "pot_risk": risk, "pot_level": level}
        updates = {k: v for k, v in updates.items() if v is not None}
        after = updates.get("threshold_method", self.config_.threshold_method)
        updates["fixed_threshold"] = None if after != "fixed" else (
            float(threshold) if threshold is not None else self.config_.fixed_threshold)
        self.config_ = type(self.config_)(**{**self.config_.model_dump(), **updates})
        self._calibrate(self.calibration_.scores if scores is None else np.asarray(scores, float))
        return self

    def _anomaly_score(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """The configured ``anomaly_score`` from :meth:`Engine.evaluate`'s per-row results."""
        name = self.config_.anomaly_score
        if name == "iwae_rate":
            return iwae_rate(raw["nll_iwae"], raw["kl"], self.config_.rate_weight)
        return raw[name]

    def _score_frame(self, index: pd.Index, raw: dict[str, np.ndarray]) -> pd.DataFrame:
        score = self._anomaly_score(raw)
        return pd.DataFrame(
            {
                "neg_elbo": raw["neg_elbo"],
                "nll_iwae": raw["nll_iwae"],
                "recon_error": raw["recon_error"],
                "anomaly_score": score,
                "p_value": self.calibration_.p_values(score),
                "is_anomaly": score > self.calibration_.threshold,
            },
            index=index,
        )

    def decision_function(self, frame: pd.DataFrame, **kwargs) -> np.ndarray:
        """Anomaly scores, shape (n,); higher is more anomalous (PyOD convention)."""
        return self.score(frame, **kwargs)["anomaly_score"].to_numpy()

    def predict(self, frame: pd.DataFrame, **kwargs) -> np.ndarray:
        """0/1 labels, shape (n,): 1 where the anomaly score is above ``threshold_``."""
        return self.score(frame, **kwargs)["is_anomaly"].to_numpy().astype(np.int64)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write weights, JSON config, preprocessing and calibration to ``directory``.

        Parameters
        ----------
        directory : str or Path
            Created if missing; each file in it is replaced atomically.

        Returns
        -------
        Path
            ``directory``; :func:`vae_core.load` or this class's ``load`` rebuilds the detector.
        """
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.engine_.save_weights(d / "weights.pt")
        write_json(d / "preprocessor.json", self.preprocessor_.to_dict())
        write_json(d / "calibration.json", {**self.calibration_.to_dict(), "attribution": self.attribution_.to_dict()})
        write_json(d / "history.json", {"epochs": self.history_})
        write_json(d / "config.json", {
            "format": FORMAT, "kind": self.kind, "config": self.config_.model_dump(), "network": self.engine_.state(),
            **self._saved_attributes(),
        })
        return d

    @classmethod
    def load(cls, directory: str | Path, device: Optional[str] = None):
        """Rebuild a detector saved by :meth:`save` (weights loaded with ``weights_only=True``).

        Parameters
        ----------
        directory : str or Path
            The folder written by ``save()``.
        device : {"cpu", "cuda"}, optional
            Where to run; default: the saved config's ``device`` setting.
        """
        return cls.from_saved(directory, read_meta(directory), device)

    @classmethod
    def from_saved(cls, directory: str | Path, meta: dict, device: Optional[str]):
        """The detector in ``directory``, whose parsed ``config.json`` is ``meta``."""
        d = Path(directory)
        if meta.get("kind") != cls.kind:
            raise ValueError(f"{d} holds a {meta.get('kind')} detector, not a {cls.kind} one")
        stored = dict(meta["config"])
        stored.setdefault("dropout", 0.0)  # saved before the option existed: a network without dropout layers
        cfg = cls.config_class(**stored)
        det = cls(seed=cfg.seed, config=cfg)
        det.config_ = cfg
        det.preprocessor_ = Preprocessor.from_dict(read_json(d / "preprocessor.json"))
        cal = read_json(d / "calibration.json")
        det.attribution_ = Attribution.from_dict(cal.pop("attribution"))
        det.calibration_ = Calibration.from_dict(cal)
        det.history_ = read_json(d / "history.json")["epochs"]
        det.engine_ = Engine.load(meta["network"], cfg, d / "weights.pt", device)
        det._restore(meta)
        return det
