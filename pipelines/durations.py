"""Durations as people write them on a command line or in an environment variable: ``90d``,
``12h``, ``30m``, ``45s``, ``2w`` (a whole number and one unit). The one parser of them, for
the settings (``VAE_ANOMALY_LAKE_RETENTION``) and ``vae-anomaly maintain``'s options.
"""
from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"(\d+)\s*([smhdw])")


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``text`` (e.g. ``"90d"``) as a :class:`~datetime.timedelta`.

    Raises
    ------
    ValueError
        Naming ``what`` and the text, for anything but a whole number followed by one of
        ``s``, ``m``, ``h``, ``d``, ``w`` (``7d``; ``0h`` is allowed).
    """
    match = _PATTERN.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"{what} {text!r}: expected a whole number and a unit (s, m, h, d, w), e.g. 90d or 12h")
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def whole_hours(text: str, what: str = "duration") -> int:
    """``text`` (e.g. ``"7d"``) as a number of hours; a clear error when it is not whole hours
    (Delta's retention settings are in hours)."""
    seconds = parse_duration(text, what).total_seconds()
    if seconds % 3600:
        raise ValueError(f"{what} {text!r}: must be whole hours (e.g. 12h or 7d)")
    return int(seconds // 3600)


def format_hours(hours: float) -> str:
    """Hours as the shortest duration text that reads back the same (``168`` -> ``7d``)."""
    if hours and hours % 24 == 0:
        return f"{int(hours // 24)}d"
    return f"{hours:g}h"
