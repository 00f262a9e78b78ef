"""The tabular part of the benchmark (ADBench protocol): every detector on each (set, seed) split.

``run_split`` runs one split in the calling process; ``run_tabular`` runs them all, one after
the other or, with ``jobs > 1``, in that many fresh worker processes (splits are independent, so
a many-core machine runs the 30-set league in a fraction of the time; each worker sets the same
torch threads, and its timings are wall-clock under whatever the others load).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp

from . import baselines, data, detectors, metrics, report

__all__ = ["run_split", "run_tabular"]


def _flag_stats(y, extra, name, seed, problems) -> dict:
    out = {}
    if not extra.get("index_preserved", True):
        problems.append(f"tabular {name} seed {seed}: VAEDetector.score() did not keep the input index")
    flags = extra.get("is_anomaly")
    if flags is not None:
        tp = int(((flags == 1) & (y == 1)).sum())
        out["flag_rate"] = float(flags.mean())
        out["flag_precision"] = tp / flags.sum() if flags.sum() else float("nan")
        out["flag_recall"] = tp / y.sum() if y.sum() else float("nan")
    if extra.get("p_value_range"):
        lo, hi = extra["p_value_range"]
        out["p_value_range"] = [lo, hi]
        if not (0.0 <= lo <= hi <= 1.0):
            problems.append(f"tabular {name} seed {seed}: p_value outside [0, 1]: [{lo}, {hi}]")
    return out


def run_split(name: str, seed: int, train_cap, vae_ok: bool, peers, time_limit_s) -> tuple[list, list, list]:
    """All detectors on one split; returns (records, problems, log lines)."""
    from .run import _err, _finite, _point_metrics

    X, y = data.load_tabular(name)
    sp = data.split_tabular(X, y, seed, train_cap=train_cap)
    base = {"dataset": name, "seed": seed, "n_train": len(sp.X_train), "n_test": len(sp.X_test),
            "n_train_before_cap": sp.train_rows_before_cap, "anomaly_rate": float(sp.y_test.mean())}
    records, problems, logs = [], [], []
    runs = []
    if vae_ok:
        runs.append(("vae_core", lambda: detectors.run_vae_tabular(sp.X_train, sp.X_test, seed)))
    for b in baselines.TABULAR_BASELINES if peers is None else peers:
        runs.append((b, lambda b=b: detectors.run_baseline_tabular(b, sp.X_train, sp.X_test, seed)))
    for det, fn in runs:
        try:
            with detectors.time_limit(time_limit_s):
                res = fn()
        except Exception as exc:  # record and go on with the other detectors
            msg = _err(exc)
            keys = [f"vae_core/{c}" for c in detectors.VAE_SCORES] if det == "vae_core" else [det]
            records += [base | {"key": k, "error": msg} for k in keys]
            logs.append(f"tabular {name} seed {seed} {det}: ERROR {msg}")
            continue
        for score_name, s in res.scores.items():
            key = det if score_name == "score" else f"vae_core/{score_name}"
            rec = base | {"key": key, "fit_s": res.fit_s, "score_s": res.score_s}
            rec |= _point_metrics(sp.y_test, s)
            if rec["n_nan"] or rec["n_inf"] or rec.get("constant"):
                problems.append(f"tabular {name} seed {seed} {report.label(key)}: "
                                f"{rec['n_nan']} NaN, {rec['n_inf']} inf scores"
                                + (", constant scores" if rec.get("constant") else ""))
            if det == "vae_core" and score_name == detectors.VAE_MAIN_SCORE:
                rec |= _flag_stats(sp.y_test, res.extra, name, seed, problems)
            records.append(rec)
        main = res.scores.get(detectors.VAE_MAIN_SCORE, res.scores.get("score"))
        logs.append(f"tabular {name:10s} seed {seed} {det:9s} fit {res.fit_s:6.2f}s "
                    f"score {res.score_s:6.3f}s AUROC {metrics.auroc(sp.y_test, _finite(main)[0]):.3f}")
    return records, problems, logs


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_tabular(names, seeds, train_cap, vae_ok, problems, t0, time_limit_s=None, jsonl=None,
                peers=None, jobs: int = 1, threads: int = 1) -> dict:
    """ADBench protocol on each tabular dataset and seed; see the benchmark's protocol notes.

    ``jsonl``: a path that each (dataset, seed)'s records are appended to once all its detectors
    ran (a long run's finished splits survive it; ``benchmarks.merge`` reads them). ``peers``: the
    baselines to run (default all of ``baselines.TABULAR_BASELINES``). ``jobs``: worker processes
    (1: this process). Records come in (dataset, seed) order whatever order the splits end in.
    """
    from .run import _jsonable, _log

    splits = [(name, seed) for name in names for seed in seeds]
    args = (train_cap, vae_ok, peers, time_limit_s)
    done: dict = {}

    def _collect(key, out):
        recs, probs, logs = out
        for line in logs:
            _log(line, t0)
        problems.extend(probs)
        done[key] = recs
        if jsonl:
            with open(jsonl, "a") as fh:
                fh.writelines(json.dumps(_jsonable(r)) + "\n" for r in recs)

    if jobs <= 1:
        for key in splits:
            _collect(key, run_split(*key, *args))
    else:
        ctx = mp.get_context("spawn")  # fresh interpreters: no torch or OpenMP state forked
        with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as ex:
            futs = {ex.submit(run_split, *key, *args): key for key in splits}
            for fut in cf.as_completed(futs):
                _collect(futs[fut], fut.result())
    records = [r for key in splits for r in done[key]]
    return {"seeds": list(seeds), "train_cap": train_cap, "time_limit_s": time_limit_s, "jobs": jobs,
            "records": records, "speed": report.tabular_speed(records)}
