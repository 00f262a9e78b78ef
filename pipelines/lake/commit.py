"""The commit protocol of a batch (see :mod:`pipelines.lake`), and clean-up of what killed
ingests leave behind."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import pyarrow as pa

from pipelines.lake import batches as batches_table
from pipelines.lake import content, delta, storage
from pipelines.lake.errors import LakeError, SchemaRace
from pipelines.lake.records import (
    BATCH_COLUMN,
    CONTENT_COLUMN,
    BatchRecord,
    DatasetSchema,
    IngestReport,
    ValidatedBatch,
    find_record,
)
from pipelines.lake.tables import BATCH_TABLES, LakeTables


def _utc_now() -> str:
    """Current UTC time, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def commit_batch(tables: LakeTables, batch: ValidatedBatch) -> IngestReport:
    """Commit a validated batch: its rows, its quarantine, then its row in ``batches``.

    The rows and quarantine each replace the batch content's rows in the batch's partition in
    one Delta commit (:func:`pipelines.lake.content.write_part`: a writer of other content
    under the same id keeps its rows apart, and readers keep only the committed content's);
    the batch becomes visible with the last commit, an append to the ``batches`` table that
    succeeds only if no other writer committed since it was read (compare and swap). On
    a lost race the table is read again: the same content committed by the other writer
    makes this a no-op (``skipped``), anything else is retried. A run killed at any point
    leaves every batch as it was; a re-run completes.

    Parameters
    ----------
    batch : ValidatedBatch

    Returns
    -------
    IngestReport

    Raises
    ------
    LakeError
        The batch id is taken by other content, or (:class:`SchemaRace`) another writer
        committed the dataset's first batch, with another schema, since ``batch`` was
        validated (a concurrent first batch with the same schema is fine).
    """
    dataset, batch_id, digest = batch.dataset, batch.batch_id, batch.content_sha256
    uri = tables.uri(dataset, "batches")
    written, race = False, None
    for attempt in range(delta.COMMIT_ATTEMPTS):
        table, records = tables.load_batches(dataset)
        existing = find_record(records, sha256=digest)
        if existing is not None:
            return IngestReport.of_skipped(dataset, existing, source=batch.source.source)
        taken = find_record(records, batch_id=batch_id)
        if taken is not None:
            raise LakeError(f"dataset {dataset!r}: batch id {batch_id!r} is already used by {taken.source!r}")
        fixed = DatasetSchema.from_dict(records[0].schema) if records else None
        if fixed is None and not batch.schema_is_new or fixed is not None and fixed != batch.schema:
            raise SchemaRace(f"dataset {dataset!r}: another writer fixed its schema since this batch was validated")
        if not written:
            try:
                write_data(tables, batch)
            except SchemaRace as exc:  # a concurrent first batch created the table: wait for its commit
                race = exc
                delta.backoff(attempt)
                continue
            written = True
        record = make_record(batch, seq=max((r.seq for r in records), default=0) + 1)
        if delta.cas_append(uri, tables.options, table, batches_table.to_table(record), "ingest", batch_id=batch_id):
            storage.crash_point("batches")
            return IngestReport(**record.to_dict(), dataset=dataset)
        delta.backoff(attempt)
    if not written and race is not None:
        raise SchemaRace(
            f"dataset {dataset!r} has no committed batch, but {race} (left by a killed first ingest?): "
            "re-run that ingest, or delete the dataset's folder if nothing was committed"
        )
    raise LakeError(f"dataset {dataset!r}: {delta.COMMIT_ATTEMPTS} commits of batch {batch_id!r} lost to concurrent writers")


def write_data(tables: LakeTables, batch: ValidatedBatch) -> None:
    """Replace the batch content's rows of the rows and quarantine tables (not yet visible)."""
    for name, table in (("rows", batch.accepted), ("quarantine", batch.quarantine)):
        if name == "quarantine" and not table.num_rows:
            continue  # readers only look for quarantine rows the batch record counts
        try:
            content.write_part(tables.uri(batch.dataset, name), tables.options, name, table, batch.batch_id,
                               batch.content_sha256, "ingest")
        except delta.DeltaError as exc:
            if batch.schema_is_new and any(word in str(exc).lower() for word in ("schema", "cast")):
                raise SchemaRace(f"the {name} table has other column types ({exc})") from exc
            raise LakeError(f"dataset {batch.dataset!r}, batch {batch.batch_id!r}: cannot write {name}: {exc}") from exc


def vacuum(tables: LakeTables, dataset: str, retention_hours: Optional[int] = None) -> list[str]:
    """Delete the data of batches missing from ``batches`` (left by killed ingests), rows of
    listed batch ids with content other than the record's (left by an ingest that lost its
    id to other content) and, with ``retention_hours``, Delta-vacuum files older than that;
    return what was removed.

    Run it when no ingest of the dataset is running: a running ingest's data is not
    listed yet either (``vae-anomaly maintain`` runs beside them: it removes only settled
    orphans, :func:`remove_orphans`). Vacuuming files drops the history that ``lake restore`` uses.
    """
    removed = remove_orphans(tables, dataset)
    if retention_hours is not None:
        for name in BATCH_TABLES:
            table = tables.open(dataset, name)
            if table is not None:
                removed += vacuum_files(table, retention_hours)
    return removed


def remove_orphans(tables: LakeTables, dataset: str, settled_before: Optional[datetime] = None) -> list[str]:
    """Delete, from each table partitioned by batch, the data of batches missing from
    ``batches`` and the rows of listed batches with other content than their record's; return
    what was removed (``<table>/batch_id=<id>`` and ``<table>/batch_id=<id>/_content=<marker>``).

    Each table's delete is a compare and swap on the version it was computed from (recomputed
    on a lost race), and the batches are read after the table, so a batch committed meanwhile
    is kept. With ``settled_before``, only partitions whose every file is older than that are
    touched: an ingest in progress has written its rows but not yet its record, so its fresh
    partition is left alone, and this is safe beside running ingests.
    """
    removed: list[str] = []
    for name in BATCH_TABLES:
        for attempt in range(delta.COMMIT_ATTEMPTS):
            table = tables.open(dataset, name)
            if table is None:
                break
            records = tables.records(dataset)
            found = _orphans(table, records, settled_before)
            if not found:
                break
            where = " OR ".join(predicate for _, predicate in found)
            try:
                table.delete(where, commit_properties=delta.commit_properties("vacuum"))
            except delta.CommitFailedError:
                delta.backoff(attempt)
                continue
            removed += [f"{name}/{label}" for label, _ in found]
            break
        else:
            raise LakeError(f"dataset {dataset!r}: {delta.COMMIT_ATTEMPTS} deletes of orphaned {name} lost to concurrent writers")
    return removed


def _orphans(table, records: list[BatchRecord], settled_before: Optional[datetime]) -> list[tuple[str, str]]:
    """(label, delete predicate) of each orphaned partition and foreign content in ``table``."""
    actions = pa.table(table.get_add_actions(flatten=True))
    column = f"partition.{BATCH_COLUMN}"
    newest: dict[str, int] = {}
    for batch_id, modified in zip(actions.column(column).to_pylist(), actions.column("modification_time").to_pylist()):
        newest[batch_id] = max(newest.get(batch_id, modified), modified)
    cutoff = None if settled_before is None else settled_before.timestamp() * 1000
    settled = {b for b, modified in newest.items() if cutoff is None or modified < cutoff}
    listed = {r.batch_id for r in records}
    found = [(f"{BATCH_COLUMN}={b}", f"{BATCH_COLUMN} = {delta.quote(b)}") for b in sorted(settled - listed)]
    for b, c in content.foreign_content(table, records):
        if b in settled:
            found.append((f"{BATCH_COLUMN}={b}/{CONTENT_COLUMN}={c}",
                          f"({BATCH_COLUMN} = {delta.quote(b)} AND {CONTENT_COLUMN} = {delta.quote(c)})"))
    return found


def vacuum_files(table, retention_hours: int, full: bool = False) -> list[str]:
    """Delta vacuum: delete the files that no version of ``table`` younger than
    ``retention_hours`` references and that are older than that; with ``full``, also files no
    commit ever referenced (left by writers that lost a race), older than the retention too.
    Returns the files deleted. Its own commits (the start and end of the vacuum) hold no data,
    so delta-rs may retry them over other writers' commits."""
    return table.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=full)


def make_record(batch: ValidatedBatch, seq: int) -> BatchRecord:
    """The ``batches`` row of a validated batch."""
    return BatchRecord(
        batch_id=batch.batch_id,
        source=batch.source.source,
        format=batch.source.format,
        sha256=batch.content_sha256,
        file_sha256=batch.source.sha256,
        rows_read=batch.source.rows_read,
        rows_accepted=batch.accepted.num_rows,
        rows_quarantined=batch.quarantine.num_rows,
        schema=batch.schema.to_dict(),
        ingested_at=_utc_now(),
        quarantined_by_column=batch.quarantined_by_column,
        ignored_columns=batch.ignored_columns,
        seq=seq,
    )
