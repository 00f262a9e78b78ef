"""The CLI's console filter goes on Prefect's own handlers only: a CLI run in-process (a host
program, the tests) leaves the other handlers, pytest's log capture among them, as they were."""
import argparse
import logging
import warnings

from prefect.logging.handlers import PrefectConsoleHandler

from pipelines.cli.console import configure_console


def test_only_prefects_handlers_get_the_console_filter():
    root = logging.getLogger()
    mine, prefects = logging.StreamHandler(), PrefectConsoleHandler()
    root.addHandler(mine)
    root.addHandler(prefects)
    try:
        with warnings.catch_warnings():
            configure_console(argparse.Namespace(debug=False, verbose=False, command="score"))
        info = logging.LogRecord("pipelines.lake", logging.INFO, __file__, 1, "a lake record", None, None)
        failure = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "a flow failed", None, None)
        assert mine.filters == [] and mine.filter(info) and mine.filter(failure)
        assert len(prefects.filters) == 1  # below WARNING and Prefect's ERRORs: the CLI says them itself
        assert not prefects.filter(info) and not prefects.filter(failure)
    finally:
        root.removeHandler(mine)
        root.removeHandler(prefects)
