"""Where a lake's tables are and how to open them: what :class:`~pipelines.lake.core.Lake`, the
commit protocol (:mod:`pipelines.lake.commit`) and the batch operations
(:mod:`pipelines.lake.admin`) share, so none of them reaches into another.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import fsspec

from pipelines.lake import batches as batches_table
from pipelines.lake import delta
from pipelines.lake.errors import LakeError
from pipelines.lake.records import BatchRecord
from pipelines.lake.validation import check_name

#: the tables partitioned by batch: ``lake remove``/``restore``, ``migrate`` and ``vacuum`` act on these
BATCH_TABLES = ("rows", "quarantine", "scores")
#: the tables of a dataset as a whole, not per batch, that no batch operation touches: verdicts
#: (:mod:`pipelines.review`), alert rules and the alerts sent (:mod:`pipelines.alerts`)
DATASET_TABLES = ("feedback", "alert_rules", "alerts_sent")
TABLES = ("batches", *BATCH_TABLES, *DATASET_TABLES)
SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})  # what delta-rs opens


class LakeTables:
    """The Delta tables of the datasets under one lake root.

    Parameters
    ----------
    root : str or path-like
        Local path or URL (``file://``, ``s3://`` ...).
    storage_options : dict
        Credentials and endpoint, fsspec-style (``key``, ``secret``, ``endpoint_url``,
        ``client_kwargs``) or delta-rs-style (``AWS_ACCESS_KEY_ID`` ...); used by fsspec for
        listing and translated for delta-rs (:func:`pipelines.lake.delta.delta_storage_options`).
    """

    def __init__(self, root: Union[str, os.PathLike], storage_options: Optional[dict[str, Any]] = None) -> None:
        storage_options = dict(storage_options or {})
        self.url = str(root)
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else "file"
        if scheme not in SCHEMES:
            raise LakeError(f"lake root {self.url!r}: Delta tables need a local path or one of {sorted(SCHEMES)} URLs")
        self.fsspec_options = {k: v for k, v in storage_options.items() if not k.isupper()}
        self.fs_cache: Optional[fsspec.AbstractFileSystem] = None
        root_path = self.url.split("://", 1)[1] if scheme == "file" and "://" in self.url else self.url
        #: the lake's folder as fsspec paths it (no scheme)
        self.root = (os.path.abspath(root_path) if scheme == "file" else root_path.split("://", 1)[1]).rstrip("/") or "/"
        #: delta-rs storage options
        self.options = delta.delta_storage_options(self.url, storage_options)
        self.base = self.root if scheme == "file" else self.url.rstrip("/")

    @property
    def is_local(self) -> bool:
        """True for a lake on the local file system."""
        return self.base == self.root

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """An fsspec file system on the lake (for listing; object stores need their fsspec
        package, e.g. ``s3fs``)."""
        if self.fs_cache is None:
            try:
                self.fs_cache = fsspec.core.url_to_fs(self.url, **self.fsspec_options)[0]
            except ImportError as exc:
                raise LakeError(f"listing {self.url!r} needs an fsspec package: {exc}") from exc
        return self.fs_cache

    def path(self, dataset: str, *parts: str) -> str:
        """File-system path (for fsspec) of ``parts`` inside a dataset's folder."""
        return "/".join([self.root, check_name("dataset", dataset), *parts])

    def uri(self, dataset: str, table: str) -> str:
        """URI of one of a dataset's Delta tables (one of :data:`TABLES`)."""
        if table not in TABLES:
            raise LakeError(f"unknown lake table {table!r}; one of {TABLES}")
        return f"{self.base}/{check_name('dataset', dataset)}/{table}"

    def open(self, dataset: str, table: str, version: Optional[int] = None):
        """The Delta table (at ``version``, default the latest), or ``None`` if it does not exist yet."""
        return delta.open_table(self.uri(dataset, table), self.options, version)

    def load_batches(self, dataset: str) -> tuple[Any, list[BatchRecord]]:
        """The batches table and its records in ingest order; a clear error for a dataset of the
        old layout (``_manifest.json``)."""
        table, records = batches_table.load(self.uri(dataset, "batches"), self.options)
        if table is None and self.is_local and self.fs.exists(self.path(dataset, "_manifest.json")):
            raise LakeError(
                f"dataset {dataset!r} in {self.url!r} uses the old Parquet layout (_manifest.json); "
                f"run `vae-anomaly lake migrate {dataset}` to convert it, or re-ingest its source files "
                "into a new lake root"
            )
        return table, records

    def records(self, dataset: str) -> list[BatchRecord]:
        """The committed batches of ``dataset``, in ingest order."""
        return self.load_batches(dataset)[1]
