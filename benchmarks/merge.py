"""Merge tabular results of several runs into one report: ``python -m benchmarks.merge OUT a.json b.json ...``.

For a run split into processes (e.g. one per seed, ``--seeds 0`` / ``1`` / ``2``, which the
2-core machine runs side by side). Every input must be a tabular run of the same options apart
from ``--seeds`` and ``--out-name``; a (dataset, seed, key) present in two inputs is an error.
Writes ``results/OUT.md`` and ``.json`` atomically and prints the markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import report
from .run import RESULTS_DIR, _jsonable, write_atomic

__all__ = ["merge_results", "main"]

_FREE = {"seeds", "out_name", "no_write"}  # options that may differ between the merged runs


def merge_results(results: list[dict], names: list[str]) -> dict:
    """One result dict from several tabular ones (records concatenated, speed recomputed).

    Raises
    ------
    ValueError
        If an input has no tabular part, options differ, or a record is duplicated.
    """
    if not results:
        raise ValueError("nothing to merge")
    seen: dict = {}
    records, seeds = [], []
    base_opts = None
    for res, name in zip(results, names):
        if "tabular" not in res:
            raise ValueError(f"{name}: no tabular part")
        opts = {k: v for k, v in res["meta"]["options"].items() if k not in _FREE}
        if base_opts is None:
            base_opts = opts
        elif opts != base_opts:
            diff = sorted(k for k in set(opts) | set(base_opts) if opts.get(k) != base_opts.get(k))
            raise ValueError(f"{name}: options differ from {names[0]}'s: {diff}")
        for r in res["tabular"]["records"]:
            k = (r["dataset"], r["seed"], r["key"])
            if k in seen:
                raise ValueError(f"{name}: {k} is also in {seen[k]}")
            seen[k] = name
            records.append(r)
        seeds += [s for s in res["tabular"]["seeds"] if s not in seeds]
    first = results[0]
    meta = dict(first["meta"])
    meta["command"] = " + ".join(r["meta"]["command"] for r in results) + " (merged by benchmarks.merge)"
    meta["wall_s"] = max(r["meta"]["wall_s"] for r in results)
    meta["part_wall_s"] = {f"run {i}": r["meta"]["wall_s"] for i, r in enumerate(results)}
    meta["problems"] = [p for r in results for p in r["meta"].get("problems", [])]
    shas = {r["meta"]["vae_core"].get("source", {}).get("sha256") for r in results}
    if len(shas) > 1:
        meta["problems"].append(f"the merged runs measured different vae_core sources: {sorted(map(str, shas))}")
    meta["load_average_1_5_15"] = {
        "start": first["meta"]["load_average_1_5_15"]["start"],
        "end": results[-1]["meta"]["load_average_1_5_15"]["end"],
    }
    meta["notes"] = [n.replace(f"seeds {first['tabular']['seeds']}", f"seeds {seeds}") for n in meta["notes"]]
    meta["merged_from"] = names
    tab = dict(first["tabular"]) | {"seeds": seeds, "records": records, "speed": report.tabular_speed(records)}
    return {"tabular": tab, "meta": meta}


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    out, paths = argv[0], [Path(p) for p in argv[1:]]
    merged = merge_results([json.loads(p.read_text()) for p in paths], [p.name for p in paths])
    md = report.render_markdown(merged)
    write_atomic(RESULTS_DIR / f"{out}.md", md)
    write_atomic(RESULTS_DIR / f"{out}.json", json.dumps(_jsonable(merged), indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
