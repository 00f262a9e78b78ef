"""The ``vae-anomaly`` console script, run as a subprocess: help, exit codes, one-line errors.

Each run gets its own state through the environment (``VAE_ANOMALY_HOME``, ``VAE_ANOMALY_LAKE``,
``MLFLOW_TRACKING_URI``, ``PREFECT_HOME``), so nothing touches the project's ``.state``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import EXIT_ANOMALIES, EXIT_INPUT, EXIT_MODEL, EXIT_OK
from pipelines.lake import Lake

COMMANDS = ("ingest", "train", "score", "retrain", "serve", "bench", "demo")
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


def test_ingest_of_a_missing_file_exits_2(cli_env, tmp_path):
    missing = tmp_path / "nope.csv"
    result = vae_anomaly(cli_env, "ingest", "transactions", str(missing))
    assert result.returncode == EXIT_INPUT
    assert assert_one_error_line(result) == f"error: no such file: {missing}"


@pytest.mark.slow
def test_ingest_of_a_retyped_column_exits_2_naming_it(cli_env, tmp_path, samples_dir):
    Lake(cli_env["VAE_ANOMALY_LAKE"]).ingest("transactions", samples_dir / "transactions_batch1.csv")
    retyped = tmp_path / "retyped.csv"
    retyped.write_text(
        "txn_id,amount,n_items,category,channel,is_foreign,card_age_days,hour,risk_score\n"
        + "".join(f"{900000 + i},12.5,lots,fuel,pos,false,100,{i % 24},0.1\n" for i in range(30))
    )
    result = vae_anomaly(cli_env, "ingest", "transactions", str(retyped))
    assert result.returncode == EXIT_INPUT
    line = assert_one_error_line(result)
    assert "column 'n_items'" in line and "retyped" in line
    assert len(Lake(cli_env["VAE_ANOMALY_LAKE"]).list_batches("transactions")) == 1  # nothing committed


@pytest.mark.slow
def test_score_without_a_model_exits_3(cli_env, samples_dir):
    Lake(cli_env["VAE_ANOMALY_LAKE"]).ingest("transactions", samples_dir / "transactions_batch1.csv")
    result = vae_anomaly(cli_env, "score", "transactions")
    assert result.returncode == EXIT_MODEL
    line = assert_one_error_line(result)
    assert "'transactions'" in line and "champion" in line


@pytest.mark.slow
def test_train_then_score_with_fail_on_anomaly_exits_4(cli_env, samples_dir):
    lake = Lake(cli_env["VAE_ANOMALY_LAKE"])
    batch = lake.ingest("transactions", samples_dir / "transactions_batch1.csv").batch_id
    trained = vae_anomaly(cli_env, "train", "transactions", "--exclude", "txn_id", "--param", "max_epochs=5", "--json")
    assert trained.returncode == EXIT_OK, trained.stderr
    model = json.loads(trained.stdout)
    assert model["version"] == "1" and "champion" in model["aliases"]

    scored = vae_anomaly(cli_env, "score", "transactions", "--fail-on-anomaly", "--json")
    assert scored.returncode == EXIT_ANOMALIES, scored.stderr  # 1% of the sample rows are injected anomalies
    summary = json.loads(scored.stdout)
    assert [b["batch_id"] for b in summary["scored"]] == [batch] and summary["anomalies"] > 0
    assert set(lake.read_scores("transactions")["batch_id"]) == {batch}

    again = vae_anomaly(cli_env, "score", "transactions", "--fail-on-anomaly", "--json")
    assert again.returncode == EXIT_OK, again.stderr  # nothing new to score, nothing flagged
    assert json.loads(again.stdout)["skipped"] == [batch]
