"""Fixtures for the integration tests: a real MLflow tracking server, and MLflow subprocesses.

- ``mlflow_server`` starts ``mlflow server`` once per session (on first use) with a SQLite
  backend and proxied artifacts in a temporary folder, and yields its URL. It does not change
  the environment: a test module that uses it calls ``pipelines.tracking.configure(url)``.
- ``mlflow_cli`` starts other ``mlflow`` commands (e.g. ``models serve``) as subprocesses,
  waits until they answer over HTTP, and stops them when the test ends.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Optional

import pytest

# Quiet, offline MLflow subprocesses: no artifact progress bars, no telemetry, and no server-side
# job runner (MLflow 3.17's server otherwise forks a job runner plus six huey consumers, about
# 1.5 GB of memory, for GenAI jobs these tests never use).
MLFLOW_TEST_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_command(*args: str) -> list[str]:
    """``mlflow <args>`` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "mlflow", *args]


def start_process(cmd: list[str], log_file: Path, env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (its workers are stopped with it), output to ``log_file``.

    It runs in the log file's folder, not the repository: ``python -m`` puts the working
    directory on ``sys.path``, which would let a served model import this project's packages
    instead of the copies it carries.
    """
    with open(log_file, "wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log_file.parent,
            env=_environment(env), start_new_session=True,
        )


def _environment(extra: Optional[Mapping[str, str]]) -> dict[str, str]:
    """This environment plus the test settings; this interpreter's bin folder first on PATH
    (``mlflow models serve --env-manager local`` runs ``bash -c "exec uvicorn ..."``)."""
    env = {**os.environ, **MLFLOW_TEST_ENV, **(extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def wait_http(url: str, proc: subprocess.Popen, log_file: Path, timeout: float) -> float:
    """Poll ``url`` until it answers 200; seconds waited. Fails early if ``proc`` exits."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the process exited with {proc.returncode}:\n{tail(log_file)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{tail(log_file)}")


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Terminate the process group ``proc`` leads, wait, then kill what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # workers may outlive the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=grace)


def tail(log_file: Path, chars: int = 3000) -> str:
    try:
        return log_file.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


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
