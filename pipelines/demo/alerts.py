"""The demo's alerts: a rule per sample dataset pointing at a json:// receiver the demo starts on
127.0.0.1 (:class:`pipelines.alerts.receiver.JsonReceiver`), and the alerts it got, printed.

The rules (``demo-<dataset>``) are added before the demo scores and removed when it ends, so no
later score run posts to a receiver that is gone. Alerts are sent once per (rule, batch): a re-run
of the demo gets none for batches it alerted before (the ledger keeps them across runs).
"""
from __future__ import annotations

from typing import Callable

from pipelines.alerts import AlertRule, RuleStore
from pipelines.alerts.receiver import JsonReceiver


class DemoAlerts:
    """Start with :meth:`start` once the datasets exist; :meth:`finish` stops it and returns what came."""

    def __init__(self, lake, datasets: list[str]):
        self.store, self.datasets = RuleStore(lake), datasets
        self.receiver = JsonReceiver()

    def _remove(self) -> None:
        for rule in self.store.all_rules():
            if rule.name in {f"demo-{d}" for d in self.datasets}:
                self.store.remove(rule.name)

    def start(self, say: Callable[[str], None]) -> "DemoAlerts":
        self._remove()  # a demo that died left its rules behind
        self.receiver.start()
        for name in self.datasets:
            self.store.add(AlertRule(name=f"demo-{name}", dataset=name, url=self.receiver.url(name)))
        say(f"   alert rules demo-<dataset> -> {self.receiver.url('<dataset>')} (a receiver this demo runs)")
        return self

    def finish(self, say: Callable[[str], None]) -> list[dict]:
        self.receiver.stop()
        self._remove()
        got = [{"dataset": p["path"].strip("/"), "title": p.get("title", "")} for p in self.receiver.received()]
        say(f"[bold]alerts the demo's receiver got: {len(got)}[/]")
        for g in got:
            say(f"   {g['title']}")
        if not got:
            say("   none: every scored batch was alerted in an earlier run (once per rule and batch)")
        return got
