"""The :class:`Lake`: datasets of immutable, validated batches in Delta tables.

See :mod:`pipelines.lake` for the layout and the commit protocol.
"""
from __future__ import annotations

import os
import posixpath
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import fsspec
import pandas as pd
import pyarrow as pa

from pipelines.lake import commit, content, scores
from pipelines.lake.errors import LakeError, SchemaRace
from pipelines.lake.records import (
    BATCH_COLUMN,
    REASON_COLUMN,
    ROW_COLUMN,
    BatchRecord,
    DatasetSchema,
    ExtraColumns,
    IngestReport,
    SourceBatch,
    SourceFormat,
    ValidatedBatch,
    find_record,
)
from pipelines.lake.sources import read_source
from pipelines.lake.storage import to_pandas
from pipelines.lake.tables import LakeTables
from pipelines.lake.validation import check_name, validate_batch
from pipelines.settings import get_settings



class Lake:
    """A lake of datasets made of immutable, validated batches, stored as Delta tables.

    Parameters
    ----------
    root : str or path-like, optional
        Local path or URL (``file://``, ``s3://`` ...). Defaults to
        :attr:`pipelines.settings.Settings.lake_url`.
    **storage_options
        Credentials and endpoint, fsspec-style (``key``, ``secret``, ``endpoint_url``,
        ``client_kwargs``) or delta-rs-style (``AWS_ACCESS_KEY_ID`` ...); used by fsspec for
        listing and translated for delta-rs (:func:`pipelines.lake.delta.delta_storage_options`).
    """

    def __init__(self, root: Union[str, os.PathLike, None] = None, **storage_options: Any) -> None:
        #: where the dataset tables are and how to open them (shared with the commit protocol and
        #: :mod:`pipelines.lake.admin`)
        self.tables = LakeTables(get_settings().lake_url if root is None else root, storage_options)
        self.url = self.tables.url
        self.root = self.tables.root
        self.delta_options = self.tables.options

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """An fsspec file system on the lake (for listing; object stores need their fsspec
        package, e.g. ``s3fs``, for :meth:`datasets` and the old-layout check only)."""
        return self.tables.fs

    # -- tables and records

    def table_uri(self, dataset: str, table: str) -> str:
        """URI of one of a dataset's Delta tables (one of :data:`pipelines.lake.tables.TABLES`)."""
        return self.tables.uri(dataset, table)

    def datasets(self) -> list[str]:
        """Names of the datasets that have a batches table."""
        found = self.fs.glob(f"{self.root}/*/batches/_delta_log")
        return sorted(posixpath.basename(posixpath.dirname(posixpath.dirname(p))) for p in found)

    def list_batches(self, dataset: str) -> list[BatchRecord]:
        """The committed batches of ``dataset`` in ingest order (empty if it does not exist).

        Parameters
        ----------
        dataset : str

        Returns
        -------
        list of BatchRecord
        """
        return self.tables.records(dataset)

    def schema(self, dataset: str) -> Optional[DatasetSchema]:
        """The dataset's fixed schema (that of its first batch), or ``None`` before one is committed."""
        records = self.tables.records(dataset)
        return DatasetSchema.from_dict(records[0].schema) if records else None

    def find_batch(
        self, dataset: str, *, sha256: Optional[str] = None, batch_id: Optional[str] = None
    ) -> Optional[BatchRecord]:
        """The committed batch with this hash (of the content or of the file) or id, if any."""
        return find_record(self.tables.records(dataset), sha256=sha256, batch_id=batch_id)

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
            Defaults to ``b-<content hash[:16]>``, so the same rows map to the same batch.
        extra_columns : {"error", "ignore"}
            Source columns not in the schema raise a :class:`SchemaError` or are left out.

        Returns
        -------
        IngestReport
            ``skipped`` is true (and nothing is written) when the same content is already
            committed, also by a concurrent ingest; its counts are then those of that batch.

        Raises
        ------
        SourceError, SchemaError, LakeError
        """
        batch = read_source(source, format)
        existing = self.find_batch(dataset, sha256=batch.sha256)
        if existing is not None:
            return IngestReport.of_skipped(dataset, existing, source=batch.source)
        options = dict(time_column=time_column, schema=schema, batch_id=batch_id, extra_columns=extra_columns)
        try:
            return self.commit(self.validate(dataset, batch, **options))
        except SchemaRace:  # a concurrent first batch fixed the schema: validate against it
            return self.commit(self.validate(dataset, batch, **options))

    def validate(self, dataset: str, batch: SourceBatch, **options: Any) -> ValidatedBatch:
        """:func:`validate_batch` against this dataset's fixed schema (options as in :meth:`ingest`)."""
        check_name("dataset", dataset)
        wanted = options.get("batch_id")
        if wanted is not None:
            taken = self.find_batch(dataset, batch_id=wanted)
            if taken is not None and batch.sha256 not in (taken.sha256, taken.file_sha256):
                raise LakeError(f"dataset {dataset!r}: batch id {wanted!r} is already used by {taken.source!r}")
        return validate_batch(dataset, batch, current_schema=self.schema(dataset), **options)

    def commit(self, batch: ValidatedBatch) -> IngestReport:
        """Commit a validated batch and return its :class:`IngestReport`: its rows, its
        quarantine, then its row in ``batches`` (compare and swap; the same content committed
        concurrently makes this a no-op). The protocol and its errors are documented once, in
        :func:`pipelines.lake.commit.commit_batch`."""
        return commit.commit_batch(self.tables, batch)

    def vacuum(self, dataset: str, retention_hours: Optional[int] = None) -> list[str]:
        """Delete data of batches missing from ``batches`` (left by killed ingests) or of other
        content than their record's (left by an ingest that lost its batch id) and, with
        ``retention_hours``, Delta-vacuum older files; see :func:`pipelines.lake.commit.vacuum`."""
        return commit.vacuum(self.tables, dataset, retention_hours)

    # -- reading

    def _require_schema(self, dataset: str) -> DatasetSchema:
        """The fixed schema, or a LakeError for an unknown or empty dataset."""
        fixed = self.schema(dataset)
        if fixed is None:
            raise LakeError(f"dataset {dataset!r} has no committed batches in {self.url!r}")
        return fixed

    def _selected(self, dataset: str, batch_ids: Optional[list[str]]) -> list[BatchRecord]:
        """Records for ``batch_ids`` (all when ``None``), in ingest order."""
        records = self.tables.records(dataset)
        if batch_ids is None:
            return records
        known = {r.batch_id for r in records}
        unknown = [b for b in batch_ids if b not in known]
        if unknown:
            raise LakeError(f"dataset {dataset!r} has no committed batch(es) {unknown}")
        wanted = set(batch_ids)
        return [r for r in records if r.batch_id in wanted]

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
        records = [r for r in self._selected(dataset, batch_ids) if r.rows_accepted]
        if not records:
            return
        table = self.tables.open(dataset, "rows")
        schema = fixed.arrow_schema().append(pa.field(BATCH_COLUMN, pa.string()))
        for record in records:
            yield from content.read_own(table, record, schema, columns, stream=True, batch_size=batch_size)

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
        schema = fixed.arrow_schema().append(pa.field(BATCH_COLUMN, pa.string()))
        table = self.tables.open(dataset, "rows")
        parts = [
            _in_source_order(content.read_own(table, r, schema, columns))
            for r in self._selected(dataset, batch_ids) if r.rows_accepted
        ]
        empty = schema.empty_table().select(columns) if columns else schema.empty_table()
        return to_pandas(pa.concat_tables([empty, *parts]))

    def read_quarantine(self, dataset: str, batch_ids: Optional[list[str]] = None) -> pd.DataFrame:
        """Quarantined rows of committed batches.

        Returns
        -------
        pandas.DataFrame
            The schema columns with the original values as text, ``_reason``, ``_source_row``
            and ``batch_id``.
        """
        fixed = self._require_schema(dataset)
        schema = pa.schema(
            [(c, pa.string()) for c in fixed.columns]
            + [(REASON_COLUMN, pa.string()), (ROW_COLUMN, pa.int64()), (BATCH_COLUMN, pa.string())]
        )
        table = self.tables.open(dataset, "quarantine")
        parts = [
            _in_source_order(content.read_own(table, r, schema))
            for r in self._selected(dataset, batch_ids) if r.rows_quarantined
        ]
        return to_pandas(pa.concat_tables([schema.empty_table(), *parts]))

    # -- scores (see pipelines.lake.scores)

    def write_scores(self, dataset: str, model_version: Union[str, int], batch_id: str, frame: pd.DataFrame) -> str:
        """Atomically write (or replace) one batch's scores for one model version, all at once.

        ``frame`` holds ``_source_row`` plus score columns; ``batch_id`` / ``model_version``
        columns, if present, must match the arguments (they are the partition). Returns the
        scores table's URI.
        """
        with self.scores_writer(dataset, model_version, batch_id) as writer:
            writer.write(frame)
        return writer.path

    @contextmanager
    def scores_writer(self, dataset: str, model_version: Union[str, int], batch_id: str) -> Iterator[scores.ScoresWriter]:
        """Write one batch's scores part by part; they become visible together when the block ends.

        Memory stays bounded by one part: parts are spooled to a private temporary file
        (outside the lake), then streamed into the ``scores`` Delta table in one commit that
        replaces the partition (``model_version``, ``batch_id``). If the block raises, nothing
        is written and earlier scores of the batch (if any) stay as they were; the watermark
        (:meth:`scored_batches`) moves only on success. ``writer.set_constants({"psi": 0.1})``
        adds batch-level columns that are known only at the end.
        """
        check_name("batch id", batch_id)
        version = check_name("model version", str(model_version))
        record = self.find_batch(dataset, batch_id=batch_id)
        if record is None:
            raise LakeError(f"dataset {dataset!r} has no committed batch {batch_id!r} to write scores of")

        def still_current() -> bool:
            now = self.find_batch(dataset, batch_id=batch_id)
            return now is not None and now.sha256 == record.sha256

        uri, marker = self.table_uri(dataset, "scores"), content.content_marker(record.sha256)
        with scores.spooled_writer(uri, self.delta_options, version, batch_id, marker, still_current) as writer:
            yield writer

    def _markers(self, dataset: str) -> dict[str, str]:
        """Batch id -> the content marker of its committed record."""
        return {r.batch_id: content.content_marker(r.sha256) for r in self.tables.records(dataset)}

    def scored_batches(self, dataset: str, model_version: Union[str, int]) -> set[str]:
        """Batch ids that have committed scores for ``model_version`` (the scoring watermark),
        of the content now committed under each id (see :mod:`pipelines.lake.scores`)."""
        return scores.scored_batches(self.tables.open(dataset, "scores"), str(model_version), self._markers(dataset))

    def read_scores(self, dataset: str, model_version: Union[str, int, None] = None,
                    batch_ids: Optional[list[str]] = None) -> pd.DataFrame:
        """Scores of one model version (or all), with ``model_version`` and ``batch_id`` columns;
        with ``batch_ids``, of those batches only (only their partitions are read).

        Batches come in ingest order within each model version; model versions in sorted order.
        """
        markers = self._markers(dataset)
        version = None if model_version is None else str(model_version)
        return to_pandas(scores.read_scores(self.tables.open(dataset, "scores"), version, list(markers), markers, batch_ids))


def _in_source_order(table: pa.Table) -> pa.Table:
    """One batch's rows in source order (delta-rs may write a stream's record batches out of
    order); tables without ``_source_row`` are left as they are."""
    return table.sort_by(ROW_COLUMN) if ROW_COLUMN in table.column_names else table
