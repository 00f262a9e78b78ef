"""Helpers for tests that start servers as subprocesses (a module name of its own: `conftest`
is ambiguous when several test folders are collected together, so test modules import these
from here rather than from conftest.py)."""
from __future__ import annotations

import os
import pwd
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


def _ephemeral_low(default: int = 32768) -> int:
    """The lowest port the kernel hands out for outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range.

    ``bind(0)`` picks from the range that every outgoing connection's local port comes from, so a
    port taken that way can go to another process's connection before the server binds it (a
    smoke run once lost its Dask dashboard's port so). A random port under that range, checked
    free and not given out before by this process, can only be taken by a bind of its own."""
    import random

    high = _ephemeral_low() - 1
    low = max(1024, high - 12000)
    pick = random.SystemRandom()
    for _ in range(500):
        port = pick.randint(low, high)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no luck: the kernel's choice
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


# ---------------------------------------------------------------- a throw-away PostgreSQL cluster
PG_BINARIES = ("initdb", "pg_ctl", "postgres", "runuser")
PG_OS_USER = "postgres"
DB_ROLE, DB_PASSWORD = "vae", "vae-topology-pw"  # a role with a password, as in infra/.env


def psycopg2_module():
    """The psycopg2 module; fails the test with the install command if it is missing."""
    try:
        import psycopg2
    except ImportError:
        pytest.fail("psycopg2 is missing: install the project with its dev extra (pip install -c constraints.txt -e '.[dev]')")
    return psycopg2


class Postgres:
    """A PostgreSQL cluster in a temporary folder owned by the ``postgres`` OS user, listening on
    127.0.0.1:``port`` with its unix socket inside the folder."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log_file = root / "postgres.log"
        self.port = free_port()
        self.started = False

    def _as_postgres(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["runuser", "-u", PG_OS_USER, "--", *cmd], cwd=self.root, capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}\n{tail(self.log_file)}")
        return result

    def start(self) -> None:
        pw = pwd.getpwnam(PG_OS_USER)
        self.sockets.mkdir()
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chown(self.sockets, pw.pw_uid, pw.pw_gid)
        # superuser `postgres`: trusted on the socket only; TCP clients need a password
        self._as_postgres(
            "initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self.started = True  # from here on, stop() is needed even if start fails half-way
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if not self.started:
            return
        pid_file = self.data / "postmaster.pid"
        for mode in ("fast", "immediate"):
            if not pid_file.exists():
                return
            subprocess.run(
                ["runuser", "-u", PG_OS_USER, "--", "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"],
                cwd=self.root, capture_output=True, timeout=60,
            )
        try:  # pg_ctl could not stop it: the postmaster's pid is the file's first line
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def connect(self, database: str = "postgres", superuser: bool = False):
        """A connection in autocommit mode: as ``postgres`` over the socket, or as the app role over TCP."""
        psycopg2 = psycopg2_module()
        if superuser:
            conn = psycopg2.connect(host=str(self.sockets), port=self.port, user="postgres", dbname=database)
        else:
            conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_ROLE, password=DB_PASSWORD, dbname=database)
        conn.autocommit = True
        return conn

    def create_app_databases(self, *names: str) -> None:
        conn = self.connect(superuser=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {DB_ROLE} LOGIN PASSWORD %s", (DB_PASSWORD,))
                for name in names:
                    cur.execute(f"CREATE DATABASE {name} OWNER {DB_ROLE}")
        finally:
            conn.close()

    def url(self, driver: str, database: str) -> str:
        return f"{driver}://{DB_ROLE}:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"


def query(pg: Postgres, database: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` run on ``database`` as the app role, over TCP with its password."""
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def tables(pg: Postgres, database: str) -> set[str]:
    return {r[0] for r in query(pg, database, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
