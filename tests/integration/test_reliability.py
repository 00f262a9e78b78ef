"""Reliability of the Delta lake on real processes: concurrent ingests (different files, the
same file, the same rows in two formats), concurrent score runs, and kill -9 at random points
of ingest and of scoring. After each kill: rows in = accepted + quarantined, no partial batch
is visible, a re-run completes, and the result equals an undisturbed run's.

Children are plain Python processes using the lake (ingest) or the ``score`` flow against the
session's Prefect API and MLflow server; they start together on a "go" file.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.lake import Lake

pytestmark = pytest.mark.slow

ROWS = 10_000
BAD = 37  # rows with an unparseable amount, quarantined
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RNG_SEED = 20261201


def source_frame(seed: int) -> pd.DataFrame:
    """``ROWS`` rows of one schema; ``BAD`` of them have a bad ``amount``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(ROWS) + seed * ROWS,
        "amount": rng.normal(100, 15, ROWS).round(3).astype(str),
        "channel": rng.choice(["web", "shop", "phone"], ROWS),
        "online": rng.random(ROWS) < 0.5,
    })
    frame.loc[rng.choice(ROWS, BAD, replace=False), "amount"] = "n/a?"
    return frame


def write_csv(folder: Path, seed: int) -> Path:
    path = folder / f"batch-{seed}.csv"
    source_frame(seed).to_csv(path, index=False)
    return path


def child(code: str, go: Path, env: dict | None = None, prelude: str = "") -> subprocess.Popen:
    """A Python child that imports (and runs ``prelude``), prints ``ready``, waits for ``go`` to
    exist, then runs ``code``."""
    script = textwrap.dedent(
        f"""
        import json, os, sys, time
        from pipelines.lake import Lake
        """
    ) + textwrap.dedent(prelude) + textwrap.dedent(
        f"""
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        """
    ) + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def start_together(procs: list[subprocess.Popen], go: Path) -> None:
    """Wait until every child is ready, then let them all go at once."""
    for proc in procs:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
    go.touch()


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def assert_consistent(lake: Lake, dataset: str, sources: dict[str, int]) -> None:
    """Every committed batch is whole: its rows and quarantine add up to its source's rows."""
    for record in lake.list_batches(dataset):
        assert record.rows_read == sources[record.source]
        assert len(lake.read(dataset, [record.batch_id])) == record.rows_accepted
        assert len(lake.read_quarantine(dataset, [record.batch_id])) == record.rows_quarantined
        assert record.rows_accepted + record.rows_quarantined == record.rows_read


INGEST = """
report = Lake({root!r}).ingest("d", {source!r})
print(json.dumps({{"skipped": report.skipped, "batch_id": report.batch_id}}), flush=True)
"""


def test_four_concurrent_ingests_of_different_files_all_land(tmp_path):
    sources = [write_csv(tmp_path, seed) for seed in range(4)]
    root, go = tmp_path / "lake", tmp_path / "go"
    procs = [child(INGEST.format(root=str(root), source=str(s)), go) for s in sources]
    start_together(procs, go)
    reports = [json.loads(finish(p).splitlines()[-1]) for p in procs]
    lake = Lake(root)
    assert not any(r["skipped"] for r in reports)
    assert sorted(b.batch_id for b in lake.list_batches("d")) == sorted(r["batch_id"] for r in reports)
    rows = lake.read("d")
    assert len(rows) == 4 * (ROWS - BAD) and rows["id"].is_unique  # nothing lost, nothing twice
    assert len(lake.read_quarantine("d")) == 4 * BAD
    assert_consistent(lake, "d", {str(s): ROWS for s in sources})


def test_four_concurrent_ingests_of_the_same_rows_commit_one_batch(tmp_path):
    csv = write_csv(tmp_path, 7)
    parquet = tmp_path / "same-rows.parquet"
    pd.read_csv(csv, dtype=str, keep_default_na=False).to_parquet(parquet)  # the same rows, as text
    root, go = tmp_path / "lake", tmp_path / "go"
    procs = [child(INGEST.format(root=str(root), source=str(s)), go) for s in (csv, csv, parquet, csv)]
    start_together(procs, go)
    # every writer exits 0, the losers too: a native abort at exit (SIGABRT after the report,
    # issue 8) fails here, not only a wrong result
    reports = [json.loads(finish(p).splitlines()[-1]) for p in procs]
    lake = Lake(root)
    assert len(lake.list_batches("d")) == 1 and len(lake.read("d")) == ROWS - BAD
    assert len(lake.read_quarantine("d")) == BAD
    assert lake.vacuum("d") == []  # the losers left no rows behind in the tables
    assert len({r["batch_id"] for r in reports}) == 1 and sum(not r["skipped"] for r in reports) == 1


def _kill_after(proc: subprocess.Popen, go: Path, delay: float) -> None:
    start_together([proc], go)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def test_kill_9_at_random_points_of_an_ingest(tmp_path):
    first, second = write_csv(tmp_path, 1), write_csv(tmp_path, 2)
    reference = Lake(tmp_path / "reference")
    for source in (first, second):
        reference.ingest("d", source)
    base = tmp_path / "base"  # the lake before the killed ingest: one batch
    Lake(base).ingest("d", first)
    timing = tmp_path / "timing"
    shutil.copytree(base, timing)
    go = tmp_path / "go-timing"
    proc = child(INGEST.format(root=str(timing), source=str(second)), go)
    start_together([proc], go)
    t0 = time.perf_counter()
    finish(proc)
    duration = time.perf_counter() - t0

    rng = random.Random(RNG_SEED)
    seam = "import pipelines.lake.storage as s, signal\ns._crash_point = lambda at: os.kill(os.getpid(), signal.SIGKILL) if at == {stage!r} else None\n"
    trials = [("rows", None), ("quarantine", None), ("batches", None)] + [(None, rng.uniform(0, duration))]
    for i, (stage, delay) in enumerate(trials):
        root, go = tmp_path / f"lake-{i}", tmp_path / f"go-{i}"
        shutil.copytree(base, root)
        code = (seam.format(stage=stage) if stage else "") + INGEST.format(root=str(root), source=str(second))
        proc = child(code, go)
        if stage:
            start_together([proc], go)
            proc.communicate(timeout=60)
        else:
            _kill_after(proc, go, delay)
        assert proc.returncode == -signal.SIGKILL or delay is not None, (stage, delay, proc.returncode)
        lake = Lake(root)
        assert len(lake.list_batches("d")) in (1, 2), (stage, delay)  # the new batch whole or not at all
        assert_consistent(lake, "d", {str(first): ROWS, str(second): ROWS})
        lake.ingest("d", second)  # the re-run completes (or finds the batch committed)
        pd.testing.assert_frame_equal(lake.read("d"), reference.read("d"))
        pd.testing.assert_frame_equal(lake.read_quarantine("d"), reference.read_quarantine("d"))
        assert lake.vacuum("d") == []


# ----------------------------------------------------------------------------- scoring

SCORE_IMPORTS = """
from pipelines.settings import apply_prefect_env, get_settings
apply_prefect_env(get_settings())
from pipelines.flows.score import score
"""
SCORE = """
print(json.dumps(score("d", model_name="rel", batch_rows=4000, lake_url={root!r}, tracking_uri={tracking!r})["rows"]), flush=True)
"""


@pytest.fixture(scope="module")
def scored(prefect_harness, mlflow_server, tmp_path_factory):
    """A lake of two batches, a model trained on the first, and an undisturbed run's scores."""
    from prefect.settings import PREFECT_API_URL

    from pipelines.flows.score import score
    from pipelines.flows.train import train

    folder = tmp_path_factory.mktemp("reliability-score")
    lake = Lake(folder / "pristine")
    for seed in (1, 2):
        lake.ingest("d", write_csv(folder, seed))
    all_bad = folder / "all-bad.csv"  # a batch with no accepted row: skipped by scoring
    all_bad.write_text("id,amount,channel,online\n" + "".join(f"{i},inf,web,true\n" for i in range(3)))  # infinite: quarantined
    assert lake.ingest("d", all_bad).rows_accepted == 0
    first = lake.list_batches("d")[0].batch_id
    params = {"max_epochs": 3, "kl_warmup_epochs": 1, "elbo_samples": 2, "iwae_samples": 4}
    train("d", model_name="rel", batch_ids=[first], exclude_columns=["id"], params=params, lake_url=str(lake.root), tracking_uri=mlflow_server)
    reference_root = folder / "reference"
    shutil.copytree(lake.root, reference_root)
    t0 = time.perf_counter()
    result = score("d", model_name="rel", batch_rows=4000, lake_url=str(reference_root), tracking_uri=mlflow_server)
    assert result["rows"] == 2 * (ROWS - BAD) and len(result["scored"]) == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), VAE_ANOMALY_HOME=str(folder / "home"))
    return {"folder": folder, "pristine": lake.root, "reference": _scores(Lake(reference_root)), "tracking": mlflow_server,
            "seconds": time.perf_counter() - t0, "env": env}


def _scores(lake: Lake) -> pd.DataFrame:
    """The scores without their wall-clock column, in a stable order."""
    frame = lake.read_scores("d").drop(columns=["scored_at"])
    return frame.sort_values(["batch_id", "_source_row"], ignore_index=True)


def _copy(scored: dict, name: str) -> str:
    root = scored["folder"] / name
    shutil.copytree(scored["pristine"], root)
    return str(root)


def test_two_concurrent_score_runs_both_succeed_with_undisturbed_scores(scored):
    root, go = _copy(scored, "concurrent"), scored["folder"] / "go-concurrent"
    code = SCORE.format(root=root, tracking=scored["tracking"])
    procs = [child(code, go, scored["env"], SCORE_IMPORTS) for _ in range(2)]
    start_together(procs, go)
    for proc in procs:
        finish(proc, timeout=300)
    pd.testing.assert_frame_equal(_scores(Lake(root)), scored["reference"])


def test_kill_9_at_random_points_of_a_score_run(scored):
    from pipelines.flows.score import score

    rng = random.Random(RNG_SEED + 1)
    for i in range(2):
        root, go = _copy(scored, f"killed-{i}"), scored["folder"] / f"go-killed-{i}"
        proc = child(SCORE.format(root=root, tracking=scored["tracking"]), go, scored["env"], SCORE_IMPORTS)
        _kill_after(proc, go, rng.uniform(0.1, 0.9) * scored["seconds"])  # within the run, after the imports
        assert proc.returncode == -signal.SIGKILL
        lake = Lake(root)
        for batch_id in lake.scored_batches("d", _label(lake)):  # a batch's scores are whole or absent
            assert len(lake.read_scores("d").query("batch_id == @batch_id")) == len(lake.read("d", [batch_id]))
        score("d", model_name="rel", batch_rows=4000, lake_url=root, tracking_uri=scored["tracking"])  # the re-run
        pd.testing.assert_frame_equal(_scores(lake), scored["reference"])


def _label(lake: Lake) -> str:
    """The scores label the model's runs write under (the only one in these lakes)."""
    versions = set(lake.read_scores("d")["model_version"])
    return versions.pop() if versions else "none"
