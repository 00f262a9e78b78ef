"""Checks a command makes before it starts Prefect, so a mistyped name fails in seconds.

A flow run needs a Prefect API: without a server, the CLI starts a temporary one, which takes
from ten seconds to over a minute. A dataset with no committed batches (exit 2) or a model name
the registry does not know (exit 3) is found here first, with the same messages the flows give.
The flows check again (they also run from deployments, without the CLI).
"""
from __future__ import annotations

import argparse
from typing import Optional

from pipelines.settings import get_settings


def require_batches(dataset: str) -> None:
    """Raise :class:`~pipelines.lake.errors.LakeError` (exit 2) unless ``dataset`` has committed batches."""
    from pipelines.lake import Lake
    from pipelines.lake.errors import LakeError

    root = get_settings().lake_url
    if not Lake(root).list_batches(dataset):
        raise LakeError(f"dataset {dataset!r} has no committed batches in {root!r}; run `vae-anomaly ingest` first")


def require_model(name: str, alias: Optional[str] = None, version: Optional[str] = None) -> None:
    """Raise :class:`~pipelines.tracking.TrackingError` (exit 3) unless model ``name`` is registered,
    with ``version`` or ``alias`` when given (one registry call, with the flows' messages; the
    tracking store is checked to answer within seconds)."""
    from pipelines import tracking

    settings = get_settings()
    tracking.configure(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    tracking.check_model_name(name)
    if version is not None:
        tracking.get_version(name, version)
    elif alias is not None:
        tracking.get_alias(name, alias)
    else:
        tracking.require_model(name)


def for_scoring(args: argparse.Namespace) -> None:
    """What ``score``, ``report``, ``threshold`` and ``retrain`` need before any flow starts:
    the dataset's batches, then its model (``--model-name``, or the dataset's name) with the
    ``--alias`` or ``--version`` the command names."""
    require_batches(args.dataset)
    version = getattr(args, "version", None)
    alias = None if version or not hasattr(args, "alias") else args.alias or "champion"  # the flows' default
    require_model(args.model_name or args.dataset, alias, version)
