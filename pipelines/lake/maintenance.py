"""Lake maintenance: what keeps a dataset's Delta tables cheap to open and read after a year of
hourly batches. Behind ``vae-anomaly maintain`` and the nightly ``nightly-maintenance``
deployment (:mod:`pipelines.flows.maintain`); no Prefect here.

One pass over a dataset (:func:`maintain`):

1. **Orphans.** Data of batches missing from ``batches`` (killed ingests) and rows of other
   content than their record's are deleted, but only where every file of the batch's partition
   is older than the retention (:func:`pipelines.lake.commit.remove_orphans`): a running ingest
   writes its rows before its record, so younger data may be a commit in progress.
2. **Compaction** of each table (:data:`~pipelines.lake.tables.TABLES`) with delta-rs's
   ``optimize.compact()``: the small files of each partition (one per commit: the ``batches``
   and ``feedback`` tables get one per ingest or verdict) become one. No Z-order: every reader
   of the lake selects by partition (``batch_id``, ``model_version``) or reads a whole small
   table, so there is no column filter for a Z-order to help.
3. **Retention.** The tables' ``delta.logRetentionDuration`` and
   ``delta.deletedFileRetentionDuration`` are set to the retention (a commit, only when they
   differ), then Delta vacuum deletes files that no version within the retention references
   and that are older than it (``full``: also files of commits that lost a race).
4. **Checkpoint** at the table's current version (``create_checkpoint``), so opening the
   table reads one Parquet file and the few commits after it, not every commit since the
   first; then ``cleanup_metadata`` deletes log entries older than the retention that come
   before that checkpoint.
5. **Reports** (with ``reports_older_than``): the report folders of batches ingested longer
   ago than that are deleted; verdicts stay in the ``feedback`` table, and so do the reports
   that hold a verdict, whose items the reviewed labels are read from
   (:func:`pipelines.review.labels.reviewed_items`).

Retention and ``lake restore``. Restoring a removed batch reads the tables as they were just
before the removal (time travel, :mod:`pipelines.lake.admin`). That needs the log entries of
those versions and the files they reference, and maintenance keeps both for the retention
only: a batch can be restored while its removal, and the commit before it, are younger than
the retention (:data:`pipelines.settings.LAKE_RETENTION_HOURS`, 7 days by default); after
that ``lake restore`` says the history was cleaned.

Concurrency. Ingest and score may run during a pass. Compaction only rewrites: delta-rs
commits it over concurrent appends, and refuses it (``CommitFailedError``) when a concurrent
commit removed a file it read (a partition overwrite, a delete); the pass then tries again on
the newest version, and after :data:`ATTEMPTS` lost races leaves that table for the next pass.
The lake's writers commit by compare and swap (:mod:`pipelines.lake.delta`): one that loses
to a maintenance commit reads the table again and retries, as it does against another
writer. Vacuum deletes only files older than the retention, never one a current version
reads; a retention shorter than a writer's run could delete that writer's files before it
commits, so the CLI refuses one under an hour.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from pipelines.lake import commit, delta
from pipelines.lake.core import Lake
from pipelines.lake.errors import LakeError
from pipelines.lake.tables import TABLES
from pipelines.settings import get_settings

#: Tries per table and step when a concurrent writer's commit conflicts with maintenance's.
ATTEMPTS = 5
RETENTION_KEYS = ("delta.logRetentionDuration", "delta.deletedFileRetentionDuration")


@dataclass
class TableMaintenance:
    """What one pass did to one Delta table. ``files``/``bytes``: the data files of the
    table's current version; ``log_files``: entries in ``_delta_log`` (commits, checkpoints)."""

    table: str
    version_before: int
    version_after: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    files_compacted: int = 0  # files compaction replaced ...
    files_written: int = 0  # ... by these
    files_vacuumed: int = 0
    checkpoint_version: Optional[int] = None
    log_files_before: int = 0
    log_files_removed: int = 0
    skipped: list[str] = field(default_factory=list)  # steps left for the next pass, and why
    commits_lost: int = 0  # maintenance commits refused for a concurrent writer's, then retried


@dataclass
class MaintenanceReport:
    """What :func:`maintain` did to one dataset."""

    dataset: str
    retention_hours: int
    tables: list[TableMaintenance] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    reports_older_than_hours: Optional[float] = None
    reports_pruned: list[str] = field(default_factory=list)  # "<model version>/<batch id>"
    reports_kept_reviewed: int = 0  # old reports kept because they hold verdicts
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON-ready)."""
        return asdict(self)

    def table(self, name: str) -> TableMaintenance:
        """The entry of table ``name``."""
        return next(t for t in self.tables if t.table == name)


def maintain(
    lake: Union[Lake, str],
    dataset: str,
    *,
    retention_hours: Optional[int] = None,
    reports_older_than: Optional[timedelta] = None,
    now: Optional[datetime] = None,
) -> MaintenanceReport:
    """One maintenance pass over ``dataset``'s tables (see the module's docstring).

    Parameters
    ----------
    lake : Lake or str
        The lake, or its root URL.
    dataset : str
    retention_hours : int, optional
        History to keep, in hours; default :attr:`pipelines.settings.Settings.lake_retention_hours`.
    reports_older_than : timedelta, optional
        Delete the reports of batches ingested longer ago than this (reviewed ones stay);
        ``None`` keeps every report.
    now : datetime, optional
        The time the ages of batches and orphans are measured from (default: now; a benchmark
        simulating nights passes its own). Delta's vacuum and log cleanup use the clock.

    Returns
    -------
    MaintenanceReport

    Raises
    ------
    LakeError
        A negative retention, or a dataset with no batches table.
    """
    started = time.monotonic()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    hours = get_settings().lake_retention_hours if retention_hours is None else int(retention_hours)
    if hours < 0:
        raise LakeError(f"retention must be 0 hours or more, got {retention_hours!r}")
    now = now or datetime.now(timezone.utc)
    now = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)  # a naive time is UTC, as in the lake
    if lake.tables.open(dataset, "batches") is None:
        raise LakeError(f"dataset {dataset!r} has no batches table in {lake.url!r}: nothing to maintain")
    report = MaintenanceReport(dataset, hours)
    report.orphans_removed = commit.remove_orphans(lake.tables, dataset, settled_before=now - timedelta(hours=hours))
    for name in TABLES:
        if lake.tables.open(dataset, name) is not None:
            report.tables.append(_maintain_table(lake, dataset, name, hours))
    if reports_older_than is not None:
        report.reports_older_than_hours = reports_older_than.total_seconds() / 3600
        report.reports_pruned, report.reports_kept_reviewed = prune_reports(lake, dataset, now - reports_older_than)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _maintain_table(lake: Lake, dataset: str, name: str, hours: int) -> TableMaintenance:
    """Compaction, retention properties, vacuum, checkpoint and log cleanup of one table."""
    table = lake.tables.open(dataset, name)
    files, size = _files(table)
    log_before = _log_files(lake, dataset, name)
    done = TableMaintenance(name, table.version(), files_before=files, bytes_before=size, log_files_before=len(log_before))
    _retry(done, "compaction", lambda: _compact(lake, dataset, name, done))
    _retry(done, "retention", lambda: _set_retention(lake.tables.open(dataset, name), hours))
    _retry(done, "vacuum", lambda: setattr(done, "files_vacuumed", len(
        commit.vacuum_files(lake.tables.open(dataset, name), hours, full=True))))
    table = lake.tables.open(dataset, name)
    if f"{table.version():020d}.checkpoint.parquet" not in _log_files(lake, dataset, name):
        table.create_checkpoint()  # not a commit: it cannot conflict
    done.checkpoint_version = table.version()
    table.cleanup_metadata()
    done.log_files_removed = len(log_before - _log_files(lake, dataset, name))
    table = lake.tables.open(dataset, name)
    done.version_after = table.version()
    done.files_after, done.bytes_after = _files(table)
    return done


def _retry(done: TableMaintenance, step: str, run) -> None:
    """Run ``step``; after :data:`ATTEMPTS` commits lost to concurrent writers, note it skipped."""
    for attempt in range(ATTEMPTS):
        try:
            run()
            return
        except CommitFailedError:
            done.commits_lost += 1
            delta.backoff(attempt)
    done.skipped.append(f"{step}: {ATTEMPTS} commits lost to concurrent writers; left for the next pass")


def _compact(lake: Lake, dataset: str, name: str, done: TableMaintenance) -> None:
    """``optimize.compact()`` on the newest version, counted into ``done``."""
    metrics = lake.tables.open(dataset, name).optimize.compact(commit_properties=delta.commit_properties("compact"))
    done.files_compacted += int(metrics.get("numFilesRemoved", 0))
    done.files_written += int(metrics.get("numFilesAdded", 0))


def _set_retention(table, hours: int) -> None:
    """Make the table's log and removed-file retention ``hours`` (a commit only if they differ)."""
    wanted = {key: f"interval {hours} hours" for key in RETENTION_KEYS}
    config = table.metadata().configuration
    if any(config.get(key) != value for key, value in wanted.items()):
        table.alter.set_table_properties(wanted, commit_properties=delta.commit_properties("retention"))


def _files(table) -> tuple[int, int]:
    """Number and total bytes of the data files of the table's current version."""
    actions = pa.table(table.get_add_actions())
    return actions.num_rows, int(sum(actions.column("size_bytes").to_pylist())) if actions.num_rows else 0


def _log_files(lake: Lake, dataset: str, name: str) -> set[str]:
    """Names of the commits and checkpoints in the table's ``_delta_log``."""
    folder = lake.tables.path(dataset, name, "_delta_log")
    lake.fs.invalidate_cache(folder)  # an object store's listing may be cached from before the pass
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in lake.fs.ls(folder, detail=False)}
    return {n for n in names if n.endswith((".json", ".parquet")) and n[:1].isdigit()}


def prune_reports(lake: Lake, dataset: str, before: datetime) -> tuple[list[str], int]:
    """Delete the report folders of ``dataset``'s batches ingested before ``before``, except the
    reports that hold a verdict; returns the pruned ones (``<model version>/<batch id>``) and how
    many old reports were kept for their verdicts.

    A folder's ``report.json`` goes first, so a pruned report stops being listed at once
    (:meth:`pipelines.reports.store.ReportStore.list`) and a pass killed mid-way never leaves a
    listed report without its page. The feedback table is read, never written."""
    from pipelines.reports.store import ReportStore
    from pipelines.review.feedback import FeedbackStore

    old = {r.batch_id for r in lake.list_batches(dataset) if datetime.fromisoformat(r.ingested_at) < before}
    if not old:
        return [], 0
    verdicts = FeedbackStore(lake.table_uri(dataset, "feedback"), lake.delta_options).current()
    reviewed = set(zip(verdicts["model_version"], verdicts["batch_id"]))
    store = ReportStore(lake.url, **lake.tables.fsspec_options)
    pruned, kept = [], 0
    for ref in store.list(dataset):
        if ref.batch_id not in old:
            continue
        if (ref.label, ref.batch_id) in reviewed:
            kept += 1
            continue
        folder = store.folder(ref)
        store.fs.rm(f"{folder}/report.json")
        store.fs.rm(folder, recursive=True)
        pruned.append(f"{ref.label}/{ref.batch_id}")
    return pruned, kept
