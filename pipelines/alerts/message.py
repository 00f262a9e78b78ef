"""What an alert says: pure functions from a batch's stored report and a rule to the text sent.

The alert is built from the batch's ``report.json`` (:mod:`pipelines.reports`), the consumer of
committed scores that the report itself is: its items (rows, or a time series' events, with
``began_before``), their scores, p-values and top features, the flagged counts, and the version's
reviewed precision as the report computed it when it was written (so an alert costs one small
read, whatever the number of reports). Nothing here does I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote, urlencode

from pipelines.alerts.rules import duration

TOP_ITEMS = 5
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def text(value: Any, limit: int = 120) -> str:
    """A value from data as one line of plain text: control and bidi characters dropped, cut to ``limit``."""
    out = _CONTROL.sub("", str(value)).replace("\n", " ")
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass(frozen=True)
class Links:
    """The batch's report and review page on the review app (``VAE_ANOMALY_REVIEW_URL``)."""

    report: str
    review: str


def links(base_url: str, dataset: str, label: str, batch_id: str) -> Links:
    base = base_url.rstrip("/")
    path = "/".join(quote(p, safe="") for p in (dataset, label, batch_id))
    return Links(f"{base}/reports/{path}",
                 f"{base}/review/{quote(dataset, safe='')}?{urlencode({'label': label, 'batch': batch_id})}")


@dataclass(frozen=True)
class BatchAlert:
    """A batch's alert for one rule: the items over its bar, new and continued."""

    dataset: str
    batch_id: str
    label: str
    model: str
    version: str
    rows: int
    flagged: int
    n_items: int
    new: list[dict] = field(default_factory=list)
    continued: list[dict] = field(default_factory=list)
    precision: Optional[float] = None
    links: Optional[Links] = None

    @property
    def title(self) -> str:
        kind = "event" if self.new and self.new[0].get("kind") == "event" else "item"
        return f"[vae-anomaly] {text(self.dataset)}: {len(self.new)} new anomalous {kind}(s) in batch {text(self.batch_id)}"

    def summary(self) -> dict:
        """What a digest and the ledger keep of this alert."""
        top = self.new[0] if self.new else None
        return {"batch_id": self.batch_id, "new": len(self.new), "continued": len(self.continued),
                "flagged": self.flagged, "top_score": None if top is None else top["score"],
                "top": None if top is None else text(top.get("title", ""), 80),
                "review": self.links.review if self.links else None}


def over_bar(item: dict, rule) -> bool:
    """Whether one report item passes the rule's bar (report items are the model's flags)."""
    if rule.min_score is not None:
        return float(item["score"]) >= rule.min_score
    if rule.min_p is not None:
        return float(item["p_value"]) <= rule.min_p
    return True


def batch_alert(report: dict, rule, base_url: str, label: str) -> BatchAlert:
    """The alert of one batch's report (stored under the scores key ``label``) for ``rule``; it may
    have nothing to say (:func:`should_alert`)."""
    items = [i for i in report.get("items", []) if over_bar(i, rule)]
    summary, model = report.get("summary", {}), report.get("model", {})
    batch = report.get("batch", {})
    return BatchAlert(
        dataset=report.get("dataset", ""), batch_id=batch.get("batch_id", ""), label=label,
        model=str(model.get("model_name", "")), version=str(model.get("version", "")),
        rows=int(summary.get("rows", 0)), flagged=int(summary.get("flagged", 0)), n_items=int(summary.get("n_items", 0)),
        new=[i for i in items if not i.get("began_before")], continued=[i for i in items if i.get("began_before")],
        precision=summary.get("reviewed_precision"),
        links=links(base_url, report.get("dataset", ""), label, batch.get("batch_id", "")),
    )


def should_alert(alert: BatchAlert, rule) -> bool:
    """Enough new items over the bar: an event that continues from an earlier batch was alerted then."""
    return len(alert.new) >= rule.min_items


def _features(item: dict) -> str:
    return ", ".join(f"{text(f['feature'], 40)}={text(f.get('value', ''), 30)} ({float(f.get('share', 0)):.0%})"
                     for f in item.get("features", [])[:3]) or "no feature stands out"


def body(alert: BatchAlert, rule) -> str:
    """The alert's plain text (Apprise turns it into HTML for mail, escaping it)."""
    precision = ("not reviewed yet" if alert.precision is None
                 else f"{alert.precision:.0%} of this version's reviewed items were real")
    lines = [
        f"dataset: {text(alert.dataset)}", f"batch: {text(alert.batch_id)}",
        f"model: {text(alert.model)} v{text(alert.version)}",
        f"flagged: {alert.flagged} of {alert.rows} rows, {alert.n_items} item(s); "
        f"{len(alert.new)} new over the bar of rule {text(rule.name)} ({rule.bar()})",
        f"reviewed precision: {precision}", "", f"top {min(TOP_ITEMS, len(alert.new))}:",
    ]
    for n, item in enumerate(alert.new[:TOP_ITEMS], 1):
        lines.append(f"{n}. {text(item.get('title', item.get('key', '')))}: score {float(item['score']):.4g}, "
                     f"p {float(item['p_value']):.2g}; {_features(item)}")
    for item in alert.continued[:TOP_ITEMS]:
        lines.append(f"continues: {text(item.get('title', ''))} (began in an earlier batch, alerted then), "
                     f"score {float(item['score']):.4g}")
    if alert.links:
        lines += ["", f"report: {alert.links.report}", f"review: {alert.links.review}"]
    return "\n".join(lines)


def digest(dataset: str, rule, window: str, held: list[dict]) -> tuple[str, str]:
    """The digest of the alerts ``rule`` held in ``window`` (``quiet:DATE`` or ``day:DATE``): title and text."""
    why = ("during quiet hours " + text(rule.quiet) if window.startswith("quiet:")
           else f"beyond the budget of {rule.per_day} alert(s) a day")
    title = f"[vae-anomaly] {text(dataset)}: digest of {len(held)} batch alert(s) held {why}"
    lines = [f"rule {text(rule.name)}, {window.split(':', 1)[1]} (UTC): {len(held)} batch(es) had alerts held {why}.", ""]
    for h in held:
        lines.append(f"- batch {text(h.get('batch_id', ''))}: {h.get('new', 0)} new item(s), top {text(h.get('top') or '')} "
                     f"score {float(h.get('top_score') or 0):.4g}; {h.get('review') or ''}")
    return title, "\n".join(lines)


def stale(dataset: str, rule, latest_batch: Optional[str], latest_at: Optional[str], age_s: Optional[float]) -> tuple[str, str]:
    """A freshness alert: no batch of ``dataset`` was ingested within the rule's ``expect_every``."""
    title = f"[vae-anomaly] {text(dataset)}: no new batch for {'ever' if age_s is None else duration(age_s)}"
    said = "no batch was ever ingested" if latest_batch is None else f"the latest batch, {text(latest_batch)}, was ingested at {latest_at}"
    return title, f"rule {text(rule.name)} expects a batch of {text(dataset)} every {duration(rule.expect_every_s)}; {said}."


def failure(dataset: str, flow_name: str, state: str, run: str, message: str) -> tuple[str, str]:
    """A failed or crashed flow run of ``dataset``."""
    return (f"[vae-anomaly] {text(dataset)}: {text(flow_name)} run {state.lower()}",
            f"flow {text(flow_name)} on dataset {text(dataset)} ended {state}: {text(message, 600)}\nrun: {text(run)}")


def sample(rule, base_url: str) -> tuple[str, str]:
    """``alerts test``: a sample alert, so the receiver can be checked."""
    return (f"[vae-anomaly] test of alert rule {text(rule.name)}",
            f"This is a test alert of rule {text(rule.name)} on dataset {text(rule.dataset)} ({rule.bar()}).\n"
            f"review: {base_url.rstrip('/')}/review/{quote(rule.dataset, safe='')}")
