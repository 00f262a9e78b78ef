"""Atomic file writes on any fsspec file system, and the crash seam tests patch.

Every file is written under a hidden temporary name (``.tmp-<uuid>-...``) in its final folder
and then renamed into place. :func:`_crash_point` is called between the steps of a commit; the
commit code in :mod:`pipelines.lake.core` looks it up through this module
(``storage._crash_point``), so patching ``pipelines.lake.storage._crash_point`` reaches every
call site.
"""
from __future__ import annotations

import json
import os
import posixpath
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


def _crash_point(stage: str) -> None:
    """Test seam: called between the steps of a commit; tests patch it to crash there."""



def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local file system (where ``os.replace`` gives atomic renames)."""
    return isinstance(fs, LocalFileSystem)


@contextmanager
def _atomic_file(fs: fsspec.AbstractFileSystem, path: str, stage: str = "file") -> Iterator[Any]:
    """A binary handle on a hidden temporary file in ``path``'s folder; renamed to ``path`` when
    the block ends normally (after an fsync on local disks), removed if it raises."""
    parent, name = posixpath.split(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}"
    local = _is_local(fs)
    try:
        with (open(tmp, "wb") if local else fs.open(tmp, "wb")) as handle:
            yield handle
            if local:  # durable before it becomes visible
                handle.flush()
                os.fsync(handle.fileno())
        _crash_point(f"{stage}-tmp")
        if local:
            os.replace(tmp, path)
        else:  # object stores: a single-object copy is atomic for readers
            fs.mv(tmp, path)
    except BaseException:
        _remove(fs, tmp)
        raise


def _atomic_write(
    fs: fsspec.AbstractFileSystem, path: str, payload: Union[pa.Table, bytes], stage: str = "file"
) -> None:
    """Write ``payload`` (a table as Parquet, or bytes) to a hidden temporary name, then rename it to ``path``."""
    with _atomic_file(fs, path, stage) as handle:
        if isinstance(payload, pa.Table):
            pq.write_table(payload, handle, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        else:
            handle.write(payload)


ROW_GROUP_ROWS = 131072  # rows per Parquet row group: a reader decodes one at a time
BATCH_COLUMNS_KEY = b"vae_anomaly.batch_columns"


class StreamedTable:
    """Appends tables to one Parquet file (a row group each); see :func:`_atomic_stream`."""

    def __init__(self, handle: Any):
        self._handle = handle
        self._writer: Optional[pq.ParquetWriter] = None
        self.schema: Optional[pa.Schema] = None
        self.rows = 0
        self.constants: dict[str, Any] = {}

    def write(self, table: Union[pa.Table, pd.DataFrame]) -> None:
        """Append ``table``; it must have the first table's columns (types are cast to the first's)."""
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        if self._writer is None:
            self.schema = table.schema.remove_metadata()
            self._writer = pq.ParquetWriter(self._handle, self.schema, compression="zstd")
        elif table.schema.names != self.schema.names:
            raise ValueError(f"columns {table.schema.names} differ from the first part's {self.schema.names}")
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def set_constants(self, values: dict[str, Any]) -> None:
        """Columns whose value is the same on every row, known only at the end (stored once, in
        the file's metadata; :func:`read_parquet_with_constants` adds them back as columns)."""
        self.constants.update(values)

    def abort(self) -> None:
        """Close the writer without caring for the output (it is about to be removed)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the partial file is deleted next
                pass

    def close(self) -> None:
        if self._writer is None:  # nothing written: an empty table with no columns
            self.write(pa.table({}))
        if self.constants:
            self._writer.add_key_value_metadata({BATCH_COLUMNS_KEY: json.dumps(self.constants)})
        self._writer.close()


@contextmanager
def _atomic_stream(fs: fsspec.AbstractFileSystem, path: str, stage: str = "file") -> Iterator[StreamedTable]:
    """Write one Parquet file part by part, in bounded memory, and make it visible atomically.

    The parts go to a hidden temporary file in the target folder; when the ``with`` block ends
    normally the file is closed, made durable and renamed to ``path``. If the block raises, the
    temporary file is removed and ``path`` (an earlier version, if any) is left as it was.
    """
    with _atomic_file(fs, path, stage) as handle:
        stream = StreamedTable(handle)
        try:
            yield stream
        except BaseException:
            stream.abort()  # the Parquet writer must not outlive the file it writes to
            raise
        stream.close()


def read_parquet_with_constants(handle: Any) -> pa.Table:
    """Read a Parquet file, adding back the constant columns :class:`StreamedTable` stored."""
    parquet = pq.ParquetFile(handle)
    table = parquet.read()
    stored = (parquet.metadata.metadata or {}).get(BATCH_COLUMNS_KEY)
    for column, value in (json.loads(stored) if stored else {}).items():
        table = table.append_column(column, pa.array([value] * table.num_rows))
    return table


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a file or folder if it exists, ignoring errors."""
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError:
        pass


def _remove_stale_tmp(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Delete temporary files a crashed writer left in ``folder``; return their paths."""
    stale = fs.glob(f"{folder}/.tmp-*") if fs.exists(folder) else []
    for path in stale:
        _remove(fs, path)
    return list(stale)


def write_table(path: str, table: Union[pa.Table, pd.DataFrame], **storage_options: Any) -> str:
    """Atomically write a table as one Parquet file.

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the file.
    table : pyarrow.Table or pandas.DataFrame
        The data; a DataFrame's index is not written.
    **storage_options
        Passed to fsspec.

    Returns
    -------
    str
        The file system path written.
    """
    fs, fs_path = fsspec.core.url_to_fs(str(path), **storage_options)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    _atomic_write(fs, fs_path, table)
    return fs_path



def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas keeping nullable ints and bools."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)
