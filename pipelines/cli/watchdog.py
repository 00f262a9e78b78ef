"""Ends every process a ``vae-anomaly`` command started once the command ends, however it ends.

Prefect's temporary API (a uvicorn subprocess), Dask workers and other helpers outlive a
command that is killed with ``kill -9``: they are re-parented to PID 1 and keep their memory and
ports. The CLI therefore tags its environment with a token (:data:`MARKER`), which every process
it starts inherits, and starts this script as a child in its own session::

    python -I watchdog.py TOKEN CLI_PID      # stdin: a pipe from the CLI

It waits until the pipe closes or its parent is no longer ``CLI_PID`` (checked every
:data:`POLL_SECONDS`), then terminates every process whose environment holds the token
(SIGTERM, then SIGKILL after :data:`GRACE_SECONDS`) and exits. After a normal exit the CLI has
already stopped its children and this finds none. POSIX only; it needs psutil, and reads the
environment of processes of the same user (``/proc/PID/environ`` on Linux).

It runs as a script by path, so it imports nothing of the project.
"""
from __future__ import annotations

import os
import select
import signal
import sys

MARKER = "VAE_ANOMALY_CLI_RUN"
POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0


def wait_for_parent(parent: int) -> None:
    """Return when stdin reaches end of file or the parent process ``parent`` is gone."""
    stdin = sys.stdin.fileno()
    while os.getppid() == parent:
        ready, _, _ = select.select([stdin], [], [], POLL_SECONDS)
        if ready and not os.read(stdin, 4096):
            return


def tagged_processes(token: str) -> list:
    """The processes (but this one) whose environment has ``MARKER=token``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == token:
                found.append(proc)
        except (psutil.Error, OSError):  # gone, a zombie, or another user's
            continue
    return found


def end(processes: list) -> None:
    """SIGTERM each process, then SIGKILL those still alive after the grace period."""
    import psutil

    for proc in processes:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=GRACE_SECONDS)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)


def main(argv: list[str]) -> int:
    token, parent = argv[1], int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the CLI, which then exits
    wait_for_parent(parent)
    end(tagged_processes(token))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
