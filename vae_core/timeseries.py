"""TimeSeriesVAEDetector: the VAE over sliding windows of one or several series.

Each series is laid on a regular time grid (the step is the median spacing seen in training).
Timestamps missing from the grid and missing values are masked out of the likelihood rather
than imputed into it (as Donut does). Two rows of one series with the same time are refused;
distinct times that fall on one grid point are averaged. A window of ``W`` grid points and ``d`` value columns is
one row of ``W * d`` numeric features for the shared VAE; every timestamp is scored from all
the windows that cover it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import TimeSeriesConfig
from .base import DetectorBase, resolve_config
from .explain import Attribution, explain_rows
from .engine import Engine, build_model
from .errors import DataError
from .preprocess import Encoded, Preprocessor, check_frame
from .seeds import numpy_rng
from .train import EpochCallback

MAX_GRID_GROWTH = 50  # a series whose grid is this many times longer than its rows is refused
CHUNK_WINDOWS = 20000


@dataclass
class SeriesGrid:
    """One series on its regular grid: standardised values (NaN = missing) and row positions."""

    rows: np.ndarray  # positions of this series' rows in the input frame
    points: np.ndarray  # grid position of each of those rows (after left padding)
    values: np.ndarray  # (L, d) float32, NaN where missing


def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(n_windows, window * d) flattened windows and their start positions."""
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (L-W+1, d, W)
    starts = np.arange(0, view.shape[0], stride)
    flat = view[starts].transpose(0, 2, 1).reshape(len(starts), -1)
    return flat, starts


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
        self.preprocessor_ = Preprocessor(max_categories=cfg.max_categories, scaling=cfg.scaling).fit(_values_frame(frame, self.value_columns_))
        times = _parse_times(frame, time_column)
        self.time_kind_ = "datetime" if _is_datetime(frame[time_column]) else "numeric"
        self.step_ = _infer_step(times, _series_codes(frame, series_column))
        grids = self._grids(frame, times)

        # time-ordered split: the last `validation_fraction` of each series is held out
        train_w, val_w, cal_points = [], [], []
        W = cfg.window
        for g in grids:
            flat, starts = sliding_windows(g.values, W, cfg.train_stride)
            cut = int(round(len(g.values) * (1 - cfg.validation_fraction)))
            observed = np.isfinite(flat).any(1)
            train_w.append(flat[(starts + W <= cut) & observed])
            val_w.append(flat[(starts >= cut - W // 2) & observed])
            cal_points.append(g.points >= cut)
        train = np.concatenate(train_w)
        val = np.concatenate(val_w)
        if len(train) < 2 or len(val) < 1:
            every = np.concatenate([sliding_windows(g.values, W, cfg.train_stride)[0] for g in grids])
            every = every[np.isfinite(every).any(1)]
            if len(every) < 2:
                raise DataError(f"too few points to fit: need at least {W + 1} points for window={W}")
            perm = numpy_rng(cfg.seed, "split").permutation(len(every))
            n_val = max(1, int(len(every) * cfg.validation_fraction))
            train, val = every[perm[n_val:]], every[perm[:n_val]]
        if cfg.max_train_windows and len(train) > cfg.max_train_windows:
            keep = np.sort(numpy_rng(cfg.seed, "subsample").choice(len(train), cfg.max_train_windows, replace=False))
            train = train[keep]

        model = build_model(train.shape[1], 0, [], cfg)
        self.engine_ = Engine(model, cfg)
        self.history_ = [m.as_dict() for m in self.engine_.fit(Encoded.numeric(train), Encoded.numeric(val), callback)]

        raw, feat, feat_sq = self._score_grids(grids, len(frame))
        tail = np.zeros(len(frame), bool)
        for g, is_tail in zip(grids, cal_points):
            tail[g.rows] = is_tail
        if tail.sum() < 20:  # too short a tail: fall back to in-sample scores
            tail[:] = True
        self.attribution_ = Attribution.fit(feat[tail], feat_sq[tail], len(self.value_columns_))
        self._calibrate(self._anomaly_score(raw)[tail])
        return self

    # ---------------------------------------------------------------- scoring
    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per input row (same index and order) with the columns of
        :meth:`VAEDetector.score <vae_core.VAEDetector.score>`, scored per timestamp."""
        raw, _, _ = self._score_frame_raw(frame)
        return self._score_frame(frame.index, raw)

    def data_nll(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-timestamp -log p in the data's own units (see :meth:`VAEDetector.data_nll`)."""
        raw, _, _ = self._score_frame_raw(frame)
        observed = _values_frame(frame, self.value_columns_).notna().to_numpy(dtype=np.float64)
        return raw["nll_iwae"] + observed @ self.preprocessor_.log_scales()

    def explain(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """The value columns that drove each timestamp's score (see :meth:`VAEDetector.explain`)."""
        _, feat, feat_sq = self._score_frame_raw(frame)
        return explain_rows(frame, self.attribution_.excess(feat, feat_sq), self.preprocessor_, top_k)

    def _score_and_explain_flagged(self, frame: pd.DataFrame, top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Scores, and the explanation of the flagged rows (indexed by position), from one pass
        over the windows: each flagged point is explained within its whole series."""
        raw, feat, feat_sq = self._score_frame_raw(frame)
        scores = self._score_frame(frame.index, raw)
        pos = np.flatnonzero(scores["is_anomaly"].to_numpy())
        excess = self.attribution_.excess(feat[pos], feat_sq[pos])
        return scores, explain_rows(frame.iloc[pos], excess, self.preprocessor_, top_k, index=pos)

    def _score_frame_raw(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        self._check_fitted()
        check_frame(frame)
        needed = [self.time_column_] + ([self.series_column_] if self.series_column_ else []) + self.value_columns_
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"missing column(s) the model was fitted on: {', '.join(map(repr, missing))}")
        kind = "datetime" if _is_datetime(frame[self.time_column_]) else "numeric"
        if kind != self.time_kind_:
            raise DataError(f"column {self.time_column_!r} holds {kind} times, but the model was fitted on {self.time_kind_} times")
        times = _parse_times(frame, self.time_column_)
        return self._score_grids(self._grids(frame, times), len(frame))

    def _grids(self, frame: pd.DataFrame, times: np.ndarray) -> list[SeriesGrid]:
        """Each series of ``frame`` on its grid, values standardised by the fitted preprocessor."""
        enc = self.preprocessor_.transform(_values_frame(frame, self.value_columns_))
        values = np.where(enc.num_mask > 0, enc.num, np.nan).astype(np.float32)
        codes = _series_codes(frame, self.series_column_)
        label = frame[self.series_column_] if self.series_column_ else None
        grids = []
        W = self.config_.window
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            t = times[rows]
            name = f" {label.iloc[rows[0]]!r}" if label is not None else ""
            self._refuse_repeated_times(frame, rows, t, name)
            pos = np.rint((t - t.min()) / self.step_).astype(np.int64)
            length = int(pos.max()) + 1
            if length > MAX_GRID_GROWTH * len(rows) + W:
                raise DataError(
                    f"series{name} spans {length} steps of {self.step_:g} for only {len(rows)} rows in column "
                    f"{self.time_column_!r}: its timestamps are too irregular for the fitted step"
                )
            pad = max(0, W - length)
            pos = pos + pad
            length += pad
            sums = np.zeros((length, values.shape[1]), np.float64)
            counts = np.zeros_like(sums)
            v = values[rows]
            seen = np.isfinite(v)
            np.add.at(sums, pos, np.where(seen, v, 0.0))
            np.add.at(counts, pos, seen)
            with np.errstate(invalid="ignore", divide="ignore"):
                dense = np.where(counts > 0, sums / counts, np.nan).astype(np.float32)
            grids.append(SeriesGrid(rows, pos, dense))
        return grids

    def _refuse_repeated_times(self, frame: pd.DataFrame, rows: np.ndarray, t: np.ndarray, name: str) -> None:
        """A series holds one row per time: name the first two rows that share one."""
        order = np.argsort(t, kind="stable")
        same = np.flatnonzero(t[order][1:] == t[order][:-1])
        if len(same):
            a, b = rows[order[same[0]]], rows[order[same[0] + 1]]
            raise DataError(
                f"series{name}: rows {frame.index[a]!r} and {frame.index[b]!r} have the same time "
                f"{str(frame[self.time_column_].iloc[a])!r} in column {self.time_column_!r}; "
                "keep one row per time (drop or aggregate the duplicates first)"
            )

    def _score_grids(self, grids: list[SeriesGrid], n_rows: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Per-row scores, and per-value-column NLL and squared residuals, from the windows covering each grid point."""
        W, d = self.config_.window, len(self.value_columns_)
        last_only = self.config_.point_score == "last"
        raw = {k: np.zeros(n_rows) for k in ("neg_elbo", "nll_iwae", "recon_error", "kl")}
        feat_rows = np.zeros((n_rows, d))
        sq_rows = np.zeros((n_rows, d))
        for g in grids:
            L = len(g.values)
            acc = {k: np.zeros(L) for k in raw}
            feat = np.zeros((L, d))
            feat_sq = np.zeros((L, d))
            cover = np.zeros(L)
            flat, starts = sliding_windows(g.values, W)
            for lo in range(0, len(starts), CHUNK_WINDOWS):
                chunk, st = flat[lo : lo + CHUNK_WINDOWS], starts[lo : lo + CHUNK_WINDOWS]
                enc = Encoded.numeric(chunk)
                r = self.engine_.evaluate(enc, feature_detail=True)
                fnll = r["feature_nll"].reshape(len(st), W, d)
                sq = r["feature_sq_error"].reshape(len(st), W, d)
                seen = enc.num_mask.reshape(len(st), W, d)
                per_point = {
                    "neg_elbo": fnll.sum(-1) + (r["kl"] / W)[:, None],
                    "nll_iwae": np.repeat((r["nll_iwae"] / W)[:, None], W, axis=1),
                    "recon_error": sq.sum(-1) / np.maximum(seen.sum(-1), 1),
                    "kl": np.repeat((r["kl"] / W)[:, None], W, axis=1),
                }
                if last_only:
                    # each window scores its last point; the first window also scores the W-1
                    # points before it (no window ends there), so every point has one score
                    take = np.zeros((len(st), W), bool)
                    take[:, -1] = True
                    take[st == 0] = True
                    fnll, sq = fnll * take[..., None], sq * take[..., None]
                    per_point = {k: v * take for k, v in per_point.items()}
                    idx_w = take.astype(np.float64)
                else:
                    idx_w = None
                idx = (st[:, None] + np.arange(W)).ravel()
                for k, v in per_point.items():
                    acc[k] += np.bincount(idx, weights=v.ravel(), minlength=L)
                for j in range(d):
                    feat[:, j] += np.bincount(idx, weights=fnll[..., j].ravel(), minlength=L)
                    feat_sq[:, j] += np.bincount(idx, weights=sq[..., j].ravel(), minlength=L)
                cover += np.bincount(idx, weights=None if idx_w is None else idx_w.ravel(), minlength=L)
            for k in raw:
                raw[k][g.rows] = acc[k][g.points] / cover[g.points]
            feat_rows[g.rows] = feat[g.points] / cover[g.points, None]
            sq_rows[g.rows] = feat_sq[g.points] / cover[g.points, None]
        return raw, feat_rows, sq_rows

    # ---------------------------------------------------------------- persistence
    def _saved_attributes(self) -> dict:
        return {
            "time_column": self.time_column_, "series_column": self.series_column_, "value_columns": self.value_columns_,
            "time_kind": self.time_kind_, "step": self.step_,
        }

    def _restore(self, meta: dict) -> None:
        self.time_column_, self.series_column_ = meta["time_column"], meta["series_column"]
        self.value_columns_, self.time_kind_, self.step_ = meta["value_columns"], meta["time_kind"], meta["step"]

    @property
    def feature_names_in_(self) -> list[str]:
        """The value columns."""
        return self.value_columns_


def _values_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The value columns as floats (booleans become 0/1); rejects non-numeric columns."""
    out = {}
    for c in columns:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            s = s.astype("float64")
        elif not pd.api.types.is_numeric_dtype(s.dtype):
            coerced = pd.to_numeric(s, errors="coerce")
            bad = coerced.isna() & s.notna()
            if bad.any():
                row = s.index[np.flatnonzero(bad.to_numpy())[0]]
                raise DataError(f"value column {c!r}, row {row!r}: {s[row]!r} is not a number "
                                "(TimeSeriesVAEDetector models numeric columns; pass value_columns= to choose them)")
            s = coerced
        out[c] = s
    return pd.DataFrame(out, index=frame.index)


def _is_datetime(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return True
    return not pd.api.types.is_numeric_dtype(series.dtype)


def _parse_times(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Times as float64 (nanoseconds for datetimes); names the row of a missing or bad time."""
    s = frame[column]
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        t = s.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(t)
    else:
        parsed = pd.to_datetime(s, errors="coerce", utc=True) if not pd.api.types.is_datetime64_any_dtype(s.dtype) else s
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        t = parsed.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
        bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"column {column!r}, row {frame.index[pos]!r}: missing or unparseable time {s.iloc[pos]!r}")
    return t


def _series_codes(frame: pd.DataFrame, column: Optional[str]) -> np.ndarray:
    if column is None:
        return np.zeros(len(frame), np.int64)
    s = frame[column]
    if s.isna().any():
        pos = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DataError(f"column {column!r}, row {frame.index[pos]!r}: missing series key")
    return pd.factorize(s, sort=True)[0].astype(np.int64)


def _infer_step(times: np.ndarray, codes: np.ndarray) -> float:
    """The median positive spacing between consecutive timestamps within each series."""
    diffs = []
    for code in np.unique(codes):
        t = np.unique(times[codes == code])
        if len(t) > 1:
            diffs.append(np.diff(t))
    if not diffs:
        return 1.0
    step = float(np.median(np.concatenate(diffs)))
    return step if step > 0 else 1.0
