"""The terminal side of a command: Prefect's console log, progress bars, the output console."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from contextlib import ExitStack, contextmanager
from typing import Iterator, Optional


class _PrefectConsoleFilter(logging.Filter):
    """Cuts Prefect's console log for CLI use: no ERROR records (the CLI reports the failure
    itself, in one line), no tracebacks, nothing below ``level``."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return False
        if record.levelno >= logging.ERROR and record.name.startswith(("prefect", "distributed")):
            return False
        record.exc_info, record.exc_text = None, None  # the API handlers have already run
        return True


def configure_console(args: argparse.Namespace) -> None:
    """Apply the output flags to Prefect's console handlers (only Prefect's own) and to Python warnings.

    Call after Prefect is imported (it configures logging on import).
    """
    if args.debug:
        return
    level = logging.INFO if args.verbose or args.command == "serve" else logging.WARNING
    handlers = list(logging.getLogger().handlers) + list(logging.getLogger("prefect._internal").handlers)
    for handler in handlers:
        if not type(handler).__module__.startswith("prefect."):
            continue  # not Prefect's (a host program's, pytest's): a run in-process leaves it as it was
        if not any(isinstance(f, _PrefectConsoleFilter) for f in handler.filters):
            handler.addFilter(_PrefectConsoleFilter(level))
    if not args.verbose:
        warnings.simplefilter("ignore")  # library deprecation chatter; --verbose shows it


@contextmanager
def progress_bars(args: argparse.Namespace) -> Iterator[None]:
    """Rich progress bars (unless the output is JSON), drawn from the first report on, so a
    command that reports nothing prints nothing."""
    from pipelines import progress

    if args.json:
        yield
        return
    bars = ExitStack()

    def start_bars(stream: str, label: str, done: int, total: Optional[int], info: dict) -> None:
        bars.enter_context(progress.rich_bars())  # installs its own reporter over this one
        progress.report(stream, label, done, total, **info)

    with progress.installed(start_bars), bars:  # bars close first, then start_bars is removed
        yield


def output_console():
    """Standard output; 120 columns when it is not a terminal (logs, CI) instead of rich's 80.

    Data reaches it only as :func:`pipelines.escaping.terminal` text; markup in the renderers'
    own strings is theirs.
    """
    from rich.console import Console

    return Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 120)
