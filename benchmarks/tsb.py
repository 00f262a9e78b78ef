"""Ours against TSB-AD's methods, on TSB-AD's yardstick: ``python -m benchmarks.tsb``.

Runs in its own virtual environment, ``.venv-tsb`` (``make bench-tsb`` creates it and runs this):
``tsb-ad`` 1.5 needs numpy < 2, the project's venv has numpy 2. Per series (TSB-AD's
``benchmark_exp/Run_Detector_U.py`` / ``_M.py``, the package's ``main.py``):

- the sliding window is ``find_length_rank(data, rank=1)`` (SMD: of its first column);
- TSB-AD's methods run with ``Optimal_Uni_algo_HP_dict`` (NAB) / ``Optimal_Multi_algo_HP_dict``
  (SMD) on the series z-scored as TSB-AD's files are (NAB: the whole series; SMD: train and test
  together); unsupervised ones see the whole series (SMD: train then test, the test part scored),
  semi-supervised ones train on SMD's train rows and score the test rows;
- ours is fitted once per series as ``benchmarks.run``'s time-series path fits it (raw values,
  window 32, ``$VAE_ANOMALY_BENCH_TS_PARAMS``; NAB: the whole series, SMD: train) and scored
  in both modes: causal (``point_score="last"``, the score flow's) and offline (``"mean"``);
- VUS-PR, VUS-ROC, AUC-PR and AUC-ROC are TSB-AD's (``get_metrics``' own calls) at that window; our
  ``benchmarks.vus.vus_pr`` at the same window is recorded beside it (``ours_vus_pr``);
- flags: ours ``is_anomaly``; TSB-AD's methods ``main.py``'s rule, score > mean + 3 sd. Event
  recall = the share of labelled ranges with a flagged point; flag precision = the share of
  flags on labelled points.

Writes ``benchmarks/results/<out-name>.md`` and ``.json`` (``tsb`` by default); ``--merge a,b``
renders one report from earlier runs' JSON files (e.g. NAB and SMD run side by side).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import data, detectors, metrics, tsb_report, vus
from .run import QUICK_NAB, RESULTS_DIR, TS_WINDOW, _err, _jsonable, write_atomic

NAB_METHODS = ("Sub_PCA", "POLY", "KShapeAD", "Series2Graph", "IForest", "Sub_KNN")
SMD_METHODS = ("PCA", "CNN", "OmniAnomaly", "LSTMAD", "IForest", "KNN")
OURS = {"last": "ours causal", "mean": "ours offline"}
SEED = 2024  # TSB-AD's scripts seed torch, numpy and random with it


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def sliding_window(values: np.ndarray) -> int:
    """TSB-AD's window: ``find_length_rank(x, rank=1)`` of the first column (the period by ACF)."""
    from TSB_AD.utils.slidingWindows import find_length_rank

    return int(find_length_rank(np.asarray(values, float)[:, :1], rank=1))


def tsb_metrics(score: np.ndarray, label: np.ndarray, window: int) -> dict:
    """VUS-PR, VUS-ROC, AUC-PR and AUC-ROC by the calls TSB-AD's ``get_metrics`` makes for them
    (its threshold-dependent F1s and affiliation, 80% of its time, are left out; the unit test
    checks the four equal ``get_metrics``')."""
    from TSB_AD.evaluation.basic_metrics import basic_metricor, generate_curve

    score, label = np.asarray(score, float), np.asarray(label, int)
    grader = basic_metricor()
    *_, vus_roc, vus_pr = generate_curve(label, score, window, "opt", 250)
    return {"vus_pr": float(vus_pr), "vus_roc": float(vus_roc), "auc_pr": float(grader.metric_PR(label, score)),
            "auc_roc": float(grader.metric_ROC(label, score))}


def three_sigma_flags(score: np.ndarray) -> np.ndarray:
    """``main.py``'s flags: the score min-max scaled, above its mean + 3 standard deviations."""
    s = np.asarray(score, float)
    span = s.max() - s.min()
    s = (s - s.min()) / span if span > 0 else np.zeros_like(s)
    return s > s.mean() + 3 * s.std()


def zscore(x: np.ndarray) -> np.ndarray:
    """Each column less its mean over its standard deviation (1 where constant), as TSB-AD's files."""
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def run_method(name: str, multivariate: bool, train: np.ndarray | None, series: np.ndarray) -> np.ndarray:
    """One TSB-AD method with its published hyper-parameters on ``series`` (semi-supervised:
    trained on ``train``); one score per point of ``series``."""
    import random

    import torch
    from TSB_AD import model_wrapper
    from TSB_AD.HP_list import Optimal_Multi_algo_HP_dict, Optimal_Uni_algo_HP_dict

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    hp = (Optimal_Multi_algo_HP_dict if multivariate else Optimal_Uni_algo_HP_dict)[name]
    if name in model_wrapper.Semisupervise_AD_Pool:
        out = model_wrapper.run_Semisupervise_AD(name, train, series, **hp)
    else:
        out = model_wrapper.run_Unsupervise_AD(name, series, **hp)
    if isinstance(out, str):  # the wrappers return a message instead of raising
        raise RuntimeError(f"{name}: {out}")
    out = np.asarray(out, float).ravel()
    if len(out) != len(series):
        raise RuntimeError(f"{name}: {len(out)} scores for {len(series)} points")
    return out


def fit_ours(fit_frame: pd.DataFrame, eval_frame: pd.DataFrame, time_col: str, seed: int) -> tuple[dict, float]:
    """Ours fitted once on ``fit_frame``; ``eval_frame``'s scores and flags in both modes."""
    from vae_core import TimeSeriesVAEDetector

    det = TimeSeriesVAEDetector(seed=seed, **{"window": TS_WINDOW, **detectors.ts_params()})  # the settings may name a window
    t = time.perf_counter()
    det.fit(fit_frame, time_column=time_col)
    fit_s = time.perf_counter() - t
    out = {}
    for mode in ("last", "mean"):
        t = time.perf_counter()
        scored = det.with_point_score(mode).score(eval_frame)
        out[mode] = (scored["anomaly_score"].to_numpy(float), scored["is_anomaly"].to_numpy(bool),
                     time.perf_counter() - t)
    return out, fit_s


def record(source: str, series: str, key: str, y: np.ndarray, s: np.ndarray, flags: np.ndarray,
           window: int, fit_s: float, score_s: float) -> dict:
    """One detector on one series: TSB-AD's metrics, our VUS-PR at the same window, event recall."""
    s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.0)
    rec = {"source": source, "series": series, "key": key, "window": window, "n": len(y),
           "n_segments": int(len(metrics.segments(y))), "fit_s": fit_s, "score_s": score_s}
    t = time.perf_counter()
    rec |= tsb_metrics(s, y, window)
    rec["metrics_s"] = time.perf_counter() - t
    rec["ours_vus_pr"] = vus.vus_pr(y, s, window)
    rec["event_recall"] = float(metrics.event_hits(metrics.segments(y), flags).mean()) if y.any() else float("nan")
    rec["flag_precision"] = metrics.flag_precision(y, flags)
    rec["flag_rate"] = float(np.mean(flags))
    return rec


def run_series(source: str, series: str, fit_frame: pd.DataFrame, eval_frame: pd.DataFrame, time_col: str,
               cols: list[str], y: np.ndarray, methods: tuple[str, ...], seed: int, t0: float) -> list[dict]:
    """Ours (both modes, one fit) and each TSB-AD method on one series; a failure is a record."""
    multivariate = source == "smd"
    same = fit_frame is eval_frame
    whole = eval_frame[cols].to_numpy(float) if same else np.concatenate(
        [fit_frame[cols].to_numpy(float), eval_frame[cols].to_numpy(float)])
    z = zscore(whole)
    z_train, z_eval = (None, z) if same else (z[:len(fit_frame)], z[len(fit_frame):])
    window = sliding_window(z_eval if same else z)
    recs = []
    try:
        ours, fit_s = fit_ours(fit_frame[[time_col] + cols], eval_frame[[time_col] + cols], time_col, seed)
        for mode, (s, flags, score_s) in ours.items():
            recs.append(record(source, series, OURS[mode], y, s, flags, window, fit_s, score_s))
        _log(f"{source} {series[:40]} ours fit {fit_s:.1f}s, metrics {recs[-1]['metrics_s']:.1f}s", t0)
    except Exception as exc:  # record and go on with the other detectors
        recs += [{"source": source, "series": series, "key": k, "error": _err(exc)} for k in OURS.values()]
    for name in methods:
        t = time.perf_counter()
        try:
            semi = not same and name in _semisupervised()
            s = run_method(name, multivariate, z_train, z_eval) if semi or same else \
                run_method(name, multivariate, None, z)[len(fit_frame):]
            elapsed = time.perf_counter() - t
            recs.append(record(source, series, name, y, s, three_sigma_flags(s), window, elapsed, 0.0))
            _log(f"{source} {series[:40]} {name} {elapsed:.1f}s, metrics {recs[-1]['metrics_s']:.1f}s", t0)
        except Exception as exc:
            recs.append({"source": source, "series": series, "key": name, "error": _err(exc)})
    done = " ".join(f"{r['key']} {r['vus_pr']:.3f}" if "vus_pr" in r else f"{r['key']} ERROR" for r in recs)
    _log(f"{source} {series[:40]:40s} window {window}  VUS-PR {done}", t0)
    return recs


def _semisupervised() -> list[str]:
    from TSB_AD.model_wrapper import Semisupervise_AD_Pool

    return list(Semisupervise_AD_Pool)


def _select(names, wanted):
    return list(names) if wanted is None else [n for n in names if n in wanted or n.split("__")[-1] in wanted]


def run(nab: list[str], smd: list[str], nab_methods, smd_methods, seed: int, t0: float,
        done=lambda records: None) -> list[dict]:
    """Every series; ``done(records so far)`` after each one (the partial results file)."""
    records = []
    for name in nab:
        df = data.load_nab(name)
        records += run_series("nab", name, df, df, "timestamp", ["value"], df["label"].to_numpy(np.int64),
                              nab_methods, seed, t0)
        done(records)
    for name in smd:
        train, test = data.load_smd(name)
        cols = [c for c in train.columns if c.startswith("f")]
        train = train.assign(t=np.arange(len(train), dtype=np.int64))
        test = test.assign(t=np.arange(len(train), len(train) + len(test), dtype=np.int64))
        records += run_series("smd", name, train, test, "t", cols, test["label"].to_numpy(np.int64),
                              smd_methods, seed, t0)
        done(records)
    return records


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    for pkg in ("tsb-ad", "numpy", "torch", "scikit-learn", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tsb", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"3 NAB series ({', '.join(QUICK_NAB)}), no SMD")
    p.add_argument("--only", choices=("nab", "smd"), help="one data set")
    p.add_argument("--datasets", help="comma-separated NAB series / SMD machines")
    p.add_argument("--methods", help="comma-separated TSB-AD methods (default: the six of each data set)")
    p.add_argument("--seed", type=int, default=0, help="our detector's seed (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as benchmarks.run)")
    p.add_argument("--merge", help="comma-separated result stems to render as one report (runs nothing)")
    p.add_argument("--out-name", default=None, help="results file stem (default tsb; quick: tsb_quick)")
    a = p.parse_args(argv)
    a.out_name = a.out_name or ("tsb_quick" if a.quick else "tsb")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.merge:
        parts = [json.loads((RESULTS_DIR / f"{stem}.json").read_text()) for stem in args.merge.split(",")]
        result = tsb_report.merge(parts)
    else:
        import torch

        torch.set_num_threads(args.threads)
        wanted = set(args.datasets.split(",")) if args.datasets else None
        chosen = set(args.methods.split(",")) if args.methods else None
        nab = [] if args.only == "smd" else _select(QUICK_NAB if args.quick else data.nab_names(), wanted)
        smd = [] if args.only == "nab" or args.quick else _select(data.smd_names(), wanted)
        pick = lambda ms: tuple(m for m in ms if chosen is None or m in chosen)  # noqa: E731
        load = os.getloadavg()
        partial = RESULTS_DIR / f"{args.out_name}.partial.json"
        save = lambda recs: write_atomic(partial, json.dumps(_jsonable({"records": recs, "meta": {}}), indent=1))  # noqa: E731
        records = run(nab, smd, pick(NAB_METHODS), pick(SMD_METHODS), args.seed, t0, save)
        partial.unlink(missing_ok=True)
        result = {"records": records, "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.tsb", *(sys.argv[1:] if argv is None else argv)]),
            "wall_s": time.perf_counter() - t0, "load_average_1_5_15": {"start": list(load), "end": list(os.getloadavg())},
            "versions": _versions(), "torch_threads": args.threads, "ts_params": detectors.ts_params(),
            "vae_core": detectors.vae_core_fingerprint(),
        }}
    md = tsb_report.render(result)
    print(md)
    write_atomic(RESULTS_DIR / f"{args.out_name}.md", md)
    write_atomic(RESULTS_DIR / f"{args.out_name}.json", json.dumps(_jsonable(result), indent=1) + "\n")
    _log(f"wrote {RESULTS_DIR / args.out_name}.md/.json", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
