"""The lake's fast paths give what the general ones give: Parquet columns taken from Arrow as they
are, text stripped by Arrow, typed values rendered as text for the quarantine, and the Parquet
encoding of what the lake writes."""
import glob

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = {"id": "int", "amount": "float", "flag": "bool", "kind": "string", "ts": "datetime"}
CSV = (
    "id,amount,flag,kind,ts\n"
    "1,1.5,true,a,2024-01-01T00:00:00+00:00\n"
    "2,nan,false,,2024-01-01T01:00:00+00:00\n"  # NaN and empty text are missing values
    "3,inf,true,c,2024-01-01T02:00:00+00:00\n"  # an infinite float is a bad value
    "4,,,d,2024-01-01T03:00:00+00:00\n"
)


def test_the_same_rows_as_parquet_and_as_csv_are_one_batch(lake, tmp_path):
    (tmp_path / "rows.csv").write_text(CSV)
    table = pa.table({
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "amount": pa.array([1.5, float("nan"), float("inf"), None]),
        "flag": pa.array([True, False, True, None]),
        "kind": pa.array(["a", "", "c", "d"]),
        "ts": pa.array(np.arange(4) * 3_600_000_000 + 1_704_067_200_000_000, pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, tmp_path / "rows.parquet")
    parquet = lake.ingest("d", tmp_path / "rows.parquet", schema=SCHEMA, time_column="ts")
    csv = lake.ingest("d", tmp_path / "rows.csv")
    assert csv.skipped and csv.batch_id == parquet.batch_id and csv.sha256 == parquet.sha256
    assert (parquet.rows_accepted, parquet.rows_quarantined, parquet.quarantined_by_column) == (3, 1, {"amount": 1})
    assert lake.read_quarantine("d")["_reason"].tolist() == ["row 2, column 'amount': infinite value ('inf')"]
    rows = lake.read("d")
    assert rows["amount"].isna().tolist() == [False, True, True] and rows["kind"].isna().tolist() == [False, True, False]


def test_text_is_stripped_as_str_strip_strips_it_in_ascii_and_other_columns(lake, tmp_path):
    # column a is all ASCII (Arrow strips it); column b has non-ASCII space (Python strips it)
    (tmp_path / "t.csv").write_text("a,b,c\n\x1c7\x1c,\u00a09\u00a0,\x1fYes\n 8\t,\u2003NA ,\u00a0no\n x ,1,y\n")
    report = lake.ingest("t", tmp_path / "t.csv", schema={"a": "int", "b": "int", "c": "bool"})
    assert (report.rows_accepted, report.quarantined_by_column) == (2, {"a": 1})
    rows = lake.read("t")
    assert rows["a"].tolist() == [7, 8] and rows["b"].tolist()[0] == 9 and rows["b"].isna().tolist() == [False, True]
    assert rows["c"].tolist() == [True, False]
    assert lake.read_quarantine("t")["_reason"].tolist() == ["row 2, column 'a': cannot parse as an int (' x ')"]


def test_a_quarantined_row_with_a_missing_bool_keeps_it_missing_in_the_quarantine(lake, tmp_path):
    pq.write_table(pa.table({"x": [1.0, float("inf"), 2.0], "b": pa.array([True, None, False])}), tmp_path / "b.parquet")
    report = lake.ingest("b", tmp_path / "b.parquet")  # was a TypeError rendering the missing bool as text
    assert (report.rows_accepted, report.quarantined_by_column) == (2, {"x": 1})
    quarantine = lake.read_quarantine("b")
    assert quarantine["x"].tolist() == ["inf"] and quarantine["b"].isna().all()


def test_distinct_floats_are_written_plain_and_few_distinct_values_with_a_dictionary(lake, tmp_path):
    n = 131_072  # one row group, all floats distinct: a dictionary would be 1 MiB
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"x": rng.normal(size=n), "kind": np.array(["a", "b", "c"])[rng.integers(0, 3, n)]}),
                   tmp_path / "f.parquet")
    lake.ingest("f", tmp_path / "f.parquet")
    (path,) = glob.glob(f"{lake.root}/f/rows/*/*.parquet")
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    # a float column that kept a dictionary of its 131,072 values would take 1 MiB + 17-bit indices
    assert columns["x"].total_compressed_size < 1.1 * n * 8
    assert columns["kind"].total_compressed_size < n  # dictionary indices, 2 bits a row (plain: 5 bytes)


def test_inference_weighs_each_distinct_text_by_its_rows():
    """A column of few distinct texts is inferred from them once each, weighted by their rows:
    the same type as testing every row (unweighted, 2 of 3 distinct texts parse)."""
    import pandas as pd

    from pipelines.lake.validation import INFER_MIN_SHARE, infer_schema

    n = 20_000
    odd = int((1 - INFER_MIN_SHARE) * n)  # just within the tolerated share of odd values
    frame = pd.DataFrame({
        "few_ok": [" 1", "2 "] * ((n - odd) // 2) + ["x"] * odd,
        "few_odd": ["1", "2"] * ((n - odd - 2) // 2) + ["x"] * (odd + 2),
        "ids": [str(i) for i in range(n - odd)] + ["x"] * odd,  # mostly distinct: every row tested
        "flags": ["true", " FALSE"] * (n // 2 - 1) + ["maybe", None],
        "missing": [None, "", "NA"] * (n // 3) + [None] * (n % 3),
    })
    assert infer_schema(frame).columns == {"few_ok": "int", "few_odd": "string", "ids": "int", "flags": "bool",
                                           "missing": "string"}
