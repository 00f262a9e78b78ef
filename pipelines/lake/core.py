"""The :class:`Lake`: datasets of immutable, validated batches, committed behind a manifest.

See :mod:`pipelines.lake` for the layout and the commit protocol.
"""
from __future__ import annotations

import json
import os
import posixpath
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Optional, Union

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.lake import storage
from pipelines.lake.errors import LakeError
from pipelines.lake.records import (
    BATCH_COLUMN,
    PART_FILE,
    REASON_COLUMN,
    ROW_COLUMN,
    BatchRecord,
    DatasetSchema,
    ExtraColumns,
    IngestReport,
    SourceBatch,
    SourceFormat,
    ValidatedBatch,
)
from pipelines.lake.sources import read_source
from pipelines.lake.storage import (
    StreamedTable,
    _atomic_stream,
    _atomic_write,
    _is_local,
    _remove,
    _remove_stale_tmp,
    _to_pandas,
    read_parquet_with_constants,
)
from pipelines.lake.validation import _check_name, validate_batch
from pipelines.settings import get_settings


def _utc_now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Lake:
    """A Parquet lake of datasets made of immutable, validated batches.

    Parameters
    ----------
    root : str or path-like, optional
        Local path or fsspec URL (``file://``, ``memory://``, ``s3://`` ...). Defaults to
        :attr:`pipelines.settings.Settings.lake_url`.
    **storage_options
        Passed to fsspec (credentials, endpoint ...).
    """

    def __init__(self, root: Union[str, os.PathLike, None] = None, **storage_options: Any) -> None:
        if root is None:
            root = get_settings().lake_url
        self.url = str(root)
        self.fs, path = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = path.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- paths and metadata

    def _path(self, dataset: str, *parts: str) -> str:
        """Path of ``parts`` inside a dataset's folder."""
        return "/".join([self.root, _check_name("dataset", dataset), *parts])

    def _partition(self, dataset: str, area: str, batch_id: str) -> str:
        """Folder of one batch's partition in ``rows`` or ``quarantine``."""
        return self._path(dataset, area, f"batch_id={batch_id}")

    def _read_json(self, path: str) -> Optional[dict[str, Any]]:
        """Parse a JSON file, or ``None`` if it does not exist."""
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as handle:
            return json.loads(handle.read())

    def _write_json(self, path: str, data: dict[str, Any], stage: str) -> None:
        """Atomically replace a JSON file."""
        _atomic_write(self.fs, path, json.dumps(data, indent=2).encode("utf-8"), stage)

    def _manifest(self, dataset: str) -> list[BatchRecord]:
        """The committed batches, in ingest order."""
        data = self._read_json(self._path(dataset, "_manifest.json")) or {"batches": []}
        return [BatchRecord.from_dict(b) for b in data["batches"]]

    def datasets(self) -> list[str]:
        """Names of the datasets that have a manifest."""
        found = self.fs.glob(f"{self.root}/*/_manifest.json")
        return sorted(posixpath.basename(posixpath.dirname(p)) for p in found)

    def list_batches(self, dataset: str) -> list[BatchRecord]:
        """The committed batches of ``dataset`` in ingest order (empty if it does not exist).

        Parameters
        ----------
        dataset : str

        Returns
        -------
        list of BatchRecord
        """
        return self._manifest(dataset)

    def schema(self, dataset: str) -> Optional[DatasetSchema]:
        """The dataset's fixed schema, or ``None`` before its first committed batch."""
        if not self._manifest(dataset):
            return None
        data = self._read_json(self._path(dataset, "_schema.json"))
        return DatasetSchema.from_dict(data) if data else None

    def find_batch(
        self, dataset: str, *, sha256: Optional[str] = None, batch_id: Optional[str] = None
    ) -> Optional[BatchRecord]:
        """The committed batch with this content hash or id, if any."""
        for record in self._manifest(dataset):
            if (sha256 and record.sha256 == sha256) or (batch_id and record.batch_id == batch_id):
                return record
        return None

    # -- writing

    def ingest(
        self,
        dataset: str,
        source: Union[str, os.PathLike],
        *,
        format: Optional[SourceFormat] = None,
        time_column: Optional[str] = None,
        schema: Optional[dict[str, str]] = None,
        batch_id: Optional[str] = None,
        extra_columns: ExtraColumns = "error",
    ) -> IngestReport:
        """Read, validate and commit one source file as a batch of ``dataset``.

        Parameters
        ----------
        dataset : str
            Dataset name (letters, digits, ``.``, ``_``, ``-``).
        source : str or path-like
            Local path or fsspec URL of a CSV, Parquet or JSON-lines file.
        format : {"csv", "parquet", "jsonl"}, optional
            Overrides the format guessed from the extension.
        time_column : str, optional
            Datetime column required in every row (fixed by the first batch).
        schema : dict, optional
            Column -> logical type for the first batch instead of inference; later batches
            may pass it again only if it equals the fixed schema.
        batch_id : str, optional
            Defaults to ``b-<sha256[:16]>``, so identical content maps to the same batch.
        extra_columns : {"error", "ignore"}
            Source columns not in the schema raise a :class:`SchemaError` or are left out.

        Returns
        -------
        IngestReport
            ``skipped`` is true (and nothing is written) when the same content is already
            committed; its counts are then those of the committed batch.

        Raises
        ------
        SourceError, SchemaError, LakeError
        """
        batch = read_source(source, format)
        existing = self.find_batch(dataset, sha256=batch.sha256)
        if existing is not None:
            return self.skipped(dataset, existing, source=batch.source)
        validated = self.validate(
            dataset, batch, time_column=time_column, schema=schema, batch_id=batch_id, extra_columns=extra_columns
        )
        return self.commit(validated)

    def skipped(self, dataset: str, record: BatchRecord, source: Optional[str] = None) -> IngestReport:
        """The report for content that is already committed as ``record``."""
        data = record.to_dict()
        if source is not None:
            data["source"] = source
        return IngestReport(**data, dataset=dataset, skipped=True)

    def validate(self, dataset: str, batch: SourceBatch, **options: Any) -> ValidatedBatch:
        """:func:`validate_batch` against this dataset's fixed schema (options as in :meth:`ingest`)."""
        _check_name("dataset", dataset)
        wanted = options.get("batch_id")
        if wanted is not None:
            taken = self.find_batch(dataset, batch_id=wanted)
            if taken is not None and taken.sha256 != batch.sha256:
                raise LakeError(f"dataset {dataset!r}: batch id {wanted!r} is already used by {taken.source!r}")
        return validate_batch(dataset, batch, current_schema=self.schema(dataset), **options)

    def commit(self, batch: ValidatedBatch) -> IngestReport:
        """Write a validated batch's partitions, then its schema (first batch), then the manifest.

        Safe to repeat after a crash at any point: leftovers are overwritten or removed.

        Parameters
        ----------
        batch : ValidatedBatch

        Returns
        -------
        IngestReport
        """
        dataset, batch_id = batch.dataset, batch.batch_id
        manifest = self._manifest(dataset)
        for record in manifest:
            if record.sha256 == batch.source.sha256:
                return self.skipped(dataset, record, source=batch.source.source)
            if record.batch_id == batch_id:
                raise LakeError(f"dataset {dataset!r}: batch id {batch_id!r} is already used by {record.source!r}")
        if batch.schema_is_new and manifest:
            raise LakeError(f"dataset {dataset!r} got its first batch from another writer; validate again")

        rows_dir = self._partition(dataset, "rows", batch_id)
        quarantine_dir = self._partition(dataset, "quarantine", batch_id)
        for folder in (self._path(dataset), rows_dir, quarantine_dir):
            _remove_stale_tmp(self.fs, folder)
        _atomic_write(self.fs, f"{rows_dir}/{PART_FILE}", batch.accepted, "rows")
        storage._crash_point("rows")
        if batch.quarantine.num_rows:
            _atomic_write(self.fs, f"{quarantine_dir}/{PART_FILE}", batch.quarantine, "quarantine")
        else:
            _remove(self.fs, quarantine_dir)
        storage._crash_point("quarantine")
        if batch.schema_is_new:
            self._write_json(self._path(dataset, "_schema.json"), batch.schema.to_dict(), "schema")
        storage._crash_point("schema")

        record = BatchRecord(
            batch_id=batch_id,
            source=batch.source.source,
            format=batch.source.format,
            sha256=batch.source.sha256,
            rows_read=batch.source.rows_read,
            rows_accepted=batch.accepted.num_rows,
            rows_quarantined=batch.quarantine.num_rows,
            schema=batch.schema.to_dict(),
            ingested_at=_utc_now(),
            quarantined_by_column=batch.quarantined_by_column,
            ignored_columns=batch.ignored_columns,
        )
        entries = [r.to_dict() for r in manifest] + [record.to_dict()]
        self._write_json(self._path(dataset, "_manifest.json"), {"dataset": dataset, "batches": entries}, "manifest")
        storage._crash_point("manifest")
        return IngestReport(**record.to_dict(), dataset=dataset)

    def vacuum(self, dataset: str) -> list[str]:
        """Remove temporary files and partitions of batches missing from the manifest; return them."""
        listed = {r.batch_id for r in self._manifest(dataset)}
        removed = []
        for area in ("rows", "quarantine"):
            for folder in self.fs.glob(self._path(dataset, area, "batch_id=*")):
                if posixpath.basename(folder).split("=", 1)[1] not in listed:
                    _remove(self.fs, folder)
                    removed.append(folder)
        for path in self.fs.glob(self._path(dataset, "**", ".tmp-*")):
            _remove(self.fs, path)
            removed.append(path)
        return removed

    # -- reading

    def _arrow_fs(self) -> pafs.FileSystem:
        """The lake's file system as a pyarrow file system."""
        if _is_local(self.fs):
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def _selected(self, dataset: str, batch_ids: Optional[list[str]]) -> list[BatchRecord]:
        """Manifest records for ``batch_ids`` (all when ``None``), in ingest order."""
        records = self._manifest(dataset)
        if batch_ids is None:
            return records
        known = {r.batch_id for r in records}
        unknown = [b for b in batch_ids if b not in known]
        if unknown:
            raise LakeError(f"dataset {dataset!r} has no committed batch(es) {unknown}")
        wanted = set(batch_ids)
        return [r for r in records if r.batch_id in wanted]

    def _dataset(self, dataset: str, area: str, records: list[BatchRecord], file_schema: pa.Schema) -> pds.Dataset:
        """A pyarrow dataset over the listed batches' partition files, with the ``batch_id`` column."""
        base = self._path(dataset, area)
        files = [f"{self._partition(dataset, area, r.batch_id)}/{PART_FILE}" for r in records]
        partitioning = pds.partitioning(pa.schema([(BATCH_COLUMN, pa.string())]), flavor="hive")
        return pds.dataset(
            files,
            schema=file_schema.append(pa.field(BATCH_COLUMN, pa.string())),
            format="parquet",
            filesystem=self._arrow_fs(),
            partitioning=partitioning,
            partition_base_dir=base,
        )

    def _require_schema(self, dataset: str) -> DatasetSchema:
        """The fixed schema, or a LakeError for an unknown or empty dataset."""
        fixed = self.schema(dataset)
        if fixed is None:
            raise LakeError(f"dataset {dataset!r} has no committed batches in {self.url!r}")
        return fixed

    def iter_record_batches(
        self,
        dataset: str,
        batch_ids: Optional[list[str]] = None,
        batch_size: int = 65536,
        columns: Optional[list[str]] = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream accepted rows as Arrow record batches of at most ``batch_size`` rows.

        Parameters
        ----------
        dataset : str
        batch_ids : list of str, optional
            Committed batches to read (default: all), returned in ingest order.
        batch_size : int
            Maximum rows per record batch; memory stays bounded by a few of them.
        columns : list of str, optional
            Subset of the schema columns, ``batch_id`` and ``_source_row``.

        Yields
        ------
        pyarrow.RecordBatch
            Schema columns with their logical types, then ``_source_row`` and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = self._selected(dataset, batch_ids)
        if not records:
            return
        data = self._dataset(dataset, "rows", records, fixed.arrow_schema())
        # a plain sequential read: Arrow's scanner otherwise reads ahead (pre-buffered column
        # chunks, batch read-ahead) in background threads while a slow consumer (scoring) works,
        # and with a 3M-row batch its memory grew by ~900 MB instead of staying at one record batch
        yield from data.to_batches(
            batch_size=batch_size, columns=columns, batch_readahead=0, fragment_readahead=0, use_threads=False,
            fragment_scan_options=pds.ParquetFragmentScanOptions(pre_buffer=False),
        )

    def read(
        self, dataset: str, batch_ids: Optional[list[str]] = None, columns: Optional[list[str]] = None
    ) -> pd.DataFrame:
        """Read committed rows into pandas.

        Parameters
        ----------
        dataset : str
        batch_ids : list of str, optional
            Committed batches to read (default: all), in ingest order.
        columns : list of str, optional
            Subset of columns (see :meth:`iter_record_batches`).

        Returns
        -------
        pandas.DataFrame
            dtypes by logical type: ``Int64``, ``float64``, ``boolean``, ``str``,
            ``datetime64[us, UTC]``; plus ``_source_row`` (``Int64``) and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = self._selected(dataset, batch_ids)
        file_schema = fixed.arrow_schema()
        if records:
            table = self._dataset(dataset, "rows", records, file_schema).to_table(columns=columns)
        else:
            table = file_schema.append(pa.field(BATCH_COLUMN, pa.string())).empty_table()
            table = table.select(columns) if columns else table
        return _to_pandas(table)

    def read_quarantine(self, dataset: str, batch_ids: Optional[list[str]] = None) -> pd.DataFrame:
        """Quarantined rows of committed batches.

        Returns
        -------
        pandas.DataFrame
            The schema columns with the original values as text, ``_reason``, ``_source_row``
            and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        records = [r for r in self._selected(dataset, batch_ids) if r.rows_quarantined]
        file_schema = pa.schema(
            [(c, pa.string()) for c in fixed.columns] + [(REASON_COLUMN, pa.string()), (ROW_COLUMN, pa.int64())]
        )
        if records:
            table = self._dataset(dataset, "quarantine", records, file_schema).to_table()
        else:
            table = file_schema.append(pa.field(BATCH_COLUMN, pa.string())).empty_table()
        return _to_pandas(table)

    # -- scores

    def _scores_dir(self, dataset: str, model_version: Union[str, int, None] = None) -> str:
        """Folder of all scores, or of one model version's scores."""
        if model_version is None:
            return self._path(dataset, "scores")
        return self._path(dataset, "scores", f"model_version={_check_name('model version', str(model_version))}")

    def write_scores(self, dataset: str, model_version: Union[str, int], batch_id: str, frame: pd.DataFrame) -> str:
        """Atomically write one batch's scores for one model version (all at once).

        Parameters
        ----------
        dataset : str
        model_version : str or int
            Registered model version (or any safe label).
        batch_id : str
            The scored batch; writing it again replaces the previous scores.
        frame : pandas.DataFrame
            Scores, typically ``_source_row`` plus score columns. ``batch_id`` and
            ``model_version`` columns, if present, must match the arguments; they are
            stored in the path only.

        Returns
        -------
        str
            Path of the written file.
        """
        with self.scores_writer(dataset, model_version, batch_id) as writer:
            writer.write(frame)
        return writer.path

    @contextmanager
    def scores_writer(self, dataset: str, model_version: Union[str, int], batch_id: str) -> Iterator["ScoresWriter"]:
        """Write one batch's scores part by part; they become visible together when the block ends.

        Memory stays bounded by one part. If the block raises, nothing is written and earlier
        scores of the batch (if any) stay as they were; the watermark (:meth:`scored_batches`)
        moves only on success. ``writer.set_constants({"psi": 0.1})`` adds batch-level columns
        that are known only at the end.
        """
        _check_name("batch id", batch_id)
        folder = f"{self._scores_dir(dataset, model_version)}/batch_id={batch_id}"
        _remove_stale_tmp(self.fs, folder)
        path = f"{folder}/{PART_FILE}"
        with _atomic_stream(self.fs, path, "scores") as stream:
            yield ScoresWriter(stream, str(model_version), batch_id, path)

    def scored_batches(self, dataset: str, model_version: Union[str, int]) -> set[str]:
        """Batch ids that have committed scores for ``model_version`` (the scoring watermark)."""
        pattern = f"{self._scores_dir(dataset, model_version)}/batch_id=*/{PART_FILE}"
        return {posixpath.basename(posixpath.dirname(p)).split("=", 1)[1] for p in self.fs.glob(pattern)}

    def read_scores(self, dataset: str, model_version: Union[str, int, None] = None) -> pd.DataFrame:
        """Scores of one model version (or all), with ``model_version`` and ``batch_id`` columns.

        Batches come in ingest order within each model version; model versions in sorted order.
        """
        order = {r.batch_id: i for i, r in enumerate(self._manifest(dataset))}
        versions = [str(model_version)] if model_version is not None else sorted(
            posixpath.basename(p).split("=", 1)[1] for p in self.fs.glob(f"{self._scores_dir(dataset)}/model_version=*")
        )
        tables = []
        for version in versions:
            for batch_id in sorted(self.scored_batches(dataset, version), key=lambda b: (order.get(b, len(order)), b)):
                path = f"{self._scores_dir(dataset, version)}/batch_id={batch_id}/{PART_FILE}"
                with self.fs.open(path, "rb") as handle:
                    table = read_parquet_with_constants(handle)
                n = table.num_rows
                table = table.append_column("model_version", pa.array([version] * n, pa.string()))
                tables.append(table.append_column(BATCH_COLUMN, pa.array([batch_id] * n, pa.string())))
        if not tables:
            return pd.DataFrame({"model_version": pd.Series(dtype=str), BATCH_COLUMN: pd.Series(dtype=str)})
        return _to_pandas(pa.concat_tables(tables, promote_options="default"))


class ScoresWriter:
    """Appends score frames of one batch (see :meth:`Lake.scores_writer`)."""

    def __init__(self, stream: StreamedTable, model_version: str, batch_id: str, path: str):
        self._stream, self.model_version, self.batch_id, self.path = stream, model_version, batch_id, path

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return self._stream.rows

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``; ``batch_id`` / ``model_version`` columns must match and are dropped
        (they are stored in the path)."""
        for name, value in (("batch_id", self.batch_id), ("model_version", self.model_version)):
            if name in frame.columns:
                if not (frame[name].astype(str) == value).all():
                    raise LakeError(f"scores frame column {name!r} does not match the argument {value!r}")
                frame = frame.drop(columns=name)
        try:
            self._stream.write(frame)
        except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LakeError(f"scores of batch {self.batch_id!r}: a part does not match the first: {exc}") from exc

    def set_constants(self, values: dict[str, Any]) -> None:
        """Batch-level columns (same value on every row), added when the scores are read."""
        self._stream.set_constants(values)
