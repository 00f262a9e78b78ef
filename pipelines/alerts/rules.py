"""Alert rules: what to tell whom about a dataset, and the lake table that keeps them.

A rule is stored in the dataset's own Delta table ``<lake>/<dataset>/alert_rules``, next to its
verdicts (``feedback``), for the same reasons: every process that scores the dataset (a local
CLI, a worker in a container, a Kubernetes Job) already reads this lake and nothing else, so the
rules need no second store to be deployed and kept in step; and a rule is data that people
change while the pipeline runs, which settings (read once, at start) are not. Like verdicts the
table is append-only: ``alerts add`` appends an ``add`` row, ``alerts remove`` a ``remove`` row,
and a rule is its latest row, so the history of who changed what stays.

The URL is stored as given, since it is what Apprise needs to deliver; whoever may read the
lake may read it. Everything that shows a rule shows it masked (:mod:`pipelines.alerts.secrets`).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, time, timedelta, timezone
from typing import Any, Optional

import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from pipelines.alerts.secrets import mask_url
from pipelines.lake.delta import arrow_dataset, open_table
from pipelines.lake.errors import LakeError
from pipelines.lake.validation import check_name

SCHEMA = pa.schema([
    ("action_id", pa.string()), ("at", pa.timestamp("us", tz="UTC")), ("action", pa.string()),
    ("name", pa.string()), ("dataset", pa.string()), ("url", pa.string()),
    ("min_items", pa.int64()), ("min_score", pa.float64()), ("min_p", pa.float64()),
    ("quiet", pa.string()), ("per_day", pa.int64()), ("on_failure", pa.bool_()),
    ("expect_every_s", pa.float64()), ("created_at", pa.timestamp("us", tz="UTC")),
])
_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AlertError(ValueError):
    """A rule that cannot be stored or found (bad URL, bar, quiet hours, duplicate name)."""


def parse_quiet(text: str) -> tuple[time, time]:
    """``HH:MM-HH:MM`` (UTC) as (start, end); the window may wrap past midnight (``22:00-07:00``)."""
    m = _QUIET.match(text.strip())
    if not m or m.group(1, 2) == m.group(3, 4):
        raise AlertError(f"--quiet {text!r}: expected HH:MM-HH:MM in UTC with two different times, e.g. 22:00-07:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return time(h1, m1), time(h2, m2)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` as seconds (> 0)."""
    m = _DURATION.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise AlertError(f"--expect-every {text!r}: expected a positive number and a unit, e.g. 30m, 2h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def duration(seconds: float) -> str:
    """Seconds in the largest unit of :func:`parse_duration` that keeps them short: ``2 h``, ``30 m``, ``10 s``."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit]:
            return f"{seconds / _UNITS[unit]:.3g} {unit}"
    return f"{seconds:.3g} s"


def quiet_window(quiet: Optional[str], now: datetime) -> Optional[str]:
    """The quiet window ``now`` falls in, named by the UTC date it began on (``quiet:2026-12-07``),
    or None outside quiet hours (or with none set)."""
    if not quiet:
        return None
    start, end = parse_quiet(quiet)
    now = now.astimezone(timezone.utc)
    t = now.time()
    if start < end:
        return f"quiet:{now.date()}" if start <= t < end else None
    if t >= start:
        return f"quiet:{now.date()}"
    return f"quiet:{now.date() - timedelta(days=1)}" if t < end else None


@dataclass(frozen=True)
class AlertRule:
    """One rule: where to send (``url``, an Apprise URL) and when.

    ``min_items`` new items over the bar make an alert; the bar is ``min_score`` (anomaly score at
    least), ``min_p`` (p-value at most) or, with neither, the model's own flag. ``quiet``
    (``HH:MM-HH:MM`` UTC) holds alerts for a digest after it; ``per_day`` alerts a UTC day at most,
    the rest in one digest the next day. ``on_failure`` also alerts a failed or crashed flow run of
    the dataset; ``expect_every_s`` alerts when no batch was ingested for that long.
    """

    name: str
    dataset: str
    url: str
    min_items: int = 1
    min_score: Optional[float] = None
    min_p: Optional[float] = None
    quiet: Optional[str] = None
    per_day: Optional[int] = None
    on_failure: bool = False
    expect_every_s: Optional[float] = None
    created_at: Optional[datetime] = None

    def check(self) -> "AlertRule":
        """This rule, or an :class:`AlertError` saying what is wrong with it."""
        try:
            check_name("alert rule name", self.name)
            check_name("dataset name", self.dataset)
        except LakeError as exc:
            raise AlertError(str(exc)) from None
        import apprise

        if not apprise.Apprise.instantiate(self.url, suppress_exceptions=True):
            raise AlertError(f"rule {self.name!r}: {mask_url(self.url)} is not a URL Apprise can send to "
                             "(see https://github.com/caronc/apprise/wiki; e.g. json://host/path, mailto://, slack://)")
        if self.min_items < 1:
            raise AlertError(f"rule {self.name!r}: --min-items must be at least 1, got {self.min_items}")
        if self.min_score is not None and self.min_p is not None:
            raise AlertError(f"rule {self.name!r}: give --min-score or --min-p, not both")
        if self.min_p is not None and not 0 < self.min_p <= 1:
            raise AlertError(f"rule {self.name!r}: --min-p must be in (0, 1], got {self.min_p}")
        if self.per_day is not None and self.per_day < 1:
            raise AlertError(f"rule {self.name!r}: --alerts-per-day must be at least 1, got {self.per_day}")
        if self.expect_every_s is not None and self.expect_every_s <= 0:
            raise AlertError(f"rule {self.name!r}: --expect-every must be positive")
        if self.quiet:
            parse_quiet(self.quiet)
        return self

    def bar(self) -> str:
        """The rule's bar in words."""
        which = (f"score >= {self.min_score:g}" if self.min_score is not None
                 else f"p <= {self.min_p:g}" if self.min_p is not None else "flagged by the model")
        return f"{self.min_items}+ new item(s) {which}"

    def public(self) -> dict[str, Any]:
        """The rule as ``alerts list`` and results show it: the URL masked."""
        out = asdict(self)
        out["url"] = mask_url(self.url)
        out["bar"] = self.bar()
        out["created_at"] = None if self.created_at is None else self.created_at.isoformat(timespec="seconds")
        return out


def read_table(uri: str, options: Optional[dict], filter_expr=None) -> pa.Table:
    """A Delta table's rows (an empty table if there is none yet)."""
    table = open_table(uri, options or {})
    if table is None:
        return pa.table({})
    return arrow_dataset(table).to_table(filter=filter_expr)


class RuleStore:
    """The alert rules of the datasets of one lake (:class:`pipelines.lake.Lake`)."""

    def __init__(self, lake):
        self.lake = lake

    def _uri(self, dataset: str) -> str:
        return self.lake.table_uri(dataset, "alert_rules")

    def rules(self, dataset: str) -> list[AlertRule]:
        """The rules of ``dataset`` in force (latest action per name, removed ones left out)."""
        rows = read_table(self._uri(dataset), self.lake.delta_options).to_pylist()
        latest: dict[str, dict] = {}
        for row in sorted(rows, key=lambda r: (r["at"], r["action_id"])):
            latest[row["name"]] = row
        return [_rule(r) for r in latest.values() if r["action"] == "add"]

    def all_rules(self) -> list[AlertRule]:
        """Every dataset's rules, by dataset and name."""
        return sorted((r for d in self.lake.datasets() for r in self.rules(d)), key=lambda r: (r.dataset, r.name))

    def find(self, name: str) -> AlertRule:
        """The rule called ``name`` (names are unique in a lake)."""
        for rule in self.all_rules():
            if rule.name == name:
                return rule
        raise AlertError(f"no alert rule {name!r}; `vae-anomaly alerts list` shows them")

    def add(self, rule: AlertRule) -> AlertRule:
        """Store a new rule; a name already used in the lake is an error."""
        rule.check()
        if rule.dataset not in self.lake.datasets():
            raise AlertError(f"no dataset {rule.dataset!r} in the lake {self.lake.url}; ingest a batch first")
        if any(r.name == rule.name for r in self.all_rules()):
            raise AlertError(f"an alert rule {rule.name!r} exists already; remove it first or pick another --name")
        rule = replace(rule, created_at=datetime.now(timezone.utc))
        self._append("add", rule)
        return rule

    def remove(self, name: str) -> AlertRule:
        rule = self.find(name)
        self._append("remove", rule)
        return rule

    def _append(self, action: str, rule: AlertRule) -> None:
        row = {**asdict(rule), "action_id": uuid.uuid4().hex, "at": datetime.now(timezone.utc), "action": action}
        table = pa.Table.from_pylist([row], schema=SCHEMA)
        write_deltalake(self._uri(rule.dataset), table, mode="append", storage_options=self.lake.delta_options or None,
                        commit_properties=CommitProperties(custom_metadata={"vae_anomaly.op": f"alert-rule-{action}"},
                                                           max_commit_retries=50))


def _rule(row: dict) -> AlertRule:
    return AlertRule(**{k: row[k] for k in AlertRule.__dataclass_fields__})
