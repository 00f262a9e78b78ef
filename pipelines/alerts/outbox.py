"""Sending what a claim claimed, and the one entry format of every result: shared by batch
alerts (:mod:`pipelines.alerts.batches`) and pipeline alerts (:mod:`pipelines.alerts.pipeline`)."""
from __future__ import annotations

import logging
from typing import Optional

from pipelines.alerts import deliver
from pipelines.alerts.ledger import Claim, Ledger
from pipelines.alerts.rules import AlertRule
from pipelines.alerts.secrets import mask_url

log = logging.getLogger(__name__)


def entry(rule: AlertRule, key: str, kind: str, state: str, attempts: int = 0, error: Optional[str] = None) -> dict:
    return {"rule": rule.name, "to": mask_url(rule.url), "key": key, "kind": kind, "state": state,
            "attempts": attempts, "error": error}


def deliver_claim(ledger: Ledger, rule: AlertRule, claim: Claim, title: str, body: str, attempts: int,
                  backoff_s: float) -> dict:
    """Send what ``claim`` claimed (if this run claimed it to send) and record the outcome."""
    if not claim.mine:
        return entry(rule, claim.key, claim.kind, "already")
    if claim.state != "claimed":
        return entry(rule, claim.key, claim.kind, claim.state)
    result = deliver.send(rule.url, title, body, attempts, backoff_s)
    ledger.outcome(claim, result.ok, result.attempts, result.error)
    if not result.ok:
        log.warning("alert %s of rule %s to %s did not go out after %d attempt(s): %s",
                    claim.key, rule.name, mask_url(rule.url), result.attempts, result.error)
    return entry(rule, claim.key, claim.kind, "sent" if result.ok else "failed", result.attempts, result.error)
