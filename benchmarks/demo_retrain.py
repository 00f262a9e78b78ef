"""The demo's sensors after a retrain: ``python -m benchmarks.demo_retrain [name=value ...]``.

Fits "v1" as :mod:`benchmarks.demo_sensors` does (batches 1-2), then "v2" the way the
``retrain`` flow does in ``make demo`` (before any review): the three batches, less the rows v1
flags, less the latest 20% of time (the flow's held-out rows). Prints, for each model and each
point-score mode (``last`` is what the score flow stores), the figures of
:func:`benchmarks.demo_sensors.measure` on all three batches, the threshold and rate weight, and
both models' held-out -log p per row (the flow's promotion figure).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from benchmarks.demo_sensors import load, measure


def run(params: dict) -> dict:
    """Fit v1 and v2 and measure both; ``params`` override ``DEMO_PARAMS`` for both fits
    (``seed=N`` sets both detectors' seed, default 0)."""
    import torch

    from pipelines import nodes
    from pipelines.demo import DEMO_PARAMS
    from vae_core import TimeSeriesVAEDetector

    torch.set_num_threads(1)
    history, every = load()
    settings = {k: v for k, v in params.items() if k != "seed"}
    fit = lambda f: TimeSeriesVAEDetector(seed=int(params.get("seed", 0)), **{**DEMO_PARAMS, **settings}).fit(  # noqa: E731
        f, time_column="timestamp", series_column="sensor")
    t0 = time.perf_counter()
    v1 = fit(history)
    frame = every.drop(columns=["is_injected_anomaly", "anomaly_kind"])
    flagged = v1.score(frame)["is_anomaly"].to_numpy(bool)  # the flow's champion scores in its own mode
    train, holdout = nodes.holdout_split(frame[~flagged], 0.2, 0, "timestamp")
    v2 = fit(train.reset_index(drop=True))
    out = {"params": params, "v2_rows_excluded": int(flagged.sum()), "v2_rows_train": len(train),
           "fit_s": round(time.perf_counter() - t0, 1)}
    rows = holdout.reset_index(drop=True)
    for name, det in (("v1", v1), ("v2", v2)):
        out[f"{name} holdout_nll"] = round(float(np.mean(det.data_nll(rows))), 3)
        for mode in ("last", "mean"):
            d = det.with_point_score(mode)
            out[f"{name} {mode}"] = {"threshold": round(d.threshold_, 3), "rate_weight": round(d.rate_weight_, 2),
                                     **measure(d, every)}
    return out


if __name__ == "__main__":
    params = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    print(json.dumps(run(params), indent=1))
