"""Operating on a lake's batches: list, remove, restore (through the tables' history) and
migrate a dataset of the old Parquet-and-manifest layout. Behind ``vae-anomaly lake``.

Removing a batch deletes its row from ``batches`` first (from then on no reader sees it),
then its partitions of ``rows``, ``quarantine`` and ``scores``; each delete is a Delta commit
whose commit info names the batch and the table versions before it. Restoring reads the batch
back from those versions (time travel) and commits it again, last its row in ``batches``. The
history lasts until the tables are vacuumed (``Lake.vacuum(dataset, retention_hours=...)``) or
``vae-anomaly maintain`` cleans it: that keeps the lake's retention (7 days by default), so a
batch can be restored while its removal, and each table's last commit before it, are younger
than the retention (:mod:`pipelines.lake.maintenance`).
"""
from __future__ import annotations

import json
from typing import Any, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.lake import batches as batches_table
from pipelines.lake import content, delta
from pipelines.lake.core import Lake
from pipelines.lake.errors import LakeError
from pipelines.lake.identity import content_hash
from pipelines.lake.records import BATCH_COLUMN, CONTENT_COLUMN, PART_FILE, REASON_COLUMN, ROW_COLUMN, BatchRecord, DatasetSchema
from pipelines.lake.scores import VERSION_COLUMN
from pipelines.lake.tables import BATCH_TABLES
from pipelines.lake.validation import check_name


def list_batches(lake: Lake, dataset: str) -> dict[str, Any]:
    """The committed batches and the removed ones that can be restored."""
    return {
        "dataset": dataset,
        "batches": [r.to_dict() for r in lake.list_batches(dataset)],
        "removed": sorted({e["batch_id"] for e in _removals(lake, dataset)} - {r.batch_id for r in lake.list_batches(dataset)}),
    }


def remove_batch(lake: Lake, dataset: str, batch_id: str) -> dict[str, Any]:
    """Remove a committed batch (rows, quarantine, scores); reversible with :func:`restore_batch`."""
    record = lake.find_batch(dataset, batch_id=check_name("batch id", batch_id))
    if record is None:
        raise LakeError(f"dataset {dataset!r} has no committed batch {batch_id!r}; see `vae-anomaly lake list {dataset}`")
    versions = {}
    for name in BATCH_TABLES:
        table = lake.tables.open(dataset, name)
        versions[name] = None if table is None else table.version()
    where = f"{BATCH_COLUMN} = {delta.quote(batch_id)}"
    meta = dict(batch_id=batch_id, versions=json.dumps(versions))
    delta.delete_where(lake.table_uri(dataset, "batches"), lake.delta_options, where, "remove", **meta)
    for name in BATCH_TABLES:
        delta.delete_where(lake.table_uri(dataset, name), lake.delta_options, where, "remove", batch_id=batch_id)
    return {"dataset": dataset, "removed": record.to_dict()}


def _removals(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    """Commit infos of the ``remove`` deletes of the batches table, newest first."""
    table = lake.tables.open(dataset, "batches")
    if table is None:
        return []
    out = []
    for entry in table.history():
        if entry.get(delta.OP_KEY) == "remove" and entry.get("vae_anomaly.batch_id"):
            out.append({"batch_id": entry["vae_anomaly.batch_id"], "version": entry["version"],
                        "versions": json.loads(entry.get("vae_anomaly.versions") or "{}")})
    return sorted(out, key=lambda e: -e["version"])


def restore_batch(lake: Lake, dataset: str, batch_id: str) -> dict[str, Any]:
    """Bring back a removed batch as it was, from the tables' history."""
    if lake.find_batch(dataset, batch_id=check_name("batch id", batch_id)) is not None:
        raise LakeError(f"dataset {dataset!r}: batch {batch_id!r} is committed; nothing to restore")
    removal = next((e for e in _removals(lake, dataset) if e["batch_id"] == batch_id), None)
    if removal is None:
        raise LakeError(f"dataset {dataset!r} has no removed batch {batch_id!r} in its history "
                        f"(`vae-anomaly maintain` cleans the history older than the lake's retention)")
    _at(lake, dataset, "batches", removal["version"] - 1)
    _, before = batches_table.load(lake.table_uri(dataset, "batches"), lake.delta_options, removal["version"] - 1)
    record = next(r for r in before if r.batch_id == batch_id)
    fixed = lake.schema(dataset)
    if fixed is not None and fixed.to_dict() != record.schema:
        raise LakeError(f"dataset {dataset!r}: batch {batch_id!r} has schema {record.schema}, the dataset now {fixed.to_dict()}")
    for name, version in removal["versions"].items():
        if version is None:
            continue
        old = _at(lake, dataset, name, version)
        data = delta.arrow_dataset(old, file_pruning_predicate=[(BATCH_COLUMN, "=", batch_id)]).to_table()
        if name != "scores":  # only the record's content (a loser of its id may have left rows)
            data = data.filter(content.own_rows(record)) if delta.has_column(old, CONTENT_COLUMN) else data
            if data.num_rows:
                content.write_part(lake.table_uri(dataset, name), lake.delta_options, name, data, batch_id, record.sha256, "restore")
            continue
        groups = [VERSION_COLUMN] if name == "scores" else []
        for key in sorted(set(data.column(groups[0]).to_pylist())) if groups else [None]:
            part = data if key is None else data.filter(pc.equal(data.column(VERSION_COLUMN), key))
            partition = {**({VERSION_COLUMN: key} if key is not None else {}), BATCH_COLUMN: batch_id}
            if part.num_rows:
                delta.replace_partition(lake.table_uri(dataset, name), lake.delta_options, part, partition, "restore", name)
    _append_record(lake, dataset, record, "restore")
    return {"dataset": dataset, "restored": record.to_dict()}


def _at(lake: Lake, dataset: str, name: str, version: int):
    """Table ``name`` at ``version`` (time travel), or a clear error once maintenance has cleaned
    that version's log (:mod:`pipelines.lake.maintenance`: the history lasts for the retention)."""
    try:
        table = lake.tables.open(dataset, name, version)
    except delta.DeltaError as exc:
        table, cause = None, exc
    else:
        cause = None
    if table is None:
        raise LakeError(f"dataset {dataset!r}: version {version} of the {name} table is older than the history kept "
                        f"(`vae-anomaly maintain` cleans it after the lake's retention, VAE_ANOMALY_LAKE_RETENTION); "
                        "the batch can no longer be restored") from cause
    return table


def _append_record(lake: Lake, dataset: str, record: BatchRecord, op: str) -> None:
    """Commit ``record`` to the batches table (compare and swap, retried)."""
    uri = lake.table_uri(dataset, "batches")
    for attempt in range(delta.COMMIT_ATTEMPTS):
        table, records = batches_table.load(uri, lake.delta_options)
        if any(r.batch_id == record.batch_id for r in records):
            return
        if delta.cas_append(uri, lake.delta_options, table, batches_table.to_table(record), op, batch_id=record.batch_id):
            return
        delta.backoff(attempt)
    raise LakeError(f"dataset {dataset!r}: {delta.COMMIT_ATTEMPTS} commits of batch {record.batch_id!r} lost to concurrent writers")


def migrate(lake: Lake, dataset: str) -> dict[str, Any]:
    """Convert a dataset of the old layout (``_manifest.json`` and Parquet partitions) to Delta
    tables, batch by batch, keeping ids, hashes of the files, counts and scores.

    Safe to re-run after a failure: committed batches are skipped. The old files stay where
    they are (Delta readers ignore them) and ``_manifest.json`` is renamed
    ``_manifest.json.migrated`` at the end.
    """
    manifest_path = lake.tables.path(dataset, "_manifest.json")
    if not lake.fs.exists(manifest_path):
        raise LakeError(f"dataset {dataset!r} in {lake.url!r} has no _manifest.json: nothing to migrate")
    with lake.fs.open(manifest_path, "rb") as handle:
        entries = [BatchRecord.from_dict(b) for b in json.loads(handle.read())["batches"]]
    uri = lake.table_uri(dataset, "batches")
    done = {r.batch_id for r in batches_table.load(uri, lake.delta_options)[1]}
    migrated = []
    for seq, entry in enumerate(entries, 1):
        if entry.batch_id in done:
            continue
        schema = DatasetSchema.from_dict(entry.schema)
        tables = {name: _old_part(lake, dataset, name, entry.batch_id) for name in ("rows", "quarantine")}
        accepted = tables["rows"] if tables["rows"] is not None else schema.arrow_schema().empty_table()
        quarantine = tables["quarantine"]
        if quarantine is None:
            text = [(c, pa.string()) for c in schema.columns] + [(REASON_COLUMN, pa.string()), (ROW_COLUMN, pa.int64())]
            quarantine = pa.schema(text).empty_table()
        digest = content_hash(schema, accepted, quarantine)
        for name, table in (("rows", accepted), ("quarantine", quarantine)):
            if table.num_rows:
                content.write_part(lake.table_uri(dataset, name), lake.delta_options, name, table, entry.batch_id, digest,
                                   "migrate")
        record = BatchRecord(**{**entry.to_dict(), "sha256": digest, "file_sha256": entry.sha256, "seq": seq})
        _migrate_scores(lake, dataset, entry.batch_id)
        _append_record(lake, dataset, record, "migrate")
        migrated.append(entry.batch_id)
    lake.fs.mv(manifest_path, manifest_path + ".migrated")
    return {"dataset": dataset, "migrated": migrated, "already_migrated": sorted(done)}


def _old_part(lake: Lake, dataset: str, area: str, batch_id: str, version: Optional[str] = None) -> Optional[pa.Table]:
    """One old-layout partition file, or ``None`` if there is none."""
    parts = [area] + ([f"model_version={version}"] if version else []) + [f"batch_id={batch_id}", PART_FILE]
    path = lake.tables.path(dataset, *parts)
    if not lake.fs.exists(path):
        return None
    with lake.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read()
        stored = (parquet.metadata.metadata or {}).get(b"vae_anomaly.batch_columns")
    for column, value in (json.loads(stored) if stored else {}).items():  # the old batch-level constants
        table = table.append_column(column, pa.array([value] * table.num_rows))
    return table


def _migrate_scores(lake: Lake, dataset: str, batch_id: str) -> None:
    """Copy the old scores files of one batch (every model version) into the scores table."""
    for folder in lake.fs.glob(lake.tables.path(dataset, "scores", "model_version=*")):
        version = folder.rstrip("/").rsplit("=", 1)[1]
        table = _old_part(lake, dataset, "scores", batch_id, version)
        if table is not None and table.num_rows:
            n = table.num_rows
            table = table.append_column(VERSION_COLUMN, pa.array([version] * n, pa.string()))
            table = table.append_column(BATCH_COLUMN, pa.array([batch_id] * n, pa.string()))
            partition = {VERSION_COLUMN: version, BATCH_COLUMN: batch_id}
            delta.replace_partition(lake.table_uri(dataset, "scores"), lake.delta_options, table, partition, "migrate", "scores")


ACTIONS = {"list": list_batches, "remove": remove_batch, "restore": restore_batch, "migrate": migrate}


def run(action: str, dataset: str, batch_id: Optional[str] = None, lake_url: Optional[str] = None) -> dict[str, Any]:
    """One ``vae-anomaly lake ACTION DATASET [BATCH_ID]`` command; returns its result."""
    lake = Lake(lake_url)
    needs_batch = action in ("remove", "restore")
    if needs_batch != (batch_id is not None):
        raise LakeError(f"`lake {action}` {'needs' if needs_batch else 'takes no'} BATCH_ID")
    result = ACTIONS[action](lake, dataset, *([batch_id] if needs_batch else []))
    return {"action": action, **result}

