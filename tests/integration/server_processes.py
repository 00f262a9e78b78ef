"""Helpers for tests that start servers as subprocesses (a module name of its own: `conftest`
is ambiguous when several test folders are collected together, so test modules import these
from here rather than from conftest.py)."""
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
from typing import Any, Callable, Mapping, Optional, Union

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


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    failure: Union[str, Callable[[], str]],
    interval: float = 1.0,
    alive: Optional[Callable[[], None]] = None,
) -> Any:
    """Poll ``condition()`` until it returns something truthy; return that.

    ``alive()``, if given, runs before each try (it fails the test when a process died). After
    ``timeout`` seconds the test fails with ``failure`` (a callable is called then, so it can
    read a log's tail at that moment).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(failure() if callable(failure) else failure)
        time.sleep(interval)


def exited(proc: subprocess.Popen, what: str, log_file: Path) -> Callable[[], None]:
    """An ``alive`` check for :func:`wait_until`: fails the test once ``proc`` has exited."""
    def check() -> None:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{tail(log_file)}")

    return check


def answers(url: str) -> bool:
    """True if ``url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_http(url: str, proc: subprocess.Popen, log_file: Path, timeout: float) -> float:
    """Poll ``url`` until it answers 200; seconds waited. Fails early if ``proc`` exits."""
    start = time.monotonic()
    wait_until(
        lambda: answers(url), timeout, lambda: f"{url} did not answer within {timeout:.0f} s:\n{tail(log_file)}",
        interval=0.5, alive=exited(proc, url + ": the process", log_file),
    )
    return time.monotonic() - start


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


BIN = Path(sys.executable).parent
VAE_ANOMALY = BIN / "vae-anomaly"


def clean_environ() -> dict[str, str]:
    """This environment without any Prefect, MLflow or vae-anomaly setting (a subprocess then
    sees only the servers and folders a test gives it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "VAE_ANOMALY_"))}


def run_vae_anomaly(env: Mapping[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``vae-anomaly <args>`` as a subprocess; fails the test unless it exits 0."""
    if not VAE_ANOMALY.exists():
        pytest.fail(f"{VAE_ANOMALY} is missing: install the project (pip install -c constraints.txt -e '.[dev]')")
    result = subprocess.run([str(VAE_ANOMALY), *args], env=dict(env), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"vae-anomaly {' '.join(args)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result
