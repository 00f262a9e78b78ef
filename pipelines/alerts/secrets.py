"""The one masking helper for alert URLs: what ``alerts list``, logs, artifacts, results and
error messages show instead of a URL.

An Apprise URL carries its secrets in different places per service (``json://user:PASSWORD@host``,
``slack://TokenA/TokenB/TokenC``, ``mailto://user:PASSWORD@host``), so the masking is Apprise's
own: every Apprise plugin writes its URL back with ``url(privacy=True)``, secrets shortened to
``T...2`` or ``****``. A URL Apprise cannot read is shown as its scheme alone (``scheme://***``):
nothing of it is known not to be a secret.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

HIDDEN = "***"


@lru_cache(maxsize=256)
def mask_url(url: str) -> str:
    """``url`` with its secrets masked (Apprise's privacy form), or ``scheme://***``."""
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin:
            return _short(str(plugin.url(privacy=True)))
    except Exception:  # noqa: BLE001 - an unreadable URL is masked whole, never shown
        pass
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]{0,30})://", url or "")
    return f"{scheme.group(1)}://{HIDDEN}" if scheme else HIDDEN


#: Apprise's own query options it writes back into every URL (delivery settings, no secrets):
#: left out of what is shown, so a masked URL reads like the one that was given.
_SETTINGS = {"format", "overflow", "retry", "wait", "optional", "cto", "rto", "method", "emojis", "tz"}


def _short(url: str) -> str:
    base, _, query = url.partition("?")
    kept = [kv for kv in query.split("&") if kv and kv.split("=", 1)[0] not in _SETTINGS]
    return base + ("?" + "&".join(kept) if kept else "")


def _secrets(url: str) -> list[str]:
    """Parts of ``url`` that may be secret: the whole URL, its password, path segments and query values."""
    parts = [url]
    rest, _, query = url.split("://", 1)[-1].partition("?")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        parts += [p for p in userinfo.split(":") if p]
    parts += [s for s in path.split("/") if len(s) >= 6]
    parts += [v for kv in query.split("&") for v in kv.split("=", 1)[1:] if len(v) >= 6]
    return sorted(set(parts), key=len, reverse=True)


def scrub(text: object, urls: Iterable[str]) -> str:
    """``text`` (an error message, a log line) with every one of ``urls`` masked and any secret
    part of them (password, token path segments, query values) replaced by ``***``."""
    out = str(text)
    for url in urls:
        if not url:
            continue
        if url in out:
            out = out.replace(url, mask_url(url))
        for part in _secrets(url)[1:]:
            if part in out and part not in mask_url(url):
                out = out.replace(part, HIDDEN)
    return out
