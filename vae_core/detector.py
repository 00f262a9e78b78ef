"""VAEDetector: the tabular detector (numeric, boolean and categorical columns)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import VAEConfig
from .engine import FORMAT, Engine, build_model, iwae_rate, read_json, write_json
from .errors import DataError, NotFittedError
from .preprocess import ColumnSpec, Preprocessor, check_frame
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

    def _save(self, directory: str | Path, kind: str, meta: dict) -> Path:
        """Weights, preprocessing, calibration, history and a config.json holding ``meta``."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.engine_.save_weights(d / "weights.pt")
        write_json(d / "preprocessor.json", self.preprocessor_.to_dict())
        write_json(d / "calibration.json", {**self.calibration_.to_dict(), "attribution": self.attribution_.to_dict()})
        write_json(d / "history.json", {"epochs": self.history_})
        write_json(d / "config.json", {
            "format": FORMAT, "kind": kind, "config": self.config_.model_dump(), "network": self.engine_.state(), **meta,
        })
        return d

    @classmethod
    def _load(cls, directory: str | Path, kind: str, config_cls: type, device: Optional[str]):
        """(detector, config.json contents) for a folder written by :meth:`_save`."""
        d = Path(directory)
        meta = _read_meta(d, kind)
        stored = dict(meta["config"])
        stored.setdefault("dropout", 0.0)  # saved before the option existed: a network without dropout layers
        cfg = config_cls(**stored)
        det = cls(seed=cfg.seed, config=cfg)
        det.config_ = cfg
        det.preprocessor_ = Preprocessor.from_dict(read_json(d / "preprocessor.json"))
        cal = read_json(d / "calibration.json")
        det.attribution_ = Attribution.from_dict(cal.pop("attribution"))
        det.calibration_ = Calibration.from_dict(cal)
        det.history_ = read_json(d / "history.json")["epochs"]
        det.engine_ = Engine.load(meta["network"], cfg, d / "weights.pt", device)
        return det, meta

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
        return self._save(directory, "tabular", {"feature_names_in": self.feature_names_in_})

    @classmethod
    def load(cls, directory: str | Path, device: Optional[str] = None) -> "VAEDetector":
        """Rebuild a detector saved by :meth:`save` (weights loaded with ``weights_only=True``)."""
        det, meta = cls._load(directory, "tabular", VAEConfig, device)
        det.feature_names_in_ = meta["feature_names_in"]
        return det


def _read_meta(d: Path, kind: str) -> dict:
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"no saved detector in {d} (config.json is missing)")
    meta = read_json(d / "config.json")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{d}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("kind") != kind:
        raise ValueError(f"{d} holds a {meta.get('kind')} detector, not a {kind} one")
    return meta


@dataclass
class Attribution:
    """How much each column contributes to a row's score, relative to the calibration rows."""

    n_num: int
    typical_sq: np.ndarray  # (n_num,) median squared residual of each numeric column
    median: np.ndarray  # (n_features,) median contribution on the calibration rows

    def contributions(self, feature_nll: np.ndarray, feature_sq: np.ndarray) -> np.ndarray:
        """Per column: 0.5 * residual^2 / typical residual^2 (numeric), else the NLL."""
        out = np.array(feature_nll, dtype=np.float64, copy=True)
        out[:, : self.n_num] = 0.5 * feature_sq[:, : self.n_num] / self.typical_sq
        return out

    def excess(self, feature_nll: np.ndarray, feature_sq: np.ndarray) -> np.ndarray:
        """Contributions minus their calibration medians."""
        return self.contributions(feature_nll, feature_sq) - self.median

    @classmethod
    def fit(cls, feature_nll: np.ndarray, feature_sq: np.ndarray, n_num: int) -> "Attribution":
        """Typical residuals and median contributions of held-out normal rows."""
        typical = np.maximum(np.median(feature_sq[:, :n_num], axis=0), 1e-6)
        self = cls(n_num, typical, np.zeros(feature_nll.shape[1]))
        self.median = np.median(self.contributions(feature_nll, feature_sq), axis=0)
        return self

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"n_num": self.n_num, "typical_sq": self.typical_sq.tolist(), "median": self.median.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Attribution":
        """Rebuild from :meth:`to_dict` output."""
        return cls(d["n_num"], np.asarray(d["typical_sq"], float), np.asarray(d["median"], float))


def typical_text(spec: ColumnSpec) -> str:
    """A short human description of a column's normal values."""
    if spec.kind == "numeric":
        return f"{spec.low:.4g} to {spec.high:.4g}"
    if spec.kind == "bool":
        return f"true in {100 * spec.true_rate:.0f}% of rows"
    return ", ".join(repr(c) for c in spec.categories[:3]) + (", ..." if len(spec.categories) > 3 else "")


def explain_rows(frame: pd.DataFrame, excess: np.ndarray, pp: Preprocessor, top_k: int) -> pd.DataFrame:
    """Long-form top-``top_k`` features per row from an (n, n_features) excess-NLL matrix."""
    names = pp.feature_names
    specs = {c.name: c for c in pp.columns}
    top_k = int(min(max(top_k, 1), len(names)))
    positive = np.clip(excess, 0.0, None)
    total = positive.sum(1, keepdims=True)
    share = np.divide(positive, total, out=np.zeros_like(positive), where=total > 0)
    order = np.argsort(-excess, axis=1, kind="stable")[:, :top_k]
    rows = np.repeat(np.arange(len(frame)), top_k)
    cols = order.ravel()
    values = np.empty(len(rows), dtype=object)
    for j in np.unique(cols):
        at = cols == j
        values[at] = frame[names[j]].to_numpy(dtype=object)[rows[at]]
    typical = np.array([typical_text(specs[n]) for n in names], dtype=object)
    return pd.DataFrame(
        {
            "rank": np.tile(np.arange(1, top_k + 1), len(frame)),
            "feature": np.array(names, dtype=object)[cols],
            "share": share[rows, cols],
            "excess_nll": excess[rows, cols],
            "value": values,
            "typical": typical[cols],
        },
        index=frame.index[rows],
    )
