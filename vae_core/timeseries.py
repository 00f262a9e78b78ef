"""TimeSeriesVAEDetector: the VAE over sliding windows of one or several series.

Each series is laid on a regular time grid (the step is the median spacing seen in training).
Timestamps missing from the grid and missing values are masked out of the likelihood rather
than imputed into it (as Donut does). Two rows of one series with the same time are refused
(unless ``duplicates`` keeps the first, the last or their mean); distinct times that fall on one grid point are averaged. A window of ``W`` grid points and ``d`` value columns is
one row of ``W * d`` numeric features for the shared VAE, conditioned on where the window ends
in the day (and week) and on which series it is (:mod:`vae_core.calendar`). Every timestamp is
scored from its own terms in the windows that cover it (:mod:`vae_core.series_scores`), so one
bad point stands out rather than raising its neighbours' scores.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import numpy as np
import pandas as pd

from .base import DetectorBase, resolve_config
from .calendar import calendar_periods, cycle_features, series_one_hot
from .config import TimeSeriesConfig
from .events import find_events
from .explain import explain_rows, with_top_features
from .engine import Engine, build_model, iwae_rate
from .errors import DataError
from .preprocess import Encoded, Preprocessor, check_frame
from .scored import ScoredBatch
from .seeds import numpy_rng
from .series_frame import infer_step, is_datetime, parse_times, series_codes, series_names, values_frame
from .series_grid import SeriesGrid, build_grids, training_split
from .series_scores import score_series
from . import series_band, series_batch, series_masking, series_modes, series_thresholds
from .threshold import Calibration
from .train import EpochCallback

MAX_SERIES_CONDITION = 64  # more series than this in training: no series one-hot


class TimeSeriesVAEDetector(DetectorBase):
    """VAE anomaly detector for time series, scored per timestamp.

    Parameters
    ----------
    seed : int
        Seeds everything random; the same seed on the same data gives identical scores.
    window : int, optional
        Grid points per window (default 32).
    config : TimeSeriesConfig, optional
        Full configuration; keyword ``overrides`` replace single fields.
    """

    kind = "timeseries"
    config_class = TimeSeriesConfig

    def __init__(self, seed: int = 0, window: Optional[int] = None, config: Optional[TimeSeriesConfig] = None, **overrides: Any):
        self.seed = seed
        self.window = window
        self.config = config
        self.overrides = overrides
        self._resolve()

    def _resolve(self) -> TimeSeriesConfig:
        extra = {"window": self.window} if self.window is not None else {}
        return resolve_config(TimeSeriesConfig, self.seed, self.config, {**self.overrides, **extra})

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        frame: pd.DataFrame,
        time_column: str = "timestamp",
        series_column: Optional[str] = None,
        value_columns: Optional[list[str]] = None,
        callback: Optional[EpochCallback] = None,
    ) -> "TimeSeriesVAEDetector":
        """Fit on one or several series.

        Parameters
        ----------
        frame : DataFrame
            A time column (datetime, or integer/float steps), optionally a series column, and the
            numeric (or boolean) value columns; NaN values and gaps in time are allowed.
        time_column, series_column : str
            Column names; ``series_column=None`` means one series.
        value_columns : list of str, optional
            Default: every other column.
        callback : callable, optional
            Per-epoch :class:`~vae_core.train.EpochMetrics`; return False to stop.
        """
        cfg = self._resolve()
        self.config_ = cfg
        check_frame(frame)
        for col in (time_column, series_column):
            if col is not None and col not in frame.columns:
                raise DataError(f"column {col!r} is not in the frame (columns: {list(frame.columns)})")
        if value_columns is None:
            value_columns = [c for c in frame.columns if c not in (time_column, series_column)]
        if not value_columns:
            raise DataError("no value columns: the frame holds only the time (and series) column")
        self.time_column_, self.series_column_ = time_column, series_column
        self.value_columns_ = [str(c) for c in value_columns]
        self.preprocessor_ = Preprocessor(max_categories=cfg.max_categories, scaling=cfg.scaling).fit(values_frame(frame, self.value_columns_))
        times = parse_times(frame, time_column)
        self.time_kind_ = "datetime" if is_datetime(frame[time_column]) else "numeric"
        self.step_ = infer_step(times, series_codes(frame, series_column))
        self.series_names_ = series_names(frame, series_column)
        span = max(float(np.ptp(times[series_codes(frame, series_column) == c])) for c in range(len(self.series_names_)))
        self.periods_ = calendar_periods(self.time_kind_, self.step_, span, cfg.calendar)
        grids = self._grids(frame, times)

        # time-ordered split: the last `validation_fraction` of each series is held out
        W = cfg.window
        train, val, cuts = training_split(grids, W, cfg.train_stride, cfg.validation_fraction, cfg.seed, self.window_cond)
        if cfg.max_train_windows and len(train) > cfg.max_train_windows:
            keep = np.sort(numpy_rng(cfg.seed, "subsample").choice(len(train), cfg.max_train_windows, replace=False))
            train = train[keep]

        n_val = W * len(self.value_columns_)
        n_cond = train.shape[1] - n_val
        model = build_model(n_val, 0, [], cfg, n_cond)
        self.engine_ = Engine(model, cfg)
        split = lambda a: Encoded.numeric(a[:, :n_val], a[:, n_val:] if n_cond else None)  # noqa: E731
        share = series_masking.injection_share(cfg.missing_injection, cfg.mask_flagged_past)
        inject = series_masking.missing_injection(share, W, n_val // W, cfg.seed, self.engine_.device) if share else None
        self.history_ = [m.as_dict() for m in self.engine_.fit(split(train), split(val), callback, inject)]

        self._calibrate_modes(frame, grids, cuts)
        return self

    def _calibrate_modes(self, frame: pd.DataFrame, grids: list[SeriesGrid], cuts: list[int]) -> None:
        """Both point-score modes' calibrations from the held-out tail (each grid's points at its
        cut and after; every row when that tail is under 20 points)."""
        cfg, W = self.config_, self.config_.window
        tail = np.zeros(len(frame), bool)
        for g, cut in zip(grids, cuts):
            tail[g.rows] = g.points >= cut
        in_sample = tail.sum() < 20  # too short a tail: fall back to in-sample scores
        tail[:] = tail | in_sample
        names, d = self._row_series(frame), len(self.value_columns_)
        # both modes from the tail's windows only: the tail's points score as in the whole grid
        tails = grids if in_sample else [t for g, c in zip(grids, cuts) if (t := series_modes.tail_grid(g, c, W, self.step_))]
        own = series_modes.fit_mode(self.score_grids(tails, len(frame)), tail, names, cfg, self._anomaly_score, d)
        self.calibration_, self.series_calibration_, self.attribution_ = own.calibration, own.series_calibration, own.attribution
        self.rate_weight_ = own.rate_weight
        other = series_modes.other_mode(cfg.point_score)
        scored = self.score_grids(tails, len(frame), other)
        self.point_modes_ = {other: series_modes.fit_mode(scored, tail, names, cfg, self._anomaly_score, d)}

    def with_point_score(self, point_score: str) -> "TimeSeriesVAEDetector":
        """This detector scoring per point in ``point_score`` mode: ``"last"`` (causal) or ``"mean"``
        (offline), each with its own calibration from ``fit`` (see :mod:`vae_core.series_modes`).
        Returns ``self`` for its own mode, else a copy that shares the network."""
        return series_modes.switch(self, point_score)

    def calibrate(self, *args, **kwargs):
        """Place the threshold again without retraining (see :meth:`DetectorBase.calibrate`); with
        per-series thresholds, each series' threshold is placed again on its stored tail scores."""
        super().calibrate(*args, **kwargs)
        self.series_calibration_ = series_thresholds.refit(self.series_calibration_, self.config_)
        return self

    def _anomaly_score(self, raw: dict[str, np.ndarray], rate_weight: Optional[float] = None) -> np.ndarray:
        """As :meth:`DetectorBase._anomaly_score`, with the fitted (or configured, or given) rate weight."""
        if self.config_.anomaly_score == "iwae_rate":
            return iwae_rate(raw["nll_iwae"], raw["kl"], self.rate_weight_ if rate_weight is None else rate_weight)
        return raw[self.config_.anomaly_score]

    def _row_series(self, frame: pd.DataFrame) -> Optional[np.ndarray]:
        """Each row's series name as a string (None for a single series)."""
        return frame[self.series_column_].astype(str).to_numpy() if self.series_column_ else None

    def flagged_scores(self, frame: pd.DataFrame, raw: dict[str, np.ndarray]) -> pd.DataFrame:
        """The score frame of ``frame``'s rows from their raw per-row terms ``raw`` (as
        :meth:`score_grids` gives them), flagged by each series' own threshold where it has one."""
        scored = self._score_frame(frame.index, raw)
        return series_thresholds.apply(scored, self._row_series(frame), self.series_calibration_)

    def window_cond(self, g: SeriesGrid, starts: np.ndarray) -> np.ndarray:
        """Conditioning inputs of the windows starting at ``starts``: the calendar phase of each
        window's last point and the series one-hot (width 0 when neither applies)."""
        W = self.config_.window
        ends = g.origin + (starts + W - 1) * self.step_
        n_series = len(self.series_names_) if self._series_condition() else 0
        parts = [cycle_features(ends, self.periods_), series_one_hot(g.code, n_series, len(starts))]
        return np.concatenate(parts, 1)

    def _series_condition(self) -> bool:
        return self.config_.condition_on_series and 1 < len(self.series_names_) <= MAX_SERIES_CONDITION

    def events(self, frame: pd.DataFrame, scores: Optional[pd.DataFrame] = None, max_gap: int = 2) -> pd.DataFrame:
        """The flagged runs of points of each series as events (see :func:`vae_core.events.find_events`):
        one row per event with ``event_id``, ``series``, ``start``, ``end``, ``peak`` (time of the
        highest score), ``peak_score``, ``points`` and ``flagged_points``. ``scores`` is
        ``score(frame)`` (computed when omitted); ``max_gap`` unflagged points may sit inside one event."""
        scores = self.score(frame) if scores is None else scores
        series = frame[self.series_column_] if self.series_column_ else None
        events, _ = find_events(frame[self.time_column_], scores["is_anomaly"].to_numpy(),
                                scores["anomaly_score"].to_numpy(), series, max_gap)
        return events

    # ---------------------------------------------------------------- scoring
    def score(self, frame: pd.DataFrame, context: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """One row per input row (same index and order) with the columns of
        :meth:`VAEDetector.score <vae_core.VAEDetector.score>`, scored per timestamp.

        Each column is per point, from the point's own terms in the windows that cover it
        (:mod:`vae_core.series_scores`): ``nll_iwae`` and ``neg_elbo`` in nats per point (the point's
        share of its windows' bounds, which sum back to each window's bound), ``recon_error`` the
        point's mean squared standardised residual, ``anomaly_score`` = ``nll_iwae`` +
        ``rate_weight_`` x the windows' rate / W, where ``rate_weight_`` is ``rate_weight``, or by
        default the weight balanced in ``fit`` on this mode's tail (:func:`~vae_core.series_scores.balanced_rate_weight`).
        With ``point_score="last"`` a point's score uses only the window that ends at it (past
        points only), with ``mask_flagged_past`` its flagged earlier points hidden
        (:mod:`vae_core.series_masking`). Flags use each series' own threshold when the detector was fitted with
        ``threshold_per_series``; :meth:`events` groups them.
        ``context``: earlier rows of the same series (columns as ``frame``), scored before
        ``frame`` and left out of the result, e.g. the last :attr:`context_points` of each series.
        """
        raw, _, _ = self._score_frame_raw(frame, context)
        return self.flagged_scores(frame, raw)

    def data_nll(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-timestamp -log p in the data's own units (see :meth:`VAEDetector.data_nll`)."""
        raw, _, _ = self._score_frame_raw(frame)
        observed = values_frame(frame, self.value_columns_).notna().to_numpy(dtype=np.float64)
        return raw["nll_iwae"] + observed @ self.preprocessor_.log_scales()

    def explain(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """The value columns that drove each timestamp's score (see :meth:`VAEDetector.explain`)."""
        _, feat, feat_sq = self._score_frame_raw(frame)
        return explain_rows(frame, self.attribution_.excess(feat, feat_sq), self.preprocessor_, top_k)

    def expected(self, frame: pd.DataFrame, context: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """The model's expected value of each point: the decoder's mean and standard deviation
        in the data's units, per row and value column (see :func:`vae_core.series_band.expected`).

        Returns
        -------
        DataFrame
            ``frame``'s index; columns ``(value column, "mean" | "std")``.
        """
        grids, rows, skip = self.context_grids(frame, context)
        return series_band.expected(self, grids, len(rows), skip, frame.index)

    def score_batch(self, frame: pd.DataFrame, top_k: int = 3, context: Optional[pd.DataFrame] = None,
                    band: bool = True) -> ScoredBatch:
        """:func:`vae_core.score_and_explain` for a series: the scores, the explanation, the events
        and, with ``band`` and when a row is flagged, :meth:`expected`, from one scoring pass
        (:mod:`vae_core.series_batch`).

        The events are found with ``context``'s flags, so an event that began before the batch
        keeps its start and its earlier points explain it too. The band is what :meth:`expected`
        gives, cheaper with ``mask_flagged_past``: the plain causal flags that decide which
        earlier points a window hides are worked out once, for the scores and the band.
        """
        b = series_batch.score_batch(self, frame, max(1, int(top_k)), context, band=band)
        return replace(b, scores=with_top_features(b.scores, b.explanation))

    def _score_frame_raw(self, frame: pd.DataFrame, context: Optional[pd.DataFrame] = None):
        """Per-row scores and per-column terms of ``frame`` (scored after ``context``)."""
        grids, rows, skip = self.context_grids(frame, context)
        raw, feat, feat_sq = self.score_grids(grids, len(rows), mask_past=self.masks_past())
        return {k: v[skip:] for k, v in raw.items()}, feat[skip:], feat_sq[skip:]

    def masks_past(self) -> bool:
        """Whether causal scores hide each window's flagged earlier points (``mask_flagged_past``)."""
        return self.config_.mask_flagged_past and self.config_.point_score == "last"

    @property
    def context_points(self) -> int:
        """The points of each series before a batch that its causal scores depend on: ``window - 1``,
        twice that with ``mask_flagged_past`` (the flags of the window's earlier points)."""
        return (self.config_.window - 1) * (2 if self.masks_past() else 1)

    scores_whole_batches = True
    point_score_modes = ("last", "mean")

    @property
    def key_columns_(self) -> list[str]:
        """The time column, and the series column if there is one."""
        return [self.time_column_] + ([self.series_column_] if self.series_column_ else [])

    @property
    def batch_context_points(self) -> int:
        """The points of each series before a batch that the score flow reads: :attr:`context_points`,
        and ``window - 1`` more whose settled flags continue an event that began before the batch
        (:mod:`vae_core.series_batch`)."""
        return self.context_points + self.config_.window - 1

    def context_grids(self, frame: pd.DataFrame, context: Optional[pd.DataFrame]
                       ) -> tuple[list[SeriesGrid], pd.DataFrame, int]:
        """The grids of ``context`` then ``frame`` (checked), those rows (``frame`` itself without a
        context), and the context's row count."""
        self._check_fitted()
        check_frame(frame)
        needed = [self.time_column_] + ([self.series_column_] if self.series_column_ else []) + self.value_columns_
        for what, part in (("", frame), ("the context: ", context if context is not None else frame)):
            missing = [c for c in needed if c not in part.columns]
            if missing:
                raise DataError(f"{what}missing column(s) the model was fitted on: {', '.join(map(repr, missing))}")
        skip = 0 if context is None else len(context)
        if skip:
            frame = pd.concat([context[needed], frame[needed]], ignore_index=True)
        kind = "datetime" if is_datetime(frame[self.time_column_]) else "numeric"
        if kind != self.time_kind_:
            raise DataError(f"column {self.time_column_!r} holds {kind} times, but the model was fitted on {self.time_kind_} times")
        times = parse_times(frame, self.time_column_)
        return self._grids(frame, times), frame, skip

    def _grids(self, frame: pd.DataFrame, times: np.ndarray) -> list[SeriesGrid]:
        """Each series of ``frame`` on its grid, values standardised by the fitted preprocessor."""
        enc = self.preprocessor_.transform(values_frame(frame, self.value_columns_))
        values = np.where(enc.num_mask > 0, enc.num, np.nan).astype(np.float32)
        return build_grids(frame, times, values, self.time_column_, self.series_column_, self.series_names_,
                           self.step_, self.config_.window, self.config_.duplicates)

    def _grid_threshold(self, g: SeriesGrid) -> float:
        """The threshold that flags ``g``'s points: its series' own, else the shared one."""
        name = self.series_names_[g.code] if g.code is not None and self.series_names_ else None
        return self.series_calibration_.get(str(name), self.calibration_).threshold

    def causal_flags(self, g: SeriesGrid, cond: Optional[np.ndarray],
                      terms: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
        """The grid points of ``g`` that the plain (unmasked) causal score flags: what
        ``mask_flagged_past`` hides (``terms``: ``g``'s causal terms, if already computed)."""
        if terms is None:
            terms, _, _ = score_series(self.engine_, g.values, self.config_.window, True, cond)
        return self._anomaly_score(terms) > self._grid_threshold(g)

    def score_grids(self, grids: list[SeriesGrid], n_rows: int, point_score: Optional[str] = None,
                     mask_past: bool = False, past_flags: Optional[list[np.ndarray]] = None,
                     ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Per-row scores, and per-value-column NLL and squared residuals, from the windows covering
        each grid point (:func:`vae_core.series_scores.score_series`), in ``point_score`` mode (default: the config's);
        ``mask_past``: causal scores with the flagged past hidden (:mod:`vae_core.series_masking`),
        each grid's plain causal flags (what is hidden) appended to ``past_flags`` when given."""
        W, d = self.config_.window, len(self.value_columns_)
        last_only = (point_score or self.config_.point_score) == "last"
        raw = {k: np.zeros(n_rows) for k in ("neg_elbo", "nll_iwae", "recon_error", "kl")}
        feat_rows, sq_rows = np.zeros((n_rows, d)), np.zeros((n_rows, d))
        for g in grids:
            starts = np.arange(len(g.values) - W + 1)
            cond = self.window_cond(g, starts) if self.engine_.model.n_cond else None
            terms, feat, feat_sq = score_series(self.engine_, g.values, W, last_only, cond)
            if mask_past and last_only:
                flagged = self.causal_flags(g, cond, terms)
                if past_flags is not None:
                    past_flags.append(flagged)
                series_masking.rescore_masked_past(self.engine_, g.values, W, cond, flagged, terms, feat, feat_sq)
            for k in raw:
                raw[k][g.rows] = terms[k][g.points]
            feat_rows[g.rows] = feat[g.points]
            sq_rows[g.rows] = feat_sq[g.points]
        return raw, feat_rows, sq_rows

    # ---------------------------------------------------------------- persistence
    def _saved_attributes(self) -> dict:
        return {
            "time_column": self.time_column_, "series_column": self.series_column_, "value_columns": self.value_columns_,
            "time_kind": self.time_kind_, "step": self.step_, "series_names": self.series_names_,
            "periods": self.periods_, "rate_weight": self.rate_weight_,
            "series_calibration": {k: c.to_dict() for k, c in self.series_calibration_.items()},
            "point_modes": {k: m.to_dict() for k, m in self.point_modes_.items()},
        }

    def _restore(self, meta: dict) -> None:
        self.time_column_, self.series_column_ = meta["time_column"], meta["series_column"]
        self.value_columns_, self.time_kind_, self.step_ = meta["value_columns"], meta["time_kind"], meta["step"]
        self.series_names_, self.periods_ = meta.get("series_names", []), meta.get("periods", [])
        self.rate_weight_ = meta.get("rate_weight", self.config_.rate_weight if self.config_.rate_weight is not None else 2.0)
        saved = meta.get("series_calibration", {})
        self.series_calibration_ = {k: Calibration.from_dict(c) for k, c in saved.items()}
        modes = meta.get("point_modes", {})  # none in a model saved before both modes were calibrated
        self.point_modes_ = {k: series_modes.ModeCalibration.from_dict(m) for k, m in modes.items()}

    @property
    def feature_names_in_(self) -> list[str]:
        """The value columns."""
        return self.value_columns_
