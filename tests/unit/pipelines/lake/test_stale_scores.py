"""A batch removed, or replaced by other content under its id, while a run scored it: the run's
scores never count as the new content's (issue 8: concurrent writers never lose a batch)."""
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import pipelines.lake.storage as lake_storage
from pipelines.lake import CONTENT_COLUMN, Lake, LakeError, admin
from pipelines.lake.content import content_marker


def csv(path: Path, ids: range) -> Path:
    path.write_text("id,amount\n" + "".join(f"{i},{i * 0.5}\n" for i in ids))
    return path


def scores(n: int, value: float) -> pd.DataFrame:
    return pd.DataFrame({"_source_row": range(n), "score": [value] * n})


def raw_scores(lake: Lake) -> pd.DataFrame:
    """The scores table as any Delta reader sees it."""
    return DeltaTable(lake.table_uri("d", "scores")).to_pandas()


@pytest.fixture
def two_contents(lake, tmp_path):
    """Batch ``x`` holding content A (3 rows), and a file of content B (5 rows)."""
    lake.ingest("d", csv(tmp_path / "a.csv", range(3)), batch_id="x")
    return csv(tmp_path / "b.csv", range(10, 15))


def replace_x(lake: Lake, source: Path) -> None:
    admin.remove_batch(lake, "d", "x")
    lake.ingest("d", source, batch_id="x")


def test_a_batch_replaced_while_scored_refuses_the_run_and_is_scored_again(lake, two_contents):
    with pytest.raises(LakeError, match="'x' was removed, or replaced by other content, while it was scored"):
        with lake.scores_writer("d", "m-v1", "x") as writer:
            writer.write(scores(3, 1.0))  # scores of content A
            replace_x(lake, two_contents)
    assert lake.scored_batches("d", "m-v1") == set()  # the watermark: x still needs scores
    assert lake.read_scores("d").empty
    lake.write_scores("d", "m-v1", "x", scores(5, 2.0))
    assert lake.scored_batches("d", "m-v1") == {"x"}
    assert lake.read_scores("d", "m-v1")["score"].tolist() == [2.0] * 5
    assert CONTENT_COLUMN not in lake.read_scores("d").columns


def test_a_batch_removed_while_scored_refuses_the_run(lake, two_contents):
    with pytest.raises(LakeError, match="removed, or replaced"):
        with lake.scores_writer("d", "m-v1", "x") as writer:
            writer.write(scores(3, 1.0))
            admin.remove_batch(lake, "d", "x")
    assert lake.scored_batches("d", "m-v1") == set()
    with pytest.raises(LakeError, match="no committed batch 'x' to write scores of"):
        lake.write_scores("d", "m-v1", "x", scores(3, 1.0))


def test_scores_that_slip_past_the_check_are_ignored_then_replaced_and_vacuumed(lake, two_contents, monkeypatch):
    old = content_marker(lake.find_batch("d", batch_id="x").sha256)

    def replace_after_the_check(stage: str) -> None:  # the change lands between check and commit
        if stage == "scores-spooled":
            monkeypatch.setattr(lake_storage, "crash_point", lambda stage: None)
            replace_x(lake, two_contents)

    monkeypatch.setattr(lake_storage, "crash_point", replace_after_the_check)
    lake.write_scores("d", "m-v1", "x", scores(3, 1.0))  # committed, as A's scores
    assert raw_scores(lake)[CONTENT_COLUMN].tolist() == [old] * 3  # a plain reader sees them
    assert lake.scored_batches("d", "m-v1") == set()  # the lake does not: B is not scored
    assert lake.read_scores("d").empty
    assert lake.vacuum("d") == [f"scores/batch_id=x/{CONTENT_COLUMN}={old}"]
    assert raw_scores(lake).empty

    lake.write_scores("d", "m-v1", "x", scores(5, 2.0))
    assert lake.scored_batches("d", "m-v1") == {"x"}
    assert lake.read_scores("d")["score"].tolist() == [2.0] * 5


def test_scores_written_before_the_marker_existed_still_count(lake, tmp_path):
    batch = lake.ingest("d", csv(tmp_path / "a.csv", range(3))).batch_id
    legacy = pa.table({"_source_row": [0, 1, 2], "score": [0.5] * 3, "model_version": ["m-v1"] * 3, "batch_id": [batch] * 3})
    write_deltalake(lake.table_uri("d", "scores"), legacy, partition_by=["model_version", "batch_id"])
    assert lake.scored_batches("d", "m-v1") == {batch}
    lake.write_scores("d", "m-v2", batch, scores(3, 0.7))  # adds the marker column to the table
    assert lake.scored_batches("d", "m-v1") == {batch} and lake.scored_batches("d", "m-v2") == {batch}
    got = lake.read_scores("d")
    assert got["model_version"].tolist() == ["m-v1"] * 3 + ["m-v2"] * 3
    assert got["score"].tolist() == [0.5] * 3 + [0.7] * 3 and CONTENT_COLUMN not in got.columns
    assert lake.vacuum("d") == []


def test_a_scores_file_without_statistics_has_its_markers_read(tmp_path):
    """The watermark reads markers from a file's footer; where a row group has no statistics
    (or several markers) the column is read instead."""
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    from pipelines.lake.scores import file_markers

    table = pa.table({"score": [1.0, 2.0, 3.0], CONTENT_COLUMN: ["a", None, "b"]})
    pq.write_table(table, tmp_path / "plain.parquet", write_statistics=False)
    pq.write_table(table.slice(0, 2), tmp_path / "stats.parquet")
    pq.write_table(table.drop_columns([CONTENT_COLUMN]), tmp_path / "legacy.parquet")
    got = {f.path.rsplit("/", 1)[1]: file_markers(f) for f in pds.dataset(tmp_path, format="parquet").get_fragments()}
    assert got == {"plain.parquet": {"a", None, "b"}, "stats.parquet": {"a"}, "legacy.parquet": set()}


def test_the_watermark_reads_the_markers_from_the_log_and_opens_no_scores_file(lake, two_contents, monkeypatch):
    """A year of hourly batches is thousands of scores files: the watermark and the readers find
    stale scores from the file statistics in the Delta log (issue 30)."""
    import pipelines.lake.scores as lake_scores

    old = content_marker(lake.find_batch("d", batch_id="x").sha256)

    def replace_after_the_check(stage: str) -> None:
        if stage == "scores-spooled":
            monkeypatch.setattr(lake_storage, "crash_point", lambda stage: None)
            replace_x(lake, two_contents)

    monkeypatch.setattr(lake_storage, "crash_point", replace_after_the_check)
    lake.write_scores("d", "m-v1", "x", scores(3, 1.0))  # A's scores, committed after B replaced A
    lake.ingest("d", csv(two_contents.parent / "c.csv", range(20, 22)), batch_id="y")
    lake.write_scores("d", "m-v1", "y", scores(2, 1.0))

    def opened(fragment):
        raise AssertionError(f"a scores file was opened: {fragment.path}")

    monkeypatch.setattr(lake_scores, "file_markers", opened)
    assert lake.scored_batches("d", "m-v1") == {"y"}  # x's scores are of the old content
    assert {(v, b, frozenset(m)) for v, b, m in lake_scores.logged_markers(lake.tables.open("d", "scores"))} == {
        ("m-v1", "x", frozenset({old})), ("m-v1", "y", frozenset({content_marker(lake.find_batch("d", batch_id="y").sha256)}))}
    assert lake.read_scores("d", "m-v1")["batch_id"].unique().tolist() == ["y"]


def test_a_scores_file_the_log_has_no_statistics_for_has_its_footer_read(tmp_path, monkeypatch):
    import pipelines.lake.scores as lake_scores

    uri = str(tmp_path / "scores")
    data = pa.table({"_source_row": [0, 1], CONTENT_COLUMN: ["a", "a"], "model_version": ["m-v1"] * 2, "batch_id": ["x", "y"]})
    write_deltalake(uri, data, partition_by=["model_version", "batch_id"],
                    configuration={"delta.dataSkippingNumIndexedCols": "1"})  # statistics of _source_row only
    table = DeltaTable(uri)
    assert {m for _, _, m in lake_scores.logged_markers(table)} == {None}
    read = []
    footer = lake_scores.file_markers
    monkeypatch.setattr(lake_scores, "file_markers", lambda f: read.append(f.path) or footer(f))
    assert lake_scores.stale(table, {"x": "a", "y": "b"}, "m-v1") == {("m-v1", "y")}
    assert len(read) == 2
