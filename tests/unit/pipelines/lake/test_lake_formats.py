"""The Delta lake on real files: ingest of CSV, Parquet and JSON lines into one typed dataset, sources by URL, and
streaming reads."""
import uuid

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.lake import Lake, LakeError, SourceError

from lake_helpers import SAMPLE_BATCHES, SAMPLE_ROWS, TXN, write


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
