"""Reliability of the Delta lake on real processes: concurrent ingests (different files, the
same file, the same rows in two formats), concurrent score runs, and kill -9 at random points
of ingest and of scoring. After each kill: rows in = accepted + quarantined, no partial batch
is visible, a re-run completes, and the result equals an undisturbed run's. The kill trials use
a test-only hook on the lake's ``crash_point`` seam (``HOOK``) to kill at each commit stage and
to place each random kill by the stages the child had passed.

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


# A test-only hook on the lake's commit seam (``pipelines.lake.storage.crash_point``, called
# after each commit stage: ingest's rows/quarantine/batches commits, ``scores-spooled`` before
# the scores commit, ``scores`` after it, ``report-<file>-tmp`` before each report file's rename).
# The hook also counts each part a score run appends to its spool (``scores-part``), so a kill
# can land mid-spool, before the batch's scores commit. The child appends each stage it passes,
# with its count, to ``log``, and kills itself with SIGKILL on the ``kill``-th call of stage
# ``stage`` (``kill=None``: never), with the (system-wide monotonic) time it passed it. No
# production code knows about it.
HOOK = """
import pipelines.lake.scores as _scores, pipelines.lake.storage as _storage, signal as _signal
_log, _seen, _write = os.open({log!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND), {{}}, _scores.ScoresWriter.write
def _point(at):
    _seen[at] = _seen.get(at, 0) + 1
    os.write(_log, f"{{at}} {{_seen[at]}} {{time.monotonic()}}\\n".encode())
    if (at, _seen[at]) == {kill!r}:
        os.kill(os.getpid(), _signal.SIGKILL)
def _part(self, frame):
    _write(self, frame)
    _point("scores-part")
_storage.crash_point, _scores.ScoresWriter.write = _point, _part
"""


def passed(log: Path, times: bool = False) -> list:
    """The commit stages a hooked child passed, in order, as (stage, k-th call), or with
    ``times`` the monotonic times it passed them."""
    lines = [line.split() for line in (log.read_text().splitlines() if log.exists() else [])]
    return [float(t) for _, _, t in lines] if times else [(at, int(k)) for at, k, _ in lines]


def hooked(code: str, go: Path, log: Path, kill=None, env=None, prelude: str = "") -> subprocess.Popen:
    return child(code, go, env, prelude + HOOK.format(log=str(log), kill=kill))


def timed_run(proc: subprocess.Popen, go: Path, log: Path, timeout: float = 300) -> tuple[float, list[float]]:
    """Let hooked ``proc`` go and run to its end (exit 0); returns the seconds from go to exit
    and from go to each stage it passed."""
    start_together([proc], go)
    t0 = time.monotonic()
    finish(proc, timeout)
    return time.monotonic() - t0, [t - t0 for t in passed(log, times=True)]


def kill_after(make, go: Path, delay: float, proc: subprocess.Popen | None = None, tries: int = 4) -> tuple[subprocess.Popen, float]:
    """Let ``proc`` (or a new ``make()`` child) go and SIGKILL it ``delay`` s later; a child
    that finished first (this run was faster than the timed one) is replaced by a new
    ``make()`` child, killed after a shorter delay. Returns the killed child and its delay."""
    for _ in range(tries):
        proc = proc or make()
        start_together([proc], go)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        go.unlink()
        if proc.returncode == -signal.SIGKILL:
            return proc, delay
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else proc.returncode
        proc, delay = None, delay * 0.6
    raise AssertionError(f"the child finished before each of {tries} kills")


def placed(proc, log: Path, stages: list, stage, delay) -> list:
    """The stages a killed child had passed (a prefix of the undisturbed run's), checking that
    the kill (at ``stage`` or after ``delay``) killed it."""
    assert proc.returncode == -signal.SIGKILL, (stage, delay, proc.returncode)
    reached = passed(log)
    assert reached == stages[:len(reached)], reached
    return reached


def delays(rng: random.Random, duration: float, at: list[float], strata: int = 3) -> list[float]:
    """Random kill delays: one in each of ``strata`` equal parts of the first 90% of the run's
    ``duration``, and as many over its writes (from a bit before the first stage at ``at[0]``
    to the last): a run spends most of its time before its first write and after its last."""
    def spread(lo: float, hi: float) -> list[float]:
        return [lo + (i + rng.random()) / strata * (hi - lo) for i in range(strata)]
    return spread(0, 0.9 * duration) + spread(max(0.0, at[0] - 0.25 * (at[-1] - at[0])), at[-1])


def test_kill_9_at_random_points_of_an_ingest(tmp_path):
    """Kill -9 at each commit stage of an ingest (after its rows, quarantine and batch-record
    commits) and at random times over its whole run; every kill is checked to have killed
    (-9) and placed by the stages the child had passed."""
    first, second = write_csv(tmp_path, 1), write_csv(tmp_path, 2)
    reference = Lake(tmp_path / "reference")
    for source in (first, second):
        reference.ingest("d", source)
    base = tmp_path / "base"  # the lake before the killed ingest: one batch
    Lake(base).ingest("d", first)
    code = lambda root: INGEST.format(root=str(root), source=str(second))

    def copy(name: str) -> Path:
        shutil.copytree(base, tmp_path / name)
        return tmp_path / name

    timing, log = copy("timing"), tmp_path / "timing.log"
    duration, at = timed_run(hooked(code(timing), tmp_path / "go-timing", log), tmp_path / "go-timing", log)
    stages = passed(log)
    assert [s for s, _ in stages] == ["rows", "quarantine", "batches"], stages

    rng = random.Random(RNG_SEED)
    trials = [(stage, None) for stage in stages] + [(None, d) for d in delays(rng, duration, at)]
    where, used = [], []  # per trial: the stages the child had passed when it died; the delay
    for i, (stage, delay) in enumerate(trials):
        root, go, log = copy(f"lake-{i}"), tmp_path / f"go-{i}", tmp_path / f"lake-{i}.log"
        make = lambda: hooked(code(root), go, log, kill=stage)
        if stage:
            proc = make()
            start_together([proc], go)
            proc.communicate(timeout=120)
        else:
            def fresh():  # a retry starts again from the base lake
                shutil.rmtree(root)
                shutil.copytree(base, root)
                log.unlink(missing_ok=True)
                return make()
            proc, delay = kill_after(fresh, go, delay)
        reached = placed(proc, log, stages, stage, delay)
        used.append(delay)
        where.append(len(reached))
        lake = Lake(root)
        # the new batch whole or not at all: visible once its record's commit was passed, not
        # before the commit began (a random kill can land between the commit and its stage)
        records = lake.list_batches("d")
        may = {2} if ("batches", 1) in reached else {1, 2} if reached[-1:] == [("quarantine", 1)] else {1}
        assert len(records) in may, (stage, delay, reached)
        assert len(lake.read("d")) == sum(r.rows_accepted for r in records)  # no uncommitted rows visible
        assert len(lake.read_quarantine("d")) == sum(r.rows_quarantined for r in records)
        assert_consistent(lake, "d", {str(first): ROWS, str(second): ROWS})
        lake.ingest("d", second)  # the re-run completes (or finds the batch committed)
        assert_consistent(lake, "d", {str(first): ROWS, str(second): ROWS})
        pd.testing.assert_frame_equal(lake.read("d"), reference.read("d"))
        pd.testing.assert_frame_equal(lake.read_quarantine("d"), reference.read_quarantine("d"))
        assert lake.vacuum("d") == []
    # after each stage: hit by the stage kills; before the rows commit (mid-write of the rows)
    # only by timed kills, which a load change between the timing run and a trial can move, so
    # reported, not asserted (it held in 7 of 7 runs of this test)
    assert set(range(1, len(stages) + 1)) <= set(where), where
    print(f"ingest: {len(trials)} kills, {duration:.2f} s run, stages {stages} at {[round(t, 3) for t in at]} s, "
          f"delays {[round(d, 3) for d in used if d is not None]} s, passed per kill {where}")


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
    """Kill -9 at each commit stage of a score run (before and after each batch's scores commit,
    before each report file's rename) and at random times over its whole run; every kill is
    checked to have killed (-9) and placed by the stages the child had passed. After each: the
    batches are untouched, a batch's scores are whole or absent, and a re-run gives the
    undisturbed run's scores and a report for every scored batch (rebuilt where it was lost)."""
    from pipelines.flows.score import score
    from pipelines.reports.store import ReportStore

    folder, env = scored["folder"], scored["env"]
    sources = {r.source: r.rows_read for r in Lake(scored["pristine"]).list_batches("d")}
    reports = [(r.label, r.batch_id) for r in ReportStore(str(folder / "reference")).list("d")]
    assert len(reports) == 2

    def make(name: str, kill=None):
        root, log = _copy(scored, name), folder / f"{name}.log"
        code = SCORE.format(root=root, tracking=scored["tracking"])
        return root, log, lambda: hooked(code, folder / f"go-{name}", log, kill, env, SCORE_IMPORTS)

    root, log, proc = make("timing")
    duration, at = timed_run(proc(), folder / "go-timing", log)
    stages = passed(log)
    names = [s for s, _ in stages]
    assert names.count("scores-spooled") == names.count("scores") == 2 and "report-report.json-tmp" in names, stages
    assert names[:3] == ["scores-part"] * 3, stages  # 9,963 rows in parts of 4,000: a kill after the first is mid-spool
    pd.testing.assert_frame_equal(_scores(Lake(root)), scored["reference"])  # the hook changes nothing

    # a kill at each stage of the first batch's write (after its first spooled part: mid-spool)
    # and at the run's last stage (the second batch's stages are the same code; random kills
    # land in them), then random kills over the run
    kills = [st for st in stages if st[1] == 1] + [stages[-1]]
    rng = random.Random(RNG_SEED + 1)
    trials = [(stage, None) for stage in kills] + [(None, d) for d in delays(rng, duration, at, strata=2)]

    def spawn(i: int):  # trial i's lake, log and child (importing, then waiting for its go)
        root, log, make_proc = make(f"killed-{i}", trials[i][0])
        return root, log, make_proc, make_proc()

    where, used, ahead = [], [], spawn(0)
    try:
        for i, (stage, delay) in enumerate(trials):
            (root, log, make_proc, proc), go = ahead, folder / f"go-killed-{i}"
            if stage:
                start_together([proc], go)
                proc.communicate(timeout=300)
            else:
                def fresh():  # a retry starts again from the pristine lake
                    shutil.rmtree(root)
                    shutil.copytree(scored["pristine"], root)
                    log.unlink(missing_ok=True)
                    return make_proc()
                proc, delay = kill_after(fresh, go, delay, proc)
            ahead = spawn(i + 1) if i + 1 < len(trials) else None  # imports while this trial is checked
            reached = placed(proc, log, stages, stage, delay)
            used.append(delay)
            where.append(len(reached))
            lake = Lake(root)
            assert_consistent(lake, "d", sources)  # scoring never touches the batches
            scored_now = lake.scored_batches("d", _label(lake))
            # a batch's scores are visible once their commit was passed, not before it began, and whole
            committed = [s for s, _ in reached].count("scores")
            may = {committed, committed + 1} if reached[-1:] and reached[-1][0] == "scores-spooled" else {committed}
            assert len(scored_now) in may, (reached, scored_now)
            for batch_id in scored_now:
                assert len(lake.read_scores("d").query("batch_id == @batch_id")) == len(lake.read("d", [batch_id]))
            unreported = set(scored_now) - {r.batch_id for r in ReportStore(root).list("d")}
            result = score("d", model_name="rel", batch_rows=4000, lake_url=root, tracking_uri=scored["tracking"])  # the re-run
            assert set(result["reports_rebuilt"]) == unreported, (reached, result["reports_rebuilt"])
            pd.testing.assert_frame_equal(_scores(lake), scored["reference"])
            assert [(r.label, r.batch_id) for r in ReportStore(root).list("d")] == reports
    finally:  # a failed trial leaves no child waiting for its go
        if ahead is not None and ahead[3].poll() is None:
            ahead[3].kill()
            ahead[3].communicate()
    # every point was hit: mid-spool, after each stage of a batch's write (spooled, scores
    # committed, each report file), after the run's last stage
    assert set(where) >= {stages.index(st) + 1 for st in kills}, where
    print(f"score: {len(trials)} kills, {duration:.2f} s run, stages {stages} at {[round(t, 3) for t in at]} s, "
          f"delays {[round(d, 3) for d in used if d is not None]} s, passed per kill {where}")


def _label(lake: Lake) -> str:
    """The scores label the model's runs write under (the only one in these lakes)."""
    versions = set(lake.read_scores("d")["model_version"])
    return versions.pop() if versions else "none"


# ----------------------------------------------------------------------------- maintenance beside the writers

MAINTAIN_LOOP = """
from pipelines.lake.errors import LakeError
from pipelines.lake.maintenance import maintain
passes, skipped, compacted, lost = 0, [], 0, 0
while not os.path.exists({stop!r}):
    try:
        done = maintain(Lake({root!r}), "d", retention_hours=1)
    except LakeError as exc:
        if "no batches table" not in str(exc):
            raise
        time.sleep(0.05)
        continue
    passes += 1
    skipped += [s for t in done.tables for s in t.skipped]
    compacted += sum(t.files_compacted for t in done.tables)
    lost += sum(t.commits_lost for t in done.tables)
print(json.dumps({{"passes": passes, "skipped": skipped, "compacted": compacted, "commits_lost": lost}}), flush=True)
"""


def maintenance_loop(root: str, go: Path, stop: Path) -> subprocess.Popen:
    """A child running maintenance passes over dataset ``d`` one after another until ``stop`` exists."""
    return child(MAINTAIN_LOOP.format(root=root, stop=str(stop)), go)


def stop_loop(proc: subprocess.Popen, stop: Path) -> dict:
    """Stop a :func:`maintenance_loop` child after its current pass; what its passes did."""
    stop.touch()
    return json.loads(finish(proc).splitlines()[-1])


def test_concurrent_ingests_with_maintenance_passes_running_all_land_and_a_killed_pass_harms_nothing(tmp_path):
    """Four ingests of different files while maintenance passes (compaction of the growing
    batches table, retention, vacuum, checkpoints, log cleanup) run in another process: every
    batch lands whole, nothing lost, nothing twice, and no writer fails. Then passes killed -9
    at random points: the lake reads the same and the next pass completes."""
    root, go, stop = tmp_path / "lake", tmp_path / "go", tmp_path / "stop"
    lake = Lake(root)
    seeds = []
    for n in range(3):  # small batches first: the passes have files to compact from the start
        path = tmp_path / f"seed-{n}.csv"
        path.write_text("id,amount,channel,online\n" + "".join(f"{-10 * n - i},{i}.5,web,true\n" for i in range(1, 6)))
        seeds.append(lake.ingest("d", path).source)
    sources = [write_csv(tmp_path, seed) for seed in range(4)]
    procs = [child(INGEST.format(root=str(root), source=str(s)), go) for s in sources]
    loop = maintenance_loop(str(root), go, stop)
    start_together([*procs, loop], go)
    reports = [json.loads(finish(p).splitlines()[-1]) for p in procs]  # every writer exits 0
    passes = stop_loop(loop, stop)
    print(f"maintenance beside 4 ingests: {passes}")
    assert passes["passes"] >= 1 and passes["compacted"] >= 3, passes
    assert not any(r["skipped"] for r in reports)
    assert {r["batch_id"] for r in reports} <= {b.batch_id for b in lake.list_batches("d")}
    rows = lake.read("d")
    assert len(rows) == 4 * (ROWS - BAD) + 15 and rows["id"].is_unique  # nothing lost, nothing twice
    assert len(lake.read_quarantine("d")) == 4 * BAD
    assert_consistent(lake, "d", {**{str(s): ROWS for s in sources}, **{s: 5 for s in seeds}})
    assert lake.vacuum("d") == []  # no orphaned rows either

    rng = random.Random(RNG_SEED + 2)
    for i in range(3):
        killed_go = tmp_path / f"go-killed-{i}"
        proc = maintenance_loop(str(root), killed_go, tmp_path / f"never-{i}")
        kill_after(lambda: maintenance_loop(str(root), killed_go, tmp_path / f"never-{i}"), killed_go,
                   rng.uniform(0.05, 1.5), proc)
        again = Lake(root)
        assert again.read("d").equals(rows)
        assert_consistent(again, "d", {**{str(s): ROWS for s in sources}, **{s: 5 for s in seeds}})
    from pipelines.lake.maintenance import maintain

    final = maintain(lake, "d", retention_hours=1)
    assert all(t.skipped == [] for t in final.tables) and lake.read("d").equals(rows)
    assert final.table("batches").files_after == 1


def test_two_concurrent_score_runs_with_maintenance_passes_running_give_undisturbed_scores(scored):
    root, go, stop = _copy(scored, "maintained"), scored["folder"] / "go-maintained", scored["folder"] / "stop-maintained"
    code = SCORE.format(root=root, tracking=scored["tracking"])
    procs = [child(code, go, scored["env"], SCORE_IMPORTS) for _ in range(2)]
    loop = maintenance_loop(root, go, stop)
    start_together([*procs, loop], go)
    for proc in procs:
        finish(proc, timeout=300)
    passes = stop_loop(loop, stop)
    print(f"maintenance beside 2 score runs: {passes}")
    assert passes["passes"] >= 1, passes
    pd.testing.assert_frame_equal(_scores(Lake(root)), scored["reference"])


def test_an_ingest_killed_9_at_each_commit_stage_beside_maintenance_passes_leaves_the_lake_consistent(tmp_path):
    """The kill -9 trials of an ingest at each of its commit stages, with maintenance passes
    running in another process meanwhile: the new batch is whole or absent, its half-written
    data stays for its re-run (younger than the retention), and the re-run gives the
    undisturbed lake."""
    first, second = write_csv(tmp_path, 1), write_csv(tmp_path, 2)
    reference = Lake(tmp_path / "reference")
    for source in (first, second):
        reference.ingest("d", source)
    base = tmp_path / "base"
    Lake(base).ingest("d", first)
    for i, stage in enumerate([("rows", 1), ("quarantine", 1), ("batches", 1)]):
        root, go, stop, log = tmp_path / f"lake-{i}", tmp_path / f"go-{i}", tmp_path / f"stop-{i}", tmp_path / f"{i}.log"
        shutil.copytree(base, root)
        proc = hooked(INGEST.format(root=str(root), source=str(second)), go, log, kill=stage)
        loop = maintenance_loop(str(root), go, stop)
        start_together([proc, loop], go)
        proc.communicate(timeout=120)
        passes = stop_loop(loop, stop)
        assert proc.returncode == -signal.SIGKILL and passes["passes"] >= 1, (stage, proc.returncode, passes)
        lake = Lake(root)
        assert len(lake.list_batches("d")) == (2 if stage[0] == "batches" else 1), stage
        assert_consistent(lake, "d", {str(first): ROWS, str(second): ROWS})
        lake.ingest("d", second)  # the re-run completes (or finds the batch committed)
        pd.testing.assert_frame_equal(lake.read("d"), reference.read("d"))
        pd.testing.assert_frame_equal(lake.read_quarantine("d"), reference.read_quarantine("d"))
        assert lake.vacuum("d") == []
