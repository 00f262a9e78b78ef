"""The ``ingest`` flow: one source file into the Delta lake, validated, bad rows quarantined.

Tasks: ``read-source`` (I/O, retried) -> ``load-dataset-state`` (I/O, retried) ->
``validate-batch`` (pure) -> ``commit-batch`` (I/O, retried; safe to repeat) ->
``publish-ingest-summary`` (a markdown artifact with the counts). A committed batch is also a
``vae-anomaly.batch.ingested`` event (:func:`pipelines.alerts.automation.emit_ingested`).
"""
from __future__ import annotations

import re
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines.alerts.automation import emit_ingested
from pipelines.escaping import markdown as md
from pipelines.flows.common import IO_RETRIES, IO_RETRY_DELAY, io_task
from pipelines.lake import (
    BatchRecord,
    DatasetSchema,
    ExtraColumns,
    IngestReport,
    Lake,
    SourceBatch,
    SourceFormat,
    ValidatedBatch,
    read_source,
    validate_batch,
)

@io_task("read-source")
def read_source_task(source: str, format: Optional[SourceFormat] = None) -> SourceBatch:
    """Read and hash the source file."""
    return read_source(source, format)


@io_task("load-dataset-state")
def load_dataset_state(
    lake_url: str, dataset: str, sha256: str
) -> tuple[Optional[DatasetSchema], Optional[BatchRecord]]:
    """The dataset's fixed schema and the committed batch with this content, if any."""
    lake = Lake(lake_url)
    return lake.schema(dataset), lake.find_batch(dataset, sha256=sha256)


@task(name="validate-batch", cache_policy=NO_CACHE)
def validate_batch_task(
    dataset: str,
    batch: SourceBatch,
    current_schema: Optional[DatasetSchema],
    time_column: Optional[str],
    schema: Optional[dict[str, str]],
    batch_id: Optional[str],
    extra_columns: ExtraColumns,
) -> ValidatedBatch:
    """Type the rows and split off the quarantine (raises SchemaError on drift)."""
    return validate_batch(
        dataset,
        batch,
        current_schema=current_schema,
        time_column=time_column,
        schema=schema,
        batch_id=batch_id,
        extra_columns=extra_columns,
    )


@io_task("commit-batch")
def commit_batch(lake_url: str, validated: ValidatedBatch) -> IngestReport:
    """Commit the rows, the quarantine, then the batch record (see :mod:`pipelines.lake`)."""
    return Lake(lake_url).commit(validated)


@task(name="publish-ingest-summary", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY)
def publish_summary(report: dict[str, Any]) -> str:
    """Publish a markdown artifact with the batch's counts; returns its key."""
    key = "ingest-" + (re.sub(r"[^a-z0-9]+", "-", report["dataset"].lower()).strip("-") or "dataset")
    create_markdown_artifact(markdown=summary_markdown(report), key=key, description=f"Ingest of {report['source']}")
    return key


def summary_markdown(report: dict[str, Any]) -> str:
    """The artifact's markdown: counts, quarantine reasons by column and the schema."""
    status = "skipped: this content was already ingested" if report["skipped"] else "committed"
    lines = [
        f"# Ingest into {md(report['dataset'])}",
        "",
        f"Batch {md(report['batch_id'])} from {md(report['source'])} ({md(report['format'])}): **{status}**.",
        "",
        "| rows read | accepted | quarantined |",
        "|---:|---:|---:|",
        f"| {report['rows_read']} | {report['rows_accepted']} | {report['rows_quarantined']} |",
        "",
    ]
    if report["quarantined_by_column"]:
        lines += ["| column | quarantined rows |", "|---|---:|"]
        lines += [f"| {md(c)} | {n} |" for c, n in report["quarantined_by_column"].items()]
        lines.append("")
    if report["ignored_columns"]:
        lines += [f"Ignored extra columns: {', '.join(md(c) for c in report['ignored_columns'])}.", ""]
    columns = ", ".join(f"{md(c)} {md(t)}" for c, t in report["schema"]["columns"].items())
    time_column = report["schema"].get("time_column")
    lines.append(f"Schema: {columns}" + (f"; time column {md(time_column)}." if time_column else "."))
    return "\n".join(lines) + "\n"


@flow(name="ingest")
def ingest(
    dataset: str,
    source: str,
    time_column: Optional[str] = None,
    column_types: Optional[dict[str, str]] = None,
    batch_id: Optional[str] = None,
    format: Optional[SourceFormat] = None,
    extra_columns: ExtraColumns = "error",
    lake_url: Optional[str] = None,
) -> dict[str, Any]:
    """Ingest one CSV, Parquet or JSON-lines file as a batch of ``dataset``.

    Parameters
    ----------
    dataset : str
        Dataset name in the lake.
    source : str
        Local path or fsspec URL.
    column_types : dict, optional
        Column -> logical type for the first batch; ``schema`` in
        :meth:`pipelines.lake.Lake.ingest` (renamed: ``schema`` shadows a pydantic attribute
        in Prefect's parameter model).
    time_column, batch_id, format, extra_columns
        As in :meth:`pipelines.lake.Lake.ingest`.
    lake_url : str, optional
        Lake root; defaults to ``Settings.lake_url``.

    Returns
    -------
    dict
        The :class:`~pipelines.lake.IngestReport` as a dict (``skipped`` true for content
        already in the lake).
    """
    lake = Lake(lake_url)
    logger = get_run_logger()
    batch = read_source_task(source, format)
    current_schema, existing = load_dataset_state(lake.url, dataset, batch.sha256)
    if existing is not None:
        report = IngestReport.of_skipped(dataset, existing, source=batch.source)
    else:
        validated = validate_batch_task(
            dataset, batch, current_schema, time_column, column_types, batch_id, extra_columns
        )
        report = commit_batch(lake.url, validated)
    result = report.to_dict()
    logger.info(
        "%s %s batch %s: %d read, %d accepted, %d quarantined",
        "skipped" if report.skipped else "committed",
        dataset,
        report.batch_id,
        report.rows_read,
        report.rows_accepted,
        report.rows_quarantined,
    )
    if not report.skipped:  # the freshness automations' clock (pipelines.alerts.automation)
        emit_ingested(dataset, report.batch_id, report.rows_accepted)
    publish_summary(result)
    return result


if __name__ == "__main__":  # local run: python -m pipelines.flows.ingest <dataset> <source> [time_column]
    import sys

    print(ingest(*sys.argv[1:4]))
