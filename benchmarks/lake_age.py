"""Lake-age benchmark: ``python -m benchmarks.lake_age [--sizes 10,100,1000,10000] [--rows 100]``.

What one more batch costs when a dataset already has N of them (issue 30). One small model is
trained (the ``train`` flow, a few epochs) on a first batch of ``--train-rows`` rows; then the
history is made batch by batch of ``--rows`` rows each (three outliers in every batch) through
the code the flows run, called directly, without a Prefect flow run per batch:
:meth:`pipelines.lake.Lake.ingest` (what the ingest flow's tasks do), the ``score-batch``
task's function (its scores, its report, the report logged to MLflow), and a reviewer's
verdicts on every item of the batch's report (one feedback commit per batch, as the review
page stores them). With ``--maintain-every K`` (default 24, the nightly run of hourly batches)
the lake's maintenance runs every K batches when :mod:`pipelines.lake.maintenance` exists.

At each N of ``--sizes`` the NEXT ``--repeats`` batches are timed, each step once per batch,
the median kept:

- ``ingest``: the ingest flow (Prefect's API, ephemeral) on one new source file;
- ``score``: the score flow scoring that batch, with its report;
- ``review_index`` and ``review_batch``: ``GET /`` and the batch's review page from a real
  ``vae-anomaly review`` server on 127.0.0.1 (started once, stopped by PID);
- ``threshold``: the threshold flow from the verdicts (``threshold --from-reviews``);
- ``watermark``: :meth:`pipelines.lake.Lake.scored_batches`.

It also records each Delta table's data files and log entries. Prints each step's time and
its ratio to the first size; writes ``benchmarks/results/lake_age[-<label>].md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "lakeage"
STEPS = ("ingest", "score", "review_index", "review_batch", "threshold", "watermark")
TABLES = ("batches", "rows", "quarantine", "scores", "feedback")
FAST = {"max_epochs": 4, "kl_warmup_epochs": 1, "elbo_samples": 2, "iwae_samples": 4}
OUTLIERS = 3  # per batch: each batch's report has a few items to review


def batch_frame(index: int, rows: int) -> pd.DataFrame:
    """Batch ``index``: ``rows`` rows of four correlated columns and a category, the first
    :data:`OUTLIERS` of them far out (the same distribution for every batch)."""
    rng = np.random.default_rng(index)
    z = rng.normal(size=rows)
    frame = pd.DataFrame({
        "amount": 100 + 20 * z, "fee": 2 + 0.4 * z + rng.normal(scale=0.05, size=rows),
        "items": 5 + 2 * z + rng.normal(scale=0.3, size=rows), "wait": 10 - 3 * z + rng.normal(scale=0.5, size=rows),
        "channel": rng.choice(["web", "store", "phone"], size=rows),
        "ref": [f"{index}-{i}" for i in range(rows)],  # every batch's content differs
    })
    k = min(OUTLIERS, rows // 10)
    frame.loc[: k - 1, "amount"] = 5_000.0 + 1_000.0 * np.arange(k)
    return frame


def table_files(lake, dataset: str) -> dict[str, dict[str, int]]:
    """Per Delta table of ``dataset``: its data files (the current version's), its log's commit
    files and checkpoints, and the version."""
    from pipelines.lake.delta import open_table

    out = {}
    for name in TABLES:
        uri = lake.table_uri(dataset, name)
        table = open_table(uri, lake.delta_options)
        log = Path(uri) / "_delta_log"
        entries = sorted(log.glob("*.json")) if log.is_dir() else []
        out[name] = {
            "files": 0 if table is None else len(table.file_uris()),
            "log_entries": len(entries),
            "checkpoints": len(list(log.glob("*.checkpoint*.parquet"))) if log.is_dir() else 0,
            "version": -1 if table is None else int(table.version()),
        }
    reports = Path(lake.root) / dataset / "reports"
    out["reports"] = {"files": len(list(reports.glob("model_version=*/batch_id=*/report.json"))) if reports.is_dir() else 0}
    return out


def maintenance_hook() -> Optional[Callable[[str, str], object]]:
    """The lake's maintenance pass ``(lake_url, dataset)`` (:func:`pipelines.lake.maintenance.maintain`),
    when the project has one. Its retention is 0 hours: a night of the benchmark lasts seconds,
    and after the nights of a year only the retention's last log entries and files are left,
    which a retention of hours of wall time would never let go of here (nothing writes while a
    pass runs, so no writer's files are young)."""
    import importlib.util

    if importlib.util.find_spec("pipelines.lake.maintenance") is None:
        return None
    from pipelines.lake import Lake, maintenance

    return lambda lake_url, dataset: maintenance.maintain(Lake(lake_url), dataset, retention_hours=0)


class History:
    """A dataset of batches made through the flows' code, and what the timed steps need."""

    def __init__(self, work: Path, rows: int, train_rows: int, maintain_every: int, log: Callable[[str], None]):
        from pipelines.lake import Lake

        self.work, self.rows, self.log = work, rows, log
        self.lake = Lake(work / "lake")
        self.lake_url = str(self.lake.root)
        self.tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
        self.sources = work / "sources"
        self.sources.mkdir(parents=True, exist_ok=True)
        self.made = 0  # batches in the dataset
        self.maintain_every = maintain_every
        self.maintain = maintenance_hook() if maintain_every else None
        self.maintenance_runs = 0
        self.train_rows = train_rows
        self.model = None

    def source(self, index: int, rows: Optional[int] = None) -> str:
        path = self.sources / f"batch-{index:06d}.parquet"
        batch_frame(index, rows or self.rows).to_parquet(path, index=False)
        return str(path)

    def start(self, train_params: dict) -> dict:
        """The first batch and the model trained on it (the train flow), resolved for scoring."""
        from pipelines.flows.scoring import resolve_model
        from pipelines.flows.train import train

        self.lake.ingest(DATASET, self.source(0, self.train_rows))
        self.made = 1
        trained = train(DATASET, params=train_params, exclude_columns=["ref"], lake_url=self.lake_url,
                        tracking_uri=self.tracking_uri)
        self.model = resolve_model.fn(self.tracking_uri, DATASET, "champion", None)
        self.score_and_review(self.lake.list_batches(DATASET)[0].batch_id)
        return trained

    def score_and_review(self, batch_id: str) -> None:
        """The score task's work on one batch, then a verdict on every item of its report."""
        from pipelines.flows.score import score_batch
        from pipelines.reports.store import ReportRef, ReportStore

        score_batch.fn(DATASET, batch_id, self.model, self.lake_url, self.tracking_uri, 65536)
        self.review(ReportStore(self.lake_url), ReportRef(DATASET, self.model.scores_key, batch_id))

    def review(self, store, ref) -> int:
        """Verdicts on every item of the report ``ref``, alternately real and false, in one commit,
        each with its item's facts as the review page stores it."""
        from pipelines.review.app import feedback_store
        from pipelines.review.feedback import item_verdict

        report = store.report(ref) or {}
        run_id = report.get("model", {}).get("run_id")
        verdicts = [item_verdict(i, ref.batch_id, ref.label, "anomaly" if n % 2 == 0 else "false_alarm", "bench", run_id=run_id)
                    for n, i in enumerate(report.get("items", []))]
        return feedback_store(store, DATASET).add(verdicts)

    def grow_to(self, n: int) -> float:
        """Add batches until the dataset has ``n``; seconds it took."""
        t0 = time.perf_counter()
        while self.made < n:
            report = self.lake.ingest(DATASET, self.source(self.made))
            Path(self.sources / f"batch-{self.made:06d}.parquet").unlink()
            self.score_and_review(report.batch_id)
            self.made += 1
            self.after_batch()
            if self.made % 100 == 0:
                self.log(f"  history: {self.made} batches, {time.perf_counter() - t0:.0f} s")
        return time.perf_counter() - t0

    def after_batch(self) -> None:
        if self.maintain is not None and self.made % self.maintain_every == 0:
            self.maintain(self.lake_url, DATASET)
            self.maintenance_runs += 1


class ReviewServer:
    """``vae-anomaly review`` on a free 127.0.0.1 port, in its own process group."""

    def __init__(self, lake_url: str, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [str(Path(sys.executable).with_name("vae-anomaly")), "review", "--lake", lake_url, "--port", str(self.port),
               "--reviewer", "bench"]
        self.proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vae-anomaly review exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                self.get("/healthz")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the review server did not answer in 120 s: {log.read_text()[-2000:]}")
                time.sleep(0.3)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=600) as response:
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")
            return response.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def timed(work: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def time_next_batch(history: History, server: ReviewServer) -> dict[str, float]:
    """Each step's seconds for the next batch (it joins the history)."""
    from pipelines.flows.ingest import ingest
    from pipelines.flows.score import score
    from pipelines.flows.threshold import threshold

    env = {"lake_url": history.lake_url}
    out, got = {}, {}
    source = history.source(history.made)
    out["ingest"] = timed(lambda: got.update(ingest=ingest(DATASET, source, **env)))
    batch_id = got["ingest"]["batch_id"]
    out["score"] = timed(lambda: got.update(score=score(DATASET, tracking_uri=history.tracking_uri, **env)))
    if [s["batch_id"] for s in got["score"]["scored"]] != [batch_id]:
        raise RuntimeError(f"the score flow scored {got['score']['scored']}, not just {batch_id}")
    history.made += 1
    from pipelines.reports.store import ReportRef, ReportStore

    label = history.model.scores_key
    history.review(ReportStore(history.lake_url), ReportRef(DATASET, label, batch_id))
    out["review_index"] = timed(lambda: server.get("/"))
    out["review_batch"] = timed(lambda: server.get(f"/review/{DATASET}?label={label}&batch={batch_id}&status=all"))
    out["threshold"] = timed(lambda: threshold(DATASET, tracking_uri=history.tracking_uri, **env))
    out["watermark"] = timed(lambda: history.lake.scored_batches(DATASET, label))
    history.after_batch()
    return out


def ratios(sizes: list[dict]) -> list[dict]:
    """Each size's step times over the first size's (``None`` where a time is missing)."""
    base = sizes[0]["steps"] if sizes else {}
    return [{s: (size["steps"][s] / base[s] if base.get(s) else None) for s in STEPS} for size in sizes]


def markdown(result: dict) -> str:
    """The results table (seconds and the ratio to the first size), then the tables' files."""
    sizes = result["sizes"]
    first = sizes[0]["n"] if sizes else "-"
    lines = [f"# Lake age: the next batch's cost at N batches ({result['rows']} rows each)", "",
             result["description"], "",
             "| N | " + " | ".join(STEPS) + " |", "|---:|" + "---:|" * len(STEPS)]
    for size, ratio in zip(sizes, ratios(sizes)):
        cells = [f"{size['steps'][s]:.3f} s ({ratio[s]:.2f}x)" if ratio[s] is not None else f"{size['steps'][s]:.3f} s"
                 for s in STEPS]
        lines.append(f"| {size['n']:,} | " + " | ".join(cells) + " |")
    lines += ["", f"Ratios are to N = {first}. History: seconds to grow the dataset to N (fast path), "
              "maintenance passes run by then.", "",
              "| N | history s | maintenance runs | " + " | ".join(f"{t} files / log" for t in TABLES) + " | reports |",
              "|---:|---:|---:|" + "---:|" * (len(TABLES) + 1)]
    for size in sizes:
        f = size["files"]
        cells = [f"{f[t]['files']} / {f[t]['log_entries']}" + (f" ({f[t]['checkpoints']} ckpt)" if f[t]["checkpoints"] else "")
                 for t in TABLES]
        lines.append(f"| {size['n']:,} | {size['history_s']:.0f} | {size['maintenance_runs']} | " + " | ".join(cells)
                     + f" | {f['reports']['files']} |")
    return "\n".join(lines) + "\n"


def write_results(result: dict, label: str = "") -> list[Path]:
    """``lake_age[-label].md`` and ``.json`` in :data:`RESULTS`, each written atomically."""
    RESULTS.mkdir(exist_ok=True)
    stem = f"lake_age-{label}" if label else "lake_age"
    written = []
    for name, text in ((f"{stem}.md", markdown(result)), (f"{stem}.json", json.dumps(result, indent=1))):
        tmp = RESULTS / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)
        written.append(RESULTS / name)
    return written


def run(sizes: list[int], rows: int, repeats: int, train_rows: int, maintain_every: int, work: Path,
        train_params: dict = FAST, log: Callable[[str], None] = print, save: Optional[Callable[[dict], None]] = None) -> dict:
    """Grow the dataset to each size in turn and time the next ``repeats`` batches there."""
    history = History(work, rows, train_rows, maintain_every, log)
    history.start(train_params)
    server = ReviewServer(history.lake_url, work / "review.log")
    result = {"rows": rows, "train_rows": train_rows, "repeats": repeats, "maintain_every": maintain_every,
              "maintenance": history.maintain is not None, "cpus": os.cpu_count(), "python": platform.python_version(),
              "sizes": [], "description": ""}
    try:
        server.get("/")  # the server's first page compiles its templates
        for n in sizes:
            grow = history.grow_to(n)
            files = table_files(history.lake, DATASET)
            runs = [time_next_batch(history, server) for _ in range(repeats)]
            steps = {s: statistics.median(r[s] for r in runs) for s in STEPS}
            result["sizes"].append({"n": n, "steps": steps, "runs": runs, "files": files, "history_s": grow,
                                    "maintenance_runs": history.maintenance_runs})
            log(f"N={n}: " + ", ".join(f"{s} {steps[s]:.3f}s" for s in STEPS))
            result["description"] = describe(result)
            if save:
                save(result)
    finally:
        server.stop()
    return result


def describe(result: dict) -> str:
    maint = (f"maintenance every {result['maintain_every']} batches" if result["maintenance"]
             else "no maintenance (pipelines.lake.maintenance not available or --maintain-every 0)")
    return (f"A tabular dataset of N batches of {result['rows']} rows ({OUTLIERS} outliers each, every item of every "
            f"report reviewed), a model trained on a first batch of {result['train_rows']} rows; {maint}. Each step "
            f"is the median of the next {result['repeats']} batches' times ({result['cpus']} CPUs, load shared).")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated N, increasing")
    ap.add_argument("--rows", type=int, default=100, help="rows per batch")
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="next batches timed at each N (median)")
    ap.add_argument("--maintain-every", type=int, default=24, help="batches between maintenance passes (0: none)")
    ap.add_argument("--label", default="", help="suffix of the result files (lake_age-<label>.md)")
    ap.add_argument("--work", default=None, help="folder for the lake and stores (default: a new temporary one)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or sizes != sorted(sizes) or sizes[0] < 1:
        ap.error("--sizes must be increasing positive integers")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vae-anomaly-lake-age-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VAE_ANOMALY_HOME", str(work / "state"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # a flow run's task lines would drown the table
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pipelines.settings import apply_prefect_env, get_settings

    apply_prefect_env(get_settings())

    def log(message: str) -> None:
        print(message, flush=True)

    result = run(sizes, args.rows, args.repeats, args.train_rows, args.maintain_every, work, log=log,
                 save=lambda r: write_results(r, args.label))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
