""":func:`main`: parse, apply the settings, run the command, print its result or its error;
:func:`run`, the console script, ends the process with its exit code."""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Optional, Sequence

from pipelines.cli.console import output_console
from pipelines.cli.errors import EXIT_ANOMALIES, EXIT_OK, error_line, exit_code_for
from pipelines.cli.lifecycle import finish, guard_children, install_signal_handlers
from pipelines.cli.parser import parse_args
from pipelines.cli.render import jsonable
from pipelines.settings import apply_prefect_env, get_settings


def _set_library_env(args) -> None:
    """Environment that Prefect and MLflow read on import, here and in child processes."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.json:
        # against a tracking server MLflow writes "View run ... at: <url>" to stdout when a
        # run ends, which would put two lines of text before the JSON document
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if not (args.verbose or args.debug or args.command == "serve"):
        # read on import, here and in child processes (Dask workers, the temporary API)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``vae-anomaly`` console script; returns the exit code."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        install_signal_handlers()
        args = parse_args(argv)
        debug = args.debug
        settings = get_settings()
        settings.ensure_home()
        apply_prefect_env(settings)  # before anything imports prefect
        _set_library_env(args)
        guard_children()  # before anything starts a process
        result = args.func(args)
        if isinstance(result, int):
            return result
        if args.json:
            print(json.dumps(jsonable(result), indent=2))
        elif args.render is not None:
            console = output_console()
            for item in args.render(result):
                console.print(item)
        if getattr(args, "fail_on_anomaly", False) and result.get("anomalies", 0) > 0:
            return EXIT_ANOMALIES
        return EXIT_OK
    except BaseException as exc:  # also KeyboardInterrupt, Terminated and Prefect's TerminationSignal
        if isinstance(exc, (SystemExit, GeneratorExit)):  # --help, and interpreter shutdown
            raise
        code = exit_code_for(exc)
        if debug:
            traceback.print_exc()
        print(error_line(exc, code), file=sys.stderr, flush=True)
        return code


def run() -> None:
    """The ``vae-anomaly`` console script: :func:`main`, then :func:`~pipelines.cli.lifecycle.finish`
    with its exit code."""
    finish(main())
