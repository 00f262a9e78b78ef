"""Merge tabular results of several runs into one report: ``python -m benchmarks.merge OUT a.json b.jsonl ...``.

``--peers-from P.json`` (anywhere after OUT) adds the peers' records of another run on the same
splits to a run of ours alone (``--peers none``, e.g. another ``VAEDetector`` setting), so it is
ranked against the peers without fitting them again (:func:`with_peers`).

For a run split into processes (e.g. one per seed, ``--seeds 0`` / ``1`` / ``2``, or halves of
the sets by ``--datasets``, side by side on the 2-core machine). An input is a results ``.json``
or a ``--records-jsonl`` file (with the ``.meta.json`` that run wrote beside it: the finished
splits of a run that may still be going or was stopped). Every input must be a tabular run of
the same options apart from the seeds, the sets and the output names; a (dataset, seed, key)
present in two inputs is an error. Writes ``results/OUT.md`` and ``.json`` atomically and prints
the markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import report
from .run import RESULTS_DIR, _jsonable, write_atomic

__all__ = ["merge_results", "with_peers", "main"]

#: options that may differ between the merged runs
_FREE = {"seeds", "out_name", "no_write", "datasets", "records_jsonl", "jobs"}


def load_partial(path: Path) -> dict:
    """A result dict from a ``--records-jsonl`` file and its ``.meta.json``."""
    meta = json.loads(Path(str(path) + ".meta.json").read_text())
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    seeds = sorted({r["seed"] for r in records}) or list(meta["options"]["seeds"])
    done = sorted({(r["dataset"], r["seed"]) for r in records})
    opts = meta["options"]
    return {"tabular": {"seeds": seeds, "train_cap": opts.get("train_cap") or None,
                        "time_limit_s": opts.get("time_limit"), "records": records},
            "meta": {"date": meta["date"], "command": meta["command"], "wall_s": float("nan"),
                     "machine": meta["machine"], "options": opts, "vae_core": meta["vae_core"],
                     "vae_params": meta.get("vae_params"), "data_root": meta["data_root"],
                     "load_average_1_5_15": {"start": meta["load_average_start"],
                                             "end": meta["load_average_start"]},
                     "notes": meta["notes"], "problems": [],
                     "splits_done": [f"{d} seed {s}" for d, s in done]}}


def _load(path: Path) -> dict:
    return load_partial(path) if path.suffix == ".jsonl" else json.loads(path.read_text())


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
    meta["problems"] = [p for r in results for p in r["meta"].get("problems", [])]
    walls = [r["meta"]["wall_s"] for r in results]
    if any(w != w for w in walls):  # a partial run: its wall time is not known
        meta["wall_s"] = sum(r.get("fit_s", 0.0) + r.get("score_s", 0.0) for r in records)
        meta["part_wall_s"] = {}
        meta["problems"].append("wall time: some inputs are partial runs (`--records-jsonl`), so the "
                                "figure is the sum of every detector's fit and score seconds")
    else:
        meta["wall_s"] = max(walls)
        meta["part_wall_s"] = {f"run {i}": w for i, w in enumerate(walls)}
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


def with_peers(result: dict, peers: dict, name: str) -> dict:
    """``result`` plus the records of ``peers`` (a results dict named ``name``) whose key is not
    vae_core's, for the (dataset, seed) splits ``result`` holds.

    Raises
    ------
    ValueError
        If the train caps differ, ``result`` already holds peers, or a split of ``result`` has no
        peer records in ``peers`` or other row counts there (so not the same split).
    """
    cap, other_cap = result["tabular"].get("train_cap"), peers["tabular"].get("train_cap")
    if cap != other_cap:
        raise ValueError(f"{name}: train_cap {other_cap} differs from the run's {cap}")
    mine = result["tabular"]["records"]
    if any(not r["key"].startswith("vae_core/") for r in mine):
        raise ValueError("the run already holds peers' records; --peers-from is for a run of ours alone")
    rows = {(r["dataset"], r["seed"]): (r.get("n_train"), r.get("n_test")) for r in mine}
    added = [r for r in peers["tabular"]["records"]
             if not r["key"].startswith("vae_core/") and (r["dataset"], r["seed"]) in rows]
    have = {(r["dataset"], r["seed"]) for r in added}
    for split, n in sorted(rows.items()):
        if split not in have:
            raise ValueError(f"{name}: no peer records for {split[0]} seed {split[1]}")
    for r in added:
        if rows[(r["dataset"], r["seed"])] != (r.get("n_train"), r.get("n_test")):
            raise ValueError(f"{name}: {r['dataset']} seed {r['seed']} has other row counts (not the same split)")
    meta = dict(result["meta"])
    meta["notes"] = list(meta["notes"]) + [
        f"The peers' records are those of `{name}` (`{peers['meta']['command']}`), on the same splits; "
        "only vae_core was fitted in this run, so the peers' timings are from that run."]
    meta["peers_from"] = name
    records = mine + added
    tab = dict(result["tabular"]) | {"records": records, "speed": report.tabular_speed(records)}
    return {"tabular": tab, "meta": meta}


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    peers_from = None
    if "--peers-from" in argv:
        i = argv.index("--peers-from")
        if i + 1 >= len(argv):
            print("--peers-from needs a results file", file=sys.stderr)
            return 2
        peers_from = Path(argv[i + 1])
        del argv[i : i + 2]
    if len(argv) < 2:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    out, paths = argv[0], [Path(p) for p in argv[1:]]
    merged = merge_results([_load(p) for p in paths], [p.name for p in paths])
    if peers_from is not None:
        merged = with_peers(merged, _load(peers_from), peers_from.name)
    md = report.render_markdown(merged)
    write_atomic(RESULTS_DIR / f"{out}.md", md)
    write_atomic(RESULTS_DIR / f"{out}.json", json.dumps(_jsonable(merged), indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
