"""Fixtures for the integration tests: a real MLflow tracking server, MLflow subprocesses, and
a lake of the transaction samples.

- ``mlflow_server`` starts ``mlflow server`` once per session (on first use) with a SQLite
  backend and proxied artifacts in a temporary folder, and yields its URL. It does not change
  the environment: a test module that uses it calls ``pipelines.tracking.configure(url)``.
- ``mlflow_cli`` starts other ``mlflow`` commands (e.g. ``models serve``) as subprocesses,
  waits until they answer over HTTP, and stops them when the test ends.
- ``txn_env`` ingests the three transaction sample batches into a new lake, once per test
  module, and gives the flows' ``lake_url`` and ``tracking_uri``.

The process helpers behind them live in server_processes.py.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator, Mapping, Optional

import pytest

from server_processes import free_port, mlflow_command, start_process, stop_process, wait_http

TXN_SAMPLES = ("transactions_batch1.csv", "transactions_batch2.parquet", "transactions_batch3.jsonl")


@pytest.fixture(scope="module")
def txn_env(prefect_harness, mlflow_server, tmp_path_factory, samples_dir) -> dict:
    """A new lake per test module with the three transaction sample batches, ingested through
    the ingest flow on the session's Prefect API, and the tracking server's URL:
    ``{"lake_url", "tracking_uri"}``, the keyword arguments of the flows."""
    from pipelines.flows.ingest import ingest

    lake_url = str(tmp_path_factory.mktemp("lake"))
    for name in TXN_SAMPLES:
        ingest("transactions", str(samples_dir / name), lake_url=lake_url)
    return {"lake_url": lake_url, "tracking_uri": mlflow_server}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """URL of a real MLflow tracking server (SQLite backend, proxied artifacts) for the session."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_file = root / "server.log"
    proc = start_process(
        mlflow_command(
            "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),  # clients upload through the server
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
        ),
        log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, log_file, timeout=180)
        yield url
    finally:
        stop_process(proc)


class MlflowCli:
    """Starts ``mlflow`` subcommands in their own process groups; :meth:`stop_all` ends them."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: Optional[Mapping[str, str]] = None, ready_url: str, timeout: float = 180) -> float:
        """Run ``mlflow <args>`` and wait until ``ready_url`` answers 200; seconds it took.

        On failure the test fails with the tail of the command's output.
        """
        log_file = self.log_dir / f"mlflow-{len(self.procs)}.log"
        proc = start_process(mlflow_command(*args), log_file, env)
        self.procs.append(proc)
        return wait_http(ready_url, proc, log_file, timeout)

    def stop_all(self) -> None:
        while self.procs:
            stop_process(self.procs.pop())


@pytest.fixture
def mlflow_cli(tmp_path) -> Iterator[MlflowCli]:
    """Start ``mlflow`` commands for one test (see :class:`MlflowCli`); all stopped afterwards."""
    cli = MlflowCli(tmp_path)
    try:
        yield cli
    finally:
        cli.stop_all()


@pytest.fixture
def free_tcp_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()
