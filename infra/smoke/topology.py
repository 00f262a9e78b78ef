"""The production topology as local processes on 127.0.0.1, for infra/smoke.sh.

PostgreSQL (a throw-away cluster), an S3 server (moto), a Prefect server and an MLflow server on
PostgreSQL (artifacts proxied into the bucket), a Dask scheduler with two workers, and one
Prefect process worker per pool. Every process runs in its own process group, is recorded by
PID and stopped by :meth:`Topology.stop`, also half-way through :meth:`Topology.start`.

The process helpers and the PostgreSQL cluster are the integration tests' own
(``tests/integration/server_processes.py``); their failures raise pytest's ``Failed``, an
exception like any other here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from server_processes import (  # noqa: E402  (after the path it is found on)
    BIN, Postgres, clean_environ, free_port, mlflow_command, start_process, stop_process, wait_http,
)

LAKE_BUCKET, ARTIFACT_BUCKET = "lake", "mlflow-artifacts"
POOLS = ("cpu", "gpu")
DASK_WORKERS = 2
# moto accepts any key; these only have to be the same everywhere
BUCKET_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "smoke-key", "AWS_SECRET_ACCESS_KEY": "smoke-secret"}
START_TIMEOUT = 180.0
HEARTBEAT_SECONDS = 30  # flow-run heartbeats (Prefect's minimum; 180 by default) for the zombie automation


class Topology:
    """The servers and workers of one smoke run, under ``root`` (a temporary folder).

    Parameters
    ----------
    root : Path
        Folder for logs, state and the PostgreSQL cluster; the caller removes it.
    """

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        self.commands: list[list[str]] = []  # every command run, as a shell user would type it
        self.pg = Postgres(root / "pg")
        self.pg.root.mkdir()
        os.chmod(root, 0o755)  # the postgres OS user must reach root/pg
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {name: free_port() for name in ("s3", "prefect", "mlflow", "dask", "dask_dashboard")}
        self.s3_url = f"http://127.0.0.1:{self.ports['s3']}"
        self.prefect_url = f"http://127.0.0.1:{self.ports['prefect']}/api"
        self.mlflow_url = f"http://127.0.0.1:{self.ports['mlflow']}"
        self.dask_address = f"tcp://127.0.0.1:{self.ports['dask']}"

    # ------------------------------------------------------------------ environments
    def base_env(self, **extra: str) -> dict[str, str]:
        """This environment without Prefect/MLflow/vae-anomaly settings; temporary files under root."""
        return {**clean_environ(), "TMPDIR": str(self.tmp), **extra}

    def bucket_env(self) -> dict[str, str]:
        """What boto3, s3fs (the lake), MLflow's S3 client and delta-rs read to reach the bucket."""
        return {
            **BUCKET_CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.s3_url,      # boto3/botocore >= 1.31, s3fs through aiobotocore
            "AWS_ENDPOINT_URL": self.s3_url,         # delta-rs (object_store)
            "AWS_ALLOW_HTTP": "true",                # delta-rs: a plain-http endpoint
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,   # MLflow's artifact repository
        }

    def app_env(self, **extra: str) -> dict[str, str]:
        """The environment of everything that runs the project's code (CLI, workers, flow runs,
        Dask workers): only the servers, the bucket and folders of this run."""
        return {
            **self.base_env(), **self.bucket_env(),
            "PREFECT_API_URL": self.prefect_url,
            "PREFECT_HOME": str(self.root / "prefect-client-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "VAE_ANOMALY_LAKE": f"s3://{LAKE_BUCKET}",
            "VAE_ANOMALY_HOME": str(self.root / "home"),
            "OMP_NUM_THREADS": "1", "VAE_ANOMALY_TORCH_THREADS": "1",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra,
        }

    # ------------------------------------------------------------------ processes
    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start ``cmd`` as ``name`` (log: logs/<name>.log); replaces a stopped one of that name."""
        proc = start_process(cmd, self.logs / f"{name}.log", env)
        self.procs[name] = proc
        self.record(cmd)
        return proc

    def record(self, cmd: list[str]) -> None:
        """Note ``cmd`` as typed: ``prefect ...`` rather than this venv's path, ``mlflow ...``
        rather than ``python -m mlflow ...``."""
        args = [str(a) for a in cmd]
        if args[:3] == [sys.executable, "-m", "mlflow"]:
            args = ["mlflow", *args[3:]]
        self.commands.append([Path(args[0]).name if args[0].startswith(str(BIN)) else args[0], *args[1:]])

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_one(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc)

    def stop(self) -> None:
        """Stop every process (last started first) and the PostgreSQL cluster."""
        for name in reversed(list(self.procs)):
            self.stop_one(name)
        self.pg.stop()

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """A command of this interpreter's bin folder (``prefect``, ``vae-anomaly``) in the
        repository root; raises with its output unless it exits 0."""
        return self.finish(self.cli_start(*args), timeout)

    def cli_start(self, *args: str) -> subprocess.Popen:
        """:meth:`cli` without waiting; :meth:`finish` waits. Recorded, so stopped on failure."""
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]], cwd=ROOT, env=self.app_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        proc.args_text = " ".join(args)
        self.record(list(args))
        self.procs[f"cli-{proc.pid}"] = proc
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            self.stop_one(f"cli-{proc.pid}")
        if proc.returncode != 0:
            raise RuntimeError(f"`{proc.args_text}` exited with {proc.returncode}:\n{out[-3000:]}\n{err[-3000:]}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # ------------------------------------------------------------------ the services
    def start(self) -> None:
        """Everything: PostgreSQL first, then the servers side by side, then what needs them;
        each waits until it answers. A worker creates its pool (``--type process``)."""
        self.pg.start()
        self.pg.create_app_databases("prefect", "mlflow")
        waits = [self.start_s3(), self.start_prefect_server(), self.start_mlflow(), self.start_dask_scheduler()]
        for wait in waits:
            wait()
        for i in range(1, DASK_WORKERS + 1):
            self.start_dask_worker(i)
        for pool in POOLS:
            self.start_worker(pool)
        from distributed import Client

        with Client(self.dask_address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(DASK_WORKERS, timeout=START_TIMEOUT)

    def _answers(self, name: str, url: str, then=None):
        """A function that waits until ``url`` of process ``name`` answers, then calls ``then``."""
        def wait() -> None:
            wait_http(url, self.procs[name], self.logs / f"{name}.log", START_TIMEOUT)
            if then is not None:
                then()
        return wait

    def start_s3(self):
        self.spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])], self.base_env())
        return self._answers("s3", f"{self.s3_url}/moto-api/", self.create_buckets)

    def create_buckets(self) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_url, region_name="us-east-1",
                          aws_access_key_id=BUCKET_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=BUCKET_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        for bucket in (LAKE_BUCKET, ARTIFACT_BUCKET):
            s3.create_bucket(Bucket=bucket)

    def start_prefect_server(self):
        env = {
            **self.base_env(),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.pg.url("postgresql+asyncpg", "prefect"),
            "PREFECT_HOME": str(self.root / "prefect-server-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            # the scheduler turns cron schedules into runs every loop; 60 s by default
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        }
        self.spawn("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                      "--port", str(self.ports["prefect"])], env)
        return self._answers("prefect-server", f"{self.prefect_url}/health")

    def start_mlflow(self):
        cmd = mlflow_command(
            "server", "--backend-store-uri", self.pg.url("postgresql", "mlflow"),
            "--serve-artifacts", "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}",
            "--host", "127.0.0.1", "--port", str(self.ports["mlflow"]), "--workers", "1",
        )
        self.spawn("mlflow", cmd, {**self.base_env(), **self.bucket_env()})
        return self._answers("mlflow", f"{self.mlflow_url}/health")

    def start_dask_scheduler(self):
        self.spawn("dask-scheduler", [
            str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.ports["dask"]),
            "--dashboard-address", f"127.0.0.1:{self.ports['dask_dashboard']}",
        ], self.base_env())
        return self._answers("dask-scheduler", f"http://127.0.0.1:{self.ports['dask_dashboard']}/health")

    def start_dask_worker(self, i: int) -> None:
        self.spawn(f"dask-worker-{i}", [
            str(BIN / "dask"), "worker", self.dask_address, "--name", f"dask-worker-{i}", "--nthreads", "1",
            "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(self.tmp / f"dask-worker-{i}"),
        ], self.app_env())

    def start_worker(self, pool: str) -> None:
        """``prefect worker start --pool POOL --type process``; the cpu worker's flow runs score
        on the Dask cluster (``VAE_ANOMALY_DASK_ADDRESS``)."""
        extra = {"VAE_ANOMALY_DASK_ADDRESS": self.dask_address} if pool == "cpu" else {}
        self.spawn(f"worker-{pool}", [
            str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", f"smoke-worker-{pool}",
        ], self.app_env(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_HEARTBEAT_SECONDS="10", **extra))
