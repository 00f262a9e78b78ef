"""Markdown of ``benchmarks.tsb``'s results (pure functions of the result dict)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .report import md_table

METRICS = ("vus_pr", "vus_roc", "auc_pr", "auc_roc", "event_recall", "flag_precision")
HEADER = ["VUS-PR", "VUS-ROC", "AUC-PR", "AUC-ROC", "event recall", "flag precision"]
SOURCES = {"nab": "NAB", "smd": "SMD"}


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def summary(records: list[dict], source: str) -> list[dict]:
    """Per detector on ``source``: series run, failed, the mean of each metric, mean fit seconds;
    best mean VUS-PR first."""
    by = defaultdict(list)
    for r in records:
        if r["source"] == source:
            by[r["key"]].append(r)
    rows = []
    for key, recs in by.items():
        ok = [r for r in recs if "error" not in r]
        row = {"key": key, "series": len(ok), "errors": len(recs) - len(ok),
               "no_flags": sum(1 for r in ok if r["flag_rate"] == 0), "fit_s": _mean(r["fit_s"] for r in ok)}
        row |= {m: _mean(r[m] for r in ok) for m in METRICS}
        rows.append(row)
    return sorted(rows, key=lambda r: -r["vus_pr"] if np.isfinite(r["vus_pr"]) else np.inf)


def vus_check(records: list[dict]) -> list[dict]:
    """Per series: TSB-AD's VUS-PR against ``benchmarks.vus`` at the same window, the largest
    difference over the detectors and the detector it is on."""
    by = defaultdict(list)
    for r in records:
        if "error" not in r:
            by[(r["source"], r["series"])].append(r)
    rows = []
    for (source, series), recs in by.items():
        diffs = [(abs(r["ours_vus_pr"] - r["vus_pr"]), r) for r in recs]
        worst, at = max(diffs, key=lambda d: d[0])
        rows.append({"source": source, "series": series, "window": recs[0]["window"], "detectors": len(recs),
                     "max_abs_diff": worst, "at": at["key"], "tsb": at["vus_pr"], "ours": at["ours_vus_pr"]})
    return rows


def merge(parts: list[dict]) -> dict:
    """One result from several runs' (their records, and each run's meta under ``runs``)."""
    return {"records": [r for p in parts for r in p["records"]],
            "meta": {"merged": True, "runs": [p["meta"] for p in parts]}}


def _fmt(x, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def render(result: dict) -> str:
    records = result["records"]
    out = ["# Time series on TSB-AD's yardstick", ""]
    for source, name in SOURCES.items():
        rows = summary(records, source)
        if not rows:
            continue
        out += [f"## {name}: mean over series", ""]
        body = [[r["key"], r["series"], *[_fmt(r[m]) for m in METRICS], r["no_flags"], _fmt(r["fit_s"], 1)]
                + ([r["errors"]] if any(x["errors"] for x in rows) else []) for r in rows]
        head = ["detector", "series", *HEADER, "series without flags", "fit s"]
        out += [md_table(head + (["errors"] if any(x["errors"] for x in rows) else []), body), ""]
    check = vus_check(records)
    if check:
        worst = max(c["max_abs_diff"] for c in check)
        out += ["## benchmarks.vus against TSB-AD's VUS-PR (same scores, same window)", "",
                f"Largest absolute difference over every series and detector: {worst:.2e}.", ""]
        out += [md_table(["data", "series", "window", "detectors", "max abs diff", "at", "TSB-AD", "benchmarks.vus"],
                         [[SOURCES[c["source"]], c["series"], c["window"], c["detectors"], f"{c['max_abs_diff']:.1e}",
                           c["at"], _fmt(c["tsb"], 4), _fmt(c["ours"], 4)] for c in check]), ""]
    keys = [r["key"] for r in summary(records, "nab")]
    if keys:
        out += ["## NAB: VUS-PR per series", ""]
        by = {(r["series"], r["key"]): r for r in records if r["source"] == "nab" and "error" not in r}
        series = sorted({r["series"] for r in records if r["source"] == "nab"})
        body = [[s.split("__")[-1], by.get((s, keys[0]), {}).get("window", "")]
                + [_fmt(by[(s, k)]["vus_pr"]) if (s, k) in by else "err" for k in keys] for s in series]
        out += [md_table(["series", "window", *keys], body), ""]
    errors = [f"- {r['source']}/{r['series']} {r['key']}: {r['error']}" for r in records if "error" in r]
    if errors:
        out += ["## Errors", "", *errors, ""]
    metas = result["meta"].get("runs", [result["meta"]])
    out += ["## Runs", ""]
    for m in metas:
        v = m.get("versions", {})
        out.append(f"- `{m.get('command')}` on {m.get('date')}: wall {m.get('wall_s', float('nan')):.0f} s, "
                   f"load {m.get('load_average_1_5_15', {}).get('start', ['?'])[0]}, tsb-ad {v.get('tsb-ad')}, "
                   f"numpy {v.get('numpy')}, torch {v.get('torch')}, torch threads {m.get('torch_threads')}, "
                   f"ts params {m.get('ts_params')}, vae_core sha256 {m.get('vae_core', {}).get('sha256')}")
    return "\n".join(out) + "\n"
