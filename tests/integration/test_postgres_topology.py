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
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipelines.lake import Lake

from server_processes import (
    BIN, PG_BINARIES, PG_OS_USER, Postgres, clean_environ, free_port, mlflow_command, psycopg2_module, query,
    run_vae_anomaly, start_process, stop_process, tables, wait_http,
)

pytestmark = pytest.mark.slow

DATASET = "transactions"


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
    psycopg2_module()

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
