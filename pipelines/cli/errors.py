"""Exit codes and the one-line error message of each failure."""
from __future__ import annotations

import signal
import sys
from typing import Optional

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INPUT = 2
EXIT_MODEL = 3
EXIT_ANOMALIES = 4
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a process ended by Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports `kill PID`


class UsageError(Exception):
    """A bad command line (exit 2)."""


class Terminated(BaseException):
    """The CLI received SIGTERM (exit 143).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way
    swallows it: it unwinds the flow run (Prefect records it as crashed), the ``finally`` blocks
    and the ``atexit`` handlers that stop Prefect's temporary API.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


def _loaded_class(module: str, name: str) -> Optional[type]:
    """``module.name`` if the module is already imported, else ``None``.

    An exception can only be an instance of a class whose module was imported, so checking
    ``sys.modules`` classifies errors without importing MLflow or torch just to compare.
    """
    return getattr(sys.modules.get(module), name, None)


def _signal_number(exc: BaseException) -> Optional[int]:
    """The signal behind ``exc``: ours (:class:`Terminated`) or Prefect's ``TerminationSignal``."""
    if isinstance(exc, Terminated):
        return exc.signum
    prefect_signal = _loaded_class("prefect.exceptions", "TerminationSignal")
    if prefect_signal is not None and isinstance(exc, prefect_signal):
        return int(exc.signal)
    return None


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception (see ``vae-anomaly --help``)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    signum = _signal_number(exc)
    if signum is not None:
        return 128 + signum
    tracking_error = _loaded_class("pipelines.tracking", "TrackingError")
    if tracking_error is not None and isinstance(exc, tracking_error):
        return EXIT_MODEL
    bad_input = [UsageError, FileNotFoundError]
    for module, name in (
        ("vae_core.errors", "DataError"),
        ("pipelines.lake.errors", "LakeError"),  # SchemaError and SourceError too
        ("pydantic", "ValidationError"),  # e.g. a bad --param value
        ("pipelines.demo", "DemoError"),
    ):
        cls = _loaded_class(module, name)
        if cls is not None:
            bad_input.append(cls)
    return EXIT_INPUT if isinstance(exc, tuple(bad_input)) else EXIT_ERROR


def error_line(exc: BaseException, code: int) -> str:
    """The one-line message for ``exc``: ``error: ...``."""
    if isinstance(exc, KeyboardInterrupt):
        return "error: interrupted"
    signum = _signal_number(exc)
    if signum is not None:
        return f"error: terminated ({signal.Signals(signum).name})"
    validation_error = _loaded_class("pydantic", "ValidationError")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"no such file: {exc.filename}"
    elif validation_error is not None and isinstance(exc, validation_error):
        problems = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()]
        text = "invalid parameter(s): " + "; ".join(problems)
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    if code == EXIT_ERROR:
        text = f"{type(exc).__name__}: {text} (run with --debug for the traceback)"
    return f"error: {text}"
