"""The smoke run behind infra/smoke.sh: the production topology on 127.0.0.1, the pipeline run
through the Prefect deployments of prefect.yaml, and checks in each server's own store.

Exit status 0 only when every check passed; 1 when a step or check failed; 2 when this machine
cannot run it (not root, no PostgreSQL server binaries). Every process is stopped by PID and the
temporary folder removed on every exit, also on SIGTERM/SIGINT/SIGHUP; a file the run left in
the repository is a failure too.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from infra.smoke import checks, faults
from infra.smoke.topology import POOLS, ROOT, Topology
from server_processes import PG_BINARIES, PG_OS_USER, tail

DATASET = "transactions"
SCHEDULED_SCORING = "score/scheduled-scoring"
ALERT_RULE = "smoke-ops"
TRAIN_PARAMETERS = {"exclude_columns": ["txn_id"], "params": {"max_epochs": 4}}
RUN_TIMEOUT = 480
# a run whose heartbeats (every HEARTBEAT_SECONDS, Prefect's minimum: topology.py) stop this long is Crashed
ZOMBIE_SECONDS = 75
IGNORED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache"}


class Interrupted(BaseException):
    """A signal asked the smoke to stop; the cleanup still runs. A BaseException, like
    KeyboardInterrupt, so that no library's ``except Exception`` retry loop swallows it."""


def _interrupt(signum, frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def cannot_run() -> str | None:
    """Why this machine cannot run the smoke, or None."""
    if os.geteuid() != 0:
        return "needs root: PostgreSQL runs as the `postgres` OS user through runuser"
    missing = [b for b in PG_BINARIES if shutil.which(b) is None]
    if missing:
        return f"PostgreSQL server binaries not on PATH: {', '.join(missing)}"
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        return f"no `{PG_OS_USER}` OS user"
    return None


def repository_files() -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        found.update(os.path.relpath(os.path.join(folder, f), ROOT) for f in files)
    return found


class Smoke:
    """One run: a :class:`Topology`, the pipeline through the deployments, the checks."""

    def __init__(self, root: Path):
        self.topology = Topology(root)
        self.started = time.monotonic()
        self.report: list[str] = []
        self.receiver = None  # the alerts' json:// receiver (add_alert_rule)

    def say(self, line: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {line}"
        self.report.append(line)
        print(line, flush=True)

    def check(self, name: str, fn: Callable[..., str], *args) -> None:
        self.say(f"PASS {name}: {fn(self.topology, *args)}")

    # ------------------------------------------------------------------ steps
    def deploy(self):
        """``prefect deploy --all`` with prefect.yaml, its pull step pointed at this checkout
        (the file's own pull step names the image's /opt/vae-anomaly)."""
        project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
        project["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        local = self.topology.root / "prefect.yaml"
        local.write_text(yaml.safe_dump(project, sort_keys=False))
        return self.topology.cli_start("prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(local))

    def deployed(self, deploying) -> None:
        self.topology.finish(deploying)
        with checks.prefect_client(self.topology) as client:
            names = sorted(f"{client.read_flow(d.flow_id).name}/{d.name} ({d.work_pool_name})" for d in client.read_deployments())
        self.say(f"deployed from prefect.yaml: {', '.join(names)}")

    def ingest(self, sample: str) -> tuple[str, int]:
        out = json.loads(self.topology.cli("vae-anomaly", "ingest", DATASET, f"data/samples/{sample}", "--json").stdout)
        self.say(f"ingested {sample}: batch {out['batch_id']}, {out['rows_accepted']} rows into s3://lake")
        return out["batch_id"], out["rows_accepted"]

    def run_deployment(self, name: str, **parameters) -> str:
        """``prefect deployment run NAME -p k=v ... --watch``; the flow run's id."""
        return self.finish_deployment(name, self.start_deployment(name, **parameters))

    def start_deployment(self, name: str, watch: bool = True, **parameters):
        """``prefect deployment run NAME -p k=v ... [--watch]``, not waited for."""
        args = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in {"dataset": DATASET, **parameters}.items()]
        return self.topology.cli_start(
            "prefect", "deployment", "run", name, *[a for p in args for a in ("-p", p)],
            *(["--watch", "--watch-timeout", str(RUN_TIMEOUT)] if watch else []),
        )

    def finish_deployment(self, name: str, proc) -> str:
        out = self.topology.finish(proc, timeout=RUN_TIMEOUT + 60).stdout
        found = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
        checks.require(found is not None, f"no flow run id in the output of `prefect deployment run {name}`:\n{out}")
        self.say(f"ran {name}: flow run {found.group(1)}")
        return found.group(1)

    def crash_and_rerun(self, rows: dict[str, int], batch_id: str) -> None:
        """Fault: the cpu worker dies with the flow run scoring ``batch_id``; the heartbeat
        automation marks the run CRASHED (meanwhile the gpu pool retrains), no batch is
        half-written, and the next run of the deployment completes the champion's scores,
        equal to serial scoring."""
        killed = self.finish_deployment("score/scheduled-scoring", self.start_deployment("score/scheduled-scoring", watch=False))
        state, since = faults.kill_the_cpu_worker_mid_score(self, killed)
        checks.require(state == "RUNNING", f"the killed run was {state}, not RUNNING, before the automation acted")
        retraining = self.start_deployment("retrain/nightly-retraining", params=TRAIN_PARAMETERS["params"])
        faults.wait_dask_idle(self.topology)  # the killed run's score task, orphaned on Dask, runs on to its end
        self.check("the killed run's lake writes", checks.no_partial_scores, DATASET, rows, batch_id)
        self.check("the heartbeat automation", checks.crashed, killed, since, ZOMBIE_SECONDS + 90)
        retrain = self.finish_deployment("retrain/nightly-retraining", retraining)
        self.check("retraining on the gpu pool", checks.ran_on_pool, retrain, "gpu", ["cpu"])

        rerun = self.run_deployment("score/scheduled-scoring")
        self.check("the re-run on the cpu pool", checks.ran_on_pool, rerun, "cpu", ["gpu"])
        version = checks.champion(self.topology, DATASET)
        self.check(f"champion v{version}'s scores complete after the re-run", checks.scores_complete, DATASET, rows,
                   {f"{DATASET}-v{version}"})
        self.check("no partial batch after the re-run", checks.no_partial_scores, DATASET, rows, batch_id)
        self.check(f"batch {batch_id} scored as serially", checks.batch_matches_serial, DATASET, batch_id)

    def wait_for_workers(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with checks.prefect_client(self.topology) as client:
            while time.monotonic() < deadline:
                online = {p for p in POOLS if any(w.status.value == "ONLINE" for w in self._workers(client, p))}
                if online == set(POOLS):
                    self.say(f"workers online: {', '.join(f'smoke-worker-{p}' for p in POOLS)}")
                    return
                time.sleep(1)
        raise checks.CheckFailed(f"workers not online within {timeout:.0f} s:\n" + "\n".join(
            tail(self.topology.logs / f"worker-{p}.log", 1500) for p in POOLS))

    @staticmethod
    def _workers(client, pool: str) -> list:
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        try:
            return client.read_workers_for_work_pool(pool)
        except (ObjectNotFound, PrefectHTTPStatusError) as error:  # 404: the worker has not created its pool yet
            if isinstance(error, PrefectHTTPStatusError) and error.response.status_code != 404:
                raise
            return []

    @staticmethod
    def cron_runs(client, deployment: str) -> list:
        """The SCHEDULED runs the server's scheduler created for ``deployment``, soonest first."""
        from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter
        from prefect.client.schemas.sorting import FlowRunSort

        found = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [found.id]}),
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}}),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        return [r for r in runs if r.auto_scheduled]

    def hold_off_the_cron(self, horizon_minutes: int = 30) -> None:
        """Cron runs that fall due while the smoke runs would race its own runs (an hourly run at
        the top of the hour, scoring `sensors`, which it never ingests): they are cancelled once
        the scheduler has created them; later ones stay scheduled."""
        from datetime import datetime, timedelta, timezone

        from prefect.states import Cancelled

        with checks.prefect_client(self.topology) as client:
            deadline = time.monotonic() + 90
            while not self.cron_runs(client, SCHEDULED_SCORING) and time.monotonic() < deadline:
                time.sleep(2)
            horizon = datetime.now(timezone.utc) + timedelta(minutes=horizon_minutes)
            soon = [r for d in (SCHEDULED_SCORING, "retrain/nightly-retraining") for r in self.cron_runs(client, d)
                    if r.expected_start_time < horizon]
            for run in soon:
                client.set_flow_run_state(run.id, Cancelled(message="infra/smoke.sh: due during the smoke"), force=True)
        self.say(f"cron runs due before {horizon:%H:%M} UTC cancelled: {len(soon)}")

    def scheduled_run_is_picked_up(self) -> str:
        """A run the server's scheduler created from scheduled-scoring's hourly cron (tagged
        auto-scheduled) is moved to start now; the cpu worker picks it up and completes it."""
        from prefect.states import Scheduled

        with checks.prefect_client(self.topology) as client:
            runs = self.cron_runs(client, SCHEDULED_SCORING)
            mine = [r for r in runs if r.parameters.get("dataset") == DATASET]
            checks.require(bool(mine), f"the scheduler created no hourly run of scheduled-scoring for {DATASET}")
            run = mine[0]
            self.say(f"the scheduler created {len(runs)} scheduled runs of scheduled-scoring; "
                     f"{run.name} was due {run.expected_start_time.isoformat()}, moved to now")
            client.set_flow_run_state(run.id, Scheduled(), force=True)
            deadline = time.monotonic() + RUN_TIMEOUT
            while not client.read_flow_run(run.id).state.is_final() and time.monotonic() < deadline:
                time.sleep(2)
        return checks.ran_on_pool(self.topology, str(run.id), "cpu", ["gpu"]) + " (auto-scheduled from the cron)"

    def add_alert_rule(self) -> None:
        """An alert rule to a json:// receiver that this process runs on 127.0.0.1 (the flow
        runs on the workers post their batch alerts to it; the Prefect server its failure
        alerts), and its ``--on-failure`` automation on the server."""
        from pipelines.alerts.receiver import JsonReceiver

        self.receiver = JsonReceiver().start()
        url = self.receiver.url("smoke")
        self.topology.cli("vae-anomaly", "alerts", "add", DATASET, "--to", url, "--on-failure", "--name", ALERT_RULE, "--json")
        made = json.loads(self.topology.cli("vae-anomaly", "alerts", "automations", "--json").stdout)
        self.say(f"alert rule {ALERT_RULE} to {url}; vae-anomaly alerts automations: "
                 + ", ".join(f"{a['action']} {a['automation']!r}" for a in made["automations"]))

    # ------------------------------------------------------------------ the whole run
    def run(self) -> None:
        self.topology.start()
        t = self.topology
        self.say(f"up: PostgreSQL :{t.pg.port}, S3 (moto) {t.s3_url}, Prefect {t.prefect_url}, MLflow {t.mlflow_url}, "
                 f"Dask {t.dask_address} with 2 workers, process workers for pools {', '.join(POOLS)}")
        self.wait_for_workers()
        deploying = self.deploy()  # meanwhile, the automation and the data
        automating = t.cli_start("vae-anomaly", "automations", "--within", str(ZOMBIE_SECONDS), "--json")
        rows = dict(self.ingest(f"transactions_batch{i}.{ext}") for i, ext in ((1, "csv"), (2, "parquet")))
        batches = list(rows)
        self.deployed(deploying)
        made = json.loads(t.finish(automating).stdout)
        self.say(f"vae-anomaly automations: {made['action']} {made['name']!r} (Crashed after {made['within_seconds']:g} s "
                 f"without a heartbeat; heartbeats every {made['heartbeat_seconds']} s)")
        self.add_alert_rule()
        self.hold_off_the_cron()

        train = self.run_deployment("train/on-demand-training", **TRAIN_PARAMETERS)
        self.check("training on the gpu pool", checks.ran_on_pool, train, "gpu", ["cpu"])
        faults.restart_mlflow(self)
        scoring = self.start_deployment("score/scheduled-scoring")
        faults.kill_a_dask_worker_mid_score(self, scoring)
        score = self.finish_deployment("score/scheduled-scoring", scoring)
        self.check("scoring on the cpu pool", checks.ran_on_pool, score, "cpu", ["gpu"])
        self.check("scoring on the Dask cluster", checks.score_tasks_on_dask, len(batches))
        self.check("scores complete in the lake", checks.scores_complete, DATASET, rows)
        self.check("Dask scores equal serial ones", checks.scores_match_serial, DATASET, "1")

        batch, rows[batch] = self.ingest("transactions_batch3.jsonl")
        batches.append(batch)
        self.crash_and_rerun(rows, batch)
        self.say(f"PASS the hourly schedule: {self.scheduled_run_is_picked_up()}")

        self.check("alerts", checks.alerts_once, DATASET, ALERT_RULE, self.receiver)
        self.check("registry in MLflow's PostgreSQL", checks.registry_in_postgres, DATASET, 2)
        self.check("artifacts and lake in the bucket", checks.objects_in_bucket, 2, len(batches))
        self.check("README", checks.readme_is_what_ran)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/smoke.sh", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    reason = cannot_run()
    if reason:
        print(f"smoke: cannot run here: {reason}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    before = repository_files()
    root = Path(tempfile.mkdtemp(prefix="vae-anomaly-smoke-"))
    smoke, status = None, 1
    try:
        smoke = Smoke(root)
        smoke.run()
        status = 0
    except (Exception, Interrupted, pytest.fail.Exception) as error:  # (server_processes fails with pytest.fail)
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        if smoke is not None:
            for log in sorted(smoke.topology.logs.glob("*.log")):
                print(f"--- {log.name} (tail)\n{tail(log, 1200)}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        if smoke is not None:
            smoke.topology.stop()
            if smoke.receiver is not None:
                smoke.receiver.stop()
        shutil.rmtree(root, ignore_errors=True)
    left = sorted(repository_files() - before)
    if left:
        print(f"FAILED: the run left files in the repository: {left[:20]}", file=sys.stderr)
        status = 1
    if root.exists():
        print(f"FAILED: {root} could not be removed", file=sys.stderr)
        status = 1
    elapsed = time.monotonic() - smoke.started if smoke is not None else 0.0
    print(f"smoke: {'PASSED' if status == 0 else 'FAILED'} in {elapsed:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
