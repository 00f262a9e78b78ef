"""The subcommands: each turns its parsed arguments into one flow call (or a process) and
returns the flow's result (a dict the renderers print) or an exit code.

Nothing here imports Prefect, MLflow, torch or the flows at module level: Prefect reads its
settings when it is first imported, which must happen after :func:`pipelines.cli.app.main`
applied them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Optional

from pipelines.cli import preflight
from pipelines.cli.console import configure_console, output_console, progress_bars
from pipelines.cli.errors import EXIT_OK, UsageError
from pipelines.settings import PROJECT_ROOT


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


def param_values(pairs: Optional[list[str]]) -> Optional[dict]:
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
    configure_console(args)
    with progress_bars(args):
        try:
            return flow(**_given(**kwargs))
        except Exception as exc:
            from pipelines.cli.alerts import alert_failure

            alert_failure(kwargs.get("dataset"), name, exc, kwargs.get("lake_url"))  # its --on-failure rules
            raise


def cmd_ingest(args: argparse.Namespace) -> dict:
    """``ingest``: the ingest flow on one source file (a missing local file fails first, exit 2)."""
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


def cmd_maintain(args: argparse.Namespace) -> dict:
    """``maintain``: the maintain flow on DATASET, or on every dataset of the lake."""
    if args.dataset is not None:
        preflight.require_batches(args.dataset)
    return _run_flow(args, "maintain", "maintain", dataset=args.dataset, retention=args.retention,
                     reports_older_than=args.reports_older_than)


def cmd_train(args: argparse.Namespace) -> dict:
    """``train``: the train flow."""
    return _run_flow(
        args, "train", "train", dataset=args.dataset, model_name=args.model_name, batch_ids=args.batch,
        series_column=args.series_column, exclude_columns=args.exclude, params=param_values(args.param), seed=args.seed,
    )


def cmd_score(args: argparse.Namespace) -> dict:
    """``score``: the score flow."""
    preflight.for_scoring(args)
    return _run_flow(
        args, "score", "score", dataset=args.dataset, model_name=args.model_name, alias=args.alias,
        version=args.version, batch_ids=args.batch, batch_rows=args.batch_rows, workers=args.workers,
        dask_address=args.dask_address, drift_threshold=args.drift_threshold,
        retrain_on_drift=args.retrain_on_drift or None, point_score="mean" if args.offline else None,
    )


def cmd_retrain(args: argparse.Namespace) -> dict:
    """``retrain``: the retrain flow."""
    preflight.for_scoring(args)
    return _run_flow(
        args, "retrain", "retrain", dataset=args.dataset, model_name=args.model_name,
        recent_batches=args.recent_batches, holdout_fraction=args.holdout_fraction, tolerance=args.tolerance,
        params=param_values(args.param), seed=args.seed, series_column=args.series_column, exclude_columns=args.exclude,
    )


def cmd_report(args: argparse.Namespace) -> dict:
    """``report``: rebuild the reports of scored batches."""
    preflight.for_scoring(args)
    return _run_flow(args, "report", "report", dataset=args.dataset, model_name=args.model_name, alias=args.alias,
                     version=args.version, batch_ids=args.batch, point_score="mean" if args.offline else None)


def cmd_threshold(args: argparse.Namespace) -> dict:
    """``threshold``: a new version with the threshold set from the verdicts."""
    if not (args.from_reviews or args.alerts_per_day):
        raise UsageError("say where the threshold comes from: --from-reviews (best F1 on reviewed items) or --alerts-per-day N")
    preflight.for_scoring(args)
    return _run_flow(args, "threshold", "threshold", dataset=args.dataset, model_name=args.model_name, alias=args.alias,
                     alerts_per_day=args.alerts_per_day, promote=args.promote or None)


def cmd_review(args: argparse.Namespace) -> int:
    """``review``: the review web app, until it is stopped."""
    from pipelines.review.serve import ReviewServerError, serve
    from pipelines.settings import get_settings

    try:
        serve(args.lake or get_settings().lake_url, host=args.host, port=args.port, reviewer=args.reviewer, token=args.token)
    except ReviewServerError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: the deployments, served from this process until it is stopped."""
    from pipelines import deployments

    deployments.serve_all(
        args.datasets, score_cron=args.score_cron, retrain_cron=args.retrain_cron, maintain_cron=args.maintain_cron,
        port=args.port,
        before_serving=lambda: configure_console(args),
    )
    return EXIT_OK


def cmd_automations(args: argparse.Namespace) -> dict:
    """``automations``: :func:`pipelines.automations.ensure_automations` on PREFECT_API_URL's server."""
    from pipelines.automations import ensure_automations

    try:
        return ensure_automations(args.within)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench``: ``python -m benchmarks.run`` with the arguments the parser left over."""
    if not (PROJECT_ROOT / "benchmarks" / "run.py").exists():
        raise UsageError(f"no benchmarks/run.py under {PROJECT_ROOT}; `bench` runs from a source checkout")
    command = [sys.executable, "-m", "benchmarks.run", *args.passthrough]
    return subprocess.run(command, cwd=PROJECT_ROOT).returncode


def cmd_demo(args: argparse.Namespace) -> dict:
    """``demo``: :func:`pipelines.demo.run`, its steps printed as they go unless ``--json``."""
    from pipelines import demo

    return demo.run(
        fresh=args.fresh, say=None if args.json else output_console().print, bars=lambda: progress_bars(args),
        on_start=lambda: configure_console(args),
    )
