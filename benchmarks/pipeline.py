"""Pipeline benchmark: ``python -m benchmarks.pipeline [--rows N]``.

- Ingest throughput: ``Lake.ingest`` (parse, validate, quarantine check, hash, commit to the
  Delta tables) of a Parquet file into a dataset whose schema is fixed, against a plain
  ``pyarrow.parquet.write_table`` of the same rows, as a ratio (each the median of ``--repeats``
  runs); and once the first batch of a new dataset, whose column types are inferred.
- The ``score`` flow on one batch of ``--rows`` rows (default 1M, 20 columns): rows/s and the
  peak resident memory it added, sampled every 50 ms, against a raw streamed Parquet read and
  write of the same rows (the I/O floor of any scoring pass). The model is trained on 20k rows of the
  same distribution and registered in a throw-away MLflow store; Prefect runs on its ephemeral
  API. Writes ``benchmarks/results/pipeline.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic(rows: int, seed: int = 0) -> pd.DataFrame:
    """16 correlated numeric columns, 2 categorical, 2 boolean."""
    mix = np.random.default_rng(12345).normal(size=(4, 16))  # one distribution whatever the seed
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, 4))
    num = z @ mix + 0.3 * rng.normal(size=(rows, 16))
    frame = pd.DataFrame(num, columns=[f"x{i}" for i in range(16)])
    frame["region"] = np.array(["north", "south", "east", "west"])[rng.integers(0, 4, rows)]
    frame["tier"] = np.where(z[:, 0] > 0.5, "gold", np.where(z[:, 0] < -0.5, "bronze", "silver"))
    frame["online"] = z[:, 1] > 0
    frame["repeat"] = rng.random(rows) < 0.3
    return frame


class PeakRSS:
    """Peak resident set size of this process above its level at start, sampled in a thread."""

    def __init__(self, every: float = 0.05):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def added_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def raw_io(source: Path, target: Path, batch_rows: int) -> None:
    """Stream ``source`` into ``target`` record batch by record batch (no scoring)."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(source)
    with pq.ParquetWriter(target, reader.schema_arrow, compression="zstd") as writer:
        for batch in reader.iter_batches(batch_size=batch_rows):
            writer.write_batch(batch)


def timed(work) -> float:
    """Seconds ``work()`` took."""
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-rows", type=int, default=65536)
    ap.add_argument("--label", default="", help="suffix of the result files (pipeline-<label>.md)")
    ap.add_argument("--repeats", type=int, default=3, help="times the plain write and the ingest are timed (median)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vae-anomaly-bench-"))
    os.environ.setdefault("VAE_ANOMALY_HOME", str(work / "state"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    from pipelines.settings import apply_prefect_env, get_settings

    apply_prefect_env(get_settings())
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.flows.score import score
    from pipelines.flows.train import train
    from pipelines.lake import Lake

    frame = synthetic(args.rows)
    source = work / "batch.parquet"
    frame.to_parquet(source)
    table = pa.Table.from_pandas(frame, preserve_index=False)

    plain = statistics.median(timed(lambda: pq.write_table(table, work / "plain.parquet")) for _ in range(args.repeats))

    lake = Lake(work / "lake")
    train_src = work / "train.parquet"
    synthetic(20_000, seed=1).to_parquet(train_src)
    ingests = []
    for i in range(args.repeats):  # the first into the dataset scored below, the others into their own
        name = "bench" if i == 0 else f"bench-{i}"
        lake.ingest(name, str(train_src))  # a dataset with its schema fixed, as for every later batch
        reports = []
        ingests.append(timed(lambda: reports.append(lake.ingest(name, str(source)))))
        assert reports[0].rows_accepted == args.rows, reports[0]
    ingest = statistics.median(ingests)
    first = timed(lambda: lake.ingest("bench-new", str(source)))  # a new dataset's first batch: types inferred

    train_batch = lake.list_batches("bench")[0].batch_id
    trained = train("bench", batch_ids=[train_batch], params={"max_epochs": 30}, lake_url=str(lake.root))
    big = lake.list_batches("bench")[1].batch_id
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        result = score("bench", batch_ids=[big], batch_rows=args.batch_rows, lake_url=str(lake.root))
        scoring = time.perf_counter() - t0
    assert result["rows"] == args.rows
    with PeakRSS() as raw_mem:
        t0 = time.perf_counter()
        raw_io(source, work / "raw-out.parquet", args.batch_rows)
        raw = time.perf_counter() - t0

    out = {
        "rows": args.rows, "columns": frame.shape[1],
        "repeats": args.repeats, "plain_pyarrow_write_s": plain, "lake_ingest_runs_s": ingests,
        "lake_ingest_s": ingest, "ingest_over_plain": ingest / plain, "first_batch_ingest_s": first,
        "ingest_rows_per_s": args.rows / ingest,
        "score_flow_s": scoring, "score_rows_per_s": args.rows / scoring, "score_peak_added_mib": mem.added_mib,
        "raw_read_write_s": raw, "raw_rows_per_s": args.rows / raw, "raw_peak_added_mib": raw_mem.added_mib,
        "batch_rows": args.batch_rows, "model_version": trained["version"],
        "source_mib": source.stat().st_size / 2**20, "cpus": os.cpu_count(),
    }
    md = "\n".join([
        f"# Pipeline benchmark ({args.rows:,} rows x {frame.shape[1]} columns)", "",
        "| measure | value |", "|---|---:|",
        f"| plain pyarrow write (median of {args.repeats}) | {plain:.2f} s |",
        f"| lake ingest (read, validate, quarantine check, hash, commit; median of {args.repeats}) | {ingest:.2f} s |",
        f"| ingest time / plain write | {ingest / plain:.1f}x |",
        f"| the first batch of a new dataset (column types inferred) | {first:.2f} s, {first / plain:.1f}x |",
        f"| ingest throughput | {args.rows / ingest:,.0f} rows/s |",
        f"| score flow, one {args.rows:,}-row batch | {scoring:.1f} s |",
        f"| score flow throughput | {args.rows / scoring:,.0f} rows/s |",
        f"| score flow peak memory added (RSS) | {mem.added_mib:,.0f} MiB |",
        f"| raw streamed Parquet read + write | {raw:.2f} s, {args.rows / raw:,.0f} rows/s, {raw_mem.added_mib:,.0f} MiB |",
        f"| score flow rate / raw I/O rate | {raw / scoring:.2f} |",
    ])
    print(md)
    RESULTS.mkdir(exist_ok=True)
    stem = f"pipeline-{args.label}" if args.label else "pipeline"
    for name, text in ((f"{stem}.md", md + "\n"), (f"{stem}.json", json.dumps(out, indent=1))):
        tmp = RESULTS / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
