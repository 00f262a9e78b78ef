"""Atomic single-file writes on any fsspec file system (:func:`write_table`), and the crash
seam tests patch.

:func:`crash_point` is called after each Delta commit of an ingest or a score write; the
code in :mod:`pipelines.lake.core` and :mod:`pipelines.lake.delta` looks it up through this
module (``storage.crash_point``), so patching ``pipelines.lake.storage.crash_point`` reaches
every call site.
"""
from __future__ import annotations

import os
import posixpath
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Union

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


def crash_point(stage: str) -> None:
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
        crash_point(f"{stage}-tmp")
        if local:
            os.replace(tmp, path)
        else:  # object stores: a single-object copy is atomic for readers
            fs.mv(tmp, path)
    except BaseException:
        _remove(fs, tmp)
        raise


def atomic_write(
    fs: fsspec.AbstractFileSystem, path: str, payload: Union[pa.Table, bytes], stage: str = "file"
) -> None:
    """Write ``payload`` (a table as Parquet, or bytes) to a hidden temporary name, then rename it to ``path``."""
    with _atomic_file(fs, path, stage) as handle:
        if isinstance(payload, pa.Table):
            pq.write_table(payload, handle, compression="zstd", row_group_size=131072)
        else:
            handle.write(payload)


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a file or folder if it exists, ignoring errors."""
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError:
        pass


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
    atomic_write(fs, fs_path, table)
    return fs_path



def to_pandas(table: Union[pa.Table, pa.RecordBatch]) -> pd.DataFrame:
    """Arrow to pandas keeping nullable ints and bools (``Int64``, ``boolean``)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)
