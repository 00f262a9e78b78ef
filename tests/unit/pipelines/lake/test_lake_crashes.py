"""Crashes at each commit stage, in this process and a killed writer process: the lake stays consistent, re-runs
complete, vacuum removes what was orphaned."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipelines.lake import LakeError, write_table

from lake_helpers import CLEAN_SCHEMA, Crash, crash_at, tmp_files


@pytest.mark.parametrize("stage", ["rows", "quarantine"])
def test_crash_while_committing_a_batch_leaves_the_lake_consistent(lake, clean_csv, dirty_csv, monkeypatch, stage):
    first = lake.ingest("d", clean_csv, time_column="ts")
    crash_at(monkeypatch, stage)
    with pytest.raises(Crash):
        lake.ingest("d", dirty_csv)
    # readers see exactly the committed batch, whatever the crash left in the data tables
    assert [b.batch_id for b in lake.list_batches("d")] == [first.batch_id]
    assert lake.read("d")["id"].tolist() == list(range(20))
    assert lake.read_quarantine("d").empty
    assert sum(b.num_rows for b in lake.iter_record_batches("d")) == 20
    monkeypatch.undo()
    report = lake.ingest("d", dirty_csv)  # the re-run completes, replacing the dead run's partitions
    assert not report.skipped and (report.rows_accepted, report.rows_quarantined) == (2, 4)
    assert len(lake.read("d")) == 22 and len(lake.read_quarantine("d")) == 4
    assert len(DeltaTable(str(Path(lake.root) / "d" / "rows")).to_pyarrow_table()) == 22  # no copy left over
    assert lake.vacuum("d") == []


def test_crash_after_the_batches_commit_leaves_the_batch_committed(lake, clean_csv, monkeypatch):
    crash_at(monkeypatch, "batches")
    with pytest.raises(Crash):
        lake.ingest("d", clean_csv, time_column="ts")
    monkeypatch.undo()
    assert len(lake.list_batches("d")) == 1 and lake.ingest("d", clean_csv).skipped


@pytest.mark.parametrize("stage", ["rows", "quarantine"])
def test_crash_during_the_first_batch_leaves_no_dataset(lake, dirty_csv, clean_csv, monkeypatch, stage):
    crash_at(monkeypatch, stage)
    with pytest.raises(Crash):
        lake.ingest("d", dirty_csv, schema=CLEAN_SCHEMA)
    assert lake.list_batches("d") == [] and lake.schema("d") is None and lake.datasets() == []
    with pytest.raises(LakeError, match="no committed batches"):
        lake.read("d")
    monkeypatch.undo()
    report = lake.ingest("d", clean_csv, time_column="ts")  # another file may fix the schema now
    assert report.rows_accepted == 20 and lake.schema("d").columns["amount"] == "float"


@pytest.mark.parametrize("stage", ["rows", "quarantine"])
def test_killed_writer_process_leaves_the_lake_consistent(lake, clean_csv, dirty_csv, stage):
    lake.ingest("d", clean_csv, time_column="ts")
    script = textwrap.dedent(
        f"""
        import os
        import pipelines.lake.storage
        from pipelines.lake import Lake
        pipelines.lake.storage.crash_point = lambda at: os._exit(17) if at == {stage!r} else None
        Lake({lake.url!r}).ingest("d", {str(dirty_csv)!r})
        """
    )
    project_root = Path(__file__).resolve().parents[4]
    killed = subprocess.run([sys.executable, "-c", script], cwd=project_root, capture_output=True, text=True)
    assert killed.returncode == 17, killed.stderr
    assert len(lake.list_batches("d")) == 1 and len(lake.read("d")) == 20
    report = lake.ingest("d", dirty_csv)
    assert (report.rows_accepted, report.rows_quarantined) == (2, 4) and len(lake.read("d")) == 22
    assert lake.vacuum("d") == []  # nothing orphaned after the re-run


def test_vacuum_removes_the_data_of_uncommitted_batches(lake, clean_csv, dirty_csv, monkeypatch):
    lake.ingest("d", clean_csv, time_column="ts")
    crash_at(monkeypatch, "quarantine")
    with pytest.raises(Crash):
        lake.ingest("d", dirty_csv)
    monkeypatch.undo()
    removed = lake.vacuum("d")
    assert len(removed) == 2 and all("batch_id=" in p for p in removed)  # rows + quarantine
    assert len(DeltaTable(str(Path(lake.root) / "d" / "rows")).to_pyarrow_table()) == 20
    assert len(lake.read("d")) == 20 and lake.vacuum("d") == []


def test_write_table_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "out" / "t.parquet"
    write_table(str(path), pd.DataFrame({"x": [1, 2]}))
    crash_at(monkeypatch, "file-tmp")
    with pytest.raises(Crash):
        write_table(str(path), pa.table({"x": [3]}))
    assert pq.read_table(path).column("x").to_pylist() == [1, 2]  # the old file is intact
    assert tmp_files(tmp_path) == []
