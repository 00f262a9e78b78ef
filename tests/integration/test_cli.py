"""The ``vae-anomaly`` console script, run as a subprocess: help, exit codes, one-line errors.

Each run gets its own state through the environment (``VAE_ANOMALY_HOME``, ``VAE_ANOMALY_LAKE``,
``MLFLOW_TRACKING_URI``, ``PREFECT_HOME``), so nothing touches the project's ``.state``.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from pipelines.cli import EXIT_ANOMALIES, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODEL, EXIT_OK, EXIT_TERMINATED
from pipelines.lake import Lake

COMMANDS = ("ingest", "maintain", "train", "score", "retrain", "serve", "bench", "demo")
SCRIPT = Path(sys.executable).with_name("vae-anomaly")


@pytest.fixture
def cli_env(tmp_path) -> dict:
    """An environment whose every store is under ``tmp_path``."""
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: install the project (pip install -c constraints.txt -e '.[dev]')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "VAE_ANOMALY_"))}
    env.update(
        VAE_ANOMALY_HOME=str(tmp_path / "home"),
        VAE_ANOMALY_LAKE=str(tmp_path / "lake"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        PREFECT_HOME=str(tmp_path / "prefect"),
        OMP_NUM_THREADS="1",  # small models train much faster on one thread of a shared machine
    )
    return env


@pytest.fixture
def api_env(cli_env, prefect_harness) -> dict:
    """``cli_env`` with the session's Prefect API as ``PREFECT_API_URL``, for the tests of what a
    command does: each saves the 15-25 s of starting a temporary API. ``cli_env`` (no API URL, so
    each run starts its own temporary API, as a user's first run does) stays for the tests of
    that path: the killed-ingest tests and the ones that must exit before Prefect starts."""
    from prefect.settings import PREFECT_API_URL

    return dict(cli_env, PREFECT_API_URL=PREFECT_API_URL.value())


def vae_anomaly(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    """stderr is exactly one ``error: ...`` line, without a traceback; returns it."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]


def test_help_documents_every_command_and_the_exit_codes(cli_env):
    result = vae_anomaly(cli_env, "--help")
    assert result.returncode == EXIT_OK, result.stderr
    for command in COMMANDS:
        assert command in result.stdout
    for line in ("0  success", "2  bad input", "3  model registry", "4  score --fail-on-anomaly"):
        assert line in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli_env, command):
    result = vae_anomaly(cli_env, command, "--help")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith(f"usage: vae-anomaly {command}") and "exit codes:" in result.stdout


def test_bad_command_lines_exit_2_with_one_line(cli_env):
    for args in (["bogus"], ["score"], ["train", "tx", "--param", "max_epochs=0"], ["score", "tx", "--alias", "a", "--version", "1"]):
        result = vae_anomaly(cli_env, *args)
        assert result.returncode == EXIT_INPUT, (args, result.stderr)
        assert_one_error_line(result)


def test_score_of_an_unsafe_dataset_name_exits_2_before_any_model_lookup(cli_env):
    result = vae_anomaly(cli_env, "score", "../../etc")
    assert result.returncode == EXIT_INPUT
    assert "invalid dataset name '../../etc'" in assert_one_error_line(result)


def test_ingest_of_a_missing_file_exits_2(cli_env, tmp_path):
    missing = tmp_path / "nope.csv"
    result = vae_anomaly(cli_env, "ingest", "transactions", str(missing))
    assert result.returncode == EXIT_INPUT
    assert assert_one_error_line(result) == f"error: no such file: {missing}"


@pytest.mark.slow
def test_ingest_of_a_retyped_column_exits_2_naming_it(api_env, tmp_path, samples_dir):
    Lake(api_env["VAE_ANOMALY_LAKE"]).ingest("transactions", samples_dir / "transactions_batch1.csv")
    retyped = tmp_path / "retyped.csv"
    retyped.write_text(
        "txn_id,amount,n_items,category,channel,is_foreign,card_age_days,hour,risk_score\n"
        + "".join(f"{900000 + i},12.5,lots,fuel,pos,false,100,{i % 24},0.1\n" for i in range(30))
    )
    result = vae_anomaly(api_env, "ingest", "transactions", str(retyped))
    assert result.returncode == EXIT_INPUT
    line = assert_one_error_line(result)
    assert "column 'n_items'" in line and "retyped" in line
    assert len(Lake(api_env["VAE_ANOMALY_LAKE"]).list_batches("transactions")) == 1  # nothing committed


def prefect_started(env: dict) -> bool:
    """Whether a run started Prefect's API (its database appears in ``PREFECT_HOME``)."""
    return any(Path(env["PREFECT_HOME"]).glob("*.db"))


@pytest.mark.parametrize("command", ["score", "report", "threshold", "retrain", "maintain"])
def test_a_dataset_without_batches_exits_2_before_prefect_starts(cli_env, command):
    extra = ["--from-reviews"] if command == "threshold" else []
    result = vae_anomaly(cli_env, command, "nothing-here", *extra)
    assert result.returncode == EXIT_INPUT, result.stderr
    line = assert_one_error_line(result)
    assert "dataset 'nothing-here' has no committed batches" in line and "vae-anomaly ingest" in line
    assert not prefect_started(cli_env)


def test_maintain_refuses_bad_durations_with_one_line_before_prefect_starts(cli_env):
    for args, says in ((["--retention", "30m"], "retention '30m': must be whole hours"),
                       (["--retention", "0h"], "retention '0h': at least 1h"),
                       (["--reports-older-than", "90 days"], "duration '90 days': expected a whole number and a unit")):
        result = vae_anomaly(cli_env, "maintain", *args)
        assert result.returncode == EXIT_INPUT, (args, result.stderr)
        assert says in assert_one_error_line(result)
    assert not prefect_started(cli_env)


@pytest.mark.slow
def test_maintain_compacts_every_dataset_of_the_lake_and_prints_what_it_did(api_env, tmp_path):
    lake = Lake(api_env["VAE_ANOMALY_LAKE"])
    for n in range(3):
        (tmp_path / f"{n}.csv").write_text(f"id,amount\n{n},1.5\n{n + 10},2.5\n")
        lake.ingest("a", tmp_path / f"{n}.csv")
    lake.ingest("b", tmp_path / "0.csv")
    rows = lake.read("a")
    result = vae_anomaly(api_env, "maintain", "--retention", "2h", "--reports-older-than", "90d", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    done = {d["dataset"]: d for d in json.loads(result.stdout)["datasets"]}
    assert sorted(done) == ["a", "b"] and done["a"]["retention_hours"] == 2
    batches = next(t for t in done["a"]["tables"] if t["table"] == "batches")
    assert (batches["files_before"], batches["files_after"], batches["checkpoint_version"]) == (3, 1, batches["version_after"])
    assert done["a"]["reports_older_than_hours"] == 90 * 24 and done["a"]["reports_pruned"] == []
    assert lake.read("a").equals(rows)


@pytest.mark.slow
def test_score_without_a_model_exits_3_before_prefect_starts(cli_env, samples_dir):
    Lake(cli_env["VAE_ANOMALY_LAKE"]).ingest("transactions", samples_dir / "transactions_batch1.csv")
    result = vae_anomaly(cli_env, "score", "transactions")
    assert result.returncode == EXIT_MODEL
    line = assert_one_error_line(result)
    assert "'transactions'" in line and "champion" in line
    for args in (["retrain", "transactions", "--model-name", "txn-typo"], ["report", "transactions", "--version", "9"]):
        result = vae_anomaly(cli_env, *args)
        assert result.returncode == EXIT_MODEL, (args, result.stderr)
        assert "txn-typo" in assert_one_error_line(result) or "version 9" in result.stderr
    assert not prefect_started(cli_env)


@pytest.mark.slow
def test_train_then_score_with_fail_on_anomaly_exits_4(api_env, samples_dir):
    lake = Lake(api_env["VAE_ANOMALY_LAKE"])
    batch = lake.ingest("transactions", samples_dir / "transactions_batch1.csv").batch_id
    trained = vae_anomaly(api_env, "train", "transactions", "--exclude", "txn_id", "--param", "max_epochs=5", "--json")
    assert trained.returncode == EXIT_OK, trained.stderr
    model = json.loads(trained.stdout)
    assert model["version"] == "1" and "champion" in model["aliases"]

    scored = vae_anomaly(api_env, "score", "transactions", "--fail-on-anomaly", "--json")
    assert scored.returncode == EXIT_ANOMALIES, scored.stderr  # 1% of the sample rows are injected anomalies
    summary = json.loads(scored.stdout)
    assert [b["batch_id"] for b in summary["scored"]] == [batch] and summary["anomalies"] > 0
    assert set(lake.read_scores("transactions")["batch_id"]) == {batch}

    again = vae_anomaly(api_env, "score", "transactions", "--fail-on-anomaly", "--json")
    assert again.returncode == EXIT_OK, again.stderr  # nothing new to score, nothing flagged
    assert json.loads(again.stdout)["skipped"] == [batch]


@pytest.mark.slow
def test_score_prints_cell_values_that_look_like_markup_as_they_are(api_env, tmp_path):
    """A category ``[/]`` made `score` exit 1 with MarkupError after committing the scores."""
    rng = np.random.default_rng(0)
    n = 400
    amount = np.round(rng.normal(50, 5, n), 2)
    channel = rng.choice(["pos", "web"], n).astype(object)
    amount[:4] = [80.0, 82.0, 78.0, 81.0]  # flagged, with their unseen channel a large share of the score
    channel[:4] = ["[/]", "[link=https://evil.example]x[/link]", "[/]", "[link=https://evil.example]x[/link]"]
    source = tmp_path / "markup.csv"
    pa_csv.write_csv(pa.table({"amount": amount, "channel": channel.astype(str)}), source)
    Lake(api_env["VAE_ANOMALY_LAKE"]).ingest("markup", source)
    trained = vae_anomaly(api_env, "train", "markup", "--param", "max_epochs=5")
    assert trained.returncode == EXIT_OK, trained.stderr

    scored = vae_anomaly(api_env, "score", "markup")  # tables, not JSON
    assert scored.returncode == EXIT_OK, scored.stderr
    assert "channel='[/]'" in scored.stdout or "channel='[link=https://evil.example]x[/link]'" in scored.stdout
    assert "\x1b]8;" not in scored.stdout


def _temporary_api(cli: psutil.Process):
    """The uvicorn child of the CLI (Prefect's temporary API), or ``None``."""
    for child in cli.children(recursive=True):
        try:
            if "uvicorn" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """1M rows: an ingest of it is still running a few seconds after the temporary API is up."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    rng = np.random.default_rng(0)
    n = 1_000_000
    pa_csv.write_csv(pa.table({"a": rng.normal(size=n), "b": rng.integers(0, 100, n), "c": rng.choice(["x", "y"], n)}), path)
    return path


#: exit code and stderr line of a CLI ended by each signal (SIGKILL: none, it runs no code)
EXPECTED_ENDINGS = {
    signal.SIGTERM: (EXIT_TERMINATED, "error: terminated (SIGTERM)"),
    signal.SIGINT: (EXIT_INTERRUPTED, "error: interrupted"),
}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_killed_ingest_leaves_no_process_behind(cli_env, big_csv, signum):
    """Killing the CLI mid-ingest ends Prefect's temporary API (and every other child) with it."""
    proc = subprocess.Popen([str(SCRIPT), "ingest", "big", str(big_csv)], env=cli_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started: list[psutil.Process] = []
    try:
        cli = psutil.Process(proc.pid)
        api = _wait_for(lambda: _temporary_api(cli), 300, "the temporary Prefect API to start")
        port = int(api.cmdline()[api.cmdline().index("--port") + 1])
        _wait_for(lambda: _answers(port), 300, f"the temporary API to listen on {port}")
        started = cli.children(recursive=True)  # the API and the watchdog at least
        assert proc.poll() is None, "the ingest ended before it could be killed; use a bigger file"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        if signum in EXPECTED_ENDINGS:
            code, line = EXPECTED_ENDINGS[signum]
            assert proc.returncode == code, stderr
            assert assert_one_error_line(subprocess.CompletedProcess([], code, "", stderr)) == line
        else:
            assert proc.returncode == -signal.SIGKILL
        _, alive = psutil.wait_procs(started, timeout=60)
        assert alive == [], [(p.pid, p.cmdline()) for p in alive]
        assert not _answers(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in started:
            if child.is_running():
                child.kill()


@pytest.mark.slow
def test_the_score_flows_dask_cluster_listens_on_loopback_only():
    """`score --workers N`: the scheduler's HTTP server (the dashboard when bokeh is installed) and
    every other socket of the cluster listen on 127.0.0.1, not on 0.0.0.0:8787."""
    from distributed import LocalCluster

    from pipelines.flows.score import task_runner

    kwargs = dict(task_runner(1, None).cluster_kwargs)
    with LocalCluster(**kwargs) as cluster:
        assert cluster.scheduler.http_server.address == "127.0.0.1"
        processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
        listening = [c.laddr.ip for p in processes for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(ip in ("127.0.0.1", "::1") for ip in listening), listening
