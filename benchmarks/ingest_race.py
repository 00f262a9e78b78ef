"""Stress test of concurrent ingests of the same rows: ``python -m benchmarks.ingest_race``.

In every trial ``--writers`` fresh processes (each a first ingest in its process, as with the
CLI) ingest the same rows, as CSV and as Parquet, into a NEW dataset of a fresh lake root,
released together on a "go" file once all have imported the lake; ``--load`` busy-loop processes load the CPUs meanwhile. After each trial the
lake must hold one batch, its accepted rows once, its quarantined rows once, and no orphaned
partition (``Lake.vacuum`` removes nothing). A failed trial prints the Delta log of the rows
and quarantine tables (version, read version, operation, files added and removed), which
shows which commits kept their files side by side. Prints a summary line and exits 1 if any
trial failed.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROWS, BAD = 10_000, 37


def source_frame(seed: int = 7) -> pd.DataFrame:
    """``ROWS`` rows as text, ``BAD`` of them with an unparseable amount (quarantined)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(ROWS).astype(str),
        "amount": rng.normal(100, 15, ROWS).round(3).astype(str),
        "channel": rng.choice(["web", "shop", "phone"], ROWS),
    })
    frame.loc[rng.choice(ROWS, BAD, replace=False), "amount"] = "n/a?"
    return frame


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


WRITER = """
import json, os, sys, time
from pipelines.lake import Lake
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
try:
    report = Lake(sys.argv[3]).ingest("d", sys.argv[1])
    print(json.dumps({"skipped": report.skipped, "batch_id": report.batch_id}), flush=True)
except Exception as exc:  # reported, and counted as a failed trial
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def run_trial(sources: list[str], go: Path, root: Path) -> list[dict]:
    """Start one writer process per source, release them together, return their reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, s, str(go), str(root)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
        for s in sources
    ]
    for proc in procs:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a writer did not start: {proc.stderr.read()}")
    go.touch()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        lines = out.strip().splitlines()
        reports.append(json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}: {err[-500:]}"})
    return reports


def delta_log(table: Path) -> list[dict]:
    """Version, read version, operation and files added / removed of each commit of ``table``."""
    out = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        out.append({
            "version": int(path.stem), "read": info.get("readVersion"), "op": info.get("operation"),
            "mode": info.get("operationParameters", {}).get("mode"),
            "add": [a["add"]["path"][-20:] for a in actions if "add" in a],
            "remove": [a["remove"]["path"][-20:] for a in actions if "remove" in a],
        })
    return out


def check(root: Path, results: list[dict]) -> list[str]:
    """What is wrong with one trial's lake (empty when it is right)."""
    from pipelines.lake import Lake

    problems = [r["error"] for r in results if "error" in r]
    if problems:
        return problems
    lake = Lake(root)
    if len({r["batch_id"] for r in results}) != 1 or sum(not r["skipped"] for r in results) != 1:
        problems.append(f"reports: {results}")
    if len(lake.list_batches("d")) != 1:
        problems.append(f"{len(lake.list_batches('d'))} batches")
    rows, quarantined = len(lake.read("d")), len(lake.read_quarantine("d"))
    if rows != ROWS - BAD:
        problems.append(f"rows {rows} != {ROWS - BAD}")
    if quarantined != BAD:
        problems.append(f"quarantine {quarantined} != {BAD}")
    orphans = lake.vacuum("d")
    if orphans:
        problems.append(f"orphans {orphans}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--load", type=int, default=2, help="busy-loop processes beside the writers")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vae-anomaly-race-"))
    frame = source_frame()
    csv, parquet = work / "same.csv", work / "same.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    sources = [str(parquet if i % 3 == 2 else csv) for i in range(args.writers)]

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.load)]
    for proc in spinners:
        proc.start()
    failed, t0 = 0, time.perf_counter()
    try:
        for t in range(args.trials):
            results = run_trial(sources, work / f"go-{t}", work / f"lake-{t}")
            problems = check(work / f"lake-{t}", results)
            if problems:
                failed += 1
                print(f"trial {t}: FAILED {problems}", flush=True)
                for name in ("rows", "quarantine"):
                    for entry in delta_log(work / f"lake-{t}" / "d" / name):
                        print(f"  {name} {entry}", flush=True)
    finally:
        stop.set()
        for proc in spinners:
            proc.join(timeout=60)
    elapsed = time.perf_counter() - t0
    print(f"writers={args.writers} load={args.load} trials={args.trials} failed={failed} ({elapsed:.0f} s) {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
