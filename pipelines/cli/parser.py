"""The ``vae-anomaly`` argument parser.

Each subcommand is one ``add_<name>(command)`` function below, listed in :data:`SUBCOMMANDS`;
a new subcommand is one more function there. ``command(name, help, func, render)`` returns its
:class:`argparse.ArgumentParser`, already given the output options and the epilog; ``func``
(``pipelines.cli.commands``) returns a result dict or an exit code, ``render``
(``pipelines.cli.render``) turns the dict into Rich renderables.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence

from pipelines import defaults
from pipelines.cli import alerts, commands, render

EPILOG = """\
exit codes:
  0  success
  1  unexpected error (run again with --debug for the traceback)
  2  bad input: command line, missing source file, unreadable file, schema drift, bad data
  3  model registry: no such model, version or alias, or the tracking store failed
  4  score --fail-on-anomaly: at least one row was flagged
  130 interrupted (Ctrl-C, SIGINT)
  143 terminated (SIGTERM)

environment (defaults in brackets):
  VAE_ANOMALY_HOME          local state: MLflow store, Prefect home [<repo>/.state]
  VAE_ANOMALY_LAKE          Delta lake root, a path or s3:// URL [<repo>/data/lake]
  MLFLOW_TRACKING_URI       tracking store [sqlite:///$VAE_ANOMALY_HOME/mlflow.db]
  PREFECT_API_URL           Prefect server [a temporary local API per command]
  VAE_ANOMALY_DASK_ADDRESS  Dask scheduler for `score` [none: score in-process]
  VAE_ANOMALY_REVIEW_URL    review page that alerts link to [http://127.0.0.1:8765]
  VAE_ANOMALY_LAKE_RETENTION  history `maintain` keeps (and `lake restore` reaches) [7d]
"""

Command = Callable[..., argparse.ArgumentParser]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors raised as :class:`UsageError` instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from pipelines.cli.errors import UsageError

        raise UsageError(f"{message} (see `{self.prog} --help`)")


def dataset_name(text: str) -> str:
    """An argparse type: a dataset name the lake accepts (checked before any model lookup)."""
    from pipelines.lake.errors import LakeError
    from pipelines.lake.validation import check_name  # the lake's one rule for names

    try:
        return check_name("dataset name", text)
    except LakeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dataset(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument("datasets" if many else "dataset", nargs="+" if many else None, metavar="DATASET", type=dataset_name)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-name", help="registered model name (default: the dataset name)")


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series-column", help="column that names the series of a time-series dataset")
    p.add_argument("--exclude", nargs="+", action="extend", metavar="COL", help="columns the model must not see")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="detector setting (vae_core.VAEConfig, TimeSeriesConfig), value as JSON: --param max_epochs=50; "
                   "retrain starts from the champion's settings")
    p.add_argument("--seed", type=int, help=f"random seed (default {defaults.SEED})")


class _AsParam(argparse.Action):
    """An option that stands for ``--param <its name>=<value>`` (appended to ``args.param``)."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.param = [*(namespace.param or []), f"{self.dest}={value}"]


def _version_options(p: argparse.ArgumentParser, batch_help: str) -> None:
    """DATASET, the model name, which registry version (``--alias`` or ``--version``) and ``--batch``."""
    _dataset(p)
    _model_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", help=f"the registry version behind this alias (default: {defaults.CHAMPION})")
    which.add_argument("--version", help="this registry version")
    p.add_argument("--batch", nargs="+", action="extend", metavar="ID", help=batch_help)


def add_ingest(command: Command) -> None:
    """The ``ingest`` subcommand."""
    p = command("ingest", "validate one CSV/Parquet/JSONL file and commit it as a batch of DATASET",
                commands.cmd_ingest, render.render_ingest)
    _dataset(p)
    p.add_argument("source", metavar="SOURCE", help="local path or fsspec URL (.csv, .parquet, .jsonl; .gz ok)")
    p.add_argument("--time-column", help="datetime column required in every row (fixed by the first batch)")
    p.add_argument("--format", choices=("csv", "parquet", "jsonl"), help="override the format guessed from the name")
    p.add_argument("--batch-id", help="batch id (default: from the content hash, so re-ingesting is a no-op)")
    p.add_argument("--ignore-extra-columns", action="store_true", help="leave out columns not in the schema")


def add_lake(command: Command) -> None:
    p = command("lake", "list, remove, restore (from the tables' history) or migrate the batches of DATASET",
                commands.cmd_lake, render.render_lake)
    p.add_argument("action", choices=("list", "remove", "restore", "migrate"), metavar="ACTION",
                   help="list | remove BATCH_ID | restore BATCH_ID | migrate (an old _manifest.json dataset)")
    _dataset(p)
    p.add_argument("batch_id", nargs="?", metavar="BATCH_ID")


def duration(text: str, hours: bool = False) -> str:
    """An argparse type: a duration such as ``90d`` or ``12h`` (:mod:`pipelines.durations`),
    kept as text for the flow; with ``hours``, whole hours of at least one."""
    from pipelines.durations import parse_duration, whole_hours

    try:
        if hours and whole_hours(text, "retention") < 1:
            raise ValueError(f"retention {text!r}: at least 1h (a shorter one could vacuum a running writer's files)")
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_maintain(command: Command) -> None:
    """The ``maintain`` subcommand."""
    p = command("maintain", "compact, checkpoint and clean the Delta tables of DATASET (every dataset when none is "
                "named); safe while ingest and score run", commands.cmd_maintain, render.render_maintain)
    p.add_argument("dataset", nargs="?", metavar="DATASET", type=dataset_name)
    p.add_argument("--retention", metavar="DURATION", type=lambda text: duration(text, hours=True),
                   help="history to keep: log entries and removed files older than this are deleted, and "
                        "`lake restore` works for batches removed within it (default: VAE_ANOMALY_LAKE_RETENTION, 7d)")
    p.add_argument("--reports-older-than", metavar="DURATION", type=duration,
                   help="delete the reports of batches ingested longer ago, e.g. 90d (their verdicts, and the "
                        "reports that hold one, stay)")


def add_train(command: Command) -> None:
    """The ``train`` subcommand."""
    p = command("train", "train a model on DATASET, register it in MLflow (champion if it is the first)",
                commands.cmd_train, render.render_train)
    _dataset(p)
    _model_options(p)
    p.add_argument("--batch", nargs="+", action="extend", metavar="ID", help="train on these batches (default: all)")
    _fit_options(p)
    p.add_argument("--duplicates", choices=("first", "last", "mean"), action=_AsParam,
                   help="time series: rows of one series with the same time keep the first's or the last's values, "
                        "or their mean (default: refused); the same as --param duplicates=..., kept by the model")


def add_score(command: Command) -> None:
    """The ``score`` subcommand."""
    p = command("score", "score the batches of DATASET not yet scored by the model version",
                commands.cmd_score, render.render_score)
    _version_options(p, "score these batches (default: all)")
    p.add_argument("--batch-rows", type=int, help=f"rows per Arrow record batch (default {defaults.BATCH_ROWS})")
    p.add_argument("--workers", type=int, metavar="N", help="score batches in parallel on a local Dask cluster")
    p.add_argument("--dask-address", help="score on an existing Dask scheduler (or VAE_ANOMALY_DASK_ADDRESS)")
    p.add_argument("--drift-threshold", type=float,
                   help=f"PSI above which a batch counts as drifted (default {defaults.DRIFT_THRESHOLD:g})")
    p.add_argument("--retrain-on-drift", action="store_true", help="run `retrain` when drift is found")
    p.add_argument("--fail-on-anomaly", action="store_true", help="exit 4 if any row was flagged")
    _offline_option(p)


def _offline_option(p) -> None:
    p.add_argument("--offline", action="store_true",
                   help="time series: score each point from every window covering it, later points included "
                        "(stored as <model>-v<N>-offline), instead of causally from its past")


def add_retrain(command: Command) -> None:
    """The ``retrain`` subcommand."""
    p = command("retrain", "train a challenger on recent batches; promote it if it beats the champion",
                commands.cmd_retrain, render.render_retrain)
    _dataset(p)
    _model_options(p)
    p.add_argument("--recent-batches", type=int, metavar="N",
                   help=f"train on the N newest batches (default {defaults.RECENT_BATCHES})")
    p.add_argument("--holdout-fraction", type=float,
                   help=f"share of rows held out to compare the models (default {defaults.HOLDOUT_FRACTION:g})")
    p.add_argument("--tolerance", type=float,
                   help=f"promote if challenger -log p <= champion + this (default {defaults.TOLERANCE:g})")
    _fit_options(p)


def add_report(command: Command) -> None:
    """The ``report`` subcommand."""
    p = command("report", "write the review report (report.html and report.json) of scored batches again",
                commands.cmd_report, render.render_report)
    _version_options(p, "these batches (default: every one the version scored)")
    _offline_option(p)


def add_review(command: Command) -> None:
    """The ``review`` subcommand."""
    p = command("review", "open the review page: reports of scored batches, and a verdict for each flag",
                commands.cmd_review)
    p.add_argument("--lake", help="lake root (default: VAE_ANOMALY_LAKE)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s; another needs --token)")
    p.add_argument("--port", type=int, default=8765, help="port (default %(default)s)")
    p.add_argument("--reviewer", help="name stored with each verdict (default: the OS user)")
    p.add_argument("--token", help="require this token on every request (?token=... once, or a Bearer header)")


def add_threshold(command: Command) -> None:
    """The ``threshold`` subcommand."""
    p = command("threshold", "recalibrate a model's threshold from reviewers' verdicts (a new version, same weights)",
                commands.cmd_threshold, render.render_threshold)
    _dataset(p)
    _model_options(p)
    p.add_argument("--alias", help=f"the version to recalibrate (default: {defaults.CHAMPION})")
    p.add_argument("--from-reviews", action="store_true", help="best F1 on the reviewed items, within bounds")
    p.add_argument("--alerts-per-day", type=float, metavar="N", help="instead: at most N review items per day")
    p.add_argument("--promote", action="store_true", help="make the new version the champion (default: challenger only)")


def add_serve(command: Command) -> None:
    """The ``serve`` subcommand."""
    p = command("serve", "serve the scheduled-scoring, nightly-retraining and nightly-maintenance deployments "
                "from this process",
                commands.cmd_serve)
    _dataset(p, many=True)
    p.add_argument("--score-cron", default="0 * * * *", help="scoring schedule (default: hourly, %(default)r)")
    p.add_argument("--retrain-cron", default="0 2 * * *", help="retraining schedule (default: %(default)r)")
    p.add_argument("--maintain-cron", default="0 3 * * *", help="lake maintenance schedule (default: %(default)r)")
    p.add_argument("--port", type=int, default=4200,
                   help="port of the local Prefect server started when PREFECT_API_URL is unset (default %(default)s)")


def add_automations(command: Command) -> None:
    """The ``automations`` subcommand."""
    p = command("automations", "create (or update) on PREFECT_API_URL's server the automation that marks a flow run "
                "Crashed when its heartbeats stop (its worker died with it)", commands.cmd_automations, render.render_automations)
    p.add_argument("--within", type=float, metavar="SECONDS",
                   help="seconds without a heartbeat before a run is Crashed "
                        "(default: 3 periods of PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 3 x 180 s)")


def add_alerts(command: Command) -> None:
    """The ``alerts`` subcommand; its actions are :func:`pipelines.cli.alerts.add_actions`."""
    p = command("alerts", "alert rules: who is told about a dataset's scored batches, failed runs and stale feeds",
                alerts.cmd_alerts, alerts.render_alerts)
    alerts.add_actions(p, [_output_options(True)], _Parser, dataset_name)


def add_bench(command: Command) -> None:
    """The ``bench`` subcommand."""
    p = command("bench", "run the benchmark: python -m benchmarks.run with the other arguments (e.g. --quick, --only tabular)",
                commands.cmd_bench)
    p.set_defaults(passthrough=[])


def add_demo(command: Command) -> None:
    """The ``demo`` subcommand."""
    p = command("demo", "ingest the sample data, train, score, retrain and print where to look",
                commands.cmd_demo, render.render_demo)
    p.add_argument("--fresh", action="store_true", help="delete the demo's lake datasets and tracking state first")


#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Callable[[Command], None], ...] = (
    add_ingest, add_lake, add_maintain, add_train, add_score, add_report, add_review, add_threshold, add_retrain, add_serve,
    add_automations, add_alerts, add_bench, add_demo,
)


def _output_options(suppress: bool) -> argparse.ArgumentParser:
    # on the main parser and on every subcommand; SUPPRESS keeps a subcommand from
    # resetting a flag given before it (`vae-anomaly --json score ...`)
    opts = _Parser(add_help=False)
    default = argparse.SUPPRESS if suppress else False
    group = opts.add_argument_group("output")
    group.add_argument("--json", action="store_true", default=default, help="print the result as JSON (no bars)")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="show Prefect's INFO log and warnings")
    group.add_argument("--debug", action="store_true", default=default, help="show full logs and tracebacks")
    return opts


def build_parser() -> argparse.ArgumentParser:
    """The ``vae-anomaly`` argument parser, with every subcommand of :data:`SUBCOMMANDS`."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="vae-anomaly", description="Anomaly detection with a VAE: Delta lake, Prefect flows, MLflow registry, review page.",
        epilog=EPILOG, formatter_class=formatter, parents=[_output_options(False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = [_output_options(True)]

    def command(name: str, help: str, func: Callable, render: Optional[Callable] = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EPILOG, formatter_class=formatter, parents=common)
        p.set_defaults(func=func, render=render)
        return p

    for add in SUBCOMMANDS:
        add(command)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv``; ``bench`` keeps the arguments it does not know for the benchmark."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.passthrough = extra
    return args
