"""Progress reporting that tasks can call and the CLI can show.

Tasks call :func:`report`; nothing is shown unless a reporter is installed (the CLI installs
one that draws rich progress bars). Flows stay free of terminal code, and flow parameters
stay serialisable.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from pipelines.escaping import terminal

Reporter = Callable[[str, str, int, Optional[int], dict], None]
_reporter: Optional[Reporter] = None


def report(stream: str, label: str, done: int, total: Optional[int] = None, **info) -> None:
    """Tell the installed reporter that ``done`` of ``total`` steps of ``stream`` are complete."""
    if _reporter is not None:
        _reporter(stream, label, done, total, info)


@contextmanager
def installed(reporter: Reporter) -> Iterator[None]:
    """Install ``reporter`` for the duration of the block."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


@contextmanager
def rich_bars() -> Iterator[None]:
    """Rich progress bars, one per stream (e.g. "epochs", "batches")."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        # labels name datasets and batches: plain text, never read as markup
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeElapsedColumn(), transient=False,
    )
    tasks: dict[str, int] = {}

    def reporter(stream: str, label: str, done: int, total: Optional[int], info: dict) -> None:
        key = f"{stream}:{label}"
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        if key not in tasks:
            tasks[key] = bars.add_task(terminal(f"{label} {stream}").plain, total=total, info=terminal(text).plain)
        bars.update(tasks[key], completed=done, total=total, info=terminal(text).plain)

    with bars, installed(reporter):
        yield
