"""Schema drift and bad rows: missing, retyped and extra columns, a user schema, and rows quarantined with their column
and row."""
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.lake import SchemaError

from lake_helpers import CLEAN_SCHEMA, TXN, write


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
