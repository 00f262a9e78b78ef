"""Serve the review app with uvicorn (``vae-anomaly review``)."""
from __future__ import annotations

import getpass
import ipaddress
from typing import Optional

LOOPBACK = "127.0.0.1"


class ReviewServerError(ValueError):
    """A review server that would be unsafe to start (another address without a token)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_reviewer() -> str:
    """The OS user's name (the reviewer when ``--reviewer`` is not given)."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers)
        return "reviewer"


def serve(lake_url: str, host: str = LOOPBACK, port: int = 8765, reviewer: Optional[str] = None,
          token: Optional[str] = None) -> None:
    """Run the review app until interrupted. Off the loopback address a ``token`` is required."""
    import uvicorn

    from pipelines.review.app import create_app

    if not _is_loopback(host) and not token:
        raise ReviewServerError(f"refusing to serve reviews on {host} without --token (anyone who can reach it could submit verdicts)")
    app = create_app(lake_url, reviewer=reviewer or default_reviewer(), token=token)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
