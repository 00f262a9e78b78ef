"""The project's Prefect automation on a real server: a flow run whose heartbeats stop is
marked Crashed.

A worker that dies with its flow run (a host lost, a container evicted, a process group
killed) leaves the run RUNNING for ever: nothing reports its end, and the deployment's
concurrency slot (one run at a time per deployment, prefect.yaml) stays taken, so later runs
wait behind it. Prefect's engine sends a ``prefect.flow-run.heartbeat`` event every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (180 by default, 30 at least) while a flow runs;
the proactive trigger below fires when a run's heartbeat is followed by neither another one
nor a final state within ``within`` seconds, and moves the run to CRASHED (not forced: a run
that finished meanwhile stays as it is). That frees the slot; the next run of the deployment
(the schedule's, or ``prefect deployment run``) scores what the crashed one did not commit.

``vae-anomaly automations`` creates it, or updates it when one of that name exists (the
recipe of Prefect's "Detect zombie flows" guide). Prefect Cloud has a managed equivalent.
"""
from __future__ import annotations

from typing import Optional

CRASH_ZOMBIES = "vae-anomaly: crash flow runs whose heartbeats stopped"
#: ``within`` is this many heartbeat periods unless given.
HEARTBEATS_MISSED = 3
FINAL_EVENTS = ("prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed")


def heartbeat_seconds() -> Optional[int]:
    """Prefect's flow-run heartbeat period (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``), or None when off."""
    from prefect.settings import get_current_settings

    return get_current_settings().flows.heartbeat_frequency


def crash_zombies(within: float):
    """The automation: after a flow run's heartbeat, expect another (or a final state) within
    ``within`` seconds, per flow run; otherwise change that run's state to CRASHED."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=CRASH_ZOMBIES, enabled=True, tags=["vae-anomaly"],
        description=f"A flow run with no heartbeat for {within:g} s is marked Crashed (its worker died with it).",
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {within:g} s: its worker or host died with it")],
    )


def ensure_automations(within: Optional[float] = None) -> dict:
    """Create the automation on ``PREFECT_API_URL``'s server, or update the one of that name.

    Parameters
    ----------
    within : float, optional
        Seconds without a heartbeat before a run is marked Crashed; more than one heartbeat
        period. Defaults to :data:`HEARTBEATS_MISSED` periods.

    Returns
    -------
    dict
        ``name``, ``id``, ``within_seconds``, ``heartbeat_seconds`` and ``action``
        (``created`` or ``updated``).

    Raises
    ------
    ValueError
        No ``PREFECT_API_URL``, heartbeats off, or ``within`` not longer than their period.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ValueError("PREFECT_API_URL is not set: an automation belongs on a Prefect server, not a temporary API")
    period = heartbeat_seconds()
    if period is None:
        raise ValueError("flow-run heartbeats are off (PREFECT_FLOWS_HEARTBEAT_FREQUENCY): the automation would crash every run")
    within = float(within) if within is not None else float(HEARTBEATS_MISSED * period)
    if within <= period:
        raise ValueError(f"--within {within:g} s must be longer than the heartbeat period ({period} s)")
    automation = crash_zombies(within)
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(CRASH_ZOMBIES)
        for extra in found[1:]:  # one of that name, whatever happened before
            client.delete_automation(extra.id)
        if found:
            client.update_automation(found[0].id, automation)
            automation_id, action = found[0].id, "updated"
        else:
            automation_id, action = client.create_automation(automation), "created"
    return {"name": CRASH_ZOMBIES, "id": str(automation_id), "within_seconds": within,
            "heartbeat_seconds": period, "action": action}
