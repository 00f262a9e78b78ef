"""VAEDetector: the tabular detector (numeric, boolean and categorical columns)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from .base import DetectorBase, resolve_config
from .config import VAEConfig
from .engine import Engine, build_model, iwae_rate, iwae_rate_recon, robust_scale
from .errors import DataError
from .explain import Attribution, explain_rows, with_top_features
from .preprocess import Preprocessor, check_frame
from .scored import ScoredBatch
from .seeds import numpy_rng
from .train import EpochCallback

__all__ = ["VAEDetector", "split_indices"]

CHUNK_ROWS = 65536  # rows encoded at once when scoring


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/validation split of ``n`` rows (at least one row in each part)."""
    if n < 2:
        raise DataError(f"need at least 2 rows to fit, got {n}")
    perm = numpy_rng(seed, "split").permutation(n)
    n_val = int(np.clip(round(n * fraction), 1, n - 1))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class VAEDetector(DetectorBase):
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
    score_scales_ : dict
        ``[median, IQR]`` of ``iwae_rate`` and ``recon_error`` on the held-out rows (the
        ``"iwae_rate_recon"`` score's robust z-scores).
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
            rng = numpy_rng(cfg.seed, "subsample")
            train_idx = np.sort(rng.choice(train_idx, cfg.max_train_rows, replace=False))
        pp = self.preprocessor_
        model = build_model(len(pp.by_kind("numeric")), len(pp.by_kind("bool")), pp.cat_sizes, cfg)
        self.engine_ = Engine(model, cfg)
        self.history_ = [m.as_dict() for m in self.engine_.fit(enc.take(train_idx), enc.take(val_idx), callback)]
        # calibrate on the held-out rows: never seen by the optimiser, never labelled
        val = self.engine_.evaluate(enc.take(val_idx))
        self.attribution_ = Attribution.fit(val["feature_nll"], val["feature_sq_error"], len(pp.by_kind("numeric")))
        self.score_scales_ = {"iwae_rate": robust_scale(iwae_rate(val["nll_iwae"], val["kl"], cfg.rate_weight)),
                              "recon_error": robust_scale(val["recon_error"])}
        self._calibrate(self._anomaly_score(val))
        self.feature_names_in_ = list(frame.columns.astype(str))
        return self

    # ---------------------------------------------------------------- scoring
    def _anomaly_score(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """As :meth:`DetectorBase._anomaly_score`, and ``"iwae_rate_recon"`` with the fitted ``score_scales_``."""
        if self.config_.anomaly_score == "iwae_rate_recon":
            rate = iwae_rate(raw["nll_iwae"], raw["kl"], self.config_.rate_weight)
            return iwae_rate_recon(rate, raw["recon_error"], self.score_scales_)
        return super()._anomaly_score(raw)

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
        the standardised scale), ``anomaly_score`` (the configured score, see :class:`VAEConfig`;
        by default ``nll_iwae`` plus twice the rate KL(q(z|x) || p(z))), ``p_value`` (tail
        probability under the calibration scores) and ``is_anomaly``.
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
        score is a property of the whole row and is not split over columns; the ``recon_error`` part
        of ``"iwae_rate_recon"`` is the mean of these squared residuals.

        Returns
        -------
        DataFrame in long form, ``top_k`` rows per input row (index repeated), columns
        ``rank``, ``feature``, ``share``, ``excess_nll``, ``value`` and ``typical``.
        """
        return explain_rows(frame, self._excess(frame), self.preprocessor_, top_k)

    def _excess(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, n_features) excess contributions of each row's columns (see :meth:`explain`)."""
        raw = self._evaluate(frame, detail=True)
        return self.attribution_.excess(raw["feature_nll"], raw["feature_sq_error"])

    def score_batch(self, frame: pd.DataFrame, top_k: int = 3, context: Optional[pd.DataFrame] = None,
                    band: bool = True) -> ScoredBatch:
        """:func:`vae_core.score_and_explain` for a table: scores with ``top_features`` and the
        flagged rows' explanation; no band and no events (``band`` is ignored). A table's rows
        are scored alone, so it takes no ``context``."""
        if context is not None:
            raise ValueError("a table's rows are scored alone: VAEDetector takes no context")
        # rows are scored independently (common random numbers), so the flagged ones are explained alone
        scores = self.score(frame)
        pos = np.flatnonzero(scores["is_anomaly"].to_numpy())
        sub = frame.iloc[pos]
        excess = self._excess(sub) if len(pos) else np.zeros((0, len(self.preprocessor_.feature_names)))
        explanation = explain_rows(sub, excess, self.preprocessor_, max(1, int(top_k)), index=pos)
        return ScoredBatch.of_rows(with_top_features(scores, explanation), explanation)

    # ---------------------------------------------------------------- persistence
    def _saved_attributes(self) -> dict:
        return {"feature_names_in": self.feature_names_in_, "score_scales": self.score_scales_}

    def _restore(self, meta: dict) -> None:
        self.feature_names_in_ = meta["feature_names_in"]
        self.score_scales_ = meta.get("score_scales")  # None in a model saved before it existed (never iwae_rate_recon)
