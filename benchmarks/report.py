"""Markdown rendering of benchmark results (pure functions of the result dict)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from . import ranks
from .baselines import TABULAR_BASELINES
from .synthetic import KINDS
from .vus import TSB_AD_THRESHOLDS

__all__ = ["label", "md_table", "protocol_notes", "kinds_md", "render_markdown", "tabular_summary", "timeseries_summary",
           "tabular_speed"]

_LABELS = {
    "vae_core/anomaly_score": "ours anomaly_score",
    "vae_core/neg_elbo": "ours neg_elbo",
    "vae_core/nll_iwae": "ours nll_iwae",
    "vae_core/recon_error": "ours recon_error",
    "vae_core": "ours (VAEDetector)",
    "vae_core_ts": "ours (TimeSeriesVAEDetector)",
    "pyod_vae": "PyOD VAE",
    "pyod_ae": "PyOD AutoEncoder",
    "iforest": "IsolationForest",
    "ecod": "ECOD",
    "knn": "kNN",
    "lof": "LOF",
    "copod": "COPOD",
    "mcd": "MCD",
    "cblof": "CBLOF",
    "dif": "DIF",
    "robust_z": "rolling robust z (w=32)",
    "iforest_win": "IsolationForest on 32-windows",
    "random": "random scores (uniform, seeded)",
}


def label(key: str) -> str:
    """Human-readable name of a detector key."""
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("vae_core_ts/"):  # "anomaly_score@last": the same model in the other mode
        return "ours " + key.split("/", 1)[1].replace("@last", " (causal)").replace("@mean", " (offline)")
    return key


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def md_table(header: list[str], rows: list[list], digits: int = 3) -> str:
    """Render a markdown table; floats get ``digits`` decimals, NaN/None '—'."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else _fmt(c, digits) for c in r) + " |")
    return "\n".join(lines)


def _nanmean(xs) -> float:
    a = np.asarray([x for x in xs if x is not None], dtype=np.float64)
    return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else float("nan")


def tabular_summary(records: list[dict], metric: str) -> tuple[list[str], list[str], dict]:
    """Mean over seeds of ``metric`` per (dataset, detector key).

    Returns
    -------
    datasets : list of str
    keys : list of str
        Detector keys in first-seen order.
    table : dict
        ``table[dataset][key]`` = mean over seeds; ``table["mean"][key]`` =
        mean over datasets.
    """
    acc: dict = defaultdict(lambda: defaultdict(list))
    datasets, keys = [], []
    for r in records:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
        if r["key"] not in keys:
            keys.append(r["key"])
        acc[r["dataset"]][r["key"]].append(r.get(metric))
    table = {d: {k: _nanmean(acc[d][k]) for k in keys} for d in datasets}
    table["mean"] = {k: _nanmean(table[d][k] for d in datasets) for k in keys}
    return datasets, keys, table


def timeseries_summary(records: list[dict], metrics: tuple[str, ...]) -> dict:
    """Mean over series of each metric, per (source, detector key)."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        for m in metrics:
            acc[(r["source"], r["key"])][m].append(r.get(m))
    return {k: {m: _nanmean(v[m]) for m in metrics} | {"n": len(v[metrics[0]])} for k, v in acc.items()}


def tabular_speed(records: list[dict]) -> dict:
    """Per detector: mean fit seconds and pooled scoring rows/s.

    vae_core's four scores share one fit and one ``score()`` call, so only
    its ``anomaly_score`` rows are counted.
    """
    acc: dict = defaultdict(lambda: {"fit": [], "score": [], "rows": []})
    for r in records:
        if r.get("error") or (r["key"].startswith("vae_core/") and r["key"] != "vae_core/anomaly_score"):
            continue
        det = "vae_core" if r["key"].startswith("vae_core/") else r["key"]
        acc[det]["fit"].append(r["fit_s"])
        acc[det]["score"].append(r["score_s"])
        acc[det]["rows"].append(r["n_test"])
    out = {}
    for det, a in acc.items():
        total_s = float(np.sum(a["score"]))
        out[det] = {
            "fit_s_mean": float(np.mean(a["fit"])),
            "fit_s_total": float(np.sum(a["fit"])),
            "score_rows_per_s": float(np.sum(a["rows"]) / total_s) if total_s > 0 else float("nan"),
            "runs": len(a["fit"]),
        }
    ref = out.get("pyod_vae")
    for det, v in out.items():
        v["fit_time_x_pyod_vae"] = v["fit_s_mean"] / ref["fit_s_mean"] if ref else float("nan")
        v["score_speed_x_pyod_vae"] = (
            v["score_rows_per_s"] / ref["score_rows_per_s"] if ref else float("nan")
        )
    return out


def league_md(records: list[dict]) -> list[str]:
    """Ours (``anomaly_score``) against the peers: means, average ranks, per-set best peer."""
    peers = [p for p in TABULAR_BASELINES if any(r["key"] == p for r in records)]
    if not any(r["key"] == ranks.OURS for r in records) or not peers:
        return []
    keys = [ranks.OURS] + peers
    tabs = {m: ranks.per_dataset([r for r in records if r["key"] in keys], m) for m in ("auroc", "auprc")}
    datasets = tabs["auroc"][0]
    lg = {m: ranks.league(tabs[m][2], datasets, keys) for m in tabs}
    h2h = {m: ranks.head_to_head(tabs[m][2], datasets, ranks.OURS, peers) for m in tabs}
    order = sorted(keys, key=lambda k: lg["auroc"][k]["avg_rank"])
    rows = []
    for k in order:
        a, p = lg["auroc"][k], lg["auprc"][k]
        vs = ("" if k == ranks.OURS else
              f"{h2h['auroc'][k]['wins']}-{h2h['auroc'][k]['losses']} / {h2h['auprc'][k]['wins']}-{h2h['auprc'][k]['losses']}")
        rows.append([label(k), a["n_sets"], a["failed"], a["mean"], p["mean"], a["avg_rank"], p["avg_rank"],
                     a["common_mean"], p["common_mean"], vs])
    n_common = lg["auroc"][ranks.OURS]["n_common"]
    parts = [f"### League over {len(datasets)} tabular sets: ours against {len(peers)} peers", "",
             "Per set the metric is the mean over seeds; ranks are per set among these "
             f"{len(keys)} detectors (1 = best, ties averaged). A detector that failed on a seed of a set "
             "is failed there: it takes the bottom rank on that set (failed detectors share it), its mean "
             "is over the sets it completed, and head-to-head counts skip the set. `common` = mean over "
             f"the {n_common} sets that every detector completed. `ours W-L` = sets where ours is "
             "above / below that peer (AUROC / AUPRC).", "",
             md_table(["detector", "sets", "failed", "mean AUROC", "mean AUPRC", "avg rank AUROC",
                       "avg rank AUPRC", "common AUROC", "common AUPRC", "ours W-L"], rows, 3), ""]
    for m, title in (("auroc", "AUROC"), ("auprc", "AUPRC")):
        vb = ranks.versus_best_peer(tabs[m][2], datasets, ranks.OURS, peers)
        wins = sum(1 for v in vb if v["win"])
        losses = sum(1 for v in vb if v["win"] is False)
        rows = [[v["dataset"], label(v["best_peer"]) if v["best_peer"] else "—", v["best"], v["ours"],
                 v["margin"], {True: "win", False: "loss", None: "—"}[v["win"]]] for v in vb]
        parts += [f"#### Ours against the best peer per set, {title}: {wins} wins, {losses} losses", "",
                  md_table(["dataset", "best peer", "its " + title, "ours", "ours − best", ""], rows, 3), ""]
    fails = ranks.failed_sets(records)
    if fails:
        parts += ["#### Failed (detector, set)", ""] + [
            f"- {label(k)} on {d}: `{msg}`" for k, ds in fails.items() for d, msg in ds.items()] + [""]
    return parts


def _tabular_md(res: dict) -> list[str]:
    parts = league_md(res["records"])
    recs = [r for r in res["records"] if not r.get("error")]
    info = {r["dataset"]: r for r in recs}
    for metric, title in (("auroc", "AUROC"), ("auprc", "AUPRC (average precision)")):
        datasets, keys, table = tabular_summary(recs, metric)
        header = ["dataset", "train/test rows", "anomaly %"] + [label(k) for k in keys]
        rows = []
        for d in datasets:
            r = info[d]
            cap = "" if r["n_train"] == r["n_train_before_cap"] else f" (cap, of {r['n_train_before_cap']})"
            rows.append([d, f"{r['n_train']}/{r['n_test']}{cap}", 100 * r["anomaly_rate"]]
                        + [table[d][k] for k in keys])
        rows.append(["**mean**", "", ""] + [table["mean"][k] for k in keys])
        parts += [f"### Tabular {title}, test part, mean over seeds {res['seeds']}", "",
                  md_table(header, rows, 3), ""]
    flag = [r for r in recs if r["key"] == "vae_core/anomaly_score" and "flag_rate" in r]
    if flag:
        by = defaultdict(list)
        for r in flag:
            by[r["dataset"]].append(r)
        rows = [[d, 100 * v[0]["anomaly_rate"], 100 * _nanmean(x["flag_rate"] for x in v),
                 _nanmean(x["flag_precision"] for x in v), _nanmean(x["flag_recall"] for x in v)]
                for d, v in by.items()]
        parts += ["### vae_core `is_anomaly` on the test part (its own threshold), mean over seeds", "",
                  md_table(["dataset", "anomaly %", "flagged %", "precision", "recall"], rows, 3), ""]
    errs = [r for r in res["records"] if r.get("error")]
    if errs:
        parts += ["### Tabular errors", ""] + [
            f"- {r['dataset']} seed {r['seed']} {label(r['key'])}: `{r['error']}`" for r in errs] + [""]
    return parts


_TS_METRICS = ("auroc", "auprc", "vus_pr", "f1", "f1_composite", "f1_pa")
_TS_HEAD = ["AUROC", "AUPRC", "VUS-PR", "best F1 (no PA)", "best composite F1", "best F1 (PA)"]
_TS_SHORT = ["AUROC", "AUPRC", "VUS-PR", "F1", "F1-C", "F1-PA"]


def _timeseries_md(res: dict) -> list[str]:
    recs = [r for r in res["records"] if not r.get("error")]
    parts = ["### Time series: mean over series (per-point metrics)", "",
             "PA = point adjustment (a labelled segment counts as detected if any of its points "
             "is flagged). Composite F1 (Garg et al. 2021) = point-wise precision with event-wise "
             "recall: an event counts as found by one flagged point, but every false alarm costs "
             "precision. Best F1 = maximum over all thresholds.", ""]
    summ = timeseries_summary(recs, _TS_METRICS)
    rows = []
    for (src, key), v in sorted(summ.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rows.append([src.upper(), label(key), v["n"]] + [v[m] for m in _TS_METRICS])
    parts += [md_table(["data", "detector", "series"] + _TS_HEAD, rows, 3), ""]
    main = [k for k in res["main_keys"] if any(r["key"] == k for r in recs)]
    by = defaultdict(dict)
    for r in recs:
        by[(r["source"], r["series"])][r["key"]] = r
    header = ["series", "rows", "anom %"] + [f"{label(k)} {h}" for k in main for h in _TS_SHORT]
    rows = []
    for (src, series), d in by.items():
        any_r = next(iter(d.values()))
        rows.append([f"{src}/{series}", any_r["n_eval"], 100 * any_r["anomaly_rate"]]
                    + [d[k][m] if k in d else None for k in main for m in _TS_METRICS])
    parts += ["### Time series: per series", "", md_table(header, rows, 3), ""]
    errs = [r for r in res["records"] if r.get("error")]
    if errs:
        parts += ["### Time-series errors", ""] + [
            f"- {r['source']}/{r['series']} {label(r['key'])}: `{r['error']}`" for r in errs] + [""]
    return parts


def _speed_md(tab_speed: dict | None, big: dict | None) -> list[str]:
    parts = []
    if tab_speed:
        rows = [[label(d), v["runs"], v["fit_s_mean"], v["fit_time_x_pyod_vae"],
                 v["score_rows_per_s"], v["score_speed_x_pyod_vae"]]
                for d, v in tab_speed.items()]
        parts += ["### Speed on the tabular part (averaged over datasets and seeds)", "",
                  "fit s = mean wall seconds per fit; rows/s = all test rows scored / all scoring "
                  "seconds. vae_core's time is one `score()` call that computes all four scores. "
                  "Ratios: fit time as a multiple of PyOD VAE's (lower is better), scoring "
                  "throughput as a multiple of PyOD VAE's (higher is better).", "",
                  md_table(["detector", "fits", "fit s (mean)", "fit time × PyOD VAE",
                            "score rows/s", "score speed × PyOD VAE"], rows, 2), ""]
    if big:
        rows = []
        for name, v in big["detectors"].items():
            if v.get("error"):
                rows.append([label(name), v.get("fit_rows"), None, None, None, None, None, None,
                             f"error: {v['error']}"])
                continue
            rows.append([label(name) + (f" `{v['call']}`" if v.get("call") else ""),
                         v["fit_rows"], v["fit_s"], v["scored_rows"], v["score_s"],
                         v["rows_per_s"], v.get("speed_x_pyod_vae"),
                         f"{v['rss_peak_delta_mib']:,.0f}" + (
                             f" ({min(v['rss_peak_delta_mib_all']):,.0f}–{max(v['rss_peak_delta_mib_all']):,.0f})"
                             if v.get("rss_peak_delta_mib_all") else ""),
                         v.get("note", "")])
        parts += [f"### Speed: scoring a {big['rows']:,}-row, {big['cols']}-column synthetic frame", "",
                  big["description"], "",
                  md_table(["detector", "fit rows", "fit s", "scored rows", "score s", "rows/s",
                            "speed × PyOD VAE", "peak RSS Δ MiB median (range)", "note"], rows, 2), ""]
    return parts


def protocol_notes(seeds, threads: int, train_cap, window: int, vus_buffer: int) -> list[str]:
    """The protocol notes printed at the top of the report."""
    cap = (f"the train part is capped at {train_cap:,} rows by a stratified subsample (same rows for "
           "every detector; the sets it cut say `cap` in the row counts)" if train_cap else
           "no cap on the train part")
    return [
        "Tabular: stratified 70/30 split (`train_test_split(stratify=label, random_state=seed)`), "
        f"seeds {seeds}; detectors fit on the train part without labels and score the test part; "
        f"{cap}. vae_core: `VAEDetector(seed=seed)`, four score columns from one `score()` call on "
        "the raw feature frame.",
        "Baselines use library defaults on raw features: PyOD `VAE` and `AutoEncoder` "
        "(`random_state=seed`, `verbose=0`; they standardise inputs themselves, `preprocessing=True`), "
        "sklearn `IsolationForest(random_state=seed)` scored as `-score_samples`, PyOD `KNN()`, `LOF()`, "
        "`ECOD()`, `COPOD()`, `MCD(random_state=seed)`, `CBLOF(random_state=seed)`, "
        "`DIF(random_state=seed, device='cpu')`, each scored with `decision_function`.",
        "NAB: only series with labelled anomalies (artificialNoAnomaly and "
        "ec2_cpu_utilization_c6585a are skipped); no train split, so every detector is fitted on the "
        "whole series without labels and scores the whole series. Labels are NAB's anomaly windows "
        "(`label`), scored per point — these are not NAB scores. Four series repeat a timestamp "
        "(the 2014-03-09 DST hour written as 03:00; one hourly time written twice): each run of "
        "repeated times is spread evenly between its neighbours (`data.spread_repeated_times`), "
        "which only the time-aware vae_core detector reads.",
        "SMD: fit on the `train` rows, score the `test` rows; the time column for vae_core is an "
        "integer row index continuing from train into test. Baselines get the last 31 train rows as "
        "context so every test point has a full window.",
        f"Time-series detectors (seed {seeds[0]}, window {window}): "
        "`TimeSeriesVAEDetector(seed, window=32)`; rolling robust z = |x − median| / (1.4826·MAD) "
        "over the trailing 32 points including the current one (expanding at the start), max over "
        "features; IsolationForest (sklearn defaults) on flattened 32-point windows, score given to "
        "the window's last point, first 31 points padded with the first window's score (NAB).",
        "Best F1 is the maximum over every threshold (all distinct scores); PA = point adjustment "
        "(Xu et al. 2018). NaN scores would be ranked lowest and are listed under problems. "
        "`random scores` (uniform, seeded per series) is the floor to read every column against: "
        "point adjustment lifts even random scores to a high best F1 when anomalies come in long "
        "segments, so F1 (PA) alone says little. Best composite F1 (Garg et al. 2021) pairs "
        "point-wise precision with event-wise recall, so it credits finding an event by one point "
        "without letting scattered false alarms pass as detection. VUS-PR (Paparrizos et al. 2022, "
        "TSB-AD's headline metric): the range-based average precision, averaged over buffer lengths "
        f"0..{vus_buffer} (the widest buffer credits {vus_buffer // 2} points either side of a labelled "
        f"range), at TSB-AD's {TSB_AD_THRESHOLDS} rank-sampled thresholds (`benchmarks/vus.py`).",
        f"Every torch-based detector runs with `torch.set_num_threads({threads})` (see "
        "benchmarks/README.md: 2 threads on this shared 2-core machine made small-model training "
        "6-40x slower under load). Timings are wall-clock on a shared machine and are noisy; "
        "single runs.",
    ]



def kinds_md(res: dict) -> list[str]:
    """The kinds suite: event recall per kind and flag precision at each detector's threshold."""
    summ = res["summary"]
    events = next(iter(summ.values()))["events"] if summ else {}
    head = (["detector"] + [f"{k} ({events.get(k, 0)})" for k in KINDS]
            + ["mean recall", "flag precision", "flagged %", "AUROC", "VUS-PR"])
    rows = [[label(key)] + [v["recall"][k] for k in KINDS]
            + [v["mean_recall"], v["flag_precision"], 100 * v["flag_rate"], v["auroc"], v["vus_pr"]]
            for key, v in summ.items()]
    return [f"## Synthetic kinds suite (seeds {res['seeds']})", "",
            "Event recall per kind (events in brackets) at each detector's own threshold; an event "
            f"counts as found if a flagged point is in it or within {res['tolerance']} points. Flag "
            "precision = flagged points in or within that tolerance of an event / flagged points. "
            f"Baselines flag above the {100 * res['quantile']:g}th percentile of their history scores; "
            "ours at its calibrated threshold (`is_anomaly`). AUROC and VUS-PR per point, mean over "
            "frames.", "", md_table(head, rows, 3), ""]


def render_markdown(result: dict) -> str:
    """Render the whole result dict as a markdown report."""
    m = result["meta"]
    parts = [
        "# vae-anomaly benchmark",
        "",
        f"- run: {m['date']} · wall time {m['wall_s']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in m.get("part_wall_s", {}).items())
        + f") · command `{m['command']}`",
        f"- machine: {m['machine']['cpu_count']} CPUs, torch {m['machine']['torch']} "
        f"(torch threads: {m['machine']['torch_threads']}), python {m['machine']['python']}, "
        f"pyod {m['machine']['pyod']}, scikit-learn {m['machine']['sklearn']}, {m['machine']['platform']}",
        f"- load average (1 min) at start / end: {m['load_average_1_5_15']['start'][0]:.1f} / "
        f"{m['load_average_1_5_15']['end'][0]:.1f} (shared machine; timings are affected)",
        f"- vae_core: {'available' if m['vae_core']['available'] else 'NOT available — baselines only: ' + m['vae_core']['error']}"
        + (f" · source sha256 {m['vae_core']['source']['sha256']} (newest file {m['vae_core']['source']['newest_mtime']})"
           if m["vae_core"].get("source") else ""),
        f"- data: `{m['data_root']}`",
    ] + ([f"- time-series settings (`$VAE_ANOMALY_BENCH_TS_PARAMS`): `{m['ts_params']}`"]
         if m.get("ts_params") else []) + (
        [f"- VAEDetector settings (`$VAE_ANOMALY_BENCH_TAB_PARAMS`): `{m['vae_params']}`"]
        if m.get("vae_params") else []) + (
        [f"- merged from: {', '.join(m['merged_from'])}"] if m.get("merged_from") else []) + [
        "",
        "Protocol notes:",
        "",
    ] + [f"- {n}" for n in m["notes"]] + [""]
    if m.get("problems"):
        parts += ["Problems seen:", ""] + [f"- {p}" for p in m["problems"]] + [""]
    if "tabular" in result:
        parts += ["## Tabular (ADBench protocol)", ""] + _tabular_md(result["tabular"])
    if "timeseries" in result:
        parts += ["## Time series (NAB, SMD)", ""] + _timeseries_md(result["timeseries"])
    if "kinds" in result:
        parts += kinds_md(result["kinds"])
    tab_speed = result.get("tabular", {}).get("speed")
    big = result.get("speed")
    if tab_speed or big:
        parts += ["## Speed", ""] + _speed_md(tab_speed, big)
    return "\n".join(parts).rstrip() + "\n"
