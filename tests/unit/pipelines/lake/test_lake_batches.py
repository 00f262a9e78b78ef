"""The lake's batches table: one entry per batch, re-ingesting the same content is a no-op, explicit batch ids are
immutable."""
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipelines.lake import LakeError

from lake_helpers import CLEAN_SCHEMA


def test_batches_table_records_each_batch(lake, clean_csv, dirty_csv):
    first, second = lake.ingest("d", clean_csv, time_column="ts"), lake.ingest("d", dirty_csv)
    table = DeltaTable(str(Path(lake.root) / "d" / "batches")).to_pyarrow_table()  # any Delta reader
    entries = sorted(table.to_pylist(), key=lambda e: e["seq"])
    assert [e["batch_id"] for e in entries] == [first.batch_id, second.batch_id] and [e["seq"] for e in entries] == [1, 2]
    entry = entries[1]
    assert entry["file_sha256"] == hashlib.sha256(dirty_csv.read_bytes()).hexdigest()
    assert entry["batch_id"] == f"b-{entry['sha256'][:16]}" and entry["sha256"] != entry["file_sha256"]
    assert entry["source"] == str(dirty_csv) and entry["format"] == "csv"
    assert (entry["rows_read"], entry["rows_accepted"], entry["rows_quarantined"]) == (6, 2, 4)
    assert json.loads(entry["schema"]) == {"columns": CLEAN_SCHEMA, "time_column": "ts"}
    assert datetime.fromisoformat(entry["ingested_at"]).utcoffset() == timezone.utc.utcoffset(None)
    assert [b.batch_id for b in lake.list_batches("d")] == [first.batch_id, second.batch_id]
    assert lake.schema("d").to_dict() == {"columns": CLEAN_SCHEMA, "time_column": "ts"}
    assert lake.datasets() == ["d"]
    rows = DeltaTable(str(Path(lake.root) / "d" / "rows")).to_pandas()
    assert sorted(rows["batch_id"].unique()) == sorted([first.batch_id, second.batch_id]) and len(rows) == 22


def test_reingesting_the_same_content_is_a_no_op(lake, clean_csv, tmp_path):
    first = lake.ingest("d", clean_csv)
    again = lake.ingest("d", clean_csv)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(clean_csv.read_bytes())
    renamed = lake.ingest("d", copy)
    assert not first.skipped and again.skipped and renamed.skipped
    assert again.batch_id == renamed.batch_id == first.batch_id
    assert renamed.source == str(copy) and renamed.rows_accepted == 20
    assert len(lake.list_batches("d")) == 1 and len(lake.read("d")) == 20


def test_explicit_batch_ids_are_immutable(lake, clean_csv, dirty_csv):
    assert lake.ingest("d", clean_csv, batch_id="2024-01").batch_id == "2024-01"
    assert list((Path(lake.root) / "d" / "rows" / "batch_id=2024-01").glob("*.parquet"))
    with pytest.raises(LakeError, match="2024-01"):
        lake.ingest("d", dirty_csv, batch_id="2024-01")
    with pytest.raises(LakeError, match="invalid batch id"):
        lake.ingest("d", dirty_csv, batch_id="../escape")


def test_each_version_of_the_batches_table_is_read_once(lake, clean_csv, dirty_csv, monkeypatch):
    """A score run asks for the records about seven times: each new version's files are read
    once, a version already read is not read again, and a table made again at the same place
    (another table id) is read anew (issue 30)."""
    import shutil

    from pipelines.lake import batches

    reads = []
    parse = batches.from_table
    monkeypatch.setattr(batches, "from_table", lambda table: reads.append(table.num_rows) or parse(table))
    first = lake.ingest("d", clean_csv, time_column="ts")
    reads.clear()
    for _ in range(3):
        assert [b.batch_id for b in lake.list_batches("d")] == [first.batch_id]
    assert reads == [1]
    second = lake.ingest("d", dirty_csv)
    assert [b.batch_id for b in lake.list_batches("d")] == [first.batch_id, second.batch_id]
    assert reads[-1] == 2
    shutil.rmtree(Path(lake.root) / "d")
    again = lake.ingest("d", dirty_csv)
    assert [b.batch_id for b in lake.list_batches("d")] == [again.batch_id]
