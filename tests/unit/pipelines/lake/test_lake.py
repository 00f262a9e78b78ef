"""The Delta lake on real files: ingest, the batches table, schema drift, quarantine, crashes, reads, scores."""
import hashlib
import importlib.util
import json
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltalake import DeltaTable

import pipelines.lake.storage as lake_storage
from pipelines.lake import Lake, LakeError, SchemaError, SourceError, write_table

TXN = "transactions"
SAMPLE_ROWS = 1900  # rows per transactions sample batch
SAMPLE_BATCHES = ((1, "csv"), (2, "parquet"), (3, "jsonl"))
CLEAN_SCHEMA = {"id": "int", "amount": "float", "flag": "bool", "kind": "string", "ts": "datetime"}
CLEAN_CSV = "id,amount,flag,kind,ts\n" + "".join(
    f"{i},{i * 1.5},{'true' if i % 2 else 'false'},k{i % 3},2024-01-01T{i:02d}:00:00Z\n" for i in range(20)
)


def write(path: Path, text: str) -> Path:
    """Write a small text source file."""
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tmp_files(root: Path) -> list[Path]:
    """Temporary files a writer left anywhere under ``root``."""
    return sorted(root.rglob(".tmp-*"))


@pytest.fixture
def clean_csv(tmp_path) -> Path:
    """20 clean rows: int, float, bool, string and an ISO time column."""
    return write(tmp_path / "clean.csv", CLEAN_CSV)


@pytest.fixture
def dirty_csv(tmp_path) -> Path:
    """6 rows of the clean schema, 4 of them bad in different ways."""
    return write(
        tmp_path / "dirty.csv",
        """
        id,amount,flag,kind,ts
        100,1.0,true,a,2024-02-01T00:00:00Z
        101,abc,false,b,2024-02-01T01:00:00Z
        102,inf,true,c,2024-02-01T02:00:00Z
        103,2.0,maybe,d,2024-02-01T03:00:00Z
        104,3.0,false,e,
        105,,true,,2024-02-01T05:00:00
        """,
    )


# ----------------------------------------------------------------------------- formats


def test_ingests_csv_parquet_and_jsonl_into_one_typed_dataset(lake, samples_dir):
    reports = [lake.ingest(TXN, samples_dir / f"transactions_batch{i}.{ext}") for i, ext in SAMPLE_BATCHES]
    assert [r.format for r in reports] == ["csv", "parquet", "jsonl"]
    assert all(r.rows_read == r.rows_accepted == SAMPLE_ROWS and not r.skipped for r in reports)
    assert lake.schema(TXN).columns == {
        "txn_id": "int", "amount": "float", "n_items": "int", "category": "string", "channel": "string",
        "is_foreign": "bool", "card_age_days": "int", "hour": "int", "risk_score": "float",
    }  # fmt: skip
    frame = lake.read(TXN)
    assert len(frame) == 3 * SAMPLE_ROWS
    assert frame["txn_id"].is_unique and frame["txn_id"].is_monotonic_increasing  # ingest order kept
    assert frame["batch_id"].unique().tolist() == [r.batch_id for r in reports]
    assert str(frame["txn_id"].dtype) == "Int64" and str(frame["is_foreign"].dtype) == "boolean"
    assert frame["amount"].dtype == np.float64 and frame["risk_score"].isna().sum() > 0  # NaNs survive
    assert frame["card_age_days"].isna().sum() > 0  # so do missing ints
    # the same rows whatever the file format: compare with the generator's parquet batch
    original = pq.read_table(samples_dir / "transactions_batch2.parquet").to_pandas()
    second = frame[frame["batch_id"] == reports[1].batch_id].reset_index(drop=True)
    np.testing.assert_allclose(second["amount"], original["amount"])
    assert second["category"].tolist() == original["category"].tolist()


def test_native_parquet_types_and_time_column(lake, samples_dir):
    for i, ext in SAMPLE_BATCHES:
        report = lake.ingest("sensors", samples_dir / f"sensors_batch{i}.{ext}", time_column="timestamp")
        assert report.rows_quarantined == 0
    schema = lake.schema("sensors")
    assert schema.time_column == "timestamp" and schema.columns["timestamp"] == "datetime"
    frame = lake.read("sensors")
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["timestamp"].min() == pd.Timestamp("2024-03-01T00:00:00Z")
    assert frame.groupby("sensor")["timestamp"].is_monotonic_increasing.all()


def test_jsonl_bad_lines_are_quarantined_with_their_record_number(lake, tmp_path, clean_csv):
    lake.ingest("d", clean_csv)
    source = write(
        tmp_path / "b.jsonl",
        """
        {"id": 1, "amount": 2.5, "flag": true, "kind": "x", "ts": "2024-03-01T00:00:00Z"}
        {"id": 2, "amount": 3.5, "flag": false, "kind": "y", "ts": "2024-03-01T01:00:00Z"
        [1, 2]
        {"id": 4, "amount": null, "flag": false, "kind": null, "ts": "2024-03-01T03:00:00Z"}
        """,
    )
    report = lake.ingest("d", source)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (4, 2, 2)
    quarantine = lake.read_quarantine("d")
    assert quarantine["_source_row"].tolist() == [1, 2]
    assert "invalid JSON" in quarantine["_reason"][0] and "must be an object" in quarantine["_reason"][1]


def test_file_urls_and_a_clear_error_for_unsupported_schemes(tmp_path, clean_csv):
    with fsspec.open(f"memory://src-{uuid.uuid4().hex}/clean.csv", "wb") as handle:
        handle.write(clean_csv.read_bytes())
        source = f"memory://{handle.path}"  # sources may be any fsspec URL
    lake = Lake((tmp_path / "file-lake").as_uri())
    report = lake.ingest("d", source)
    assert report.rows_accepted == 20 and report.source == source
    assert lake.read("d")["id"].tolist() == list(range(20))
    assert lake.ingest("d", clean_csv).skipped  # same bytes from another place
    lake.write_scores("d", 1, report.batch_id, pd.DataFrame({"_source_row": [0], "score": [0.5]}))
    assert lake.scored_batches("d", 1) == {report.batch_id}
    assert Lake(tmp_path / "file-lake").list_batches("d") == lake.list_batches("d")  # path and URL agree
    with pytest.raises(LakeError, match="memory://x.*local path"):
        Lake("memory://x")


def test_unknown_format_and_missing_file_raise_source_error(lake, tmp_path):
    with pytest.raises(SourceError, match="format"):
        lake.ingest("d", write(tmp_path / "x.txt", "a\n1\n"))
    with pytest.raises(SourceError, match="nope.csv"):
        lake.ingest("d", tmp_path / "nope.csv")
    assert lake.ingest("d", tmp_path / "x.txt", format="csv").rows_accepted == 1


# ----------------------------------------------------------------------------- manifest and idempotence


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


# ----------------------------------------------------------------------------- schema


def test_missing_column_is_a_schema_error_naming_column_dataset_and_file(lake, clean_csv, tmp_path):
    lake.ingest("d", clean_csv)
    source = write(tmp_path / "no_amount.csv", "id,flag,kind,ts\n1,true,a,2024-01-01\n")
    with pytest.raises(SchemaError) as error:
        lake.ingest("d", source)
    assert "'amount'" in str(error.value) and "'d'" in str(error.value) and "no_amount.csv" in str(error.value)
    assert len(lake.list_batches("d")) == 1


def test_retyped_column_is_a_schema_error(lake, clean_csv, tmp_path):
    lake.ingest("d", clean_csv)
    rows = "".join(f"{i},{'low' if i % 2 else 'high'},true,a,2024-01-01\n" for i in range(10))
    source = write(tmp_path / "retyped.csv", "id,amount,flag,kind,ts\n" + rows)
    with pytest.raises(SchemaError, match=r"'d', file .*retyped\.csv.*column 'amount' is fixed as float but 10 of 10"):
        lake.ingest("d", source)
    # a parquet file whose float column became a string column of numbers is fine: values cast
    numbers_as_text = {"id": [1], "amount": ["2.5"], "flag": [True], "kind": ["a"], "ts": ["2024-01-01"]}
    pq.write_table(pa.table(numbers_as_text), tmp_path / "s.parquet")
    assert lake.ingest("d", tmp_path / "s.parquet").rows_accepted == 1


def test_extra_columns_raise_unless_ignored(lake, clean_csv, tmp_path):
    lake.ingest("d", clean_csv)
    source = write(tmp_path / "extra.csv", "id,amount,flag,kind,ts,note\n1,2.0,true,a,2024-01-01,hi\n")
    with pytest.raises(SchemaError, match=r"unexpected column\(s\) \['note'\]"):
        lake.ingest("d", source)
    report = lake.ingest("d", source, extra_columns="ignore")
    assert report.ignored_columns == ["note"] and "note" not in lake.read("d").columns


def test_user_schema_overrides_inference_and_is_then_fixed(lake, clean_csv, dirty_csv):
    schema = {**CLEAN_SCHEMA, "id": "string"}
    lake.ingest("d", clean_csv, schema=schema, time_column="ts")
    assert lake.schema("d").columns == schema and lake.read("d")["id"].tolist()[:2] == ["0", "1"]
    with pytest.raises(SchemaError, match="differs"):
        lake.ingest("d", dirty_csv, schema={**schema, "id": "int"})
    assert lake.ingest("d", dirty_csv, schema=schema).rows_accepted == 2


# ----------------------------------------------------------------------------- quarantine


def test_bad_rows_are_quarantined_with_column_and_row(lake, clean_csv, dirty_csv):
    lake.ingest("d", clean_csv, time_column="ts")
    report = lake.ingest("d", dirty_csv)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (6, 2, 4)
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
    assert report.quarantined_by_column == {"amount": 2, "flag": 1, "ts": 1}
    quarantine = lake.read_quarantine("d")
    assert quarantine["_source_row"].tolist() == [1, 2, 3, 4]
    assert quarantine["batch_id"].unique().tolist() == [report.batch_id]
    reasons = quarantine["_reason"].tolist()
    assert reasons[0] == "row 1, column 'amount': cannot parse as a float ('abc')"
    assert reasons[1] == "row 2, column 'amount': infinite value ('inf')"
    assert reasons[2] == "row 3, column 'flag': cannot parse as a bool ('maybe')"
    assert reasons[3] == "row 4, column 'ts': missing time value ('')"
    assert quarantine.loc[0, "amount"] == "abc" and quarantine.loc[1, "id"] == "102"  # original text
    accepted = lake.read("d", batch_ids=[report.batch_id])
    assert accepted["_source_row"].tolist() == [0, 5]
    assert pd.isna(accepted.loc[1, "amount"]) and pd.isna(accepted.loc[1, "kind"])  # missing is not bad
    assert accepted.loc[1, "ts"] == pd.Timestamp("2024-02-01T05:00:00Z")  # naive time read as UTC


def test_sample_bad_file_quarantines_four_rows(lake, samples_dir):
    lake.ingest(TXN, samples_dir / "transactions_batch1.csv")
    report = lake.ingest(TXN, samples_dir / "transactions_bad.csv")
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (20, 16, 4)
    assert report.quarantined_by_column == {"amount": 2, "is_foreign": 1, "n_items": 1}
    assert lake.read_quarantine(TXN)["_source_row"].tolist() == [3, 7, 11, 15]


# ----------------------------------------------------------------------------- crashes


class Crash(Exception):
    """Stands for the process dying at a commit stage."""


def crash_at(monkeypatch, stage: str) -> list[str]:
    """Make the commit raise at ``stage``; returns the stages seen."""
    seen: list[str] = []

    def crash_point(at: str) -> None:
        seen.append(at)
        if at == stage:
            raise Crash(at)

    monkeypatch.setattr(lake_storage, "crash_point", crash_point)  # the one seam every commit step calls
    return seen


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


# ----------------------------------------------------------------------------- reads


def test_streaming_read_yields_every_row_in_bounded_batches(lake, samples_dir):
    ids = [lake.ingest(TXN, samples_dir / f"transactions_batch{i}.{ext}").batch_id for i, ext in SAMPLE_BATCHES]
    batches = list(lake.iter_record_batches(TXN, batch_size=500))
    assert all(isinstance(b, pa.RecordBatch) and 0 < b.num_rows <= 500 for b in batches)
    streamed = pa.Table.from_batches(batches)
    assert streamed.num_rows == 3 * SAMPLE_ROWS
    assert streamed.column("txn_id").to_pylist() == lake.read(TXN)["txn_id"].tolist()
    assert streamed.schema.field("batch_id").type == pa.string()
    subset = list(lake.iter_record_batches(TXN, batch_ids=[ids[2]], batch_size=1000, columns=["amount", "batch_id"]))
    assert [b.num_rows for b in subset] == [1000, 900] and subset[0].schema.names == ["amount", "batch_id"]
    with pytest.raises(LakeError, match="nope"):
        lake.read(TXN, batch_ids=["nope"])


# ----------------------------------------------------------------------------- scores


def test_scores_are_written_per_model_version_and_batch(lake, clean_csv, dirty_csv):
    a, b = lake.ingest("d", clean_csv, time_column="ts").batch_id, lake.ingest("d", dirty_csv).batch_id
    rows = lake.read("d")
    for batch_id in (b, a):
        part = rows[rows["batch_id"] == batch_id]
        scores = pd.DataFrame({"_source_row": part["_source_row"], "score": 1.0, "batch_id": batch_id})
        lake.write_scores("d", 3, batch_id, scores)
    lake.write_scores("d", "4", a, pd.DataFrame({"_source_row": [0], "score": [9.0]}))
    assert lake.scored_batches("d", 3) == {a, b} and lake.scored_batches("d", 4) == {a}
    assert lake.scored_batches("d", 5) == set()
    scores = lake.read_scores("d", 3)
    assert len(scores) == 22 and scores["batch_id"].unique().tolist() == [a, b]  # ingest order
    assert set(lake.read_scores("d")["model_version"]) == {"3", "4"}
    lake.write_scores("d", 4, a, pd.DataFrame({"_source_row": [0, 1], "score": [7.0, 8.0]}))  # replaces
    assert lake.read_scores("d", 4)["score"].tolist() == [7.0, 8.0]
    with pytest.raises(LakeError, match="batch_id"):
        lake.write_scores("d", 4, a, pd.DataFrame({"batch_id": [b], "score": [1.0]}))
    assert tmp_files(Path(lake.root)) == []


def test_scores_streamed_in_parts_become_visible_together(lake, clean_csv, monkeypatch):
    a = lake.ingest("d", clean_csv, time_column="ts").batch_id
    lake.write_scores("d", 1, a, pd.DataFrame({"_source_row": [0], "score": [5.0]}))  # the scores a failure must keep
    parts = [pd.DataFrame({"_source_row": np.arange(i, i + 3), "score": np.full(3, float(i))}) for i in (0, 3, 6)]

    # a failure after some parts were written: nothing new is visible, the old scores stay
    with pytest.raises(RuntimeError, match="scoring failed"):
        with lake.scores_writer("d", 1, a) as writer:
            writer.write(parts[0])
            writer.write(parts[1])
            raise RuntimeError("scoring failed")
    assert lake.read_scores("d", 1)["score"].tolist() == [5.0] and tmp_files(Path(lake.root)) == []

    # a crash between the last part and the commit: the same
    crash_at(monkeypatch, "scores-spooled")
    with pytest.raises(Crash):
        with lake.scores_writer("d", 1, a) as writer:
            for part in parts:
                writer.write(part)
    monkeypatch.undo()
    assert lake.read_scores("d", 1)["score"].tolist() == [5.0]

    with lake.scores_writer("d", 1, a) as writer:
        for part in parts:
            writer.write(part)
        assert writer.rows == 9 and lake.read_scores("d", 1)["score"].tolist() == [5.0]  # not yet visible
        writer.set_constants({"psi": 0.25})
    scores = lake.read_scores("d", 1)
    assert scores["_source_row"].tolist() == list(range(9)) and scores["score"].tolist() == [0.0] * 3 + [3.0] * 3 + [6.0] * 3
    assert scores["psi"].tolist() == [0.25] * 9  # a batch-level column, stored once
    assert tmp_files(Path(lake.root)) == []
    with pytest.raises(LakeError, match="does not match the first"):
        with lake.scores_writer("d", 2, a) as writer:
            writer.write(parts[0])
            writer.write(parts[1].rename(columns={"score": "other"}))
    assert lake.scored_batches("d", 2) == set()


# ----------------------------------------------------------------------------- defaults and samples


def test_lake_root_defaults_to_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_ANOMALY_LAKE", str(tmp_path / "elsewhere"))
    assert Lake().url == str(tmp_path / "elsewhere")


def test_sample_files_are_what_the_generator_makes(samples_dir):
    spec = importlib.util.spec_from_file_location("make_samples", samples_dir.parent / "make_samples.py")
    make_samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_samples)
    installed = {"numpy": np.__version__, "pandas": pd.__version__}
    if any(not installed[name].startswith(version + ".") for name, version in make_samples.GENERATED_WITH.items()):
        pytest.skip(f"samples were generated with {make_samples.GENERATED_WITH}, not {installed}")
    files = make_samples.build_samples()
    assert sorted(files) == sorted(p.name for p in samples_dir.iterdir() if p.name != "README.md")
    assert all(make_samples._same(samples_dir / name, data) for name, data in files.items())
    assert all(len(data) < 300_000 for data in files.values())
