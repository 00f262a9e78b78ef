"""The demo's sensors as a benchmark: ``python -m benchmarks.demo_sensors [name=value ...]``.

Fits ``TimeSeriesVAEDetector`` on the demo's history (``sensors_batch1`` and ``_batch2``, as
``make demo`` trains it, with ``DEMO_PARAMS``), scores all three batches, and prints, at the
calibrated threshold, the flags, their precision, the flagged points and events of each injected
kind (``sensors_labels.csv``) and the point AUROC. ``name=value`` arguments override detector
settings (JSON values: ``point_score='"last"'``, ``threshold_per_series=true``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEYS = ["timestamp", "sensor"]


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The history (batches 1-2) and all three batches with the labels joined."""
    batches = [pd.read_csv(SAMPLES / "sensors_batch1.csv"), pd.read_parquet(SAMPLES / "sensors_batch2.parquet"),
               pd.read_json(SAMPLES / "sensors_batch3.jsonl", lines=True)]
    for b in batches:
        b["timestamp"] = pd.to_datetime(b["timestamp"], utc=True)
    labels = pd.read_csv(SAMPLES / "sensors_labels.csv")
    labels["timestamp"] = pd.to_datetime(labels["timestamp"], utc=True)
    every = pd.concat(batches, ignore_index=True).merge(labels, on=KEYS, how="left")
    return pd.concat(batches[:2], ignore_index=True), every


def run(params: dict) -> dict:
    """Fit, score and measure; ``params`` override ``DEMO_PARAMS``."""
    import torch

    from pipelines.demo import DEMO_PARAMS
    from vae_core import TimeSeriesVAEDetector

    torch.set_num_threads(1)
    history, every = load()
    t0 = time.perf_counter()
    det = TimeSeriesVAEDetector(seed=0, **{**DEMO_PARAMS, **params}).fit(history, time_column="timestamp",
                                                                          series_column="sensor")
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = measure(det, every)
    score_s = time.perf_counter() - t0
    return {"params": params, **out, "fit_s": round(fit_s, 1), "score_s": round(score_s, 1)}


def measure(det, every: pd.DataFrame) -> dict:
    """Flags, their precision, AUROC, events and each injected kind's caught points and events of
    ``det`` (in its own point-score mode) on ``every`` (:func:`load`'s second frame)."""
    frame = every.drop(columns=["is_injected_anomaly", "anomaly_kind"])
    scores = det.score(frame)
    y = every["is_injected_anomaly"].fillna(0).to_numpy().astype(bool)
    kind = every["anomaly_kind"].fillna("").to_numpy()
    flags = scores["is_anomaly"].to_numpy()
    events = det.events(frame, scores)
    out = {"flags": int(flags.sum()), "precision": round(float((flags & y).sum() / max(flags.sum(), 1)), 3),
           "auroc": round(float(roc_auc_score(y, scores["anomaly_score"])), 3), "events": len(events)}
    for k in sorted(set(kind) - {""}):
        m = kind == k
        out[f"{k} points"] = f"{int((flags & m).sum())}/{int(m.sum())}"
        runs = _runs(every[m])
        out[f"{k} events"] = f"{sum(bool(flags[r].any()) for r in runs)}/{len(runs)}"
    return out


def _runs(rows: pd.DataFrame) -> list[np.ndarray]:
    """The labelled rows of one kind as events: consecutive 5-minute steps of one sensor."""
    out = []
    for _, g in rows.sort_values("timestamp").groupby("sensor"):
        t = g["timestamp"].to_numpy()
        cut = np.flatnonzero(np.diff(t) > np.timedelta64(5, "m")) + 1
        out += [g.index.to_numpy()[part] for part in np.split(np.arange(len(g)), cut)]
    return out


if __name__ == "__main__":
    params = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    print(json.dumps(run(params)))
