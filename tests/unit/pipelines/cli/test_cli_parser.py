"""pipelines.cli.parser and errors: bad command lines, exit codes, and the subcommand registry."""
import signal

import pytest

from pipelines.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError, error_line, exit_code_for, parse_args
from pipelines.cli import parser as cli_parser
from pipelines.cli.errors import Terminated


@pytest.mark.parametrize("name", ["../../etc", "a/b", ".hidden", "", "x" * 129])
@pytest.mark.parametrize("command", ["ingest", "train", "score", "retrain", "serve"])
def test_an_unsafe_dataset_name_is_bad_input_before_any_work(command, name):
    argv = [command, name] + (["file.csv"] if command == "ingest" else [])
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert exit_code_for(caught.value) == EXIT_INPUT
    line = error_line(caught.value, EXIT_INPUT)
    assert line.startswith("error: argument DATASET: invalid dataset name") and "\n" not in line


def test_a_safe_dataset_name_parses():
    assert parse_args(["score", "transactions-2.v1"]).dataset == "transactions-2.v1"


def test_signals_have_their_documented_codes_and_one_line():
    assert exit_code_for(Terminated(signal.SIGTERM)) == EXIT_TERMINATED == 143
    assert error_line(Terminated(signal.SIGTERM), EXIT_TERMINATED) == "error: terminated (SIGTERM)"
    assert exit_code_for(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130
    assert error_line(KeyboardInterrupt(), EXIT_INTERRUPTED) == "error: interrupted"
    for code in ("130 interrupted", "143 terminated"):
        assert code in cli_parser.EPILOG


def test_prefects_termination_signal_maps_to_the_same_code():
    from prefect.exceptions import TerminationSignal

    assert exit_code_for(TerminationSignal(signal.SIGTERM)) == EXIT_TERMINATED


def test_a_subcommand_is_one_more_registered_function(monkeypatch):
    def add_hello(command):
        p = command("hello", "say hello", lambda args: {"hello": args.who})
        p.add_argument("who")

    monkeypatch.setattr(cli_parser, "SUBCOMMANDS", (*cli_parser.SUBCOMMANDS, add_hello))
    args = cli_parser.parse_args(["--json", "hello", "world"])
    assert args.func(args) == {"hello": "world"} and args.json and args.render is None


def test_the_help_shows_the_flows_own_defaults():
    """The CLI leaves unset options to the flows, and its help states the flows' defaults: both
    come from pipelines.defaults, so a changed default cannot leave the help behind."""
    import inspect

    from pipelines.flows.retrain import retrain
    from pipelines.flows.score import score

    parser = cli_parser.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse's own subparsers action
    helps = {name: {a.dest: a.help for a in p._actions} for name, p in sub.choices.items()}
    for flow, command, options in ((score, "score", ("batch_rows", "drift_threshold", "alias")),
                                   (retrain, "retrain", ("recent_batches", "holdout_fraction", "tolerance", "seed"))):
        params = inspect.signature(flow.fn).parameters
        for option in options:
            default = params[option].default
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"default {shown})" in helps[command][option] or f"default: {shown})" in helps[command][option], option
