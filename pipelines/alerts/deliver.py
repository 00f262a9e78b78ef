"""Delivery through Apprise, retried with backoff; what failed is said with the URL masked."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

from pipelines.alerts.secrets import mask_url, scrub

ATTEMPTS = 3
BACKOFF_S = 1.0  # seconds before the 2nd attempt; doubled before each next one


@dataclass(frozen=True)
class Delivery:
    """How one message's delivery ended: ``ok``, the attempts made, and the last error (masked)."""

    ok: bool
    attempts: int
    error: Optional[str] = None


def send(url: str, title: str, body: str, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> Delivery:
    """Send one plain-text message to the Apprise URL ``url``: up to ``attempts`` tries, waiting
    ``backoff_s``, then twice that, ... between them. Never raises."""
    import apprise

    error = None
    for attempt in range(1, attempts + 1):
        try:
            notifier = apprise.Apprise()
            if not notifier.add(url):
                return Delivery(False, attempt, f"{mask_url(url)} is not a URL Apprise can send to")
            with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
                ok = notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
            if ok:
                return Delivery(True, attempt)
            error = " ".join(captured.getvalue().split())[-500:] or "Apprise reported a failed delivery"
        except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return Delivery(False, attempts, scrub(error, [url]))
