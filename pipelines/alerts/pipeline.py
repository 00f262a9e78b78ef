"""Alerts on the pipeline itself: a failed or crashed flow run (rules with ``on_failure``), and a
dataset whose batches stopped arriving (rules with ``expect_every_s``).

Both go through the same ledger as batch alerts, so each is sent once: a failure once per flow
run (``failure:<run>``), staleness once per latest batch (``stale:<batch id>``: the feed stopped
after that batch; when a new batch arrives and stops again, that is a new episode).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Optional

from pipelines.alerts import deliver, message
from pipelines.alerts.outbox import deliver_claim, entry
from pipelines.alerts.ledger import Decision, Ledger
from pipelines.alerts.rules import AlertRule, RuleStore
from pipelines.alerts.secrets import scrub

log = logging.getLogger(__name__)


def _ingested_at(record) -> datetime:
    at = datetime.fromisoformat(record.ingested_at.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def check_freshness(lake, dataset: str, rule: AlertRule, records: list, now: datetime,
                    attempts: int = deliver.ATTEMPTS, backoff_s: float = deliver.BACKOFF_S) -> list[dict]:
    """Alert ``rule`` once if the newest of ``records`` (the dataset's batches) is older than its
    ``expect_every_s``; nothing for a rule without one, or while batches keep coming."""
    if rule.expect_every_s is None:
        return []
    latest = max(records, key=_ingested_at, default=None)
    age = None if latest is None else (now - _ingested_at(latest)).total_seconds()
    if age is not None and age <= rule.expect_every_s:
        return []
    key = f"stale:{latest.batch_id if latest else '-'}"
    title, body = message.stale(dataset, rule, latest.batch_id if latest else None,
                                latest.ingested_at if latest else None, age)
    claim = Ledger(lake, dataset).claim(rule.name, key, "stale", lambda _rows: Decision("claimed", None, {"age_s": age}), now=now)
    return [deliver_claim(Ledger(lake, dataset), rule, claim, title, body, attempts, backoff_s)]


def freshness(lake, dataset: Optional[str] = None, now: Optional[datetime] = None,
              attempts: int = deliver.ATTEMPTS, backoff_s: float = deliver.BACKOFF_S) -> list[dict]:
    """:func:`check_freshness` for every rule with ``expect_every_s`` (of ``dataset``)."""
    now = now or datetime.now(timezone.utc)
    store, out = RuleStore(lake), []
    for name in [dataset] if dataset else lake.datasets():
        rules = [r for r in store.rules(name) if r.expect_every_s is not None]
        records = lake.list_batches(name) if rules else []
        for rule in rules:
            out += check_freshness(lake, name, rule, records, now, attempts, backoff_s)
    return out


def alert_failure(lake, dataset: str, flow_name: str, state: str, message_text: str, run: Optional[str] = None,
                  attempts: int = deliver.ATTEMPTS, backoff_s: float = deliver.BACKOFF_S) -> list[dict]:
    """Alert the ``on_failure`` rules of ``dataset`` that a ``flow_name`` run ended ``state``
    (Failed or Crashed), once per run. Never raises: the run's own error is what the caller reports."""
    run = run or uuid.uuid4().hex
    out, urls = [], []
    try:
        rules = [r for r in RuleStore(lake).rules(dataset) if r.on_failure]
        urls = [r.url for r in rules]
        for rule in rules:
            title, body = message.failure(dataset, flow_name, state, run, scrub(message_text, urls))
            ledger = Ledger(lake, dataset)
            claim = ledger.claim(rule.name, f"failure:{run}", "failure",
                                 lambda _rows: Decision("claimed", None, {"flow": flow_name, "state": state}))
            out.append(deliver_claim(ledger, rule, claim, title, body, attempts, backoff_s))
    except Exception as exc:  # noqa: BLE001 - a failure alert must not hide the failure itself
        log.warning("failure alert of %s could not be sent: %s", dataset, scrub(exc, urls))
        out.append({"rule": "*", "key": f"failure:{run}", "kind": "failure", "state": "failed",
                    "error": scrub(exc, urls)})
    return out


def send_sample(lake, name: str) -> dict:
    """``alerts test NAME``: send a sample alert to the rule's receiver (once, not in the ledger)."""
    from pipelines.settings import get_settings

    rule = RuleStore(lake).find(name)
    title, body = message.sample(rule, get_settings().review_url)
    result = deliver.send(rule.url, title, body, attempts=1)
    return {**entry(rule, "test", "test", "sent" if result.ok else "failed", result.attempts, result.error)}
