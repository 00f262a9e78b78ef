"""The ``scores`` Delta table: one partition per (``model_version``, ``batch_id``).

A batch's scores are written part by part to a private temporary Arrow IPC file (in the
system's temp folder, never in a folder other writers use), then streamed into the table with
one commit that replaces the partition. Concurrent score runs write different temporary files;
two runs scoring the same batch each replace the partition whole, so it holds one run's rows.

Scores are keyed by content like rows: each carries the :data:`CONTENT_COLUMN` marker of the
batch it scored. A batch removed, or removed and ingested again with other content under its
id, while a run scored it: the run's commit is refused when the check before it sees the
change, and scores that slip past the check (the change landing between check and commit)
carry the old marker, so readers and the watermark ignore them and the batch is scored again.
Scores with a null marker (a file without the column, from a lake of an earlier release) count
as the record's.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Union

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from pipelines.lake import delta, storage
from pipelines.lake.errors import LakeError
from pipelines.lake.records import BATCH_COLUMN, CONTENT_COLUMN, ROW_COLUMN

VERSION_COLUMN = "model_version"


class ScoresWriter:
    """Appends score frames of one batch (see :meth:`pipelines.lake.Lake.scores_writer`)."""

    def __init__(self, spool: str, model_version: str, batch_id: str, path: str, marker: Optional[str] = None):
        self.model_version, self.batch_id, self.path, self.marker = model_version, batch_id, path, marker
        self._spool = spool
        self._writer: Optional[pa.ipc.RecordBatchStreamWriter] = None
        self.schema: Optional[pa.Schema] = None
        self.rows = 0
        self.constants: dict[str, Any] = {}

    def write(self, frame: Union[pd.DataFrame, pa.Table]) -> None:
        """Append ``frame``; ``batch_id`` / ``model_version`` columns must match and are dropped
        (they are the partition). Later parts are cast to the first part's types."""
        if isinstance(frame, pd.DataFrame):
            for name, value in ((BATCH_COLUMN, self.batch_id), (VERSION_COLUMN, self.model_version)):
                if name in frame.columns:
                    if not (frame[name].astype(str) == value).all():
                        raise LakeError(f"scores frame column {name!r} does not match the argument {value!r}")
                    frame = frame.drop(columns=name)
            table = pa.Table.from_pandas(frame, preserve_index=False)
        else:
            table = frame
        try:
            if self._writer is None:
                self.schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                         for f in table.schema.remove_metadata()])
                self._writer = pa.ipc.new_stream(self._spool, self.schema)  # cheap to write and read back
            elif table.schema.names != self.schema.names:
                raise ValueError(f"columns {table.schema.names} differ from the first part's {self.schema.names}")
            self._writer.write_table(table.cast(self.schema))
        except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise LakeError(f"scores of batch {self.batch_id!r}: a part does not match the first: {exc}") from exc
        self.rows += table.num_rows

    def set_constants(self, values: dict[str, Any]) -> None:
        """Batch-level columns (the same value on every row), known only at the end."""
        self.constants.update(values)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _stream(self) -> pa.RecordBatchReader:
        """The spooled rows plus the constant and partition columns, streamed."""
        base = self.schema if self.schema is not None else pa.schema([])
        extra = {**self.constants, CONTENT_COLUMN: self.marker, VERSION_COLUMN: self.model_version, BATCH_COLUMN: self.batch_id}
        types = {k: pa.array([v]).type for k, v in extra.items()}
        types = {k: pa.string() if pa.types.is_null(t) else t for k, t in types.items()}
        schema = pa.schema(list(base) + [pa.field(k, t) for k, t in types.items()])

        def batches() -> Iterator[pa.RecordBatch]:
            if self.schema is None:
                return
            # read, not memory-mapped: a mapped spool's pages count as resident memory, so
            # streaming a 1M-row batch's scores back added their whole size (~125 MiB) to RSS
            with pa.OSFile(self._spool, "rb") as source:
                for part in pa.ipc.open_stream(source):
                    columns = list(part.columns) + [pa.repeat(pa.scalar(extra[k], types[k]), part.num_rows) for k in types]
                    yield pa.RecordBatch.from_arrays(columns, schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())


@contextmanager
def spooled_writer(uri: str, options: dict[str, str], model_version: str, batch_id: str, marker: Optional[str] = None,
                   still_current: Callable[[], bool] = lambda: True) -> Iterator[ScoresWriter]:
    """A :class:`ScoresWriter` whose rows are committed to the scores table when the block ends,
    marked as scores of content ``marker``, if ``still_current()`` then says the batch is still
    that content."""
    folder = tempfile.mkdtemp(prefix="vae-anomaly-scores-")
    writer = ScoresWriter(f"{folder}/part.arrows", model_version, batch_id, uri, marker)
    try:
        yield writer
        writer._close()
        if not still_current():
            raise LakeError(f"batch {batch_id!r} was removed, or replaced by other content, while it was scored: "
                            "its scores were not written; score it again")
        storage.crash_point("scores-spooled")
        if writer.rows:
            partition = {VERSION_COLUMN: model_version, BATCH_COLUMN: batch_id}
            delta.replace_partition(uri, options, writer._stream, partition, "score", "scores")
    finally:
        writer._close()
        shutil.rmtree(folder, ignore_errors=True)


def stale(table, markers: dict[str, str], model_version: Optional[str] = None) -> set[tuple[str, str]]:
    """(model version, batch id) partitions holding scores of other content than the committed
    record's (``markers``: batch id -> its content marker), e.g. of a removed batch. Reads the
    markers from the file statistics in the table's log (:func:`logged_markers`), and only the
    footer of a file the log has no statistics for (:func:`file_markers`): the watermark is asked
    on every run, and opening one file per scored batch made it grow with the dataset's age."""
    if table is None or not delta.has_column(table, CONTENT_COLUMN):
        return set()
    found, unsure = set(), set()
    for version, batch_id, seen in logged_markers(table, model_version):
        if seen is None:
            unsure.add((version, batch_id))
        elif any(m is not None and markers.get(batch_id) != m for m in seen):
            found.add((version, batch_id))
    if not unsure:
        return found
    pruning = None if model_version is None else [(VERSION_COLUMN, "=", model_version)]
    for fragment in delta.arrow_dataset(table, file_pruning_predicate=pruning).get_fragments():
        keys = pds.get_partition_keys(fragment.partition_expression)
        version, batch_id = keys.get(VERSION_COLUMN), keys.get(BATCH_COLUMN)
        if (version, batch_id) not in unsure:
            continue
        if any(m is not None and markers.get(batch_id) != m for m in file_markers(fragment)):
            found.add((version, batch_id))
    return found


def logged_markers(table, model_version: Optional[str] = None) -> Iterator[tuple[str, str, Optional[set[Optional[str]]]]]:
    """(model version, batch id, markers) of each scores file, from the statistics of its add
    action in the log (no file is opened): ``{marker}`` when the file's minimum and maximum
    marker agree, both of them when they differ, ``{None}`` for a file of null markers only, and
    ``None`` when the log has no statistics of the column for the file."""
    actions = pa.table(table.get_add_actions(flatten=True))
    names = set(actions.column_names)
    part_v, part_b = f"partition.{VERSION_COLUMN}", f"partition.{BATCH_COLUMN}"
    low, high, nulls = (f"{k}.{CONTENT_COLUMN}" for k in ("min", "max", "null_count"))
    if model_version is not None:
        actions = actions.filter(pc.equal(actions[part_v], model_version))
    if not {low, high, nulls} <= names:  # no statistics of the column at all
        for v, b in zip(actions[part_v].to_pylist(), actions[part_b].to_pylist()):
            yield v, b, None
        return
    columns = [actions[c].to_pylist() for c in (part_v, part_b, low, high, nulls, "num_records")]
    for v, b, lo, hi, n_null, n in zip(*columns):
        if lo is not None and hi is not None:
            yield v, b, {lo, hi} | ({None} if n_null else set())
        elif n is not None and n_null is not None and n_null == n:
            yield v, b, {None}
        else:
            yield v, b, None


def file_markers(fragment) -> set[Optional[str]]:
    """The content markers in one scores file, from its row groups' statistics (the footer; a
    partition's scores carry one marker); a row group without them is read. Empty for a file
    without the column (its scores count as the record's)."""
    if CONTENT_COLUMN not in fragment.physical_schema.names:
        return set()
    fragment.ensure_complete_metadata()
    found: set[Optional[str]] = set()
    for group in fragment.row_groups:
        stats = (group.statistics or {}).get(CONTENT_COLUMN)
        if stats is not None and stats["min"] == stats["max"]:
            found.add(stats["min"])
        else:  # no statistics, all null, or several markers: read the column (never filter on it)
            column = fragment.subset(row_group_ids=[group.id]).to_table(columns=[CONTENT_COLUMN]).column(0)
            found.update(pc.unique(column).to_pylist())
    return found


def scored_batches(table, model_version: str, markers: dict[str, str]) -> set[str]:
    """Batch ids with committed scores of their committed content for ``model_version``
    (``table`` may be ``None``; ``markers`` as for :func:`stale`)."""
    if table is None:
        return set()
    parts = {p[BATCH_COLUMN] for p in table.partitions(file_pruning_predicate=[(VERSION_COLUMN, "=", model_version)])}
    return parts - {b for _, b in stale(table, markers, model_version)}


def read_scores(table, model_version: Optional[str], order: list[str], markers: dict[str, str],
                batch_ids: Optional[list[str]] = None) -> pa.Table:
    """Scores of one version (or all) as Arrow, versions sorted, batches in ``order``; the
    partition columns last. Stale scores (:func:`stale`) are left out, and so is the marker.
    With ``batch_ids`` only those batches' partitions are read."""
    if table is None:
        return pa.table({VERSION_COLUMN: pa.array([], pa.string()), BATCH_COLUMN: pa.array([], pa.string())})
    parts = table.partitions() if model_version is None else table.partitions(
        file_pruning_predicate=[(VERSION_COLUMN, "=", model_version)]
    )
    rank = {b: i for i, b in enumerate(order)}
    skip = stale(table, markers, model_version)
    wanted = None if batch_ids is None else set(batch_ids)
    keys = sorted({(p[VERSION_COLUMN], p[BATCH_COLUMN]) for p in parts if wanted is None or p[BATCH_COLUMN] in wanted} - skip,
                  key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1]))
    schema = table.schema().to_arrow()
    schema = pa.schema(schema)  # arro3 -> pyarrow
    hidden = (VERSION_COLUMN, BATCH_COLUMN, CONTENT_COLUMN)
    names = [n for n in schema.names if n not in hidden] + [VERSION_COLUMN, BATCH_COLUMN]
    tables = []
    for version, batch_id in keys:
        data = delta.arrow_dataset(
            table, file_pruning_predicate=[(VERSION_COLUMN, "=", version), (BATCH_COLUMN, "=", batch_id)]
        ).to_table(columns=names)
        # delta-rs may write a stream's record batches out of order: restore the rows' order
        tables.append(data.sort_by(ROW_COLUMN) if ROW_COLUMN in data.column_names else data)
    if not tables:
        return pa.table({VERSION_COLUMN: pa.array([], pa.string()), BATCH_COLUMN: pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")
