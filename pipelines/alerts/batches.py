"""Alerts on scored batches: one alert per (rule, batch), sent after the batch's scores and
report are committed, claimed in the ledger first (:mod:`pipelines.alerts.ledger`).

:func:`alert_scored` is what the score flow calls last, with its result. It never raises: an
alerting failure is a line in the result (and the log), and the scores stand.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Optional

from pipelines.alerts import deliver, message
from pipelines.alerts.automation import automated
from pipelines.alerts.ledger import Decision, Ledger, sent_today
from pipelines.alerts.outbox import deliver_claim, entry
from pipelines.alerts.pipeline import check_freshness
from pipelines.alerts.rules import AlertRule, RuleStore, quiet_window
from pipelines.alerts.secrets import scrub

log = logging.getLogger(__name__)


def decide(rule: AlertRule, alert: Optional[message.BatchAlert], rows: list[dict], now: datetime) -> Decision:
    """A batch alert's claim: ``quiet`` (nothing over the bar: none, or only continued events),
    ``held`` for the digest of its quiet window or its day (the budget spent), else ``claimed``."""
    if alert is None or not message.should_alert(alert, rule):
        return Decision("quiet")
    content = alert.summary()
    window = quiet_window(rule.quiet, now)
    if window is not None:
        return Decision("held", window, content)
    if rule.per_day is not None and sent_today(rows, now) >= rule.per_day:
        return Decision("held", f"day:{now.astimezone(timezone.utc).date()}", content)
    return Decision("claimed", None, content)


def digest_due(rule: AlertRule, window: str, now: datetime) -> bool:
    """A held window's digest goes out once it is over: quiet hours ended, or its UTC day."""
    kind, day = window.split(":", 1)
    if kind == "quiet":
        return quiet_window(rule.quiet, now) != window
    return str(now.astimezone(timezone.utc).date()) > day


#: How many of the newest skipped batches a run checks for a missing alert (a run killed after
#: committing its batches and before alerting them); a bound, so no run's cost grows with the lake.
RECOVER_BATCHES = 20


def candidates(summary: dict, rule: AlertRule, records: Optional[list]) -> tuple[list[str], list[str]]:
    """The batches ``rule`` may alert on after a score run: those it scored or whose report it
    rebuilt; and, to recover, the newest :data:`RECOVER_BATCHES` skipped ones that were ingested
    since the rule was made (the ledger says whether an earlier run claimed them)."""
    ran = list(dict.fromkeys([s["batch_id"] for s in summary.get("scored", [])] + list(summary.get("reports_rebuilt", []))))
    recover = []
    if records and rule.created_at is not None:
        skipped = set(summary.get("skipped", [])) - set(ran)
        recover = [r.batch_id for r in records[-RECOVER_BATCHES:] if r.batch_id in skipped
                   and datetime.fromisoformat(r.ingested_at.replace("Z", "+00:00")) >= rule.created_at]
    return ran, recover


def alert_batches(lake, dataset: str, scores_key: str, rule: AlertRule, batch_ids: list[str], now: datetime,
                  base_url: str, attempts: int, backoff_s: float, recover: Optional[list[str]] = None) -> list[dict]:
    """One rule over ``batch_ids`` (and the ``recover`` ones, said only when this run alerts
    them): claim, send, record; then the digests that are due."""
    from pipelines.reports.store import ReportRef, ReportStore

    ledger, store, out = Ledger(lake, dataset), ReportStore(lake.url), []
    recover = [b for b in recover or [] if b not in batch_ids]
    wanted = batch_ids + recover
    claimed = ledger.claims(rule.name, set(wanted)) if wanted else {}
    for batch_id in wanted:
        if batch_id in claimed:  # an earlier run decided this batch (sent, held, quiet or unconfirmed)
            if batch_id in batch_ids:
                out.append(entry(rule, batch_id, "batch", "already"))
            continue
        report = store.report(ReportRef(dataset, scores_key, batch_id))
        if report is None:
            out.append(entry(rule, batch_id, "batch", "no report"))
            continue  # the next run, which rebuilds the report, alerts on it
        alert = message.batch_alert(report, rule, base_url, scores_key)
        claim = ledger.claim(rule.name, batch_id, "batch", lambda rows, a=alert: decide(rule, a, rows, now), now=now)
        out.append(deliver_claim(ledger, rule, claim, alert.title, message.body(alert, rule), attempts, backoff_s))
    return out + send_digests(ledger, dataset, rule, now, attempts, backoff_s)


def send_digests(ledger: Ledger, dataset: str, rule: AlertRule, now: datetime, attempts: int, backoff_s: float) -> list[dict]:
    """One digest per held window that is over and has none yet."""
    rows = ledger.rows(rule.name)
    keys = {r["key"] for r in rows}
    windows = dict.fromkeys(r["window"] for r in rows if r["state"] == "held" and r["window"])
    out = []
    for window in windows:
        key = f"digest:{window}"
        if key in keys or not digest_due(rule, window, now):
            continue
        held = [_content(r) for r in rows if r["state"] == "held" and r["window"] == window]
        title, text = message.digest(dataset, rule, window, held)
        claim = ledger.claim(rule.name, key, "digest", lambda _rows: Decision("claimed", window, {"batches": len(held)}), now=now)
        out.append(deliver_claim(ledger, rule, claim, title, text, attempts, backoff_s))
    return out


def _content(row: dict) -> dict:
    import json

    return json.loads(row["content"] or "{}")


def alert_scored(summary: dict, lake_url: Optional[str] = None, now: Optional[datetime] = None,
                 attempts: Optional[int] = None, backoff_s: Optional[float] = None) -> dict[str, Any]:
    """Alert the dataset's rules about the batches a score run committed (its result ``summary``),
    send the digests that are due, and check the rules' freshness (but for rules whose freshness
    automation is on the Prefect server: :func:`pipelines.alerts.automation.automated`). Never raises.

    Returns
    -------
    dict
        ``rules`` (how many), ``alerts`` (one entry per rule and key: ``rule``, ``to`` (masked),
        ``key`` (a batch id, ``digest:<window>`` or ``stale:<batch>``), ``kind``, ``state``
        (``sent``, ``failed``, ``held``, ``quiet``, ``already``, ``no report``), ``attempts``,
        ``error``), ``not_sent`` (the keys whose delivery failed) and ``error`` (None, or why
        alerting stopped).
    """
    from pipelines.lake import Lake
    from pipelines.settings import get_settings

    settings = get_settings()
    now = now or datetime.now(timezone.utc)
    attempts = deliver.ATTEMPTS if attempts is None else attempts  # read now: tests shorten the waits
    backoff_s = deliver.BACKOFF_S if backoff_s is None else backoff_s
    dataset = summary.get("dataset", "")
    out: dict[str, Any] = {"rules": 0, "alerts": [], "not_sent": [], "error": None}
    urls: list[str] = []
    try:
        lake = Lake(lake_url or settings.lake_url)
        rules = RuleStore(lake).rules(dataset)
        urls = [r.url for r in rules]
        out["rules"] = len(rules)
        records = lake.list_batches(dataset) if rules else []
        on_server = automated(rules)  # their freshness is the server's automation's to tell
        for rule in rules:
            try:
                ran, recover = candidates(summary, rule, records)
                out["alerts"] += alert_batches(lake, dataset, summary["scores_key"], rule, ran, now,
                                               settings.review_url, attempts, backoff_s, recover)
                if rule.name not in on_server:
                    out["alerts"] += check_freshness(lake, dataset, rule, records, now, attempts, backoff_s)
            except Exception as exc:  # noqa: BLE001 - one rule's failure stops neither the others nor the run
                out["alerts"].append(entry(rule, "*", "rule", "failed", 0, scrub(f"{type(exc).__name__}: {exc}", urls)))
    except Exception as exc:  # noqa: BLE001 - alerting never fails the score run
        out["error"] = scrub(f"{type(exc).__name__}: {exc}", urls)
        log.warning("alerting on %s failed: %s", dataset, out["error"])
    out["not_sent"] = [a["key"] for a in out["alerts"] if a["state"] == "failed"]
    publish(dataset, out)
    return out


def publish(dataset: str, result: dict) -> None:
    """A markdown artifact of what was sent, held and not sent (inside a flow run only; keys
    decided by an earlier run are left out)."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        news = [a for a in result["alerts"] if a["state"] != "already"]
        if FlowRunContext.get() is None or not (news or result["error"]):
            return  # a re-run that had nothing new keeps the last run's artifact as the latest
        from pipelines.escaping import markdown as md
        from pipelines.flows.common import artifact_key

        lines = [f"# Alerts of {md(dataset)}", ""]
        if result["not_sent"]:
            lines += [f"**{len(result['not_sent'])} alert(s) did not go out** (retried, recorded in the ledger).", ""]
        if result["error"]:
            lines += [f"**Alerting failed:** {md(result['error'])}", ""]
        lines += ["| rule | to | key | state | attempts | error |", "|---|---|---|---|---:|---|"]
        for a in news:
            lines.append(f"| {md(a['rule'])} | {md(a['to'])} | {md(a['key'])} | {a['state']} | {a['attempts']} "
                         f"| {md(a['error'] or '')} |")
        create_markdown_artifact(key=artifact_key("alerts", dataset), markdown="\n".join(lines),
                                 description=f"alerts of {dataset}")
    except Exception as exc:  # noqa: BLE001 - the artifact is a view of the ledger; the ledger stands
        log.warning("the alerts artifact of %s could not be written: %s", dataset, exc)
