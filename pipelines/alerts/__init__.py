"""Alerts: tell someone when a scored batch has anomalies, when a flow run fails, and when a feed
stops arriving.

- :mod:`~pipelines.alerts.rules`: the rules (``vae-anomaly alerts add``), a Delta table per dataset.
- :mod:`~pipelines.alerts.ledger`: what was claimed and sent, once per (rule, key).
- :mod:`~pipelines.alerts.message`: what an alert says (pure, from the batch's stored report).
- :mod:`~pipelines.alerts.deliver`: Apprise delivery, retried with backoff.
- :mod:`~pipelines.alerts.batches`: :func:`alert_scored`, the score flow's last step.
- :mod:`~pipelines.alerts.pipeline`: failed flow runs, freshness, ``alerts test``.
- :mod:`~pipelines.alerts.secrets`: the one masking helper for URLs.
"""
from pipelines.alerts.batches import alert_scored
from pipelines.alerts.ledger import Ledger
from pipelines.alerts.pipeline import alert_failure, freshness, send_sample
from pipelines.alerts.rules import AlertError, AlertRule, RuleStore
from pipelines.alerts.secrets import mask_url, scrub

__all__ = ["AlertError", "AlertRule", "Ledger", "RuleStore", "alert_failure", "alert_scored", "freshness",
           "mask_url", "scrub", "send_sample"]
