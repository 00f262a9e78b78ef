"""VAEDetector: the tabular detector (numeric, boolean and categorical columns)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import VAEConfig
from .engine import FORMAT, Engine, build_model, iwae_rate, read_json, write_json
from .errors import DataError, NotFittedError
from .explain import Attribution, explain_rows
from .preprocess import Preprocessor, check_frame
from .threshold import Calibration
from .train import EpochCallback

CHUNK_ROWS = 65536  # rows encoded at once when scoring
SCORE_COLUMNS = ["neg_elbo", "nll_iwae", "recon_error", "anomaly_score", "p_value", "is_anomaly"]


def resolve_config(cls: type[VAEConfig], seed: int, config: Optional[VAEConfig], overrides: dict) -> VAEConfig:
    """``config`` (or the defaults) with ``overrides`` and ``seed`` applied, validated."""
    base = config.model_dump() if config is not None else {}
    return cls(**{**base, **overrides, "seed": seed})


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/validation split of ``n`` rows (at least one row in each part)."""
    if n < 2:
        raise DataError(f"need at least 2 rows to fit, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(np.clip(round(n * fraction), 1, n - 1))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class CalibratedMixin:
    """Threshold, p-values and flags from the calibration scores; shared by both detectors."""

    config_: VAEConfig
    calibration_: Calibration

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
        self.calibration_ = Calibration.fit(scores, c.threshold_method, c.contamination, c.pot_risk, c.pot_level)

    def calibrate(
        self,
        method: Optional[str] = None,
        contamination: Optional[float] = None,
        risk: Optional[float] = None,
        level: Optional[float] = None,
        scores: Optional[np.ndarray] = None,
    ):
        """Place the threshold again without retraining.

        Parameters
        ----------
        method : {"quantile", "pot"}, optional
            Quantile at ``1 - contamination``, or peaks-over-threshold at tail probability ``risk``.
        contamination, risk, level : float, optional
            New target false-positive rate, POT risk, and POT tail start quantile.
        scores : array of shape (n,), optional
            New anomaly scores of rows known to be normal; default: the stored calibration scores.
        """
        self._check_fitted()
        updates = {"threshold_method": method, "contamination": contamination, "pot_risk": risk, "pot_level": level}
        updates = {k: v for k, v in updates.items() if v is not None}
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
        out = pd.DataFrame(
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
        return out

    def _save(self, directory: str | Path, meta: dict) -> Path:
        """Weights, preprocessing, calibration, history and a config.json holding ``meta``."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.engine_.save_weights(d / "weights.pt")
        write_json(d / "preprocessor.json", self.preprocessor_.to_dict())
        write_json(d / "calibration.json", {**self.calibration_.to_dict(), "attribution": self.attribution_.to_dict()})
        write_json(d / "history.json", {"epochs": self.history_})
        write_json(d / "config.json", {
            "format": FORMAT, "kind": self.kind, "config": self.config_.model_dump(), "network": self.engine_.state(), **meta,
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
        return cls._from_saved(directory, read_meta(directory), device)

    @classmethod
    def _from_saved(cls, directory: str | Path, meta: dict, device: Optional[str]):
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

    def _restore(self, meta: dict) -> None:
        """Set the attributes that ``save()`` stored in ``config.json`` beside the config."""
        raise NotImplementedError

    def _score_and_explain_flagged(self, frame: pd.DataFrame, top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``score(frame)``, and :meth:`explain` of its flagged rows indexed by their positions."""
        scores = self.score(frame)
        pos = np.flatnonzero(scores["is_anomaly"].to_numpy())
        sub = frame.iloc[pos]
        if len(pos):
            raw = self._evaluate(sub, detail=True)
            excess = self.attribution_.excess(raw["feature_nll"], raw["feature_sq_error"])
        else:
            excess = np.zeros((0, len(self.preprocessor_.feature_names)))
        return scores, explain_rows(sub, excess, self.preprocessor_, top_k, index=pos)

    def decision_function(self, frame: pd.DataFrame, **kwargs) -> np.ndarray:
        """Anomaly scores, shape (n,); higher is more anomalous (PyOD convention)."""
        return self.score(frame, **kwargs)["anomaly_score"].to_numpy()

    def predict(self, frame: pd.DataFrame, **kwargs) -> np.ndarray:
        """0/1 labels, shape (n,): 1 where the anomaly score is above ``threshold_``."""
        return self.score(frame, **kwargs)["is_anomaly"].to_numpy().astype(np.int64)


class VAEDetector(CalibratedMixin):
    """Variational auto-encoder anomaly detector for tables of mixed column types.

    Parameters
    ----------
    seed : int
        Seeds the split, the initialisation, training noise and the scoring draws: the same
        seed on the same data gives identical scores.
    config : VAEConfig, optional
        Full configuration; keyword ``overrides`` replace single fields of it.

    Attributes
    ----------
    config_ : VAEConfig
    feature_names_in_ : list of str
    threshold_ : float
    history_ : list of dict, one per epoch
    device_ : str
    """

    kind = "tabular"
    config_class = VAEConfig

    def __init__(self, seed: int = 0, config: Optional[VAEConfig] = None, **overrides: Any):
        self.seed = seed
        self.config = config
        self.overrides = overrides
        resolve_config(VAEConfig, seed, config, overrides)  # fail early on a typo or a bad value

    # ---------------------------------------------------------------- fitting
    def fit(self, frame: pd.DataFrame, callback: Optional[EpochCallback] = None) -> "VAEDetector":
        """Fit on the rows of ``frame`` (all columns are features) and calibrate the threshold.

        Parameters
        ----------
        frame : DataFrame of shape (n, d)
            Numeric, boolean and categorical/string columns; NaN marks a missing value.
        callback : callable, optional
            Called with an :class:`~vae_core.train.EpochMetrics` after each epoch; return False to stop.

        Returns
        -------
        self
        """
        cfg = resolve_config(VAEConfig, self.seed, self.config, self.overrides)
        self.config_ = cfg
        self.preprocessor_ = Preprocessor(max_categories=cfg.max_categories, scaling=cfg.scaling).fit(frame)
        enc = self.preprocessor_.transform(frame)
        train_idx, val_idx = split_indices(len(enc), cfg.validation_fraction, cfg.seed)
        if cfg.max_train_rows and len(train_idx) > cfg.max_train_rows:
            rng = np.random.default_rng(cfg.seed + 3)
            train_idx = np.sort(rng.choice(train_idx, cfg.max_train_rows, replace=False))
        pp = self.preprocessor_
        model = build_model(len(pp.by_kind("numeric")), len(pp.by_kind("bool")), pp.cat_sizes, cfg)
        self.engine_ = Engine(model, cfg)
        self.history_ = [m.as_dict() for m in self.engine_.fit(enc.take(train_idx), enc.take(val_idx), callback)]
        # calibrate on the held-out rows: never seen by the optimiser, never labelled
        val = self.engine_.evaluate(enc.take(val_idx))
        self.attribution_ = Attribution.fit(val["feature_nll"], val["feature_sq_error"], len(pp.by_kind("numeric")))
        self._calibrate(self._anomaly_score(val))
        self.feature_names_in_ = list(frame.columns.astype(str))
        return self

    # ---------------------------------------------------------------- scoring
    def _evaluate(self, frame: pd.DataFrame, detail: bool) -> dict[str, np.ndarray]:
        """Raw per-row results, encoding and scoring ``CHUNK_ROWS`` rows at a time (bounded memory).

        Adds ``log_scale_sum``: the log-scales of each row's observed numeric columns."""
        self._check_fitted()
        check_frame(frame)
        log_scales = self.preprocessor_.log_scales()
        parts = []
        for start in range(0, len(frame), CHUNK_ROWS):
            enc = self.preprocessor_.transform(frame.iloc[start : start + CHUNK_ROWS])
            raw = self.engine_.evaluate(enc, feature_detail=detail)
            raw["log_scale_sum"] = enc.num_mask.astype(np.float64) @ log_scales
            parts.append(raw)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score each row.

        Returns
        -------
        DataFrame with the index of ``frame`` and columns ``neg_elbo`` (-ELBO, nats),
        ``nll_iwae`` (importance-weighted -log p(x), nats), ``recon_error`` (mean squared error on
        the standardised scale), ``anomaly_score`` (the configured score; by default ``nll_iwae``
        plus twice the rate KL(q(z|x) || p(z))), ``p_value`` (tail probability under the
        calibration scores) and ``is_anomaly``.
        """
        return self._score_frame(frame.index, self._evaluate(frame, detail=False))

    def data_nll(self, frame: pd.DataFrame) -> np.ndarray:
        """-log p(x) per row (IWAE estimate) in the data's own units, shape (n,).

        ``nll_iwae`` is measured on the standardised scale; adding the log-scales of the observed
        numeric columns makes it comparable between models fitted with different scalings, e.g.
        a champion and a challenger on the same held-out rows.
        """
        raw = self._evaluate(frame, detail=False)
        return raw["nll_iwae"] + raw["log_scale_sum"]

    def explain(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """The features that drove each row's score.

        A numeric column contributes half its squared reconstruction residual in units of its
        typical (calibration-median) squared residual; a boolean or categorical column its
        negative log-likelihood. ``excess_nll`` is the contribution minus its calibration median,
        and ``share`` is its fraction of the row's total positive excess. (Residuals rather than
        the heteroscedastic NLL: the decoder may widen its variance for an odd value, which would
        shift the blame to the columns it reconstructs well.) The rate term of the ``"iwae_rate"``
        score is a property of the whole row and is not split over columns.

        Returns
        -------
        DataFrame in long form, ``top_k`` rows per input row (index repeated), columns
        ``rank``, ``feature``, ``share``, ``excess_nll``, ``value`` and ``typical``.
        """
        raw = self._evaluate(frame, detail=True)
        excess = self.attribution_.excess(raw["feature_nll"], raw["feature_sq_error"])
        return explain_rows(frame, excess, self.preprocessor_, top_k)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write weights, JSON config, preprocessing and calibration to ``directory``."""
        return self._save(directory, {"feature_names_in": self.feature_names_in_})

    def _restore(self, meta: dict) -> None:
        self.feature_names_in_ = meta["feature_names_in"]


def read_meta(directory: str | Path) -> dict:
    """The parsed ``config.json`` of a folder written by a detector's ``save()``, format checked."""
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"no saved detector in {d} (config.json is missing)")
    meta = read_json(d / "config.json")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{d}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta
