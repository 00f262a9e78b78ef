"""How a command ends: signals become one-line errors, and nothing it started outlives it.

- SIGTERM raises :class:`~pipelines.cli.errors.Terminated` in the main thread (SIGINT raises
  ``KeyboardInterrupt`` as usual), so the flow run unwinds, Prefect records it, and the
  ``atexit`` handlers stop Prefect's temporary API; :func:`pipelines.cli.app.main` prints
  ``error: terminated (SIGTERM)`` and exits 143 (130 for SIGINT).
- ``kill -9`` runs no handler at all, so :func:`guard_children` starts
  :mod:`pipelines.cli.watchdog`, which ends what the command started once the command is gone.
- A command that read a lake table through delta-rs's Python file handler (``gs://``, ``az://``
  and unusual S3 options) ends through :func:`finish` without the interpreter's finalization,
  where Arrow's threads could abort it (:func:`pipelines.lake.delta.arrow_dataset`).
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import uuid
from typing import NoReturn, Optional

from pipelines.cli import watchdog
from pipelines.cli.errors import Terminated

_watchdog: Optional[subprocess.Popen] = None  # kept referenced: its stdin pipe closes when this process ends


def _on_terminate(signum: int, frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM ends the command through :class:`Terminated` instead of killing it on the spot
    (from the main thread only: Python runs signal handlers there)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_terminate)


def guard_children() -> Optional[int]:
    """Tag this process's environment and start the watchdog; returns the watchdog's PID.

    Every process started after this call (Prefect's temporary API, Dask workers, MLflow
    subprocesses) inherits the tag and is ended by the watchdog when this process ends, also
    after ``kill -9``. A no-op (``None``) where the watchdog cannot run (not POSIX, no psutil),
    and on a second call.
    """
    global _watchdog
    if _watchdog is not None or os.name != "posix":
        return None
    if importlib.util.find_spec("psutil") is None:  # the watchdog needs it
        return None
    token = uuid.uuid4().hex
    os.environ[watchdog.MARKER] = token
    _watchdog = subprocess.Popen(
        [sys.executable, "-I", watchdog.__file__, token, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of the terminal's process group: Ctrl-C and `kill -- -PGID` reach the CLI only
    )
    return _watchdog.pid


def finish(code: int) -> NoReturn:
    """End the process with exit ``code``.

    After a read through delta-rs's Python file handler, Arrow's threads may release its file
    objects while the interpreter finalizes, and Python 3.11 then aborts the process (SIGABRT,
    "terminate called without an active exception"; 8 of 40 reader processes against moto). So
    such a process runs its ``atexit`` handlers (Prefect's temporary API stops, logs flush),
    flushes its streams and leaves with ``os._exit``, skipping the finalization. Any other
    process exits as usual.
    """
    delta = sys.modules.get("pipelines.lake.delta")  # not imported: nothing was read through it
    if delta is None or not delta.read_through_handler():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)
