"""The production topology (infra/docker-compose.yml) without Docker: PostgreSQL holding both the
Prefect server's database and the MLflow backend store, with real servers on 127.0.0.1.

The test starts a throw-away PostgreSQL 15 cluster (``initdb``/``pg_ctl`` as the ``postgres`` OS
user; they refuse to run as root), creates a password role owning the ``prefect`` and ``mlflow``
databases, starts ``prefect server start`` and ``mlflow server --serve-artifacts`` on them, runs
``vae-anomaly ingest``, ``train`` and ``score`` as subprocesses against those servers, then reads
PostgreSQL directly to check that the flow runs, the registered model, its ``champion`` alias
and the run's metrics live there. Every server is stopped and every folder removed, also on
failure.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipelines.lake import Lake

from server_processes import (
    BIN, clean_environ, free_port, mlflow_command, run_vae_anomaly, start_process, stop_process, tail, wait_http,
)

pytestmark = pytest.mark.slow

PG_BINARIES = ("initdb", "pg_ctl", "postgres", "runuser")
PG_OS_USER = "postgres"
DB_ROLE, DB_PASSWORD = "vae", "vae-topology-pw"  # a role with a password, as in infra/.env
DATASET = "transactions"


def _psycopg2():
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
        psycopg2 = _psycopg2()
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


@pytest.fixture
def topology() -> Iterator[dict]:
    """PostgreSQL, a Prefect server and an MLflow server on 127.0.0.1; all stopped, folders removed."""
    if os.geteuid() != 0:
        pytest.skip("starts PostgreSQL as the `postgres` OS user with runuser, which needs root")
    missing = [b for b in PG_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"PostgreSQL server binaries not on PATH: {', '.join(missing)}")
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        pytest.skip(f"no `{PG_OS_USER}` OS user to run PostgreSQL as")
    _psycopg2()

    # not pytest's tmp_path: /tmp/pytest-of-root is not traversable by the postgres user
    root = Path(tempfile.mkdtemp(prefix="vae-anomaly-pg-topology-"))
    work = root / "work"  # the servers' logs and state, the CLI's lake and home: root's
    work.mkdir()
    pg = Postgres(root / "pg")
    pg.root.mkdir()
    os.chmod(root, 0o755)  # the postgres user must reach root/pg
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        pg.start()
        pg.create_app_databases("prefect", "mlflow")
        pg_seconds = time.monotonic() - started

        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        prefect_port, mlflow_port = free_port(), free_port()
        prefect_log, mlflow_log = work / "prefect-server.log", work / "mlflow-server.log"
        prefect = start_process(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            prefect_log,
            {
                **env,
                "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("postgresql+asyncpg", "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_HOME": str(work / "prefect-server-home"),
            },
        )
        procs.append(prefect)
        mlflow = start_process(
            mlflow_command(
                "server",
                "--backend-store-uri", pg.url("postgresql", "mlflow"),
                "--serve-artifacts", "--artifacts-destination", str(work / "mlflow-artifacts"),
                "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
            ),
            mlflow_log,
            env,
        )
        procs.append(mlflow)
        prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{prefect_url}/health", prefect, prefect_log, timeout=120)
        wait_http(f"{mlflow_url}/health", mlflow, mlflow_log, timeout=120)
        yield {
            "pg": pg, "work": work, "prefect_url": prefect_url, "mlflow_url": mlflow_url,
            "artifacts": work / "mlflow-artifacts", "pg_seconds": pg_seconds,
            "servers_seconds": time.monotonic() - started,
        }
    finally:
        while procs:
            stop_process(procs.pop())
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_pipeline_state_lives_in_postgres(topology, samples_dir):
    pg, work = topology["pg"], topology["work"]
    env = clean_environ()
    env.update(
        PREFECT_API_URL=topology["prefect_url"],
        MLFLOW_TRACKING_URI=topology["mlflow_url"],
        VAE_ANOMALY_LAKE=str(work / "lake"),
        VAE_ANOMALY_HOME=str(work / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        OMP_NUM_THREADS="1",
        VAE_ANOMALY_TORCH_THREADS="1",
    )

    # the pipeline, through the CLI, against the servers (--json output must parse: against a
    # tracking server MLflow prints "View run ... at: <url>" to stdout unless told not to)
    ingested = json.loads(run_vae_anomaly(env, "ingest", DATASET, str(samples_dir / "transactions_batch1.csv"), "--json").stdout)
    batch = ingested["batch_id"]
    trained = json.loads(run_vae_anomaly(
        env, "train", DATASET, "--exclude", "txn_id", "--param", "max_epochs=10", "--json",
    ).stdout)
    assert trained["model_name"] == DATASET and trained["version"] == "1" and "champion" in trained["aliases"]
    scored = json.loads(run_vae_anomaly(env, "score", DATASET, "--json").stdout)
    assert scored["model_version"] == "1" and [b["batch_id"] for b in scored["scored"]] == [batch]

    # the scores are in the lake
    scores = Lake(env["VAE_ANOMALY_LAKE"]).read_scores(DATASET)
    assert set(scores["batch_id"]) == {batch} and len(scores) == ingested["rows_accepted"]

    # Prefect's state is in the `prefect` database: one completed run of each flow
    assert {"flow", "flow_run", "task_run"} <= tables(pg, "prefect")
    runs = query(pg, "prefect", """
        SELECT f.name, fr.state_type::text, count(*)
        FROM flow_run fr JOIN flow f ON fr.flow_id = f.id
        GROUP BY f.name, fr.state_type ORDER BY f.name
    """)
    assert runs == [("ingest", "COMPLETED", 1), ("score", "COMPLETED", 1), ("train", "COMPLETED", 1)], runs
    task_states = query(pg, "prefect", "SELECT DISTINCT state_type::text FROM task_run")
    assert task_states == [("COMPLETED",)], task_states

    # MLflow's registry and run are in the `mlflow` database
    assert {"registered_models", "model_versions", "registered_model_aliases", "runs", "metrics"} <= tables(pg, "mlflow")
    assert query(pg, "mlflow", "SELECT name FROM registered_models") == [(DATASET,)]
    assert query(pg, "mlflow", "SELECT name, version, run_id, status FROM model_versions") == [
        (DATASET, 1, trained["run_id"], "READY"),
    ]
    assert query(pg, "mlflow", "SELECT name, alias, version FROM registered_model_aliases WHERE alias = 'champion'") == [
        (DATASET, "champion", 1),
    ]
    assert query(pg, "mlflow", "SELECT name, status FROM runs WHERE run_uuid = %s", (trained["run_id"],)) == [
        (f"train-{DATASET}", "FINISHED"),
    ]
    metrics = dict(query(pg, "mlflow", "SELECT key, count(*) FROM metrics WHERE run_uuid = %s GROUP BY key", (trained["run_id"],)))
    assert {"threshold", "epochs_trained", "train_seconds"} <= set(metrics), metrics
    assert max(metrics.values()) >= 2, metrics  # per-epoch metrics: one row per epoch
    (epochs,) = query(pg, "mlflow", "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'epochs_trained'", (trained["run_id"],))
    assert epochs[0] == trained["epochs"]

    # artifacts went through the server into its destination folder, not into the CLI's home
    assert list(topology["artifacts"].rglob("MLmodel")), "no model artifacts under the server's --artifacts-destination"
