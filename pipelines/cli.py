"""The ``vae-anomaly`` command line: ingest, train, score, retrain, serve, bench, demo.

Prefect reads its settings when it is first imported, so nothing here imports Prefect, MLflow,
torch or the flows at module level: :func:`main` applies the settings
(:func:`pipelines.settings.apply_prefect_env`) and each command imports what it needs.

Every failure ends as one ``error: ...`` line on stderr and one of the exit codes in
:data:`EPILOG` (``--debug`` adds the traceback). Results print as a compact table, or as JSON
with ``--json``. Prefect's and MLflow's console logs are off by default (``-v`` shows INFO lines
and warnings, still without tracebacks; ``--debug`` shows everything; ``serve`` always shows
the runs' INFO lines). The Prefect API still receives every log line.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

from pipelines.settings import PROJECT_ROOT, apply_prefect_env, get_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INPUT = 2
EXIT_MODEL = 3
EXIT_ANOMALIES = 4
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0  success
  1  unexpected error (run again with --debug for the traceback)
  2  bad input: command line, missing source file, unreadable file, schema drift, bad data
  3  model registry: no such model, version or alias, or the tracking store failed
  4  score --fail-on-anomaly: at least one row was flagged
  130 interrupted

environment (defaults in brackets):
  VAE_ANOMALY_HOME          local state: MLflow store, Prefect home [<repo>/.state]
  VAE_ANOMALY_LAKE          Delta lake root, a path or s3:// URL [<repo>/data/lake]
  MLFLOW_TRACKING_URI       tracking store [sqlite:///$VAE_ANOMALY_HOME/mlflow.db]
  PREFECT_API_URL           Prefect server [a temporary local API per command]
  VAE_ANOMALY_DASK_ADDRESS  Dask scheduler for `score` [none: score in-process]
"""


class UsageError(Exception):
    """A bad command line (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors raised as :class:`UsageError` instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ----------------------------------------------------------------------------- errors


def _loaded_class(module: str, name: str) -> Optional[type]:
    """``module.name`` if the module is already imported, else ``None``.

    An exception can only be an instance of a class whose module was imported, so checking
    ``sys.modules`` classifies errors without importing MLflow or torch just to compare.
    """
    return getattr(sys.modules.get(module), name, None)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception (see :data:`EPILOG`)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
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


# ----------------------------------------------------------------------------- console


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


def _configure_console(args: argparse.Namespace) -> None:
    """Apply the output flags to Prefect's console handlers and to Python warnings.

    Call after Prefect is imported (it configures logging on import).
    """
    if args.debug:
        return
    level = logging.INFO if args.verbose or args.command == "serve" else logging.WARNING
    handlers = list(logging.getLogger().handlers) + list(logging.getLogger("prefect._internal").handlers)
    for handler in handlers:
        if not any(isinstance(f, _PrefectConsoleFilter) for f in handler.filters):
            handler.addFilter(_PrefectConsoleFilter(level))
    if not args.verbose:
        warnings.simplefilter("ignore")  # library deprecation chatter; --verbose shows it


@contextmanager
def _progress(args: argparse.Namespace) -> Iterator[None]:
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


def _console():
    """Standard output; 120 columns when it is not a terminal (logs, CI) instead of rich's 80."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as ``null`` and unknown objects as strings, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def _fmt(value: Any, digits: int = 4) -> str:
    """A table cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _key_values(title: str, rows: Sequence[tuple[str, Any]]):
    """A two-column table of labelled values."""
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, _fmt(value))
    return table


def top_anomalies_table(top: list[dict], limit: int = 10, title: str = "top anomalies"):
    """Rows of ``top`` (dicts with batch_id, _source_row, anomaly_score, p_value, top_features)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name, justify in (("batch", "left"), ("row", "right"), ("score", "right"), ("p-value", "right"), ("top features", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for r in top[:limit]:
        table.add_row(
            str(r.get("batch_id", "")), str(r.get("_source_row", "")), _fmt(r.get("anomaly_score")),
            _fmt(r.get("p_value"), 2), str(r.get("top_features", "")),
        )
    return table


# ----------------------------------------------------------------------------- renderers


def render_ingest(r: dict) -> list:
    quarantined = ", ".join(f"{c}: {n}" for c, n in (r.get("quarantined_by_column") or {}).items())
    status = "already in the lake (skipped)" if r.get("skipped") else "committed"
    return [_key_values(f"ingest {r.get('dataset')}: {status}", [
        ("batch", r.get("batch_id")), ("source", r.get("source")),
        ("rows", f"{r.get('rows_read')} read, {r.get('rows_accepted')} accepted, {r.get('rows_quarantined')} quarantined"),
        ("quarantined by column", quarantined or None), ("ignored columns", r.get("ignored_columns") or None),
    ])]


def render_train(r: dict) -> list:
    return [_key_values(f"train {r.get('dataset')}: registered {r.get('model_name')} v{r.get('version')}", [
        ("aliases", r.get("aliases")), ("model uri", r.get("model_uri")), ("run id", r.get("run_id")),
        ("rows", r.get("rows")), ("epochs", r.get("epochs")), ("threshold", r.get("threshold")),
        ("device", r.get("device")),
    ])]


def render_score(r: dict) -> list:
    from rich.table import Table

    out: list = []
    table = Table(title=f"score {r.get('dataset')} with {r.get('model_name')} v{r.get('model_version')}", title_justify="left")
    for name in ("batch", "rows", "anomalies", "rate", "PSI"):
        table.add_column(name, justify="left" if name == "batch" else "right")
    for b in r.get("scored", []):
        rate = b["anomalies"] / b["rows"] if b.get("rows") else float("nan")
        table.add_row(b["batch_id"], str(b["rows"]), str(b["anomalies"]), f"{rate:.2%}", _fmt(b.get("psi"), 3))
    out.append(table)
    drift = "yes" if r.get("drift") else "no"
    out.append(_key_values("", [
        ("total", f"{r.get('rows', 0)} rows, {r.get('anomalies', 0)} anomalies"),
        ("already scored", f"{len(r.get('skipped', []))} batch(es) skipped"),
        ("drift", f"{drift} (max PSI {_fmt(r.get('max_psi'), 3)})"),
    ]))
    if r.get("top"):
        out.append(top_anomalies_table(r["top"]))
    if r.get("retrain"):
        out.extend(render_retrain(r["retrain"]))
    return out


def render_retrain(r: dict) -> list:
    return [_key_values(f"retrain {r.get('dataset')}: {'promoted' if r.get('promoted') else 'kept the champion'}", [
        ("champion", f"v{r.get('champion_version')}  -log p {_fmt(r.get('champion_nll'))}"),
        ("challenger", f"v{r.get('challenger_version')}  -log p {_fmt(r.get('challenger_nll'))}"),
        ("rule", r.get("rule")),
    ])]


# ----------------------------------------------------------------------------- commands


def _key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (``50``, ``[64,32]``, ``true``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _params(pairs: Optional[list[str]]) -> Optional[dict]:
    """``--param`` pairs as a dict, checked against the detector's config before any work starts."""
    if not pairs:
        return None
    params = dict(_key_value(p) for p in pairs)
    if "seed" in params:
        raise UsageError("pass the seed with --seed, not --param seed=")
    from vae_core import TimeSeriesConfig  # the widest config: VAEConfig plus the window settings

    TimeSeriesConfig(**params)  # a typo or a bad value fails here (exit 2), not after the data is read
    return params


def _given(**kwargs: Any) -> dict:
    """The keyword arguments the user set, so the flows' own defaults apply to the rest."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _run_flow(args: argparse.Namespace, module: str, name: str, **kwargs: Any) -> dict:
    """Import ``pipelines.flows.<module>.<name>`` and call it in-process with progress bars."""
    import importlib

    flow = getattr(importlib.import_module(f"pipelines.flows.{module}"), name)
    _configure_console(args)
    with _progress(args):
        return flow(**_given(**kwargs))


def cmd_ingest(args: argparse.Namespace) -> dict:
    source = args.source
    if "://" not in source and not os.path.exists(source):  # fail before starting Prefect
        raise FileNotFoundError(2, "No such file or directory", source)
    return _run_flow(
        args, "ingest", "ingest", dataset=args.dataset, source=source, time_column=args.time_column,
        format=args.format, batch_id=args.batch_id, extra_columns="ignore" if args.ignore_extra_columns else None,
    )


def cmd_lake(args: argparse.Namespace) -> dict:
    from pipelines.lake import admin

    return admin.run(args.action, args.dataset, args.batch_id)


def render_lake(r: dict) -> list:
    from pipelines.lake import admin

    return admin.render(r)


def cmd_train(args: argparse.Namespace) -> dict:
    return _run_flow(
        args, "train", "train", dataset=args.dataset, model_name=args.model_name, batch_ids=args.batch,
        series_column=args.series_column, exclude_columns=args.exclude, params=_params(args.param), seed=args.seed,
    )


def cmd_score(args: argparse.Namespace) -> dict:
    return _run_flow(
        args, "score", "score", dataset=args.dataset, model_name=args.model_name, alias=args.alias,
        version=args.version, batch_ids=args.batch, batch_rows=args.batch_rows, workers=args.workers,
        dask_address=args.dask_address, drift_threshold=args.drift_threshold,
        retrain_on_drift=args.retrain_on_drift or None,
    )


def cmd_retrain(args: argparse.Namespace) -> dict:
    return _run_flow(
        args, "retrain", "retrain", dataset=args.dataset, model_name=args.model_name,
        recent_batches=args.recent_batches, holdout_fraction=args.holdout_fraction, tolerance=args.tolerance,
        params=_params(args.param), seed=args.seed, series_column=args.series_column, exclude_columns=args.exclude,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from pipelines import deployments

    deployments.serve_all(
        args.datasets, score_cron=args.score_cron, retrain_cron=args.retrain_cron, port=args.port,
        before_serving=lambda: _configure_console(args),
    )
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    if not (PROJECT_ROOT / "benchmarks" / "run.py").exists():
        raise UsageError(f"no benchmarks/run.py under {PROJECT_ROOT}; `bench` runs from a source checkout")
    command = [sys.executable, "-m", "benchmarks.run", *args.passthrough]
    return subprocess.run(command, cwd=PROJECT_ROOT).returncode


def cmd_demo(args: argparse.Namespace) -> dict:
    from pipelines import demo

    return demo.run(
        fresh=args.fresh, say=None if args.json else _console().print, bars=lambda: _progress(args),
        on_start=lambda: _configure_console(args),
    )


def render_demo(summary: dict) -> list:
    from pipelines import demo

    return demo.render(summary)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``vae-anomaly`` argument parser."""
    formatter = argparse.RawDescriptionHelpFormatter

    def output_options(suppress: bool) -> argparse.ArgumentParser:
        # on the main parser and on every subcommand; SUPPRESS keeps a subcommand from
        # resetting a flag given before it (`vae-anomaly --json score ...`)
        opts = _Parser(add_help=False)
        default = argparse.SUPPRESS if suppress else False
        group = opts.add_argument_group("output")
        group.add_argument("--json", action="store_true", default=default, help="print the result as JSON (no bars)")
        group.add_argument("-v", "--verbose", action="store_true", default=default, help="show Prefect's INFO log and warnings")
        group.add_argument("--debug", action="store_true", default=default, help="show full logs and tracebacks")
        return opts

    parser = _Parser(
        prog="vae-anomaly", description="Anomaly detection with a VAE: Parquet lake, Prefect flows, MLflow registry.",
        epilog=EPILOG, formatter_class=formatter, parents=[output_options(False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = [output_options(True)]

    def command(name: str, help: str, func: Callable, render: Optional[Callable] = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EPILOG, formatter_class=formatter, parents=common)
        p.set_defaults(func=func, render=render)
        return p

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model-name", help="registered model name (default: the dataset name)")

    def fit_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--series-column", help="column that names the series of a time-series dataset")
        p.add_argument("--exclude", nargs="+", action="extend", metavar="COL", help="columns the model must not see")
        p.add_argument("--param", action="append", metavar="KEY=VALUE",
                       help="detector setting (vae_core.VAEConfig), value as JSON: --param max_epochs=50")
        p.add_argument("--seed", type=int, help="random seed (default 0)")

    p = command("ingest", "validate one CSV/Parquet/JSONL file and commit it as a batch of DATASET", cmd_ingest, render_ingest)
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("source", metavar="SOURCE", help="local path or fsspec URL (.csv, .parquet, .jsonl; .gz ok)")
    p.add_argument("--time-column", help="datetime column required in every row (fixed by the first batch)")
    p.add_argument("--format", choices=("csv", "parquet", "jsonl"), help="override the format guessed from the name")
    p.add_argument("--batch-id", help="batch id (default: from the content hash, so re-ingesting is a no-op)")
    p.add_argument("--ignore-extra-columns", action="store_true", help="leave out columns not in the schema")

    p = command("lake", "list, remove, restore (from the tables' history) or migrate the batches of DATASET", cmd_lake, render_lake)
    p.add_argument("action", choices=("list", "remove", "restore", "migrate"), metavar="ACTION",
                   help="list | remove BATCH_ID | restore BATCH_ID | migrate (an old _manifest.json dataset)")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("batch_id", nargs="?", metavar="BATCH_ID")

    p = command("train", "train a model on DATASET, register it in MLflow (champion if it is the first)", cmd_train, render_train)
    p.add_argument("dataset", metavar="DATASET")
    model_options(p)
    p.add_argument("--batch", nargs="+", action="extend", metavar="ID", help="train on these batches (default: all)")
    fit_options(p)

    p = command("score", "score the batches of DATASET not yet scored by the model version", cmd_score, render_score)
    p.add_argument("dataset", metavar="DATASET")
    model_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", help="registry alias to score with (default: champion)")
    which.add_argument("--version", help="registry version to score with")
    p.add_argument("--batch", nargs="+", action="extend", metavar="ID", help="score these batches (default: all)")
    p.add_argument("--batch-rows", type=int, help="rows per Arrow record batch (default 65536)")
    p.add_argument("--workers", type=int, metavar="N", help="score batches in parallel on a local Dask cluster")
    p.add_argument("--dask-address", help="score on an existing Dask scheduler (or VAE_ANOMALY_DASK_ADDRESS)")
    p.add_argument("--drift-threshold", type=float, help="PSI above which a batch counts as drifted (default 0.25)")
    p.add_argument("--retrain-on-drift", action="store_true", help="run `retrain` when drift is found")
    p.add_argument("--fail-on-anomaly", action="store_true", help="exit 4 if any row was flagged")

    p = command("retrain", "train a challenger on recent batches; promote it if it beats the champion", cmd_retrain, render_retrain)
    p.add_argument("dataset", metavar="DATASET")
    model_options(p)
    p.add_argument("--recent-batches", type=int, metavar="N", help="train on the N newest batches (default 3)")
    p.add_argument("--holdout-fraction", type=float, help="share of rows held out to compare the models (default 0.2)")
    p.add_argument("--tolerance", type=float, help="promote if challenger -log p <= champion + this (default 0)")
    fit_options(p)

    p = command("serve", "serve the scheduled-scoring and nightly-retraining deployments from this process", cmd_serve)
    p.add_argument("datasets", nargs="+", metavar="DATASET")
    p.add_argument("--score-cron", default="0 * * * *", help="scoring schedule (default: hourly, %(default)r)")
    p.add_argument("--retrain-cron", default="0 2 * * *", help="retraining schedule (default: %(default)r)")
    p.add_argument("--port", type=int, default=4200,
                   help="port of the local Prefect server started when PREFECT_API_URL is unset (default %(default)s)")

    p = command("bench", "run the benchmark: python -m benchmarks.run with the other arguments (e.g. --quick, --only tabular)", cmd_bench)
    p.set_defaults(passthrough=[])

    p = command("demo", "ingest the sample data, train, score, retrain and print where to look", cmd_demo, render_demo)
    p.add_argument("--fresh", action="store_true", help="delete the demo's lake datasets and tracking state first")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``vae-anomaly`` console script; returns the exit code."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        debug = args.debug
        settings = get_settings()
        settings.ensure_home()
        apply_prefect_env(settings)  # before anything imports prefect
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if args.json:
            # against a tracking server MLflow writes "View run ... at: <url>" to stdout when a
            # run ends, which would put two lines of text before the JSON document
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        if not (args.verbose or args.debug or args.command == "serve"):
            # read on import, here and in child processes (Dask workers, the temporary API)
            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        result = args.func(args)
        if isinstance(result, int):
            return result
        if args.json:
            print(json.dumps(_jsonable(result), indent=2))
        elif args.render is not None:
            console = _console()
            for item in args.render(result):
                console.print(item)
        if getattr(args, "fail_on_anomaly", False) and result.get("anomalies", 0) > 0:
            return EXIT_ANOMALIES
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code_for(exc)
        if debug:
            traceback.print_exc()
        print(error_line(exc, code), file=sys.stderr, flush=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
