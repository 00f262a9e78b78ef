"""The ``maintain`` flow: a maintenance pass over the lake's datasets (compaction, retention,
vacuum, checkpoints, log cleanup, old reports), nightly as the ``nightly-maintenance``
deployment. What a pass does, and why it is safe beside ingest and score, is
:mod:`pipelines.lake.maintenance`.

Tasks: ``list-datasets`` (when none is named) -> ``maintain-dataset`` (one per dataset, I/O,
retried; a pass is safe to repeat) -> ``publish-maintenance-summary`` (a markdown artifact).
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pipelines.durations import parse_duration, whole_hours
from pipelines.escaping import markdown as md
from pipelines.flows.common import IO_RETRIES, IO_RETRY_DELAY, artifact_key, io_task, lake_for
from pipelines.lake.maintenance import maintain as maintain_dataset


@io_task("list-datasets")
def list_datasets(lake_url: Optional[str]) -> list[str]:
    """Every dataset of the lake (those with a batches table)."""
    return lake_for(lake_url).datasets()


@io_task("maintain-dataset")
def maintain_dataset_task(lake_url: Optional[str], dataset: str, retention: Optional[str],
                          reports_older_than: Optional[str]) -> dict[str, Any]:
    """One :func:`pipelines.lake.maintenance.maintain` pass over ``dataset``."""
    hours = None if retention is None else whole_hours(retention, "retention")
    age = None if reports_older_than is None else parse_duration(reports_older_than, "reports-older-than")
    done = maintain_dataset(lake_for(lake_url), dataset, retention_hours=hours, reports_older_than=age)
    return done.to_dict()


@task(name="publish-maintenance-summary", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY)
def publish_summary(result: dict[str, Any]) -> str:
    """A markdown artifact: per dataset and table, files and log entries before and after."""
    lines = ["| dataset | table | files | log files removed | vacuumed | checkpoint | skipped |", "|---|---|---|---|---|---|---|"]
    for d in result["datasets"]:
        for t in d["tables"]:
            lines.append(f"| {md(d['dataset'])} | {md(t['table'])} | {t['files_before']} -> {t['files_after']} | "
                         f"{t['log_files_removed']} | {t['files_vacuumed']} | {t['checkpoint_version']} | "
                         f"{md('; '.join(t['skipped'])) or '-'} |")
    pruned = sum(len(d["reports_pruned"]) for d in result["datasets"])
    lines.append(f"\nReports pruned: {pruned}.")
    key = artifact_key("maintenance", *(d["dataset"] for d in result["datasets"][:1])) or "maintenance"
    create_markdown_artifact(markdown="\n".join(lines), key=key, description="Lake maintenance pass")
    return key


@flow(name="maintain")
def maintain(
    dataset: Optional[str] = None,
    retention: Optional[str] = None,
    reports_older_than: Optional[str] = None,
    lake_url: Optional[str] = None,
) -> dict[str, Any]:
    """Maintain ``dataset`` (default: every dataset of the lake).

    Parameters
    ----------
    dataset : str, optional
    retention : str, optional
        History to keep, e.g. ``"7d"`` (whole hours); default ``VAE_ANOMALY_LAKE_RETENTION`` (7 days).
    reports_older_than : str, optional
        e.g. ``"90d"``: delete the reports of batches ingested longer ago (their verdicts stay).
    lake_url : str, optional

    Returns
    -------
    dict
        ``datasets``: one :class:`pipelines.lake.maintenance.MaintenanceReport` dict each.
    """
    if retention is not None:
        whole_hours(retention, "retention")  # bad input fails before any work
    if reports_older_than is not None:
        parse_duration(reports_older_than, "reports-older-than")
    names = [dataset] if dataset else list_datasets(lake_url)
    done = [maintain_dataset_task(lake_url, name, retention, reports_older_than) for name in names]
    result = {"datasets": done}
    if done:
        publish_summary(result)
    get_run_logger().info("maintained %d dataset(s): %s", len(done), ", ".join(names) or "none")
    return result


if __name__ == "__main__":
    import sys

    print(maintain(*sys.argv[1:2]))
