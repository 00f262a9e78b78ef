"""Tabular league table: mean metric, average rank and wins/losses against the peers.

Pure functions of the benchmark's tabular records (``run.run_tabular``): one record per
(dataset, seed, detector key), holding ``auroc``/``auprc`` or an ``error``.

Failed detectors: a detector that failed on any seed of a dataset is *failed on that dataset*.
It takes the worst rank there (tied with any other failed detector: they share the average of
the bottom ranks), its mean metric is taken over the datasets it completed (the count is shown),
and head-to-head counts skip that dataset. ``common`` means are over the datasets every ranked
detector completed, so all columns of that mean see the same sets.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy.stats import rankdata

__all__ = ["OURS", "per_dataset", "failed_sets", "rank_table", "league", "versus_best_peer",
           "head_to_head"]

#: The detector the league is about: ``VAEDetector``'s ``anomaly_score`` column.
OURS = "vae_core/anomaly_score"


def per_dataset(records: list[dict], metric: str) -> tuple[list[str], list[str], dict]:
    """Mean over seeds of ``metric`` per (dataset, key); ``nan`` where the key failed on a seed.

    Returns
    -------
    datasets, keys : list of str
        In first-seen order.
    table : dict
        ``table[dataset][key]`` (``nan`` where failed or absent).
    """
    vals: dict = defaultdict(lambda: defaultdict(list))
    bad: set = set()
    datasets, keys = [], []
    for r in records:
        d, k = r["dataset"], r["key"]
        if d not in datasets:
            datasets.append(d)
        if k not in keys:
            keys.append(k)
        if r.get("error"):
            bad.add((d, k))
        else:
            vals[d][k].append(r.get(metric))
    table = {}
    for d in datasets:
        row = {}
        for k in keys:
            xs = [x for x in vals[d][k] if x is not None and not math.isnan(x)]
            row[k] = float("nan") if (d, k) in bad or not xs else float(np.mean(xs))
        table[d] = row
    return datasets, keys, table


def failed_sets(records: list[dict]) -> dict[str, dict[str, str]]:
    """``{key: {dataset: first error message}}`` for every failed (dataset, key)."""
    out: dict = defaultdict(dict)
    for r in records:
        if r.get("error"):
            out[r["key"]].setdefault(r["dataset"], f"seed {r['seed']}: {r['error']}")
    return dict(out)


def rank_table(table: dict, datasets: list[str], keys: list[str]) -> dict[str, dict[str, float]]:
    """Per dataset, the rank of each key (1 = best, ties averaged; failed keys share the bottom).

    ``nan`` values are ranked below every finite value, tied among themselves.
    """
    out = {}
    for d in datasets:
        v = np.array([table[d][k] for k in keys], dtype=np.float64)
        v = np.where(np.isnan(v), -np.inf, v)
        r = rankdata(-v, method="average")
        out[d] = {k: float(x) for k, x in zip(keys, r)}
    return out


def league(table: dict, datasets: list[str], keys: list[str]) -> dict[str, dict]:
    """Per key: ``mean``, ``n_sets`` (completed), ``failed``, ``avg_rank``, ``common_mean``."""
    ranks = rank_table(table, datasets, keys)
    common = [d for d in datasets if all(not math.isnan(table[d][k]) for k in keys)]
    out = {}
    for k in keys:
        done = [table[d][k] for d in datasets if not math.isnan(table[d][k])]
        out[k] = {
            "mean": float(np.mean(done)) if done else float("nan"),
            "n_sets": len(done),
            "failed": len(datasets) - len(done),
            "avg_rank": float(np.mean([ranks[d][k] for d in datasets])) if datasets else float("nan"),
            "common_mean": float(np.mean([table[d][k] for d in common])) if common else float("nan"),
            "n_common": len(common),
        }
    return out


def versus_best_peer(table: dict, datasets: list[str], ours: str, peers: list[str]) -> list[dict]:
    """Per dataset: the best completed peer, its value, ours, ``margin`` = ours - best (``win`` if > 0)."""
    rows = []
    for d in datasets:
        done = [(table[d][p], p) for p in peers if not math.isnan(table[d][p])]
        mine = table[d][ours]
        if not done:
            rows.append({"dataset": d, "best_peer": None, "best": float("nan"), "ours": mine,
                         "margin": float("nan"), "win": None})
            continue
        best, who = max(done)
        margin = mine - best if not math.isnan(mine) else float("nan")
        rows.append({"dataset": d, "best_peer": who, "best": best, "ours": mine, "margin": margin,
                     "win": None if math.isnan(margin) else bool(margin > 0)})
    return rows


def head_to_head(table: dict, datasets: list[str], ours: str, peers: list[str]) -> dict[str, dict]:
    """Per peer: datasets where ours is higher (``wins``), lower (``losses``), equal (``ties``);
    datasets where either failed are skipped."""
    out = {}
    for p in peers:
        w = l_ = t = 0
        for d in datasets:
            a, b = table[d][ours], table[d][p]
            if math.isnan(a) or math.isnan(b):
                continue
            if a > b:
                w += 1
            elif a < b:
                l_ += 1
            else:
                t += 1
        out[p] = {"wins": w, "losses": l_, "ties": t}
    return out
