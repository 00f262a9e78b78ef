"""What a command prints: its result as Rich tables, or as JSON.

Every value that comes from data (dataset, batch and model names, file names, cell values in
``top_features``) reaches the terminal as :func:`pipelines.escaping.terminal` text, so a ``[/]``
or ``[link=...]`` in a cell prints as itself. Floats print rounded: 4 significant digits in
tables (PSI 3), :data:`JSON_DIGITS` in JSON.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from pipelines.escaping import terminal

#: Significant digits of floats in ``--json`` output (keys and structure are unchanged).
JSON_DIGITS = 6


def jsonable(value: Any) -> Any:
    """``value`` for strict JSON: NaN/inf as ``null``, floats to :data:`JSON_DIGITS` significant
    digits, numpy scalars as Python numbers, unknown objects as strings."""
    if isinstance(value, float):
        return float(f"{value:.{JSON_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell's text: ``-`` for missing, floats to ``digits`` significant digits."""
    if value is None:
        return "-"
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        value = value.item()  # numpy scalars
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value) or "-"
    return str(value)


def cell(value: Any, digits: int = 4):
    """A table cell from data: :func:`fmt` text as escaped Rich text."""
    return terminal(fmt(value, digits))


def key_values(title: str, rows: Sequence[tuple[str, Any]]):
    """A two-column table of labelled values (``title`` and values are printed literally)."""
    from rich.table import Table

    table = Table(title=terminal(title), show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(terminal(label), cell(value))
    return table


def top_anomalies_table(top: list[dict], limit: int = 10, title: str = "top anomalies"):
    """Rows of ``top`` (dicts with the lake keys, anomaly_score, p_value, top_features)."""
    from rich.table import Table

    from pipelines.lake import BATCH_COLUMN, ROW_COLUMN  # not at import: the CLI starts without the lake

    table = Table(title=terminal(title), title_justify="left")
    events = any("event_start" in r for r in top)  # a time series' top: one row per event, its peak
    columns = [("batch", "left"), ("row", "right")] + ([("event", "left")] if events else [])
    for name, justify in columns + [("score", "right"), ("p-value", "right"), ("top features", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for r in top[:limit]:
        where = f"{r['event_series']} " if r.get("event_series") is not None else ""
        event = [cell(f"{where}{r.get('event_start')} – {r.get('event_end')} ({r.get('event_points')} points)")] if events else []
        table.add_row(
            cell(r.get(BATCH_COLUMN, "")), cell(r.get(ROW_COLUMN, "")), *event, cell(r.get("anomaly_score")),
            cell(r.get("p_value"), 2), cell(r.get("top_features", "")),
        )
    return table


def render_ingest(r: dict) -> list:
    """The result of ``ingest``: the batch, its source and its row counts."""
    quarantined = ", ".join(f"{c}: {n}" for c, n in (r.get("quarantined_by_column") or {}).items())
    status = "already in the lake (skipped)" if r.get("skipped") else "committed"
    return [key_values(f"ingest {r.get('dataset')}: {status}", [
        ("batch", r.get("batch_id")), ("source", r.get("source")),
        ("rows", f"{r.get('rows_read')} read, {r.get('rows_accepted')} accepted, {r.get('rows_quarantined')} quarantined"),
        ("quarantined by column", quarantined or None), ("ignored columns", r.get("ignored_columns") or None),
    ])]


def render_train(r: dict) -> list:
    """The result of ``train``: the registered version, its aliases and the training figures."""
    return [key_values(f"train {r.get('dataset')}: registered {r.get('model_name')} v{r.get('version')}", [
        ("aliases", r.get("aliases")), ("model uri", r.get("model_uri")), ("run id", r.get("run_id")),
        ("rows", r.get("rows")), ("epochs", r.get("epochs")), ("threshold", r.get("threshold")),
        ("device", r.get("device")),
    ])]


def render_score(r: dict) -> list:
    """The result of ``score``: one line per batch, the totals and drift, the top anomalies."""
    from rich.table import Table

    out: list = []
    title = f"score {r.get('dataset')} with {r.get('model_name')} v{r.get('model_version')}"
    table = Table(title=terminal(title), title_justify="left")
    events = r.get("events") is not None  # a time series: its flags grouped into events
    for name in ("batch", "rows", "anomalies") + (("events",) if events else ()) + ("rate", "PSI"):
        table.add_column(name, justify="left" if name == "batch" else "right")
    for b in r.get("scored", []):
        rate = b["anomalies"] / b["rows"] if b.get("rows") else float("nan")
        n_events = b.get("events") if not b.get("continued") else f"{b.get('events')} (+{b['continued']} continued)"
        table.add_row(cell(b["batch_id"]), cell(b["rows"]), cell(b["anomalies"]), *([cell(n_events)] if events else []),
                      cell(f"{rate:.2%}"), cell(b.get("psi"), 3))
    out.append(table)
    drift = "yes" if r.get("drift") else "no"
    in_events = f" in {r['events']} events" if events else ""
    out.append(key_values("", [
        ("total", f"{r.get('rows', 0)} rows, {r.get('anomalies', 0)} anomalies{in_events}"),
        ("already scored", f"{len(r.get('skipped', []))} batch(es) skipped"),
        ("drift", f"{drift} (max PSI {fmt(r.get('max_psi'), 3)})"),
    ] + ([("reports rebuilt", ", ".join(r["reports_rebuilt"]))] if r.get("reports_rebuilt") else [])))
    if r.get("top"):
        out.append(top_anomalies_table(r["top"]))
    if r.get("retrain"):
        out.extend(render_retrain(r["retrain"]))
    return out


def render_report(r: dict) -> list:
    """The result of ``report``: where each batch's report is."""
    return [key_values(f"report {r.get('dataset')} by {r.get('scores_key')}", list((r.get("reports") or {}).items()))]


def render_threshold(r: dict) -> list:
    """The result of ``threshold``: the old and new threshold, the rule, and precision/recall on reviewed items."""
    pr = "precision {:.0%}, recall {:.0%}"
    return [key_values(f"threshold {r.get('dataset')}: {r.get('model_name')} v{r.get('version')} ({', '.join(r.get('aliases') or [])})", [
        ("threshold", f"{fmt(r.get('previous'))} -> {fmt(r.get('threshold'))}"),
        ("rule", r.get("rule")),
        ("reviewed items", f"{r.get('reviewed')} ({r.get('real')} real)"),
        ("before", pr.format(r.get("precision_before", 0), r.get("recall_before", 0))),
        ("after", pr.format(r.get("precision_after", 0), r.get("recall_after", 0))),
        ("from version", r.get("from_version")),
    ])]


def render_retrain(r: dict) -> list:
    """The result of ``retrain``: both models' held-out -log p, their precision on reviewed items, the decision."""
    rows = [
        ("champion", f"v{r.get('champion_version')}  -log p {fmt(r.get('champion_nll'))}"),
        ("challenger", f"v{r.get('challenger_version')}  -log p {fmt(r.get('challenger_nll'))}"),
    ]
    c = r.get("reviewed_comparison") or {}
    if c.get("reviewed_alerts_k"):
        rows.append(("reviewed items", f"precision at the champion's {c['reviewed_alerts_k']} alerts of "
                     f"{c['reviewed_compared_items']}: challenger {c['reviewed_precision_at_k_challenger']:.0%}, "
                     f"champion {c['reviewed_precision_at_k_champion']:.0%}"))
    return [key_values(f"retrain {r.get('dataset')}: {'promoted' if r.get('promoted') else 'kept the champion'}",
                       [*rows, ("rule", r.get("rule"))])]


def render_automations(r: dict) -> list:
    """The result of ``automations``: the automation, created or updated, and its window."""
    return [key_values(f"automation {r.get('action')}: {r.get('name')}", [
        ("id", r.get("id")),
        ("crashed after", f"{fmt(r.get('within_seconds'))} s without a heartbeat"),
        ("heartbeat every", f"{r.get('heartbeat_seconds')} s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY)"),
    ])]


def render_maintain(r: dict) -> list:
    """The result of ``maintain``: per dataset, one line per table (files, log, vacuum,
    checkpoint, what was left for the next pass) and the reports pruned."""
    from rich.table import Table

    from pipelines.durations import format_hours

    out: list = []
    for d in r.get("datasets", []):
        title = f"maintain {d.get('dataset')}: retention {format_hours(d.get('retention_hours', 0))}, {fmt(d.get('seconds'))} s"
        table = Table(title=terminal(title), title_justify="left")
        for name in ("table", "version", "files", "MB", "log files removed", "vacuumed", "checkpoint", "skipped"):
            table.add_column(name, justify="left" if name in ("table", "skipped") else "right")
        for t in d.get("tables", []):
            table.add_row(
                cell(t["table"]), cell(f"{t['version_before']} -> {t['version_after']}"),
                cell(f"{t['files_before']} -> {t['files_after']}"),
                cell(f"{t['bytes_before'] / 1e6:.3g} -> {t['bytes_after'] / 1e6:.3g}"), cell(t["log_files_removed"]),
                cell(t["files_vacuumed"]), cell(t["checkpoint_version"]), cell("; ".join(t["skipped"]) or None),
            )
        out.append(table)
        rows = [("orphaned data removed", ", ".join(d.get("orphans_removed") or []) or None)]
        if d.get("reports_older_than_hours") is not None:
            rows.append(("reports pruned", f"{len(d.get('reports_pruned') or [])} older than "
                         f"{format_hours(d['reports_older_than_hours'])} ({d.get('reports_kept_reviewed', 0)} kept for their verdicts)"))
        out.append(key_values("", rows))
    if not r.get("datasets"):
        out.append(key_values("maintain: no datasets in the lake", []))
    return out


def render_demo(summary: dict) -> list:
    """The demo's summary (:func:`pipelines.demo.render`)."""
    from pipelines import demo

    return demo.render(summary)


def render_lake(result: dict[str, Any]) -> list:
    """Rich renderables for a :func:`pipelines.lake.admin.run` result (values as plain text, never markup)."""
    from rich.table import Table
    from rich.text import Text

    action, dataset = result["action"], result["dataset"]
    if action == "list":
        table = Table(title=Text(f"lake {dataset}: {len(result['batches'])} batch(es)"), title_justify="left")
        for name in ("batch", "source", "format", "read", "accepted", "quarantined", "ingested at"):
            table.add_column(name, justify="right" if name in ("read", "accepted", "quarantined") else "left")
        for b in result["batches"]:
            table.add_row(*(Text(str(b[k])) for k in ("batch_id", "source", "format", "rows_read", "rows_accepted",
                                                       "rows_quarantined", "ingested_at")))
        out: list = [table]
        if result["removed"]:
            out.append(Text(f"removed (restorable with `vae-anomaly lake restore {dataset} ID`): {', '.join(result['removed'])}"))
        return out
    if action == "migrate":
        return [Text(f"lake {dataset}: migrated {len(result['migrated'])} batch(es) to Delta tables"
                     + (f", {len(result['already_migrated'])} were already" if result["already_migrated"] else ""))]
    record = result[f"{action}d"]
    return [Text(f"lake {dataset}: {action}d batch {record['batch_id']} "
                 f"({record['rows_accepted']} rows from {record['source']})")]
