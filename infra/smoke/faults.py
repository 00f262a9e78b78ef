"""The faults infra/smoke.sh injects into the running topology: the MLflow server restarted
between training and scoring, a Dask worker killed while it runs a score task, and the cpu
Prefect worker killed, with its flow run, in the middle of scoring.

Each function takes the :class:`infra.smoke.run.Smoke` and reports what it did through
``smoke.say``; the checks of what followed are in :mod:`infra.smoke.checks`.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

from infra.smoke import checks

WAIT = 480.0


def restart_mlflow(smoke) -> None:
    """The MLflow server stops and starts again between training and scoring."""
    smoke.topology.stop_one("mlflow")
    smoke.topology.start_mlflow()()
    smoke.say("FAULT the MLflow server was stopped and started again (same PostgreSQL, same bucket)")


def busy_score_worker(topology, still_running: Callable[[], bool]) -> str:
    """The name of a Dask worker seen running a score task while ``still_running()``."""
    from distributed import Client

    deadline, busy = time.monotonic() + WAIT, []
    with Client(topology.dask_address, timeout=60) as client:
        while still_running() and time.monotonic() < deadline:
            busy = [a for a, keys in client.processing().items() if any("score" in str(k) for k in keys)]
            if busy:
                return client.scheduler_info()["workers"][busy[0]]["name"]
            time.sleep(0.2)
    raise checks.CheckFailed("no Dask worker was seen running a score task")


def kill_a_dask_worker_mid_score(smoke, scoring) -> None:
    """SIGKILL the process group (nanny and worker) of a Dask worker while it runs a score
    task, then start it again; the scheduler gives the task to another worker."""
    name = busy_score_worker(smoke.topology, lambda: scoring.poll() is None)
    proc = smoke.topology.procs.pop(name)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    smoke.say(f"FAULT {name} (pid {proc.pid}) killed with SIGKILL while running a score task")
    smoke.topology.start_dask_worker(int(name.rsplit("-", 1)[1]))


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_dask_idle(topology, timeout: float = 180) -> None:
    """Until no Dask worker thread runs a task: a score task orphaned by its dead flow run
    leaves the scheduler's view at once (its client is gone) but runs on to its end."""
    from distributed import Client

    def busy_threads(dask_worker) -> int:  # nested: pickled by value (the workers cannot import infra)
        return len(dask_worker.active_threads)

    deadline = time.monotonic() + timeout
    with Client(topology.dask_address, timeout=60) as client:
        while any(client.run(busy_threads).values()) and time.monotonic() < deadline:
            time.sleep(0.5)
    checks.require(time.monotonic() < deadline, f"Dask workers still busy {timeout:.0f} s after the kill")


def kill_the_cpu_worker_mid_score(smoke, run_id: str) -> tuple[str, float]:
    """The cpu worker's host dies while flow run ``run_id`` scores on Dask: SIGKILL the worker's
    process group and then its flow-run process (Prefect's process worker starts each flow run
    in a session of its own, so killing the worker's group alone leaves the run going), then
    start the worker again. Returns the run's state just after the kill and the kill's
    ``time.monotonic()``."""
    import psutil

    topology = smoke.topology
    busy = busy_score_worker(topology, lambda: not checks.flow_run(topology, run_id).state.is_final())
    worker = topology.procs.pop("worker-cpu")
    runs = psutil.Process(worker.pid).children(recursive=True)
    os.killpg(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker.wait(timeout=30)
    survivors = [p for p in runs if not _gone(p.pid)]
    for p in survivors:  # the rest of the host: the flow run's own process group
        try:
            os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile
            pass
    deadline = time.monotonic() + 30
    while not all(_gone(p.pid) for p in runs) and time.monotonic() < deadline:
        time.sleep(0.2)
    checks.require(all(_gone(p.pid) for p in runs), f"flow-run processes still alive: {[p.pid for p in runs]}")
    state = checks.flow_run(topology, run_id).state_type.value
    smoke.say(f"FAULT smoke-worker-cpu (pid {worker.pid}) killed with SIGKILL while {busy} ran a score task of its "
              f"flow run; its flow-run processes {[p.pid for p in runs]}: {len(survivors)} outlived the worker's "
              f"group (own session) and were killed too; the run is {state} in the API")
    (topology.logs / "worker-cpu.log").rename(topology.logs / "worker-cpu-killed.log")
    topology.start_worker("cpu")
    return state, killed_at
