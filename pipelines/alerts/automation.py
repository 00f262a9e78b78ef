"""``--on-failure`` rules on a Prefect server: one automation per rule that sends, from the
server, an alert for every flow run that ends Failed or Crashed, including runs the heartbeat
automation marks Crashed after their worker died (:mod:`pipelines.automations`), which no code
in the dead process could report.

The action is Prefect's own ``SendNotification``, with the rule's URL in an Apprise notification
block (Prefect's ``SlackWebhook`` type: its URL field is a secret, and any URL that is not a Slack
webhook goes to Apprise as given, so ``json://``, ``mailto://`` and the rest work). Prefect's
flow-run events carry no flow parameters, so the trigger cannot pick one dataset's runs: on a
server an ``--on-failure`` rule hears of every failed run, and the message names the run's
dataset (its ``dataset`` parameter). Without a server the CLI alerts the rules of the run's own
dataset (:func:`pipelines.cli.alerts.alert_failure`).

``vae-anomaly alerts automations`` creates or updates them, and deletes those of removed rules.
"""
from __future__ import annotations

import re

from pipelines.alerts.rules import AlertRule, RuleStore
from pipelines.alerts.secrets import mask_url

PREFIX = "vae-anomaly: alert "
FAILED = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
SUBJECT = "[vae-anomaly] {{ flow_run.parameters.get('dataset', '?') }}: {{ flow.name }} run {{ flow_run.state.name|lower }}"
BODY = ("flow {{ flow.name }} on dataset {{ flow_run.parameters.get('dataset', '?') }} ended "
        "{{ flow_run.state.name }}: {{ flow_run.state.message }}\nrun: {{ flow_run.name }} ({{ flow_run.id }})")


def block_name(rule: AlertRule) -> str:
    """The notification block's name (lowercase letters, digits and dashes)."""
    return "vae-anomaly-alert-" + re.sub(r"[^a-z0-9-]+", "-", rule.name.lower()).strip("-")


def failure_automation(rule: AlertRule, block_id):
    """The automation of one rule: on a flow run's Failed or Crashed event, notify its block."""
    from datetime import timedelta

    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=PREFIX + rule.name, enabled=True, tags=["vae-anomaly", "alerts"],
        description=f"alert rule {rule.name} ({rule.dataset}): a failed or crashed flow run, to {mask_url(rule.url)}",
        trigger=EventTrigger(match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                             expect=set(FAILED), posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def ensure_failure_automations(lake) -> dict:
    """Create or update the automation (and block) of every ``--on-failure`` rule of the lake on
    ``PREFECT_API_URL``'s server; delete those of rules that are gone. Returns what was done."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ValueError("PREFECT_API_URL is not set: an automation belongs on a Prefect server; "
                         "without one the CLI alerts --on-failure rules itself")
    rules = [r for r in RuleStore(lake).all_rules() if r.on_failure]
    done = []
    with get_client(sync_client=True) as client:
        for rule in rules:
            block_id = SlackWebhook(url=rule.url).save(block_name(rule), overwrite=True)
            automation = failure_automation(rule, block_id)
            found = client.read_automations_by_name(automation.name)
            for extra in found[1:]:
                client.delete_automation(extra.id)
            if found:
                client.update_automation(found[0].id, automation)
                done.append({"rule": rule.name, "automation": automation.name, "action": "updated"})
            else:
                client.create_automation(automation)
                done.append({"rule": rule.name, "automation": automation.name, "action": "created"})
        wanted = {PREFIX + r.name for r in rules}
        for automation in client.read_automations():
            if automation.name.startswith(PREFIX) and automation.name not in wanted:
                client.delete_automation(automation.id)
                done.append({"rule": automation.name[len(PREFIX):], "automation": automation.name, "action": "deleted"})
    return {"action": "automations", "automations": done}
