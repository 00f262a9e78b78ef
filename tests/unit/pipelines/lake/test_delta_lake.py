"""The Delta layout's own behaviours: identity by rows, empty and ragged files, concurrent score
writers, remove/restore through the tables' history, migration of the old layout, and the
tables read by another Delta reader."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipelines.lake import Lake, LakeError, SourceError, admin

ROWS = pd.DataFrame({
    "id": range(8), "amount": [0.5 * i for i in range(8)], "kind": list("abcdabcd"),
    "ts": pd.date_range("2024-01-01", periods=8, freq="h", tz="UTC"),
})


def cli(lake_root: Path, *args: str) -> subprocess.CompletedProcess:
    """``vae-anomaly`` in a child process against ``lake_root``."""
    env = {**os.environ, "VAE_ANOMALY_LAKE": str(lake_root), "VAE_ANOMALY_HOME": str(lake_root.parent / "home")}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_same_rows_as_csv_and_as_parquet_are_one_batch(lake, tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    ROWS.to_parquet(tmp_path / "r.parquet")
    first = lake.ingest("d", tmp_path / "r.csv", time_column="ts")
    again = lake.ingest("d", tmp_path / "r.parquet")
    assert again.skipped and again.batch_id == first.batch_id and again.source.endswith("r.parquet")
    assert len(lake.list_batches("d")) == 1 and len(lake.read("d")) == 8
    ROWS.iloc[::-1].to_parquet(tmp_path / "reversed.parquet")  # other source rows: another batch
    assert not lake.ingest("d", tmp_path / "reversed.parquet").skipped


def test_a_header_only_csv_is_refused_and_never_blocks_the_dataset(lake, tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    lake.ingest("d", tmp_path / "r.csv")
    (tmp_path / "header.csv").write_text("id,amount,kind,ts\n")
    with pytest.raises(SourceError, match=r"header\.csv.*no rows"):
        lake.ingest("d", tmp_path / "header.csv")
    with pytest.raises(SourceError, match="no rows"):
        lake.ingest("fresh", tmp_path / "header.csv")
    assert [b.rows_accepted for b in lake.list_batches("d")] == [8] and lake.list_batches("fresh") == []


def test_csv_rows_with_too_few_or_too_many_fields_are_quarantined_and_the_rest_kept(lake, tmp_path):
    source = tmp_path / "ragged.csv"
    source.write_text(
        "id,amount,kind\n1,1.5,a\n2,2.5\n3,3.5,c\n4,4.5,d,extra\n5,5.5,e\n"
    )
    report = lake.ingest("d", source)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (5, 3, 2)
    assert lake.read("d")["id"].tolist() == [1, 3, 5]
    quarantine = lake.read_quarantine("d")
    assert quarantine["_source_row"].tolist() == [1, 3]
    assert quarantine["_reason"].tolist() == [
        "row 1: expected 3 fields, got 2: '2,2.5'", "row 3: expected 3 fields, got 4: '4,4.5,d,extra'",
    ]


def test_two_score_writers_of_one_batch_at_once_both_finish_and_one_wins(lake, tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    batch = lake.ingest("d", tmp_path / "r.csv").batch_id
    with lake.scores_writer("d", "m-v1", batch) as first:
        first.write(pd.DataFrame({"_source_row": [0, 1], "score": [1.0, 1.0]}))
        with lake.scores_writer("d", "m-v1", batch) as second:  # a second run, same batch, same time
            second.write(pd.DataFrame({"_source_row": [0, 1], "score": [2.0, 2.0]}))
        first.write(pd.DataFrame({"_source_row": [2], "score": [1.0]}))  # its spool file is untouched
    assert lake.read_scores("d", "m-v1")["score"].tolist() == [1.0, 1.0, 1.0]  # one run's rows, whole
    assert list(Path(lake.root).rglob(".tmp-*")) == []


def test_remove_and_restore_a_batch_through_the_history(lake, tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "bad.csv").write_text("id,amount,kind,ts\n9,x,a,2024-02-01T00:00:00Z\n10,1.0,b,2024-02-01T01:00:00Z\n11,2.0,c,2024-02-01T02:00:00Z\n")
    keep = lake.ingest("d", tmp_path / "r.csv").batch_id
    gone = lake.ingest("d", tmp_path / "bad.csv").batch_id
    lake.write_scores("d", "m-v1", gone, pd.DataFrame({"_source_row": [1, 2], "score": [0.1, 0.2]}))
    before = (lake.read("d"), lake.read_quarantine("d"), lake.read_scores("d"))

    assert admin.remove_batch(lake, "d", gone)["removed"]["batch_id"] == gone
    assert [b.batch_id for b in lake.list_batches("d")] == [keep]
    assert set(lake.read("d")["batch_id"]) == {keep} and lake.read_quarantine("d").empty
    assert lake.scored_batches("d", "m-v1") == set()
    assert set(DeltaTable(lake.table_uri("d", "rows")).to_pandas()["batch_id"]) == {keep}  # for any reader
    history = DeltaTable(lake.table_uri("d", "batches")).history(1)[0]
    assert history["operation"] == "DELETE" and history["vae_anomaly.op"] == "remove"  # recorded
    assert admin.list_batches(lake, "d")["removed"] == [gone]

    admin.restore_batch(lake, "d", gone)
    assert [b.batch_id for b in lake.list_batches("d")] == [keep, gone]  # back in its place
    for was, now in zip(before, (lake.read("d"), lake.read_quarantine("d"), lake.read_scores("d"))):
        pd.testing.assert_frame_equal(now, was)
    with pytest.raises(LakeError, match="nothing to restore"):
        admin.restore_batch(lake, "d", gone)
    with pytest.raises(LakeError, match="no committed batch 'nope'"):
        admin.remove_batch(lake, "d", "nope")


def test_lake_cli_lists_removes_and_restores(tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    root = tmp_path / "lake"
    batch = Lake(root).ingest("d", tmp_path / "r.csv").batch_id
    listed = cli(root, "lake", "list", "d", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [b["batch_id"] for b in json.loads(listed.stdout)["batches"]] == [batch]
    removed = cli(root, "lake", "remove", "d", batch)
    assert removed.returncode == 0 and Lake(root).list_batches("d") == [], removed.stderr
    restored = cli(root, "lake", "restore", "d", batch)
    assert restored.returncode == 0 and f"restored batch {batch}" in " ".join(restored.stdout.split()), restored
    missing = cli(root, "lake", "remove", "d")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: `lake remove` needs BATCH_ID", missing


def _old_layout(root: Path) -> str:
    """A dataset as the manifest-based lake wrote it: partitions, _schema.json, _manifest.json, scores."""
    folder = root / "old"
    schema = {"columns": {"id": "int", "amount": "float"}, "time_column": None}
    rows = pa.table({"id": pa.array([1, 2], pa.int64()), "amount": [1.0, 2.0], "_source_row": pa.array([0, 2], pa.int64())})
    quarantine = pa.table({"id": ["3"], "amount": ["x"], "_reason": ["row 1, column 'amount': cannot parse as a float ('x')"],
                           "_source_row": pa.array([1], pa.int64())})
    scores = pa.table({"_source_row": pa.array([0, 2], pa.int64()), "score": [0.1, 0.2]}).replace_schema_metadata(
        {b"vae_anomaly.batch_columns": json.dumps({"psi": 0.5})})
    for area, table in (("rows/batch_id=b1", rows), ("quarantine/batch_id=b1", quarantine), ("scores/model_version=m-v1/batch_id=b1", scores)):
        (folder / area).mkdir(parents=True)
        pq.write_table(table, folder / area / "part-0.parquet")
    (folder / "_schema.json").write_text(json.dumps(schema))
    entry = {"batch_id": "b1", "source": "/data/old.csv", "format": "csv", "sha256": "ab" * 32, "rows_read": 3,
             "rows_accepted": 2, "rows_quarantined": 1, "schema": schema, "ingested_at": "2026-01-01T00:00:00+00:00",
             "quarantined_by_column": {"amount": 1}, "ignored_columns": []}
    (folder / "_manifest.json").write_text(json.dumps({"dataset": "old", "batches": [entry]}))
    return "old"


def test_an_old_manifest_dataset_gives_a_clear_error_and_migrates(lake):
    dataset = _old_layout(Path(lake.root))
    with pytest.raises(LakeError, match=r"old Parquet layout.*vae-anomaly lake migrate old.*re-ingest"):
        lake.list_batches(dataset)
    done = cli(Path(lake.root), "lake", "migrate", dataset, "--json")  # the command the error names
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["migrated"] == ["b1"]
    [record] = lake.list_batches(dataset)
    assert (record.batch_id, record.file_sha256, record.rows_accepted, record.rows_quarantined) == ("b1", "ab" * 32, 2, 1)
    assert lake.read(dataset)["id"].tolist() == [1, 2] and lake.read_quarantine(dataset)["_source_row"].tolist() == [1]
    scores = lake.read_scores(dataset, "m-v1")
    assert scores["score"].tolist() == [0.1, 0.2] and scores["psi"].tolist() == [0.5, 0.5]
    assert (Path(lake.root) / dataset / "_manifest.json.migrated").exists()


def test_the_tables_read_with_plain_delta_readers(lake, tmp_path):
    ROWS.to_csv(tmp_path / "r.csv", index=False)
    batch = lake.ingest("d", tmp_path / "r.csv", time_column="ts").batch_id
    rows = DeltaTable(f"{lake.root}/d/rows").to_pandas()  # the README's one-liner
    assert rows["id"].tolist() == list(range(8)) and set(rows["batch_id"]) == {batch}
    batches = DeltaTable(f"{lake.root}/d/batches").to_pandas()
    assert batches["batch_id"].tolist() == [batch] and json.loads(batches["schema"][0])["time_column"] == "ts"
    assert set(rows["_content"]) == {batches["sha256"][0][:16]}  # the README's join to the committed content


def test_s3_storage_options_are_passed_to_delta_rs_in_its_names():
    lake = Lake("s3://bucket/lake", key="AK", secret="SK", client_kwargs={"endpoint_url": "http://127.0.0.1:9000"},
                AWS_REGION="eu-west-1")
    assert lake.delta_options == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_REGION": "eu-west-1",
                                  "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true"}
    assert lake.table_uri("d", "rows") == "s3://bucket/lake/d/rows"


def test_a_killed_first_ingest_with_other_types_gets_a_clear_error(lake, tmp_path, monkeypatch):
    import pipelines.lake.storage as lake_storage

    ROWS.to_csv(tmp_path / "r.csv", index=False)

    def crash(stage):
        if stage == "rows":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(lake_storage, "crash_point", crash)
    with pytest.raises(KeyboardInterrupt):
        lake.ingest("d", tmp_path / "r.csv")
    monkeypatch.undo()
    (tmp_path / "other.csv").write_text("id,amount,kind,ts\nx1,a,b,c\nx2,d,e,f\n")  # every column text
    with pytest.raises(LakeError, match="no committed batch.*killed first ingest.*re-run"):
        lake.ingest("d", tmp_path / "other.csv")
    assert lake.ingest("d", tmp_path / "r.csv").rows_accepted == 8  # the re-run completes
