"""Lake maintenance on a real lake (pipelines.lake.maintenance): compaction keeps every row and
score, checkpoints and log cleanup keep the history the retention promises, vacuum never
deletes a file a version reads, orphans are removed only once settled, old reports go and the
reviewed ones and every verdict stay; a second pass does nothing."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from pipelines.lake import LakeError, admin
from pipelines.lake.maintenance import maintain
from pipelines.reports.store import ReportRef, ReportStore
from pipelines.review.feedback import FeedbackStore, Verdict

from lake_helpers import Crash, crash_at

BATCHES = 5
SCHEMA = {"id": "int", "amount": "float", "kind": "string"}


def csv(path: Path, start: int) -> Path:
    """Four rows of one schema, ids from ``start``; the last has a bad amount (quarantined)."""
    path.write_text("id,amount,kind\n" + "".join(f"{i},{i * 0.5},k{i % 2}\n" for i in range(start, start + 3))
                    + f"{start + 3},oops,z\n")
    return path


@pytest.fixture
def small_lake(lake, tmp_path):
    """``BATCHES`` committed batches, each with scores of one model version."""
    for n in range(BATCHES):
        batch = lake.ingest("d", csv(tmp_path / f"b{n}.csv", 10 * n), schema=SCHEMA).batch_id
        lake.write_scores("d", "m-v1", batch, pd.DataFrame({"_source_row": [0, 1, 2], "score": [n, n + 0.5, n + 0.25]}))
    return lake


def snapshot(lake) -> tuple:
    """What readers see: rows, quarantine, scores and the watermark."""
    return lake.read("d"), lake.read_quarantine("d"), lake.read_scores("d"), lake.scored_batches("d", "m-v1")


def referenced_files(lake, name: str) -> list[Path]:
    """The data files the table's current version reads."""
    table = DeltaTable(lake.table_uri("d", name))
    return [Path(lake.table_uri("d", name)) / p for p in table.get_add_actions().column("path").to_pylist()]


def test_a_pass_compacts_checkpoints_cleans_the_log_and_keeps_every_row_and_score(small_lake):
    lake = small_lake
    before = snapshot(lake)
    done = maintain(lake, "d", retention_hours=0)
    batches = done.table("batches")
    assert (batches.files_before, batches.files_after) == (BATCHES, 1)  # one file per ingest, compacted
    assert batches.files_compacted == BATCHES and batches.files_written == 1
    assert batches.files_vacuumed == BATCHES  # retention 0: the replaced files go at once
    assert batches.bytes_after < batches.bytes_before
    for t in done.tables:
        log = Path(lake.table_uri("d", t.table)) / "_delta_log"
        assert t.checkpoint_version == t.version_after == DeltaTable(str(log.parent)).version()
        assert (log / f"{t.checkpoint_version:020d}.checkpoint.parquet").exists()
        assert t.log_files_removed > 0 and t.skipped == []
        assert all(p.exists() for p in referenced_files(lake, t.table))  # vacuum never takes a read file
    assert {t.table for t in done.tables} == {"batches", "rows", "quarantine", "scores"}
    for was, now in zip(before, snapshot(lake)):
        if isinstance(was, pd.DataFrame):
            pd.testing.assert_frame_equal(now, was)
        else:
            assert now == was
    assert json.loads(json.dumps(done.to_dict()))["tables"][0]["table"] == "batches"

    again = maintain(lake, "d", retention_hours=0)  # idempotent: nothing left to do
    for t in again.tables:
        assert (t.files_compacted, t.files_vacuumed, t.log_files_removed) == (0, 0, 0), t
        assert t.version_before == t.version_after == done.table(t.table).version_after
    assert again.orphans_removed == [] and snapshot(lake)[0].equals(before[0])


def test_time_travel_within_the_retention_restores_a_removed_batch_and_a_clear_error_after(small_lake):
    lake = small_lake
    gone = lake.list_batches("d")[1].batch_id
    before = snapshot(lake)
    admin.remove_batch(lake, "d", gone)
    done = maintain(lake, "d")  # the default retention, 7 days: the removal is inside it
    assert done.retention_hours == 168
    assert done.table("batches").files_vacuumed == 0 and done.table("batches").log_files_removed == 0
    config = DeltaTable(lake.table_uri("d", "rows")).metadata().configuration
    assert config["delta.logRetentionDuration"] == "interval 168 hours"
    admin.restore_batch(lake, "d", gone)
    for was, now in zip(before[:3], snapshot(lake)[:3]):
        pd.testing.assert_frame_equal(now, was)

    admin.remove_batch(lake, "d", gone)
    maintain(lake, "d", retention_hours=0)  # the history goes: restore says why
    with pytest.raises(LakeError, match=r"no removed batch .* history .*vae-anomaly maintain.*retention"):
        admin.restore_batch(lake, "d", gone)
    assert gone not in {b.batch_id for b in lake.list_batches("d")}


def test_orphaned_data_is_removed_only_once_older_than_the_retention(small_lake, tmp_path, monkeypatch):
    lake = small_lake
    crash_at(monkeypatch, "quarantine")  # rows and quarantine written, the batch never committed
    with pytest.raises(Crash):
        lake.ingest("d", csv(tmp_path / "killed.csv", 900))
    monkeypatch.undo()
    orphan_rows = DeltaTable(lake.table_uri("d", "rows")).to_pyarrow_table().num_rows
    assert orphan_rows == BATCHES * 3 + 3
    fresh = maintain(lake, "d", retention_hours=1)  # could be an ingest in progress: left alone
    assert fresh.orphans_removed == [] and DeltaTable(lake.table_uri("d", "rows")).to_pyarrow_table().num_rows == orphan_rows
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    settled = maintain(lake, "d", retention_hours=1, now=later)
    assert [o.split("=")[0] for o in settled.orphans_removed] == ["rows/batch_id", "quarantine/batch_id"]
    assert DeltaTable(lake.table_uri("d", "rows")).to_pyarrow_table().num_rows == BATCHES * 3
    assert len(lake.read("d")) == BATCHES * 3 and lake.vacuum("d") == []


def test_old_reports_are_pruned_the_reviewed_ones_and_every_verdict_stay(small_lake):
    lake = small_lake
    store = ReportStore(lake.url)
    ids = [b.batch_id for b in lake.list_batches("d")]
    for batch in ids:
        store.write(ReportRef("d", "m-v1", batch), "<p>r</p>", json.dumps({"items": []}), {})
    feedback = FeedbackStore(lake.table_uri("d", "feedback"), lake.delta_options)
    feedback.add([Verdict("k1", ids[0], "m-v1", "anomaly", "ann")])
    verdicts = feedback.history()

    recent = maintain(lake, "d", reports_older_than=timedelta(days=90))
    assert recent.reports_pruned == [] and len(store.list("d")) == BATCHES

    done = maintain(lake, "d", reports_older_than=timedelta(days=90), now=datetime.now(timezone.utc) + timedelta(days=91))
    assert sorted(done.reports_pruned) == sorted(f"m-v1/{b}" for b in ids[1:]) and done.reports_kept_reviewed == 1
    assert [r.batch_id for r in store.list("d")] == [ids[0]]
    assert not Path(store.folder(ReportRef("d", "m-v1", ids[1]))).exists()  # the whole folder
    pd.testing.assert_frame_equal(feedback.history(), verdicts)
    assert "feedback" in {t.table for t in done.tables}  # maintained like the others
    naive = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=91)  # read as UTC
    again = maintain(lake, "d", reports_older_than=timedelta(days=90), now=naive)
    assert again.reports_pruned == [] and again.reports_kept_reviewed == 1


def test_bad_input_is_a_clear_error(lake, tmp_path):
    with pytest.raises(LakeError, match="dataset 'nope' has no batches table"):
        maintain(lake, "nope")
    lake.ingest("d", csv(tmp_path / "one.csv", 0))
    with pytest.raises(LakeError, match="retention must be 0 hours or more"):
        maintain(lake, "d", retention_hours=-1)
    assert maintain(str(lake.root), "d", retention_hours=0).table("batches").files_after == 1  # a URL works too


def test_the_installed_delta_rs_commits_compaction_over_appends_and_refuses_it_over_an_overwrite(tmp_path):
    """What the pass's concurrency rests on (deltalake 1.6.6): a compaction planned before a
    concurrent append still commits (the appended file stays beside the compacted one), and one
    planned before a concurrent partition overwrite is refused, so no overwritten row comes back."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    from pipelines.lake import delta

    uri = str(tmp_path / "t")
    for i in range(3):
        write_deltalake(uri, pa.table({"b": ["x"], "v": [i]}), mode="append", partition_by=["b"])
    stale = DeltaTable(uri)
    write_deltalake(uri, pa.table({"b": ["x"], "v": [10]}), mode="append", partition_by=["b"])
    assert stale.optimize.compact(commit_properties=delta.commit_properties("compact"))["numFilesRemoved"] == 3
    assert sorted(DeltaTable(uri).to_pandas()["v"]) == [0, 1, 2, 10]
    stale = DeltaTable(uri)
    delta.replace_partition(uri, {}, pa.table({"b": ["x"], "v": [99]}), {"b": "x"}, "test", "rows")
    with pytest.raises(CommitFailedError):
        stale.optimize.compact(commit_properties=delta.commit_properties("compact"))
    assert DeltaTable(uri).to_pandas()["v"].tolist() == [99]
