"""Prefect deployments: hourly scoring, nightly retraining and nightly lake maintenance, one
schedule per dataset.

Three deployments, whatever the number of datasets:

- ``scheduled-scoring`` of the ``score`` flow, cron ``0 * * * *`` (hourly) by default;
- ``nightly-retraining`` of the ``retrain`` flow, cron ``0 2 * * *`` by default;
- ``nightly-maintenance`` of the ``maintain`` flow, cron ``0 3 * * *`` by default (compaction,
  checkpoints, log retention: :mod:`pipelines.lake.maintenance`; safe beside a scoring run).

Each carries one cron schedule per dataset, whose ``parameters`` name the dataset (Prefect
merges a schedule's parameters over the deployment's when it creates the run), so adding a
dataset adds a schedule, not a deployment. With a single dataset it is also the deployments'
default parameter, so an ad-hoc run needs no arguments.

Two ways to run them:

- :func:`serve_all` (``vae-anomaly serve DATASET ...``): this process polls the API and runs
  the flows itself, no work pool needed. Schedules need a Prefect server (the temporary API of a
  plain flow call has no scheduler), so without ``PREFECT_API_URL`` it starts a local
  ``prefect server start`` first.
- ``prefect.yaml`` at the repository root declares the same three deployments for workers
  (``gpu`` pool for retraining, ``cpu`` pool for scoring and maintenance): ``prefect deploy --all``.

The flows are imported inside the functions (the import-order rule of
:func:`pipelines.settings.apply_prefect_env`), since :func:`serve_all` may set ``PREFECT_API_URL``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pipelines.settings import get_settings

SCORING = "scheduled-scoring"
RETRAINING = "nightly-retraining"
MAINTENANCE = "nightly-maintenance"
SCORE_CRON = "0 * * * *"
RETRAIN_CRON = "0 2 * * *"
MAINTAIN_CRON = "0 3 * * *"
TIMEZONE = "UTC"
TAGS = ["vae-anomaly"]
SERVER_START_TIMEOUT = 120


def build_deployments(
    datasets: Sequence[str],
    score_cron: str = SCORE_CRON,
    retrain_cron: str = RETRAIN_CRON,
    timezone: str = TIMEZONE,
    score_parameters: Optional[dict[str, Any]] = None,
    retrain_parameters: Optional[dict[str, Any]] = None,
    maintain_cron: str = MAINTAIN_CRON,
    maintain_parameters: Optional[dict[str, Any]] = None,
) -> list:
    """The ``scheduled-scoring``, ``nightly-retraining`` and ``nightly-maintenance`` deployments
    for ``datasets``.

    Parameters
    ----------
    datasets : sequence of str
        One schedule per dataset in each deployment (``parameters={"dataset": name}``).
    score_cron, retrain_cron, maintain_cron : str
        Cron expressions of the three deployments.
    timezone : str
        IANA time zone the cron expressions are read in.
    score_parameters, retrain_parameters, maintain_parameters : dict, optional
        Default flow parameters of each deployment (e.g. ``{"workers": 4}``,
        ``{"reports_older_than": "90d"}``).

    Returns
    -------
    list of prefect.deployments.runner.RunnerDeployment
        ``[scheduled-scoring, nightly-retraining, nightly-maintenance]``, not yet applied to any
        API. Each allows one run at a time (the lake assumes one writer per dataset; a
        maintenance pass is safe beside them, :mod:`pipelines.lake.maintenance`) and names its flow by module
        path (``pipelines.flows.score.score``), so it runs wherever the package is installed.
    """
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from pipelines.flows.maintain import maintain
    from pipelines.flows.retrain import retrain
    from pipelines.flows.score import score

    names = list(dict.fromkeys(datasets))
    if not names:
        raise ValueError("name at least one dataset to schedule")

    def plan(flow: Any, name: str, cron: str, kind: str, defaults: Optional[dict], description: str):
        schedules = [
            Cron(cron, timezone=timezone, parameters={"dataset": d}, slug=f"{kind}-{d}") for d in names
        ]
        parameters = {**({"dataset": names[0]} if len(names) == 1 else {}), **(defaults or {})}
        return flow.to_deployment(
            name, schedules=schedules, parameters=parameters, concurrency_limit=1, tags=[*TAGS, kind],
            description=description, entrypoint_type=EntrypointType.MODULE_PATH,
        )

    return [
        plan(score, SCORING, score_cron, "scoring", score_parameters,
             "Score the batches each model's champion has not scored yet; PSI drift check."),
        plan(retrain, RETRAINING, retrain_cron, "retraining", retrain_parameters,
             "Train a challenger on the newest batches; promote it if it beats the champion."),
        plan(maintain, MAINTENANCE, maintain_cron, "maintenance", maintain_parameters,
             "Compact, checkpoint and clean the dataset's Delta tables; prune old reports if asked."),
    ]


def _healthy(api_url: str) -> bool:
    """True if a Prefect API answers ``/health`` at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_local_server(port: int, log_file: Path) -> tuple[str, Optional[subprocess.Popen]]:
    """A local Prefect server on 127.0.0.1:``port`` (state in ``PREFECT_HOME``).

    Reuses a server already answering there. Returns its API URL and the process this call
    started (``None`` when reused).
    """
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url):
        return api_url, None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`prefect server start` exited with {proc.returncode}; see {log_file}")
        if _healthy(api_url):
            return api_url, proc
        time.sleep(1)
    proc.terminate()
    raise RuntimeError(f"the Prefect server did not answer at {api_url} within {SERVER_START_TIMEOUT} s; see {log_file}")


def serve_all(
    datasets: Sequence[str],
    score_cron: str = SCORE_CRON,
    retrain_cron: str = RETRAIN_CRON,
    maintain_cron: str = MAINTAIN_CRON,
    port: int = 4200,
    before_serving: Optional[Callable[[], None]] = None,
    **build_options: Any,
) -> None:
    """Serve the deployments from this process until interrupted (``prefect.serve``).

    Parameters
    ----------
    datasets, score_cron, retrain_cron, maintain_cron, **build_options
        As in :func:`build_deployments`.
    port : int
        Port of the local Prefect server started when ``PREFECT_API_URL`` is unset.
    before_serving : callable, optional
        Called once Prefect is imported (the CLI adjusts logging there).
    """
    settings = get_settings()
    api_url, server = settings.prefect_api_url, None
    if api_url is None:
        api_url, server = start_local_server(port, settings.home / "prefect-server.log")
        os.environ["PREFECT_API_URL"] = api_url  # for this process (if Prefect is not imported yet) and the runs
        print(f"Prefect server and UI: {api_url.removesuffix('/api')} (state in {settings.prefect_home})", flush=True)
    try:
        from prefect import serve
        from prefect.settings import PREFECT_API_URL, temporary_settings

        if before_serving is not None:
            before_serving()
        with temporary_settings({PREFECT_API_URL: api_url}):  # in case Prefect was imported already
            deployments = build_deployments(datasets, score_cron, retrain_cron, maintain_cron=maintain_cron,
                                            **build_options)
            serve(*deployments)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
