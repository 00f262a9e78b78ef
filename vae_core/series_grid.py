"""Laying each series of a frame on its regular time grid (the fitted step), one array per series.

Grid points without a row are missing (NaN), as are missing values; distinct times that fall on
one grid point are averaged; two rows of one series with the same time are refused, unless
``duplicates`` says which to keep ("first", "last") or to average them ("mean"). A series
shorter than the window is padded on the left with missing points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from .errors import DataError
from .seeds import numpy_rng
from .series_frame import series_codes
from .series_scores import sliding_windows

MAX_GRID_GROWTH = 50  # a series whose grid is this many times longer than its rows is refused


@dataclass
class SeriesGrid:
    """One series on its regular grid: standardised values (NaN = missing) and row positions."""

    rows: np.ndarray  # positions of this series' rows in the input frame
    points: np.ndarray  # grid position of each of those rows (after left padding)
    values: np.ndarray  # (L, d) float32, NaN where missing
    origin: float  # time of grid position 0
    code: Optional[int]  # position of the series among the fitted ones (None: unseen)


def build_grids(frame: pd.DataFrame, times: np.ndarray, values: np.ndarray, time_column: str,
                series_column: Optional[str], series_names: list[str], step: float, window: int,
                duplicates: Optional[str] = None) -> list[SeriesGrid]:
    """Each series of ``frame`` on its grid.

    Parameters
    ----------
    frame : DataFrame
        The rows (for the series column and the names in errors).
    times : array of shape (n,)
        Each row's time as a number (:func:`~vae_core.series_frame.parse_times`).
    values : array of shape (n, d)
        Each row's standardised values, NaN where missing.
    time_column, series_column : str
        Column names (``series_column=None``: one series).
    series_names : list of str
        The fitted series, whose positions are the grids' ``code``.
    step, window : float, int
        The grid step and the window W.
    duplicates : {None, "first", "last", "mean"}
        Rows of one series with the same time: refused (None), or the values of the first or last
        such row in frame order, or their mean per column. Every row keeps its grid point (and so
        the score of its time).
    """
    codes = series_codes(frame, series_column)
    label = frame[series_column] if series_column else None
    known = {name: i for i, name in enumerate(series_names)}
    grids = []
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        t = times[rows]
        name = f" {label.iloc[rows[0]]!r}" if label is not None else ""
        kept = repeated_times_kept(frame, rows, t, name, time_column, duplicates)
        pos = np.rint((t - t.min()) / step).astype(np.int64)
        length = int(pos.max()) + 1
        if length > MAX_GRID_GROWTH * len(rows) + window:
            raise DataError(
                f"series{name} spans {length} steps of {step:g} for only {len(rows)} rows in column "
                f"{time_column!r}: its timestamps are too irregular for the fitted step"
            )
        pad = max(0, window - length)
        pos = pos + pad
        length += pad
        sums = np.zeros((length, values.shape[1]), np.float64)
        counts = np.zeros_like(sums)
        v = values[rows[kept]]
        seen = np.isfinite(v)
        np.add.at(sums, pos[kept], np.where(seen, v, 0.0))
        np.add.at(counts, pos[kept], seen)
        with np.errstate(invalid="ignore", divide="ignore"):
            dense = np.where(counts > 0, sums / counts, np.nan).astype(np.float32)
        key = str(label.iloc[rows[0]]) if label is not None else ""
        origin = float(t.min()) - pad * step
        grids.append(SeriesGrid(rows, pos, dense, origin, known.get(key)))
    return grids


def repeated_times_kept(frame: pd.DataFrame, rows: np.ndarray, t: np.ndarray, name: str, time_column: str,
                        duplicates: Optional[str] = None) -> np.ndarray:
    """Which of a series' ``rows`` (ascending, times ``t``) give their values to the grid, by the
    ``duplicates`` rule; with None, the first two rows that share a time are named in a DataError."""
    order = np.argsort(t, kind="stable")  # equal times stay in row (frame) order
    ts = t[order]
    same = np.flatnonzero(ts[1:] == ts[:-1])
    kept = np.ones(len(rows), bool)
    if not len(same) or duplicates == "mean":
        return kept
    if duplicates is None:
        a, b = rows[order[same[0]]], rows[order[same[0] + 1]]
        raise DataError(
            f"series{name}: rows {frame.index[a]!r} and {frame.index[b]!r} have the same time "
            f"{str(frame[time_column].iloc[a])!r} in column {time_column!r}; keep one row per time "
            '(drop or aggregate the duplicates first, or set duplicates="first", "last" or "mean")'
        )
    if duplicates not in ("first", "last"):
        raise ValueError(f'duplicates must be None, "first", "last" or "mean", not {duplicates!r}')
    differs = ts[1:] != ts[:-1]
    leads = np.r_[True, differs] if duplicates == "first" else np.r_[differs, True]
    kept[order[~leads]] = False
    return kept


def training_split(grids: list[SeriesGrid], window: int, stride: int, validation_fraction: float, seed: int,
                   cond: Callable[[SeriesGrid, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The training and validation windows of ``grids`` (each row the flattened window, then its
    conditioning inputs ``cond(grid, starts)``), and each grid's cut.

    Time-ordered: the windows that end before the last ``validation_fraction`` of each series
    train, those that start at most ``window // 2`` points before that tail validate. Windows with
    no observed value are left out. Where that leaves too few, every window is split at random."""
    width = window * grids[0].values.shape[1]

    def windows(g: SeriesGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat, starts = sliding_windows(g.values, window, stride)
        flat = np.concatenate([flat, cond(g, starts)], 1)
        return flat, starts, np.isfinite(flat[:, :width]).any(1)

    train_w, val_w, cuts = [], [], []
    for g in grids:
        flat, starts, observed = windows(g)
        cut = int(round(len(g.values) * (1 - validation_fraction)))
        train_w.append(flat[(starts + window <= cut) & observed])
        val_w.append(flat[(starts >= cut - window // 2) & observed])
        cuts.append(cut)
    train, val = np.concatenate(train_w), np.concatenate(val_w)
    if len(train) < 2 or len(val) < 1:
        every = np.concatenate([flat[observed] for flat, _, observed in map(windows, grids)])
        if len(every) < 2:
            raise DataError(f"too few points to fit: need at least {window + 1} points for window={window}")
        perm = numpy_rng(seed, "split").permutation(len(every))
        n_val = max(1, int(len(every) * validation_fraction))
        train, val = every[perm[n_val:]], every[perm[:n_val]]
    return train, val, cuts
