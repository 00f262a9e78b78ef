"""``vae-anomaly alerts add|list|remove|test|log|freshness|automations``: the parser, the command and what it prints.

One module for the alerts' part of the CLI (:func:`pipelines.cli.parser.add_alerts` makes the
subcommand and hands it to :func:`add_actions`). Every URL printed is masked (:func:`pipelines.alerts.mask_url`).
"""
from __future__ import annotations

import argparse
from typing import Any

from pipelines.cli.errors import UsageError
from pipelines.escaping import terminal


def add_actions(p: argparse.ArgumentParser, parents: list, parser_class: type, dataset_type) -> None:
    """The actions of the ``alerts`` subcommand ``p`` (made by :func:`pipelines.cli.parser.add_alerts`):
    each gets ``parents`` (the output options), is a ``parser_class`` and names datasets as ``dataset_type``."""
    sub = p.add_subparsers(dest="alerts_action", metavar="ACTION", parser_class=parser_class)
    sub.required = True
    lake = parser_class(add_help=False)
    lake.add_argument("--lake", help="lake root (default: VAE_ANOMALY_LAKE)")
    common = [*parents, lake]
    add = sub.add_parser("add", parents=common, help="add a rule: alert URL when a scored batch of DATASET has anomalies")
    add.add_argument("dataset", metavar="DATASET", type=dataset_type)
    add.add_argument("--to", required=True, metavar="URL",
                     help="Apprise URL: json://host/path, mailto://user:pass@host, slack://..., msteams://...")
    add.add_argument("--name", help="the rule's name, unique in the lake (default: DATASET-SCHEME)")
    add.add_argument("--min-items", type=int, default=1, metavar="N", help="new items over the bar to alert (default 1)")
    bar = add.add_mutually_exclusive_group()
    bar.add_argument("--min-score", type=float, metavar="S", help="the bar: anomaly score at least S (default: the model's flag)")
    bar.add_argument("--min-p", type=float, metavar="P", help="the bar: p-value at most P")
    add.add_argument("--quiet", metavar="HH:MM-HH:MM", help="quiet hours (UTC): alerts held, one digest after them")
    add.add_argument("--alerts-per-day", type=int, metavar="N", help="at most N batch alerts a UTC day, the rest in one digest the next day")
    add.add_argument("--on-failure", action="store_true", help="also alert a failed or crashed flow run of DATASET")
    add.add_argument("--expect-every", metavar="DURATION", help="alert when no batch was ingested for this long (30m, 2h, 1d)")
    listing = sub.add_parser("list", parents=common, help="the rules (URLs masked)")
    listing.add_argument("dataset", nargs="?", metavar="DATASET", type=dataset_type)
    for action, text in (("remove", "remove the rule NAME"), ("test", "send a sample alert to the rule NAME's receiver")):
        sub.add_parser(action, parents=common, help=text).add_argument("name", metavar="NAME")
    log = sub.add_parser("log", parents=common, help="what was sent, held, failed or left unconfirmed, per rule and key")
    log.add_argument("dataset", metavar="DATASET", type=dataset_type)
    fresh = sub.add_parser("freshness", parents=common, help="check the --expect-every rules now (the score flow does it too)")
    fresh.add_argument("dataset", nargs="?", metavar="DATASET", type=dataset_type)
    sub.add_parser("automations", parents=common,
                   help="create on PREFECT_API_URL's server the automations of the --on-failure and --expect-every rules "
                        "(and delete those of removed ones)")


def cmd_alerts(args: argparse.Namespace) -> dict[str, Any]:
    """``alerts``: one action on the lake's rules."""
    from pipelines.alerts import AlertError, AlertRule, Ledger, RuleStore, freshness, send_sample
    from pipelines.alerts.rules import parse_duration
    from pipelines.lake import Lake
    from pipelines.settings import get_settings

    lake = Lake(args.lake or get_settings().lake_url)
    store, action = RuleStore(lake), args.alerts_action
    try:
        if action == "add":
            name = args.name or f"{args.dataset}-{args.to.split('://', 1)[0].lower()}"
            rule = AlertRule(name=name, dataset=args.dataset, url=args.to, min_items=args.min_items, min_score=args.min_score,
                             min_p=args.min_p, quiet=args.quiet, per_day=args.alerts_per_day, on_failure=args.on_failure,
                             expect_every_s=parse_duration(args.expect_every) if args.expect_every else None)
            return {"action": "added", "rules": [store.add(rule).public()]}
        if action == "list":
            rules = store.rules(args.dataset) if args.dataset else store.all_rules()
            return {"action": "list", "rules": [r.public() for r in rules]}
        if action == "remove":
            return {"action": "removed", "rules": [store.remove(args.name).public()]}
        if action == "test":
            return {"action": "test", "alerts": [send_sample(lake, args.name)]}
        if action == "automations":
            from pipelines.alerts.automation import ensure_automations

            try:
                return ensure_automations(lake)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        if action == "log":
            return {"action": "log", "alerts": Ledger(lake, args.dataset).entries()}
        return {"action": "freshness", "alerts": freshness(lake, args.dataset)}
    except AlertError as exc:
        raise UsageError(str(exc)) from exc


def alert_failure(dataset: Any, flow_name: str, exc: BaseException, lake_url: Any = None) -> None:
    """The CLI's own path for ``--on-failure`` rules without a server (``PREFECT_API_URL`` unset, so
    no automation): a flow called in-process failed; tell the dataset's rules, then let the error
    go on to its exit code."""
    from pipelines.settings import get_settings

    if not isinstance(dataset, str) or isinstance(exc, (KeyboardInterrupt, UsageError)):
        return
    if get_settings().prefect_api_url:
        return  # a server: the run's Failed event reaches its automation (`alerts automations`), which alerts
    try:
        from pipelines.alerts import alert_failure as send
        from pipelines.lake import Lake

        send(Lake(lake_url or get_settings().lake_url), dataset, flow_name, "Failed", f"{type(exc).__name__}: {exc}")
    except Exception:  # noqa: BLE001 - the flow's own error is what the user must see
        pass


def render_alerts(r: dict) -> list:
    """Rules as a table (URLs masked), or the alerts an action sent."""
    from rich.table import Table

    from pipelines.alerts.rules import duration

    if "rules" in r:
        table = Table(title=terminal(f"alert rules ({r['action']})"), title_justify="left")
        for col in ("name", "dataset", "to", "bar", "quiet", "per day", "on failure", "expect every"):
            table.add_column(col, overflow="fold")
        for x in r["rules"]:
            every = x.get("expect_every_s")
            table.add_row(*(terminal("-" if v is None else str(v)) for v in (
                x["name"], x["dataset"], x["url"], x["bar"], x.get("quiet"), x.get("per_day"), "yes" if x.get("on_failure") else "no",
                None if every is None else duration(every))))
        return [table]
    if "automations" in r:
        table = Table(title=terminal("alert automations"), title_justify="left")
        for col in ("rule", "automation", "action"):
            table.add_column(col, overflow="fold")
        for a in r["automations"]:
            table.add_row(*(terminal(str(a[c])) for c in ("rule", "automation", "action")))
        return [table]
    table = Table(title=terminal(f"alerts ({r['action']})"), title_justify="left")
    for col in ("rule", "key", "kind", "state", "attempts", "error"):
        table.add_column(col, overflow="fold")
    for a in r.get("alerts", []):
        table.add_row(*(terminal("-" if a.get(c) is None else str(a.get(c))) for c in ("rule", "key", "kind", "state", "attempts", "error")))
    return [table]
