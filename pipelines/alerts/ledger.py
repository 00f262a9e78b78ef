"""What was sent: the claims and outcomes of alerts, ``<lake>/<dataset>/alerts_sent`` (Delta).

Exactly once per (rule, key), where the key is a batch id, ``digest:<window>``, ``stale:<batch>``
or ``failure:<flow run>``: before anything is sent, :meth:`Ledger.claim` appends one *claim* row
for the key, as a compare and swap on the table version it read (:func:`pipelines.lake.delta.cas_append`:
no delta-rs retry, so of two runs claiming at once one commit lands and the other re-reads, finds
the claim and sends nothing). The claim's state is decided from that same version: ``claimed``
(to send now), ``held`` (quiet hours or the day's budget: goes into the window's digest) or
``quiet`` (nothing over the rule's bar). After delivery one *outcome* row (``sent`` or
``failed``, with the attempts and the masked error) is appended.

A process killed (kill -9) between its claim and its outcome leaves a claim with no outcome: the
alert may or may not have gone out. It is not sent again: a claim is never retried, so nothing
is ever delivered twice, and the cost is that an alert can be lost in that window (milliseconds
to the retries' few seconds). It shows as ``unconfirmed`` in :meth:`Ledger.entries` and
``vae-anomaly alerts log``. At-least-once would need the receiver to drop duplicates by key,
which ``json://`` posts, mail and chat webhooks cannot do.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from pipelines.alerts.rules import read_table
from pipelines.lake import delta

SCHEMA = pa.schema([
    ("claim_id", pa.string()), ("at", pa.timestamp("us", tz="UTC")), ("rule", pa.string()), ("key", pa.string()),
    ("kind", pa.string()), ("state", pa.string()), ("window", pa.string()), ("content", pa.string()),
    ("attempts", pa.int64()), ("error", pa.string()),
])
CLAIM_STATES = ("claimed", "held", "quiet")
OUTCOMES = ("sent", "failed")


@dataclass(frozen=True)
class Claim:
    """One claim row; ``mine`` is False when another run (or an earlier one) holds the key."""

    claim_id: str
    at: datetime
    rule: str
    key: str
    kind: str
    state: str
    window: Optional[str]
    content: dict
    mine: bool = True


@dataclass(frozen=True)
class Decision:
    """What a claim decides: its state, the digest window of a held alert, and what to keep of it."""

    state: str
    window: Optional[str] = None
    content: Optional[dict] = None


class Ledger:
    """The alerts log of one dataset."""

    def __init__(self, lake, dataset: str):
        self.uri = lake.table_uri(dataset, "alerts_sent")
        self.options = lake.delta_options

    def rows(self, rule: Optional[str] = None) -> list[dict]:
        """Every row (of ``rule``), oldest first."""
        expr = pds.field("rule") == rule if rule is not None else None
        table = read_table(self.uri, self.options, expr)
        return sorted(table.to_pylist(), key=lambda r: (r["at"], r["claim_id"], r["state"] in OUTCOMES))

    def claims(self, rule: str, keys: Optional[set[str]] = None) -> dict[str, Claim]:
        """The claims of ``rule`` (of ``keys``), by key."""
        expr = pds.field("rule") == rule
        if keys is not None:
            expr = expr & pc.is_in(pds.field("key"), pa.array(sorted(keys), pa.string()))
        rows = read_table(self.uri, self.options, expr).to_pylist()
        return {r["key"]: _claim(r, mine=False) for r in rows if r["state"] in CLAIM_STATES}

    def claim(self, rule: str, key: str, kind: str, decide: Callable[[list[dict]], Decision],
              now: Optional[datetime] = None, attempts: int = delta.COMMIT_ATTEMPTS) -> Claim:
        """Claim ``key`` for ``rule`` unless it is claimed already (then that claim, ``mine=False``).

        ``decide`` gets the rule's rows as of the version the claim is computed from (to count
        the day's alerts) and returns the claim's :class:`Decision`. ``now`` is the claim's time
        (the day its budget counts in)."""
        for attempt in range(attempts):
            table = delta.open_table(self.uri, self.options)
            rows = ([] if table is None else
                    delta.arrow_dataset(table).to_table(filter=pds.field("rule") == rule).to_pylist())
            for r in rows:
                if r["key"] == key and r["state"] in CLAIM_STATES:
                    return _claim(r, mine=False)
            d = decide(rows)
            row = {"claim_id": uuid.uuid4().hex, "at": now or datetime.now(timezone.utc), "rule": rule, "key": key, "kind": kind,
                   "state": d.state, "window": d.window, "content": json.dumps(d.content or {}, default=str),
                   "attempts": 0, "error": None}
            if delta.cas_append(self.uri, self.options, table, pa.Table.from_pylist([row], schema=SCHEMA),
                                "alert-claim", rule=rule, key=key):
                return _claim(row, mine=True)
            time.sleep(min(0.01 * 2**attempt, 0.5))  # lost a race: re-read, look again
        raise RuntimeError(f"{self.uri}: {attempts} claims of {rule}/{key} lost to concurrent writers")

    def outcome(self, claim: Claim, sent: bool, attempts: int, error: Optional[str]) -> None:
        """Record how the delivery of ``claim`` ended (``error`` already masked)."""
        row = {"claim_id": claim.claim_id, "at": datetime.now(timezone.utc), "rule": claim.rule, "key": claim.key,
               "kind": claim.kind, "state": "sent" if sent else "failed", "window": claim.window, "content": None,
               "attempts": attempts, "error": error}
        from deltalake import CommitProperties, write_deltalake

        write_deltalake(self.uri, pa.Table.from_pylist([row], schema=SCHEMA), mode="append",
                        storage_options=self.options or None,
                        commit_properties=CommitProperties(custom_metadata={"vae_anomaly.op": "alert-outcome"},
                                                           max_commit_retries=50))

    def entries(self, rule: Optional[str] = None) -> list[dict]:
        """One entry per claim: rule, key, kind, state (``sent``, ``failed``, ``held``, ``quiet``
        or ``unconfirmed``: claimed, no outcome), when, attempts and error."""
        rows = self.rows(rule)
        outcomes = {r["claim_id"]: r for r in rows if r["state"] in OUTCOMES}
        out = []
        for r in rows:
            if r["state"] not in CLAIM_STATES:
                continue
            o = outcomes.get(r["claim_id"])
            state = r["state"] if r["state"] != "claimed" else (o["state"] if o else "unconfirmed")
            out.append({"rule": r["rule"], "key": r["key"], "kind": r["kind"], "state": state, "window": r["window"],
                        "at": r["at"].isoformat(timespec="seconds"), "attempts": o["attempts"] if o else 0,
                        "error": o["error"] if o else None})
        return out


def sent_today(rows: list[dict], now: datetime) -> int:
    """Batch alerts of a rule claimed to go out on ``now``'s UTC day (the budget's count)."""
    day = now.astimezone(timezone.utc).date()
    return sum(1 for r in rows if r["state"] == "claimed" and r["kind"] == "batch" and r["at"].astimezone(timezone.utc).date() == day)


def _claim(row: dict, mine: bool) -> Claim:
    return Claim(row["claim_id"], row["at"], row["rule"], row["key"], row["kind"], row["state"], row["window"],
                 json.loads(row["content"] or "{}"), mine)
