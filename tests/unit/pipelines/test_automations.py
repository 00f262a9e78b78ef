"""pipelines.automations on a real (temporary) Prefect API: the zombie-run automation is created
once, updated in place on a second call, and refused when it could not work."""
from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.automations import CRASH_ZOMBIES, ensure_automations


def _stored():
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(CRASH_ZOMBIES)


def test_created_then_updated_in_place(prefect_harness):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 40}):
        first = ensure_automations()
        second = ensure_automations(within=75)
    assert (first["action"], first["within_seconds"], first["heartbeat_seconds"]) == ("created", 120.0, 40)
    assert (second["action"], second["id"], second["within_seconds"]) == ("updated", first["id"], 75.0)
    [automation] = _stored()
    trigger = automation.trigger
    assert automation.enabled and str(automation.id) == first["id"]
    assert trigger.posture.value == "Proactive" and trigger.within == timedelta(seconds=75)
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.for_each == {"prefect.resource.id"}
    [action] = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED" and not action.force


def test_refused_when_it_could_not_work(prefect_harness):
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}):
        with pytest.raises(ValueError, match="longer than the heartbeat period"):
            ensure_automations(within=60)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ValueError, match="PREFECT_API_URL is not set"):
            ensure_automations(within=90)
