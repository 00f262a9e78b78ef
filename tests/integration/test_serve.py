"""`vae-anomaly serve` for real: a `prefect server` and an `mlflow server` on 127.0.0.1, the
served process as a subprocess, and the scheduled-scoring path end to end.

The test ingests a sample batch and trains a model through the CLI, starts ``vae-anomaly serve
transactions``, waits until both deployments are on the server, checks that the server's
scheduler turned the hourly cron into future SCHEDULED runs (a server service that only a real
server runs, and that a dependency upgrade can break silently: SQLAlchemy 2.1 is pinned out in
constraints.txt), then creates a run of ``scheduled-scoring`` for now and waits for the served
process to pick it up and complete it: its scores must be in the lake. Stopping serve pauses
its deployments (usually); a restarted serve must bring the schedule back.
Every process is stopped, also on failure.
"""
from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from typing import Iterator

import pytest

from pipelines.deployments import build_deployments
from pipelines.lake import Lake
from pipelines.nodes import score_label

from server_processes import (
    BIN, VAE_ANOMALY, clean_environ, exited, free_port, mlflow_command, run_vae_anomaly, start_process, stop_process,
    tail, wait_http, wait_until,
)

pytestmark = pytest.mark.slow

DATASET = "transactions"
SCHEDULER_TIMEOUT = 90  # the recently-updated-deployments loop runs every 5 s, the full one every 60 s
RUN_TIMEOUT = 120  # the runner polls every 10 s; the run itself takes a few seconds


@pytest.fixture
def servers(tmp_path) -> Iterator[dict]:
    """A Prefect server (SQLite, own PREFECT_HOME) and an MLflow server (SQLite, proxied
    artifacts), started together on free ports; both stopped afterwards."""
    procs: list[subprocess.Popen] = []
    try:
        prefect_port, mlflow_port = free_port(), free_port()
        prefect_log, mlflow_log = tmp_path / "prefect-server.log", tmp_path / "mlflow-server.log"
        prefect = start_process(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            prefect_log,
            {
                **clean_environ(),
                "PREFECT_HOME": str(tmp_path / "prefect-server-home"),  # its SQLite database is in there
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            },
        )
        procs.append(prefect)
        mlflow = start_process(
            mlflow_command(
                "server",
                "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--artifacts-destination", str(tmp_path / "mlflow-artifacts"),
                "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
            ),
            mlflow_log,
            clean_environ(),
        )
        procs.append(mlflow)
        prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{prefect_url}/health", prefect, prefect_log, timeout=120)
        wait_http(f"{mlflow_url}/health", mlflow, mlflow_log, timeout=120)
        yield {"prefect_url": prefect_url, "mlflow_url": mlflow_url, "prefect_log": prefect_log}
    finally:
        while procs:
            stop_process(procs.pop())


def test_served_scheduled_scoring_is_scheduled_and_runs(servers, tmp_path, samples_dir):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = clean_environ()
    env.update(
        PREFECT_API_URL=servers["prefect_url"],
        PREFECT_HOME=str(tmp_path / "prefect-client-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_TRACKING_URI=servers["mlflow_url"],
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        VAE_ANOMALY_LAKE=str(tmp_path / "lake"),
        VAE_ANOMALY_HOME=str(tmp_path / "home"),
        OMP_NUM_THREADS="1",
        VAE_ANOMALY_TORCH_THREADS="1",
    )
    started = time.monotonic()

    # a batch and a champion model, through the CLI against the servers
    ingested = json.loads(run_vae_anomaly(env, "ingest", DATASET, str(samples_dir / "transactions_batch1.csv"), "--json").stdout)
    trained = json.loads(run_vae_anomaly(
        env, "train", DATASET, "--exclude", "txn_id", "--param", "max_epochs=10", "--json",
    ).stdout)
    assert trained["version"] == "1" and "champion" in trained["aliases"]

    # what `serve` will register: names and crons from the module, not guessed
    scoring, retraining, _ = build_deployments([DATASET])
    [score_cron] = {s.schedule.cron for s in scoring.schedules}

    serve_log = tmp_path / "serve.log"
    serve_started_at = datetime.now(timezone.utc)
    serve = start_process([str(VAE_ANOMALY), "serve", DATASET], serve_log, env)
    try:
        alive = exited(serve, "`vae-anomaly serve`", serve_log)

        with temporary_settings({PREFECT_API_URL: servers["prefect_url"]}), get_client(sync_client=True) as client:
            # both deployments appear on the server
            stored = {}

            def both_stored() -> bool:
                for d in (scoring, retraining):
                    try:
                        stored[d.name] = client.read_deployment_by_name(f"{d.flow_name}/{d.name}")
                    except ObjectNotFound:
                        pass
                return len(stored) == 2

            wait_until(both_stored, 120, lambda: f"deployments {sorted(stored)} of 2 after 120 s:\n{tail(serve_log)}",
                       interval=0.5, alive=alive)
            deployment = stored[scoring.name]
            assert [s.schedule.cron for s in deployment.schedules] == [score_cron]
            assert all(s.active for s in deployment.schedules) and not deployment.paused
            served_seconds = time.monotonic() - started

            # the server's scheduler turns the cron into future runs
            scheduled_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
            by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))

            def auto_scheduled() -> list:
                runs = client.read_flow_runs(flow_run_filter=scheduled_filter, deployment_filter=by_deployment)
                return [r for r in runs if r.auto_scheduled]

            future = wait_until(
                auto_scheduled, SCHEDULER_TIMEOUT,
                lambda: f"no auto-scheduled run of {scoring.name} after {SCHEDULER_TIMEOUT} s; "
                        f"Prefect server log:\n{tail(servers['prefect_log'])}",
                alive=alive,
            )
            times = sorted(r.expected_start_time for r in future)
            # hourly, on the hour, after serve started (not necessarily after now: the first may be
            # due already when the test runs seconds before the hour)
            assert all(t > serve_started_at and (t.minute, t.second, t.microsecond) == (0, 0, 0) for t in times), times
            assert len(set(times)) == len(times)
            assert all(r.parameters == {"dataset": DATASET} for r in future), [r.parameters for r in future]
            scheduled_seconds = time.monotonic() - started

            # a run for now: the served process picks it up and scores the batch
            created = client.create_flow_run_from_deployment(deployment.id)

            def finished():
                current = client.read_flow_run(created.id)
                return current if current.state is not None and current.state.is_final() else None

            run = wait_until(
                finished, RUN_TIMEOUT,
                lambda: f"run {created.name} not finished after {RUN_TIMEOUT} s:\n{tail(serve_log)}", alive=alive,
            )
            assert run.state.is_completed(), f"run {run.name} ended {run.state_name}: {run.state.message}\n{tail(serve_log)}"
            assert run.parameters == {"dataset": DATASET}
            assert run.deployment_id == deployment.id
    finally:
        stop_process(serve)

    scores = Lake(env["VAE_ANOMALY_LAKE"]).read_scores(DATASET)
    assert len(scores) == ingested["rows_accepted"]
    assert set(scores["batch_id"]) == {ingested["batch_id"]}
    assert set(scores["model_version"]) == {score_label(DATASET, trained["version"])}
    assert run.name in serve_log.read_text(errors="replace"), tail(serve_log)  # run in (and logged by) the served process
    scored_seconds = time.monotonic() - started

    # stopping serve may pause its deployments (Prefect's pause_on_shutdown, when the shutdown
    # gets that far) and drop their future runs; a supervisor that starts it again must get the
    # schedule back either way
    with temporary_settings({PREFECT_API_URL: servers["prefect_url"]}), get_client(sync_client=True) as client:
        paused_after_stop = client.read_deployment(deployment.id).paused
        restart_log = tmp_path / "serve-restart.log"
        serve = start_process([str(VAE_ANOMALY), "serve", DATASET], restart_log, env)
        try:
            wait_until(
                lambda: not client.read_deployment(deployment.id).paused and auto_scheduled(),
                SCHEDULER_TIMEOUT + 60,
                lambda: f"after a restart: paused={client.read_deployment(deployment.id).paused}, "
                        f"{len(auto_scheduled())} scheduled runs\n{tail(restart_log)}",
                alive=exited(serve, "restarted `vae-anomaly serve`", restart_log),
            )
        finally:
            stop_process(serve)
    print(
        f"served after {served_seconds:.1f} s, scheduled after {scheduled_seconds:.1f} s, "
        f"scored after {scored_seconds:.1f} s, paused after stop: {paused_after_stop}, "
        f"rescheduled after a restart at {time.monotonic() - started:.1f} s"
    )
