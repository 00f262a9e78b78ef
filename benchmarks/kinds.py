"""The synthetic kinds suite: event recall per kind and flag precision at each detector's threshold.

For each frame of :mod:`benchmarks.synthetic` (one seed each), every detector is fitted on the
history (all sensors, one model) and flags the test period at its *own* threshold:

- ours, ``TimeSeriesVAEDetector(seed, window)`` with ``series_column="sensor"``: ``is_anomaly``,
  its threshold calibrated during ``fit`` on the held-out tail of the history;
- the baselines (rolling robust z, IsolationForest on windows): the 99th percentile of their
  scores on the history, the same 1% false-positive budget.

Each sensor's test period is scored with the last ``2 x (window - 1)`` history points before it as
context, the most any mode of ours depends on (they are scored along and dropped; the baselines
take ``window - 1``). An event is recalled when a flagged point lies in it or up to
:data:`TOLERANCE` points before or after it; flag precision is the share of flagged points that
lie in an event or within the same tolerance of one. Per-point AUROC and VUS-PR of the scores over
the test rows are reported beside them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

import numpy as np
import pandas as pd

from . import baselines, detectors, metrics, synthetic, vus

__all__ = ["TOLERANCE", "BASELINE_QUANTILE", "FULL_SEEDS", "QUICK_SEEDS", "QUICK_SPEC", "FULL_SPEC", "run_kinds", "summarise"]

#: Points before or after an event at which a flag still counts (30 minutes at 10-minute steps).
TOLERANCE = 3
#: Baselines flag above this quantile of their history scores.
BASELINE_QUANTILE = 0.99
FULL_SEEDS = (0, 1, 2)
FULL_SPEC = synthetic.SuiteSpec()  # 14 days of history, 7 of test, two events of each kind
#: ``--quick``: one smaller frame (5 days of history, 3 of test, one event of each kind).
QUICK_SEEDS = (0,)
QUICK_SPEC = synthetic.SuiteSpec(history_days=5, test_days=3, events_per_kind=1)
_TIME, _SERIES = "timestamp", "sensor"


def _per_sensor(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each sensor's (n, d) readings, in frame order (rows are sensor by sensor)."""
    cols = list(synthetic.VALUE_COLUMNS)
    return [g[cols].to_numpy(np.float64) for _, g in frame.groupby(_SERIES, sort=False)]


def _baseline(name: str, hist: list[np.ndarray], test: list[np.ndarray], window: int, seed: int):
    """History and test scores of one baseline, sensor by sensor, concatenated."""
    ctx = [h[-(window - 1):] for h in hist]
    if name == "robust_z":
        h = [baselines.rolling_robust_zscore(v, window) for v in hist]
        t = [baselines.rolling_robust_zscore(v, window, context=c) for v, c in zip(test, ctx)]
    else:
        det = baselines.WindowIsolationForest(window, seed=seed).fit(hist)
        h = [det.decision_function(v) for v in hist]
        t = [det.decision_function(v, context=c) for v, c in zip(test, ctx)]
    return np.concatenate(h), np.concatenate(t)


def _ours(frame: synthetic.SyntheticFrame, window: int, seed: int) -> detectors.Scored:
    """Fit on the history; score each sensor's history tail + test period, keep the test rows."""
    tail = frame.history.groupby(_SERIES, sort=False).tail(2 * (window - 1))  # any mode's context_points
    both = pd.concat([tail.assign(_test=False), frame.test.assign(_test=True)])
    rank = {name: i for i, name in enumerate(frame.test[_SERIES].unique())}  # the test rows' sensor order
    both = both.assign(_rank=both[_SERIES].map(rank)).sort_values(["_rank", _TIME], kind="mergesort",
                                                                  ignore_index=True)
    res = detectors.run_vae_timeseries(frame.history, both.drop(columns=["_test", "_rank"]), _TIME, seed,
                                       window, series_column=_SERIES)
    keep = both["_test"].to_numpy()
    if not np.array_equal(both.loc[keep, _TIME].to_numpy(), frame.test[_TIME].to_numpy()):
        raise AssertionError("scored rows are not in the test frame's order")
    res.scores = {k: v[keep] for k, v in res.scores.items()}
    res.extra["is_anomaly"] = res.extra["is_anomaly"][keep]
    return res


def _record(frame, key, scores, flags, fit_s, score_s, window) -> dict:
    ev = frame.events
    hits = metrics.event_hits(ev[["start", "stop"]].to_numpy(), flags, TOLERANCE)
    precision = metrics.flag_precision(frame.labels, flags, TOLERANCE)
    s = np.where(np.isnan(scores), -np.inf, scores)
    return {"seed": frame.seed, "key": key, "kinds": ev["kind"].tolist(), "hits": hits.tolist(),
            "n_flagged": int(flags.sum()), "n_points": len(flags), "flag_precision": precision,
            "n_flagged_near": int(round(precision * flags.sum())) if flags.any() else 0,
            "auroc": metrics.auroc(frame.labels, s), "vus_pr": vus.vus_pr(frame.labels, s, window),
            "fit_s": fit_s, "score_s": score_s}


def run_kinds(seeds, window: int, vae_ok: bool, log: Callable[[str], None],
              spec: synthetic.SuiteSpec = FULL_SPEC) -> dict:
    """Generate one frame per seed and run every detector on it.

    Parameters
    ----------
    seeds : iterable of int
        One frame per seed; the detectors use the same seed.
    window : int
        Window of every detector (and the largest VUS-PR buffer).
    vae_ok : bool
        Whether ``vae_core`` imports; without it only the baselines run.
    log : callable
        Progress messages.
    spec : SuiteSpec, optional
        Shape of the frames (default :data:`FULL_SPEC`).

    Returns
    -------
    dict
        ``records`` (one per frame and detector, or with ``error``), ``seeds``, ``tolerance``,
        ``quantile``, ``window`` and ``summary`` (see :func:`summarise`).
    """
    records = []
    for seed in seeds:
        frame = synthetic.make_frame(seed, spec)
        if vae_ok:
            try:
                res = _ours(frame, window, seed)
                records.append(_record(frame, "vae_core_ts/anomaly_score", res.scores["anomaly_score"],
                                       res.extra["is_anomaly"].astype(bool), res.fit_s, res.score_s, window))
            except Exception as exc:  # record and go on with the baselines
                records.append({"seed": seed, "key": "vae_core_ts/anomaly_score",
                                "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        hist, test = _per_sensor(frame.history), _per_sensor(frame.test)
        for name in ("robust_z", "iforest_win"):
            t0 = time.perf_counter()
            h, t = _baseline(name, hist, test, window, seed)
            threshold = float(np.quantile(h, BASELINE_QUANTILE))
            records.append(_record(frame, name, t, t > threshold, time.perf_counter() - t0, 0.0, window))
        for r in records[-3:]:
            if "error" not in r:
                log(f"kinds seed {seed} {r['key']:26s} recall {np.mean(r['hits']):.2f} "
                    f"precision {r['flag_precision']:.2f} AUROC {r['auroc']:.3f}")
    return {"seeds": list(seeds), "spec": vars(spec), "tolerance": TOLERANCE, "quantile": BASELINE_QUANTILE, "window": window,
            "records": records, "summary": summarise(records)}


def summarise(records: list[dict]) -> dict:
    """Pool the frames per detector: recall per kind, mean over kinds, precision, AUROC, VUS-PR.

    Recall of a kind = recalled events of that kind / its events over all frames; flag precision
    = flagged points near an event / flagged points over all frames; AUROC and VUS-PR = mean
    over frames.
    """
    acc: dict = defaultdict(lambda: {"hits": defaultdict(list), "near": 0, "flagged": 0, "points": 0,
                                     "auroc": [], "vus_pr": [], "frames": 0})
    for r in records:
        if "error" in r:
            continue
        a = acc[r["key"]]
        for kind, hit in zip(r["kinds"], r["hits"]):
            a["hits"][kind].append(hit)
        a["near"] += r["n_flagged_near"]
        a["flagged"] += r["n_flagged"]
        a["points"] += r["n_points"]
        a["auroc"].append(r["auroc"])
        a["vus_pr"].append(r["vus_pr"])
        a["frames"] += 1
    out = {}
    for key, a in acc.items():
        recall = {k: float(np.mean(a["hits"][k])) if a["hits"][k] else float("nan") for k in synthetic.KINDS}
        out[key] = {"recall": recall, "mean_recall": float(np.nanmean(list(recall.values()))),
                    "events": {k: len(a["hits"][k]) for k in synthetic.KINDS},
                    "flag_precision": a["near"] / a["flagged"] if a["flagged"] else float("nan"),
                    "flag_rate": a["flagged"] / a["points"], "n_flagged": a["flagged"],
                    "auroc": float(np.mean(a["auroc"])), "vus_pr": float(np.mean(a["vus_pr"])),
                    "frames": a["frames"]}
    return out
