"""Alert rules on a Prefect server: automations that alert from the server itself, so they fire
when no code of ours runs (a dead worker, a feed that stopped). ``vae-anomaly alerts automations``
creates or updates them, and deletes those of removed rules.

- ``--on-failure``: one automation per rule that sends an alert for every flow run that ends
  Failed or Crashed, including runs the heartbeat automation marks Crashed after their worker
  died (:mod:`pipelines.automations`), which no code in the dead process could report. Prefect's
  flow-run events carry no flow parameters, so the trigger cannot pick one dataset's runs: on a
  server an ``--on-failure`` rule hears of every failed run, and the message names the run's
  dataset (its ``dataset`` parameter). Without a server the CLI alerts the rules of the run's own
  dataset (:func:`pipelines.cli.alerts.alert_failure`).
- ``--expect-every``: one automation per rule with a proactive trigger. The ingest flow emits a
  :data:`INGESTED` event for every batch it commits (:func:`emit_ingested`), whose resource is the
  dataset; the trigger starts after one and fires when no next one comes within the rule's
  ``expect_every`` (an event trigger can say "no batch for 2 h": a proactive trigger is the absence
  of an event). It fires once per silence: a new batch starts the clock again. When the automation
  is created, one such event is emitted for the dataset's newest batch, dated when it was
  ingested, so the clock runs from the last batch, not from the automation. The score flow skips
  the freshness check of a rule whose automation is on the server (:func:`automated`), so a
  silence is told once; without a server the score flow's check (and ``alerts freshness``) is the
  only one, and its ledger sends it once.

The action is Prefect's own ``SendNotification``, with the rule's URL in an Apprise notification
block (Prefect's ``SlackWebhook`` type: its URL field is a secret, and any URL that is not a Slack
webhook goes to Apprise as given, so ``json://``, ``mailto://`` and the rest work).
"""
from __future__ import annotations

import re

from pipelines.alerts.rules import AlertRule, RuleStore, duration
from pipelines.alerts.secrets import mask_url

PREFIX = "vae-anomaly: alert "  # the --on-failure automation of a rule
FRESH_PREFIX = "vae-anomaly: freshness "  # the --expect-every automation of a rule
INGESTED = "vae-anomaly.batch.ingested"
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


def dataset_resource(dataset: str) -> str:
    """The Prefect resource id of a dataset, in :data:`INGESTED` events."""
    return f"vae-anomaly.dataset.{dataset}"


def emit_ingested(dataset: str, batch_id: str, rows: int, occurred=None) -> None:
    """Emit :data:`INGESTED` for a committed batch (the freshness automations' clock); a no-op
    where Prefect emits no events. Never raises: the batch is committed whatever happens here."""
    try:
        from prefect.events import emit_event

        emit_event(event=INGESTED, resource={"prefect.resource.id": dataset_resource(dataset), "prefect.resource.name": dataset},
                   payload={"batch_id": batch_id, "rows": rows}, **({"occurred": occurred} if occurred else {}))
    except Exception:  # noqa: BLE001 - an event is a convenience for the server; the lake is the record
        pass


def freshness_automation(rule: AlertRule, block_id):
    """The automation of one ``--expect-every`` rule: after a batch of its dataset is ingested,
    expect the next within ``expect_every``; otherwise notify its block."""
    from datetime import timedelta

    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    every = duration(rule.expect_every_s)
    return AutomationCore(
        name=FRESH_PREFIX + rule.name, enabled=True, tags=["vae-anomaly", "alerts"],
        description=f"alert rule {rule.name} ({rule.dataset}): no batch ingested for {every}, to {mask_url(rule.url)}",
        trigger=EventTrigger(match=ResourceSpecification({"prefect.resource.id": dataset_resource(rule.dataset)}),
                             after={INGESTED}, expect={INGESTED}, posture=Posture.Proactive, threshold=1,
                             within=timedelta(seconds=rule.expect_every_s)),
        actions=[SendNotification(
            block_document_id=block_id,
            subject=f"[vae-anomaly] {rule.dataset}: no new batch for {every}",
            body=(f"rule {rule.name} expects a batch of {rule.dataset} every {every}; the latest batch, "
                  "{{ event.payload.batch_id }}, was ingested at {{ event.occurred }} (told by the Prefect server)."))],
    )


def automated(rules: list[AlertRule]) -> set[str]:
    """The names of ``rules`` whose freshness automation is on ``PREFECT_API_URL``'s server (none
    without a server, or when it cannot be asked): the score flow leaves their check to it."""
    fresh = [r for r in rules if r.expect_every_s is not None]
    if not fresh:
        return set()
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            return set()

        with get_client(sync_client=True) as client:
            return {r.name for r in fresh if client.read_automations_by_name(FRESH_PREFIX + r.name)}
    except Exception:  # noqa: BLE001 - a server that does not answer leaves the check to the flow
        return set()


def ensure_automations(lake) -> dict:
    """Create or update the automations (and block) of every ``--on-failure`` and
    ``--expect-every`` rule of the lake on ``PREFECT_API_URL``'s server; delete those of rules
    that are gone or no longer ask for them. Returns what was done."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ValueError("PREFECT_API_URL is not set: an automation belongs on a Prefect server; "
                         "without one the CLI alerts --on-failure rules itself and the score flow checks freshness")
    rules = [r for r in RuleStore(lake).all_rules() if r.on_failure or r.expect_every_s is not None]
    wanted, done = set(), []
    with get_client(sync_client=True) as client:
        for rule in rules:
            block_id = SlackWebhook(url=rule.url).save(block_name(rule), overwrite=True)
            made = ([failure_automation(rule, block_id)] if rule.on_failure else []) + (
                [freshness_automation(rule, block_id)] if rule.expect_every_s is not None else [])
            for automation in made:
                wanted.add(automation.name)
                found = client.read_automations_by_name(automation.name)
                for extra in found[1:]:
                    client.delete_automation(extra.id)
                if found:
                    client.update_automation(found[0].id, automation)
                    done.append({"rule": rule.name, "automation": automation.name, "action": "updated"})
                    continue
                client.create_automation(automation)
                done.append({"rule": rule.name, "automation": automation.name, "action": "created"})
                if automation.name.startswith(FRESH_PREFIX):
                    _seed_clock(lake, rule.dataset)
        for automation in client.read_automations():
            for prefix in (PREFIX, FRESH_PREFIX):
                if automation.name.startswith(prefix) and automation.name not in wanted:
                    client.delete_automation(automation.id)
                    done.append({"rule": automation.name[len(prefix):], "automation": automation.name, "action": "deleted"})
    return {"action": "automations", "automations": done}


def _seed_clock(lake, dataset: str) -> None:
    """Start a new freshness automation's clock at the dataset's newest batch (if any)."""
    from datetime import datetime, timezone

    from prefect.events.worker import EventsWorker

    records = lake.list_batches(dataset)
    if not records:
        return
    latest = records[-1]
    at = datetime.fromisoformat(latest.ingested_at.replace("Z", "+00:00"))
    emit_ingested(dataset, latest.batch_id, latest.rows_accepted, occurred=at if at.tzinfo else at.replace(tzinfo=timezone.utc))
    EventsWorker.drain_all()
