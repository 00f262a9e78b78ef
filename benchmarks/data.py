"""Loaders for the shared benchmark data (``shared/benchdata``).

The data root is ``$VAE_ANOMALY_BENCHDATA`` if set, else ``../shared/benchdata``
relative to the project root.  See that folder's README.md for the layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

ENV_VAR = "VAE_ANOMALY_BENCHDATA"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "ENV_VAR",
    "benchdata_root",
    "load_manifest",
    "tabular_names",
    "load_tabular",
    "TabularSplit",
    "split_tabular",
    "nab_names",
    "load_nab",
    "spread_repeated_times",
    "smd_names",
    "load_smd",
]


def benchdata_root() -> Path:
    """Return the benchmark data folder.

    Returns
    -------
    pathlib.Path
        ``$VAE_ANOMALY_BENCHDATA`` if set, else ``<project>/../shared/benchdata``.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    """
    env = os.environ.get(ENV_VAR)
    root = Path(env) if env else PROJECT_ROOT.parent / "shared" / "benchdata"
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark data not found at {root} (set {ENV_VAR})")
    return root


def load_manifest(root: Path | None = None) -> dict:
    """Load ``MANIFEST.json`` from the data root.

    Parameters
    ----------
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    dict
        The parsed manifest.
    """
    root = root or benchdata_root()
    return json.loads((root / "MANIFEST.json").read_text())


def tabular_names(root: Path | None = None) -> list[str]:
    """Names of the tabular datasets, in manifest order.

    Parameters
    ----------
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    list of str
    """
    root = root or benchdata_root()
    return [f["name"] for f in load_manifest(root)["files"] if f["kind"] == "tabular"]


def load_tabular(name: str, root: Path | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Load one tabular dataset.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"cardio"``.
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    X : pandas.DataFrame
        The ``f0..fN`` float64 feature columns, unscaled.
    y : numpy.ndarray of int64
        Labels, 1 = anomaly.
    """
    root = root or benchdata_root()
    df = pd.read_parquet(root / "tabular" / f"{name}.parquet")
    y = df["label"].to_numpy(dtype=np.int64)
    return df.drop(columns=["label"]), y


@dataclass(frozen=True)
class TabularSplit:
    """One stratified train/test split of a tabular dataset."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    train_rows_before_cap: int


def split_tabular(
    X: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    test_size: float = 0.3,
    train_cap: int | None = None,
) -> TabularSplit:
    """ADBench-style stratified split, with an optional cap on the train part.

    Parameters
    ----------
    X : pandas.DataFrame
        Features.
    y : numpy.ndarray
        Labels, used only to stratify.
    seed : int
        ``random_state`` of the split (and of the cap's subsample).
    test_size : float, default 0.3
        Fraction of rows in the test part.
    train_cap : int, optional
        If the train part has more rows, keep a stratified random subset of
        this many.  The test part is never reduced.

    Returns
    -------
    TabularSplit
    """
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    n_before = len(X_tr)
    if train_cap is not None and len(X_tr) > train_cap:
        X_tr, _, y_tr, _ = train_test_split(
            X_tr, y_tr, train_size=train_cap, stratify=y_tr, random_state=seed
        )
    return TabularSplit(X_tr, X_te, np.asarray(y_tr), np.asarray(y_te), n_before)


def nab_names(root: Path | None = None, with_anomalies_only: bool = True) -> list[str]:
    """Names (``<category>__<series>``) of the NAB series, sorted.

    Parameters
    ----------
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.
    with_anomalies_only : bool, default True
        Keep only series with at least one ``label == 1`` (this drops the
        artificialNoAnomaly category and unlabelled real series).

    Returns
    -------
    list of str
    """
    root = root or benchdata_root()
    names = []
    for f in load_manifest(root)["files"]:
        if f["kind"] != "timeseries" or not f["name"].startswith("nab/"):
            continue
        if with_anomalies_only and (
            f["anomalies"] == 0 or f["name"].startswith("nab/artificialNoAnomaly")
        ):
            continue
        names.append(f["name"].split("/", 1)[1])
    return sorted(names)


def load_nab(name: str, root: Path | None = None) -> pd.DataFrame:
    """Load one NAB series.

    Parameters
    ----------
    name : str
        ``<category>__<series>``.
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    pandas.DataFrame
        Columns ``timestamp``, ``value``, ``label``, ``point_label``.  Repeated timestamps are
        spread out (:func:`spread_repeated_times`): four series hold runs of one time (two at the
        2014-03-09 DST change, where the hour 02:00-02:59 was written as 03:00, two with one
        hourly time written twice), which ``TimeSeriesVAEDetector`` refuses.
    """
    root = root or benchdata_root()
    df = pd.read_parquet(root / "timeseries" / "nab" / f"{name}.parquet")
    try:
        return df.assign(timestamp=spread_repeated_times(df["timestamp"]))
    except ValueError as exc:
        raise ValueError(f"NAB series {name}: {exc}") from None


def spread_repeated_times(times: pd.Series) -> pd.Series:
    """Each run of ``r`` rows sharing one time, spread evenly between the distinct times before
    and after it (``prev + (k + 1) * (next - prev) / (r + 1)``).

    At the DST change this restores the lost hour exactly (01:59, twelve rows at 03:00, 03:04
    become 01:59, 02:04, ..., 02:59, 03:04).

    Raises
    ------
    ValueError
        If the times are not sorted, or a run is at the start or end (no time on one side).
    """
    t = times.to_numpy()
    if len(t) < 2 or not (t[1:] == t[:-1]).any():
        return times
    if (t[1:] < t[:-1]).any():
        i = int(np.flatnonzero(t[1:] < t[:-1])[0])
        raise ValueError(f"times are not sorted (row {i + 1}: {t[i + 1]} after {t[i]})")
    out = t.copy()
    new = np.r_[True, t[1:] != t[:-1]]  # first row of each run
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(t)]
    for a, b in zip(starts, ends):
        r = b - a
        if r == 1:
            continue
        if a == 0 or b == len(t):
            raise ValueError(f"rows {a}-{b - 1} share the time {t[a]} at the series' {'start' if a == 0 else 'end'}")
        gap = (t[b] - t[a - 1]) / (r + 1)
        out[a:b] = t[a - 1] + gap * np.arange(1, r + 1)
    return pd.Series(out, index=times.index, name=times.name)


def smd_names(root: Path | None = None) -> list[str]:
    """Names of the SMD machines, sorted.

    Parameters
    ----------
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    list of str
    """
    root = root or benchdata_root()
    return sorted(
        f["name"].split("/", 1)[1]
        for f in load_manifest(root)["files"]
        if f["kind"] == "timeseries" and f["name"].startswith("smd/")
    )


def load_smd(name: str, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load one SMD machine, split into its train and test parts.

    Parameters
    ----------
    name : str
        Machine name, e.g. ``"machine-1-2"``.
    root : pathlib.Path, optional
        Data root; defaults to :func:`benchdata_root`.

    Returns
    -------
    train, test : pandas.DataFrame
        ``f0..f37`` and ``label`` columns, each part in source order with a
        fresh 0-based index.
    """
    root = root or benchdata_root()
    df = pd.read_parquet(root / "timeseries" / "smd" / f"{name}.parquet")
    parts = []
    for split in ("train", "test"):
        part = df[df["split"] == split].drop(columns=["split"]).reset_index(drop=True)
        parts.append(part)
    return parts[0], parts[1]
