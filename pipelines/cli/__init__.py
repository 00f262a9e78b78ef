"""The ``vae-anomaly`` command line: ingest, train, score, retrain, serve, bench, demo.

Modules by job:

- :mod:`~pipelines.cli.parser`: the argument parser, one ``add_<command>`` function per
  subcommand (listed in ``SUBCOMMANDS``: a new subcommand is one more function there);
- :mod:`~pipelines.cli.commands`: what each subcommand runs (a flow, in this process);
- :mod:`~pipelines.cli.render`: results as Rich tables (data escaped) or JSON (floats rounded);
- :mod:`~pipelines.cli.console`: Prefect's console log, progress bars, the output console;
- :mod:`~pipelines.cli.errors`: exit codes and the one-line error of each failure;
- :mod:`~pipelines.cli.lifecycle` and :mod:`~pipelines.cli.watchdog`: SIGTERM/SIGINT as
  one-line errors, and no child process (Prefect's temporary API) outliving the command;
- :mod:`~pipelines.cli.app`: :func:`main`, which puts them together, and :func:`run`, the console script.

Prefect reads its settings when it is first imported, so nothing here imports Prefect, MLflow,
torch or the flows at module level: :func:`main` applies the settings
(:func:`pipelines.settings.apply_prefect_env`) and each command imports what it needs.

Every failure ends as one ``error: ...`` line on stderr and one of the exit codes listed by
``vae-anomaly --help`` (``--debug`` adds the traceback). Results print as a compact table, or as
JSON with ``--json``. Prefect's and MLflow's console logs are off by default (``-v`` shows INFO
lines and warnings, still without tracebacks; ``--debug`` shows everything; ``serve`` always
shows the runs' INFO lines). The Prefect API still receives every log line.
"""
from pipelines.cli.app import main, run
from pipelines.cli.errors import (
    EXIT_ANOMALIES,
    EXIT_ERROR,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_TERMINATED,
    UsageError,
    error_line,
    exit_code_for,
)
from pipelines.cli.parser import EPILOG, build_parser, parse_args

__all__ = [
    "EPILOG", "EXIT_ANOMALIES", "EXIT_ERROR", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_MODEL", "EXIT_OK",
    "EXIT_TERMINATED", "UsageError", "build_parser", "error_line", "exit_code_for", "main", "parse_args",
    "run",
]
