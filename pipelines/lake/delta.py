"""Thin helpers over delta-rs (the ``deltalake`` package): opening tables, replacing one
partition atomically, compare-and-swap appends, and storage options.

Every write here is one Delta commit: it happens or it does not. :func:`storage.crash_point`
is called after each commit (tests patch it to kill a run between the commits of an ingest).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from pipelines.lake import storage
from pipelines.lake.errors import LakeError
from pipelines.lake.filesystems import native_filesystem

#: How often a commit that lost a race (another writer committed first) is retried.
COMMIT_ATTEMPTS = 20
#: Rows per Parquet row group: a streaming reader decodes one at a time, so this bounds the
#: memory of scoring a batch (delta-rs's default, 1M rows, held ~0.2 GB per group).
ROW_GROUP_ROWS = 131072
#: Largest Parquet dictionary page per column chunk: a column with more distinct values falls
#: back to plain encoding. At the 1 MiB default a row group of 131,072 distinct floats (8 bytes
#: each) just fits, so every float column was dictionary-encoded: 5x the write time of plain
#: encoding (a 1M-row ingest's write 8.9 s against 1.7 s) and a bigger file; low-cardinality
#: columns (categories, flags, the batch and content columns) still get their dictionary.
DICTIONARY_PAGE_BYTES = 128 * 1024
#: Operation key written into the commit info of every commit the lake makes.
OP_KEY = "vae_anomaly.op"

_S3_KEYS = {  # fsspec / s3fs option -> delta-rs (object_store) option
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
    "region_name": "AWS_REGION",
}


def delta_storage_options(url: str, options: dict[str, Any]) -> dict[str, str]:
    """delta-rs storage options from fsspec-style ones (``key``/``secret``/``endpoint_url``/
    ``client_kwargs``); upper-case object_store keys (``AWS_...``) pass through unchanged."""
    out: dict[str, str] = {}
    for name, value in options.items():
        if name == "client_kwargs" and isinstance(value, dict):
            out.update(delta_storage_options(url, value))
        elif name in _S3_KEYS:
            out[_S3_KEYS[name]] = str(value)
        elif name.isupper():
            out[name] = str(value)
    endpoint = out.get("AWS_ENDPOINT_URL", "")
    if url.startswith(("s3://", "s3a://")) and endpoint.startswith("http://"):
        out.setdefault("AWS_ALLOW_HTTP", "true")
    return out  # delta-rs 1.x commits to S3 with conditional writes: no locking provider needed


class LakeDeltaTable(DeltaTable):
    """A :class:`DeltaTable` that remembers the storage options it was opened with
    (:attr:`opened_with`), so that :func:`arrow_dataset` can build Arrow's own file system for
    it; delta-rs keeps them only in a private attribute."""

    def __init__(self, table_uri: str, version: Optional[int] = None, storage_options: Optional[dict[str, str]] = None):
        super().__init__(table_uri, version=version, storage_options=storage_options)
        self.opened_with: dict[str, str] = dict(storage_options or {})


def open_table(uri: str, options: dict[str, str], version: Optional[int] = None) -> Optional[DeltaTable]:
    """The Delta table at ``uri`` (at ``version``), or ``None`` if there is none yet."""
    try:
        return LakeDeltaTable(uri, version=version, storage_options=options or None)
    except TableNotFoundError:
        return None


def arrow_dataset(table: DeltaTable, storage_options: Optional[dict[str, str]] = None, **options: Any) -> pds.Dataset:
    """``table.to_pyarrow_dataset(**options)``, reading the table's files with Arrow's own file
    system where there is one for it (local and S3 tables:
    :func:`pipelines.lake.filesystems.native_filesystem`).

    delta-rs's default reader, a ``PyFileSystem`` over its Python ``DeltaStorageHandler``, gives
    Arrow Python file objects. Arrow's scanner may release the last of them on one of its worker
    threads just after ``to_table`` has returned, and that destructor takes the GIL: if the
    interpreter is exiting by then, Python 3.11 ends the thread with ``pthread_exit``, whose
    unwinding through Arrow's ``noexcept`` destructor calls ``std::terminate`` ("terminate called
    without an active exception", SIGABRT after the program's work is done; delta-io/delta-rs#2184,
    apache/arrow#34314). A native file system keeps Python out of Arrow's threads. The S3 one is
    built from the options the table was opened with: ``storage_options``, else those a
    :class:`LakeDeltaTable` (:func:`open_table`) remembers. ``gs://`` and ``az://`` tables, S3
    options with no ``S3FileSystem`` equivalent, and S3 tables whose options are unknown still
    read through the handler; the CLI then ends without the interpreter's finalization
    (:func:`pipelines.cli.lifecycle.finish`).
    """
    if "filesystem" not in options:
        opened_with = storage_options if storage_options is not None else getattr(table, "opened_with", None)
        filesystem = native_filesystem(table.table_uri, opened_with)
        if filesystem is not None:
            options["filesystem"] = filesystem
        else:
            _HANDLER_READS.add(table.table_uri)
    return table.to_pyarrow_dataset(**options)


_HANDLER_READS: set[str] = set()  # tables this process read through delta-rs's Python handler


def read_through_handler() -> bool:
    """True once this process has read a table through delta-rs's Python handler, after which
    the interpreter's own exit may abort (see :func:`arrow_dataset`;
    :func:`pipelines.cli.lifecycle.finish` ends such a process without it)."""
    return bool(_HANDLER_READS)


def has_column(table: DeltaTable, name: str) -> bool:
    """True if the table's schema has a column ``name``."""
    return any(f.name == name for f in table.schema().fields)


def quote(value: str) -> str:
    """A SQL string literal (names are checked to be safe, but quote anyway)."""
    return "'" + str(value).replace("'", "''") + "'"


def commit_properties(op: str, **metadata: Any) -> CommitProperties:
    """Commit properties naming the lake operation (visible in the table's history).

    No delta-rs retries: every commit of the lake succeeds only on the version it was computed
    from (compare and swap); the callers re-read the table and compute it again."""
    custom = {OP_KEY: op, **{f"vae_anomaly.{k}": v for k, v in metadata.items()}}
    return CommitProperties(custom_metadata=custom, max_commit_retries=0)


def replace_partition(
    uri: str,
    options: dict[str, str],
    data: Union[pa.Table, Callable[[], pa.RecordBatchReader]],
    partition: dict[str, str],
    op: str,
    stage: str,
    scope: Optional[dict[str, str]] = None,
) -> None:
    """Atomically make ``data`` the whole content of one partition (overwrite by predicate),
    or, with ``scope`` (data column -> value), of the partition's rows with that value or a
    null one (rows written before the table had the column; all of them while it has none).

    Creates the table, partitioned by ``partition``'s keys, if it does not exist. Every commit
    is a compare and swap on the version it was computed from (delta-rs ``max_commit_retries=0``):
    a writer that lost the race re-opens the table and runs the overwrite again on the newest
    version, so the last writer's rows replace the earlier ones (never both). delta-rs's own
    retry would instead rebase the same add and remove actions onto the newer version whenever
    its conflict checker lets it, and keeping files side by side is then up to that checker.
    ``data`` may be a callable returning a fresh stream for each attempt. New columns are merged
    into the table's schema.
    """
    for attempt in range(COMMIT_ATTEMPTS):
        payload = data() if callable(data) else data
        table = open_table(uri, options)
        scoped = {k: v for k, v in (scope or {}).items() if table is not None and has_column(table, k)}
        predicate = " AND ".join([f"{k} = {quote(v)}" for k, v in partition.items()]
                                 + [f"({k} = {quote(v)} OR {k} IS NULL)" for k, v in scoped.items()])
        try:
            write_deltalake(
                table if table is not None else uri,
                payload,
                mode="overwrite" if table is not None else "error",  # never a whole-table overwrite
                predicate=predicate if table is not None else None,
                partition_by=list(partition),
                schema_mode="merge" if table is not None else None,
                storage_options=options or None,
                writer_properties=WriterProperties(
                    max_row_group_size=ROW_GROUP_ROWS, dictionary_page_size_limit=DICTIONARY_PAGE_BYTES
                ),
                # no delta-rs retry: a create retried as an append, or an overwrite rebased on
                # another writer's, could keep its files beside that writer's
                commit_properties=commit_properties(op, **partition, **(scope or {})),
            )
            break
        except CommitFailedError:
            backoff(attempt)
        except DeltaError as exc:
            if table is None and "already exists" in str(exc).lower():
                continue  # another writer created the table first: overwrite its partition
            raise
    else:
        raise LakeError(f"{uri}: {COMMIT_ATTEMPTS} commits of partition {partition} lost to concurrent writers")
    storage.crash_point(stage)


def cas_append(uri: str, options: dict[str, str], table: Optional[DeltaTable], data: pa.Table, op: str, **meta: Any) -> bool:
    """Append ``data`` only if the table is still at ``table``'s version (compare and swap).

    Returns ``False`` when another writer committed first (or created the table first): the
    caller re-reads the table, checks again and retries. Nothing is written then.
    """
    try:
        write_deltalake(
            table if table is not None else uri,
            data,
            mode="append" if table is not None else "error",
            storage_options=options or None,
            commit_properties=commit_properties(op, **meta),
        )
    except CommitFailedError:
        return False
    except DeltaError as exc:
        if table is None and "already exists" in str(exc).lower():
            return False
        raise
    return True


def delete_where(uri: str, options: dict[str, str], predicate: str, op: str, **meta: Any) -> Optional[int]:
    """Delete the rows matching ``predicate``; returns the table version before, or ``None``
    when the table does not exist. Like :func:`replace_partition`, a delete that lost a race
    runs again on the newest version (no delta-rs rebase)."""
    for attempt in range(COMMIT_ATTEMPTS):
        table = open_table(uri, options)
        if table is None:
            return None
        before = table.version()
        try:
            table.delete(predicate, commit_properties=commit_properties(op, **meta))
            return before
        except CommitFailedError:
            backoff(attempt)
    raise LakeError(f"{uri}: {COMMIT_ATTEMPTS} deletes lost to concurrent writers")


def backoff(attempt: int) -> None:
    """A short, growing pause before retrying a commit that lost a race."""
    time.sleep(min(0.01 * 2**attempt, 0.5))
