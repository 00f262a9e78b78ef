"""Run the benchmark: ``python -m benchmarks.run [--quick] [--only PART] ...``.

Prints a markdown report to stdout (progress goes to stderr) and writes
``benchmarks/results/<name>.md`` and ``.json`` atomically (``latest`` for a
full run, ``quick`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from . import baselines, data, detectors, kinds, metrics, report, speed, vus
from .tabular import run_tabular

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TS_WINDOW = 32
#: Largest VUS-PR buffer length (TSB-AD passes each series' estimated period; we fix it to the
#: detectors' window, so the widest buffer reaches 16 points either side of a labelled range).
VUS_MAX_BUFFER = TS_WINDOW
#: Train rows kept per tabular split (stratified subsample) -- see --train-cap.
DEFAULT_TRAIN_CAP = 20_000
QUICK_TABULAR = ("pima", "vowels", "cardio")
QUICK_NAB = (
    "realAWSCloudwatch__iio_us-east-1_i-a2eb1cd9_NetworkIn",
    "realAdExchange__exchange-3_cpc_results",
    "artificialWithAnomaly__art_daily_jumpsup",
)
#: torch threads for all detectors.  With 2 threads on a shared 2-core machine
#: small-MLP training was measured 6-40x slower than with 1 (OpenMP workers
#: fighting other processes for the cores), so 1 is the default.
DEFAULT_THREADS = 1
SPEED_ROWS = 1_000_000


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _err(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def _finite(s: np.ndarray) -> tuple[np.ndarray, int]:
    """NaN scores rank lowest (never flagged); returns the count of NaNs."""
    s = np.asarray(s, dtype=np.float64)
    bad = np.isnan(s)
    if bad.any():
        s = np.where(bad, -np.inf, s)
    return s, int(bad.sum())


def _point_metrics(y: np.ndarray, s: np.ndarray) -> dict:
    s, n_nan = _finite(s)
    out = {"auroc": metrics.auroc(y, s), "auprc": metrics.auprc(y, s), "n_nan": n_nan,
           "n_inf": int(np.isinf(s).sum()) - n_nan}
    if len(s) > 1 and np.unique(s).size == 1:
        out["constant"] = True
    return out


# --------------------------------------------------------------------------- tabular


# run_tabular and the per-split code live in tabular.py (re-exported here for callers of run.run_tabular).


# --------------------------------------------------------------------------- time series


def _ts_record(source, series, key, y, s, fit_s, score_s, n_fit) -> dict:
    rec = {"source": source, "series": series, "key": key, "n_fit": n_fit, "n_eval": len(y),
           "anomaly_rate": float(np.mean(y)), "n_segments": int(len(metrics.segments(y))),
           "fit_s": fit_s, "score_s": score_s}
    rec |= _point_metrics(y, s)
    sf, _ = _finite(s)
    rec["f1"] = metrics.best_f1(y, sf)
    rec["f1_pa"] = metrics.best_f1_pa(y, sf)
    rec["f1_composite"] = metrics.best_composite_f1(y, sf)
    rec["vus_pr"] = vus.vus_pr(y, sf, VUS_MAX_BUFFER)
    return rec


def _ts_one(source, series, fit_frame, eval_frame, time_col, value_cols, context, y, seed, vae_ok,
            problems, t0, both_modes=False) -> list[dict]:
    """All time-series detectors on one series."""
    recs = []
    fit_vals = fit_frame[value_cols].to_numpy(np.float64)
    eval_vals = eval_frame[value_cols].to_numpy(np.float64)
    if vae_ok:
        try:
            res = detectors.run_vae_timeseries(fit_frame[[time_col] + value_cols],
                                               eval_frame[[time_col] + value_cols],
                                               time_col, seed, TS_WINDOW, both_modes=both_modes)
            for c, s in res.scores.items():
                rec = _ts_record(source, series, f"vae_core_ts/{c}", y, s, res.fit_s, res.score_s,
                                 len(fit_frame))
                if rec["n_nan"] or rec["n_inf"] or rec.get("constant"):
                    problems.append(f"{source}/{series} ours {c}: {rec['n_nan']} NaN, {rec['n_inf']} "
                                    "inf scores" + (", constant scores" if rec.get("constant") else ""))
                recs.append(rec)
            _log(f"{source} {series[:40]:40s} ours fit {res.fit_s:6.2f}s score {res.score_s:6.2f}s "
                 "AUROC " + " ".join(f"{r['key'].split('/')[-1]} {r['auroc']:.3f}" for r in recs
                                     if r["key"].split("/")[-1].startswith("anomaly_score")), t0)
        except Exception as exc:
            msg = _err(exc)
            recs += [{"source": source, "series": series, "key": f"vae_core_ts/{c}", "error": msg}
                     for c in detectors.VAE_SCORES]
            _log(f"{source} {series} ours: ERROR {msg}", t0)
    t = time.perf_counter()
    s = baselines.rolling_robust_zscore(eval_vals, TS_WINDOW, context=context)
    recs.append(_ts_record(source, series, "robust_z", y, s, 0.0, time.perf_counter() - t, 0))
    t = time.perf_counter()
    wif = baselines.WindowIsolationForest(TS_WINDOW, seed=seed).fit(fit_vals)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    s = wif.decision_function(eval_vals, context=context)
    recs.append(_ts_record(source, series, "iforest_win", y, s, fit_s, time.perf_counter() - t,
                           len(fit_frame)))
    _log(f"{source} {series[:40]:40s} robust_z AUROC {recs[-2]['auroc']:.3f} "
         f"iforest_win AUROC {recs[-1]['auroc']:.3f}", t0)
    # the floor every metric should be read against: point adjustment lifts even random scores
    # to a high F1 when anomalies come in long segments (OmniAnomaly#15, #19)
    s = np.random.default_rng([seed, len(y)]).random(len(y))
    recs.append(_ts_record(source, series, "random", y, s, 0.0, 0.0, 0))
    return recs


def run_timeseries(nab, smd, seed, vae_ok, problems, t0, both_modes=False) -> dict:
    """NAB (fit and score the whole series) and SMD (fit train, score test)."""
    records = []
    for name in nab:
        df = data.load_nab(name)
        records += _ts_one("nab", name, df, df, "timestamp", ["value"], None,
                           df["label"].to_numpy(np.int64), seed, vae_ok, problems, t0, both_modes)
    for name in smd:
        train, test = data.load_smd(name)
        cols = [c for c in train.columns if c.startswith("f")]
        train = train.assign(t=np.arange(len(train), dtype=np.int64))
        test = test.assign(t=np.arange(len(train), len(train) + len(test), dtype=np.int64))
        test.index = pd.RangeIndex(len(train), len(train) + len(test))
        ctx = train[cols].to_numpy(np.float64)[-(TS_WINDOW - 1):]
        records += _ts_one("smd", name, train, test, "t", cols, ctx,
                           test["label"].to_numpy(np.int64), seed, vae_ok, problems, t0, both_modes)
    return {"seed": seed, "window": TS_WINDOW, "records": records,
            "main_keys": ["vae_core_ts/anomaly_score", "vae_core_ts/anomaly_score@mean",
                          "vae_core_ts/anomaly_score@last", "robust_z", "iforest_win"]}


# --------------------------------------------------------------------------- main


def _select(names, wanted):
    if wanted is None:
        return list(names)
    return [n for n in names if n in wanted or n.split("__")[-1] in wanted]


def _machine() -> dict:
    import sklearn
    import torch

    try:
        import pyod

        pyod_v = pyod.__version__
    except Exception:  # pragma: no cover
        pyod_v = "missing"
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "sklearn": sklearn.__version__, "pyod": pyod_v, "platform": platform.platform()}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 3 small tables, 3 NAB series, no SMD, 1 kinds frame, no 1M-row pass")
    p.add_argument("--only", choices=("tabular", "timeseries", "kinds", "speed"), help="run one part")
    p.add_argument("--datasets", help="comma-separated dataset/series/machine names to run (all parts)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    p.add_argument("--train-cap", type=int, default=DEFAULT_TRAIN_CAP,
                   help=f"max train rows per tabular split, 0 = no cap (default {DEFAULT_TRAIN_CAP})")
    p.add_argument("--time-limit", type=float, default=None,
                   help="tabular: seconds one detector may take on one split (fit + score); past it the "
                        "detector is recorded as failed there (default: none)")
    p.add_argument("--records-jsonl", default=None,
                   help="tabular: append each finished (dataset, seed)'s records to this JSON-lines file")
    p.add_argument("--peers", default=None,
                   help="tabular: comma-separated baselines to run, 'none' for vae_core only (default: all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="tabular: splits run in this many worker processes at once (default 1: in this one)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch intra-op threads for every detector (default {DEFAULT_THREADS})")
    p.add_argument("--ts-both-modes", action="store_true",
                   help="time series: also score each fitted model in the other point-score mode")
    p.add_argument("--speed-rows", type=int, default=SPEED_ROWS, help="rows of the speed pass")
    p.add_argument("--out-name", default=None, help="results file stem (default latest; quick: quick)")
    p.add_argument("--no-write", action="store_true", help="print only, write no results files")
    a = p.parse_args(argv)
    a.seeds = [int(s) for s in (a.seeds or ("0" if a.quick else "0,1,2")).split(",")]
    a.out_name = a.out_name or ("quick" if a.quick else "latest")
    return a


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(o):
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    return o


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    import torch

    torch.set_num_threads(args.threads)
    wanted = set(args.datasets.split(",")) if args.datasets else None
    train_cap = args.train_cap or None
    vae_ok, vae_err = detectors.vae_core_status()
    vae_fp = detectors.vae_core_fingerprint()
    _log("vae_core available" if vae_ok else f"vae_core NOT available ({vae_err}): baselines only", t0)
    problems: list[str] = []
    result: dict = {}
    if args.records_jsonl:  # what merge needs to report a run that was stopped before its end
        write_atomic(Path(args.records_jsonl + ".meta.json"), json.dumps(_jsonable({
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
            "machine": _machine(), "load_average_start": list(load_start), "options": vars(args),
            "vae_core": {"available": vae_ok, "error": vae_err, "source": vae_fp},
            "vae_params": detectors.tab_params(), "data_root": str(data.benchdata_root()),
            "notes": report.protocol_notes(args.seeds, args.threads, train_cap, TS_WINDOW, VUS_MAX_BUFFER)}), indent=1))
    parts = [args.only] if args.only else ["tabular", "timeseries", "kinds", "speed"]
    part_s = {}
    # The speed pass runs first: its detectors import vae_core in fresh processes, and
    # vae_core may be edited while a long run goes on; this keeps all imports close together.
    if "speed" in parts and not args.quick and wanted is None:
        names = (["vae_core"] if vae_ok else []) + ["pyod_vae"]
        t = time.perf_counter()
        result["speed"] = speed.run_speed(names, args.speed_rows, args.seeds[0], args.threads,
                                          log=lambda m: _log(m, t0))
        part_s["speed"] = time.perf_counter() - t
        child_fp = result["speed"]["detectors"].get("vae_core", {}).get("vae_core_sha256")
        if child_fp and child_fp != vae_fp["sha256"]:
            problems.append(f"vae_core's source changed during the run: the speed pass measured "
                            f"{child_fp}, the accuracy parts {vae_fp['sha256']}")
    if "tabular" in parts:
        names = _select(QUICK_TABULAR if args.quick else data.tabular_names(), wanted)
        if names:
            t = time.perf_counter()
            peers = None if args.peers is None else [p for p in args.peers.split(",") if p and p != "none"]
            result["tabular"] = run_tabular(names, args.seeds, train_cap, vae_ok, problems, t0, args.time_limit,
                                            args.records_jsonl, peers, args.jobs, args.threads)
            part_s["tabular"] = time.perf_counter() - t
    if "timeseries" in parts:
        nab = _select(QUICK_NAB if args.quick else data.nab_names(), wanted)
        smd = [] if args.quick else _select(data.smd_names(), wanted)
        if nab or smd:
            t = time.perf_counter()
            result["timeseries"] = run_timeseries(nab, smd, args.seeds[0], vae_ok, problems, t0,
                                                  args.ts_both_modes)
            part_s["timeseries"] = time.perf_counter() - t
    if "kinds" in parts and wanted is None:
        t = time.perf_counter()
        seeds, spec = (kinds.QUICK_SEEDS, kinds.QUICK_SPEC) if args.quick else (kinds.FULL_SEEDS, kinds.FULL_SPEC)
        result["kinds"] = kinds.run_kinds(seeds, TS_WINDOW, vae_ok, lambda m: _log(m, t0), spec)
        problems += [f"kinds seed {r['seed']} {report.label(r['key'])}: {r['error']}"
                     for r in result["kinds"]["records"] if "error" in r]
        part_s["kinds"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    result["meta"] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "wall_s": wall,
        "part_wall_s": part_s,
        "machine": _machine(),
        "load_average_1_5_15": {"start": list(load_start), "end": list(os.getloadavg())},
        "vae_core": {"available": vae_ok, "error": vae_err, "source": vae_fp},
        "data_root": str(data.benchdata_root()),
        "options": {k: v for k, v in vars(args).items()},
        "ts_params": detectors.ts_params(),  # $VAE_ANOMALY_BENCH_TS_PARAMS
        "vae_params": detectors.tab_params(),  # $VAE_ANOMALY_BENCH_TAB_PARAMS
        "notes": report.protocol_notes(args.seeds, args.threads, train_cap, TS_WINDOW, VUS_MAX_BUFFER),
        "problems": problems,
    }
    md = report.render_markdown(result)
    print(md)
    if not args.no_write:
        write_atomic(RESULTS_DIR / f"{args.out_name}.md", md)
        write_atomic(RESULTS_DIR / f"{args.out_name}.json",
                     json.dumps(_jsonable(result), indent=1, sort_keys=False) + "\n")
        _log(f"wrote {RESULTS_DIR / args.out_name}.md/.json", t0)
    _log(f"done in {wall:.0f}s", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
