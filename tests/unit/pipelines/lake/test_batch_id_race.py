"""Two ingests of other content under one explicit batch id, their commits forced to interleave;
and tables written before the content column existed (issue 8)."""
import shutil
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

import pipelines.lake.storage as lake_storage
from pipelines.lake import CONTENT_COLUMN, Lake, LakeError, admin, read_source

HEADER = "id,amount,kind\n"


def csv(path: Path, ids: range, bad: int) -> Path:
    """Rows ``ids`` plus ``bad`` rows with an unparseable amount (quarantined)."""
    good = "".join(f"{i},{i * 0.5},k{i % 3}\n" for i in ids)
    path.write_text(HEADER + good + "".join(f"{900 + j},oops,z\n" for j in range(bad)))
    return path


class Turns:
    """A ``crash_point`` that makes a writer thread wait, after one of its commit stages, until
    another writer passed one of its own (``waits``: (writer, stage) -> (writer, stage))."""

    STAGES = ("rows", "quarantine", "batches")

    def __init__(self, writers: tuple[str, ...], waits: dict[tuple[str, str], tuple[str, str]]):
        self.waits = waits
        self.done = {(w, s): threading.Event() for w in writers for s in self.STAGES}

    def __call__(self, stage: str) -> None:
        me = threading.current_thread().name
        if (me, stage) not in self.done:
            return
        self.done[(me, stage)].set()
        after = self.waits.get((me, stage))
        if after is not None and not self.done[after].wait(timeout=60):
            raise TimeoutError(f"{me} waited for {after} after {stage}")


def run_writer(lake: Lake, batch, name: str, outcome: dict) -> threading.Thread:
    """Commit ``batch`` in a thread called ``name``; its report or error lands in ``outcome``."""

    def target() -> None:
        try:
            outcome[name] = lake.commit(batch)
        except Exception as exc:  # the loser's error is checked by the test
            outcome[name] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def raw_rows(lake: Lake, table: str) -> pa.Table:
    """A data table as any Delta reader sees it (committed or not)."""
    return DeltaTable(lake.table_uri("d", table)).to_pyarrow_table()


@pytest.mark.parametrize("first", ["A", "B"])
def test_a_committed_batch_reads_its_own_rows_whatever_writes_its_id_at_once(lake, tmp_path, monkeypatch, first):
    lake.ingest("d", csv(tmp_path / "base.csv", range(1000, 1005), 0))
    # both validated before either commits: each sees the id free
    a = lake.validate("d", read_source(csv(tmp_path / "a.csv", range(10), 1)), batch_id="X")
    b = lake.validate("d", read_source(csv(tmp_path / "b.csv", range(100, 115), 2)), batch_id="X")
    # data writes in the order `first`, other; then A's compare and swap, then B's
    second = "B" if first == "A" else "A"
    waits = {("B", "quarantine"): ("A", "batches")}
    if first == "A":
        waits[("A", "quarantine")] = ("B", "quarantine")  # B's rows land after A's, before A commits
    turns = Turns(("A", "B"), waits)
    monkeypatch.setattr(lake_storage, "crash_point", turns)
    outcome: dict = {}
    threads = [run_writer(lake, a if first == "A" else b, first, outcome)]
    assert turns.done[(first, "quarantine")].wait(timeout=60)
    threads.append(run_writer(lake, b if first == "A" else a, second, outcome))
    for thread in threads:
        thread.join(timeout=120)
    monkeypatch.undo()

    assert outcome["A"].batch_id == "X" and outcome["A"].sha256 == a.content_sha256 and not outcome["A"].skipped
    assert isinstance(outcome["B"], LakeError) and "batch id 'X' is already used" in str(outcome["B"])
    assert turns.done[("B", "quarantine")].is_set()  # B did write its rows into the partition
    assert lake.read("d", ["X"])["id"].tolist() == list(range(10))
    assert lake.read_quarantine("d", ["X"])["id"].tolist() == ["900"]
    assert sum(p.num_rows for p in lake.iter_record_batches("d", ["X"], batch_size=4)) == 10
    assert raw_rows(lake, "rows").num_rows == 5 + 10 + 15  # the loser's rows are still there ...
    marker_b = b.content_sha256[:16]
    assert lake.vacuum("d") == [f"rows/batch_id=X/{CONTENT_COLUMN}={marker_b}", f"quarantine/batch_id=X/{CONTENT_COLUMN}={marker_b}"]
    rows = raw_rows(lake, "rows")  # ... until vacuum removes them; the committed batches are whole
    assert sorted(rows["id"].to_pylist()) == list(range(10)) + list(range(1000, 1005))
    assert raw_rows(lake, "quarantine")["id"].to_pylist() == ["900"]
    assert lake.vacuum("d") == [] and lake.read("d")["id"].tolist() == list(range(1000, 1005)) + list(range(10))
    later = lake.ingest("d", tmp_path / "b.csv")  # B's content under its own id: nothing lost
    assert lake.read("d", [later.batch_id])["id"].tolist() == list(range(100, 115))


def test_tables_written_before_the_content_column_read_and_grow(tmp_path):
    first, second = csv(tmp_path / "one.csv", range(30), 1), csv(tmp_path / "two.csv", range(50, 90), 2)
    new = Lake(tmp_path / "new")
    ids = [new.ingest("d", first).batch_id, new.ingest("d", second).batch_id]
    old = Lake(tmp_path / "old")  # the old layout: no content column; batch 2 written but never committed
    for name in ("rows", "quarantine"):
        data = DeltaTable(new.table_uri("d", name)).to_pyarrow_table().drop_columns([CONTENT_COLUMN])
        write_deltalake(old.table_uri("d", name), data, partition_by=["batch_id"])
    batches = DeltaTable(new.table_uri("d", "batches")).to_pyarrow_table()
    write_deltalake(old.table_uri("d", "batches"), batches.filter(pc.equal(batches["batch_id"], ids[0])))

    assert old.read("d").equals(new.read("d", ids[:1]))
    assert old.read_quarantine("d").equals(new.read_quarantine("d", ids[:1]))
    assert sum(p.num_rows for p in old.iter_record_batches("d", batch_size=8)) == 30
    copy = Lake(shutil.copytree(old.root, tmp_path / "copy"))
    assert copy.vacuum("d") == ["rows/batch_id=" + ids[1], "quarantine/batch_id=" + ids[1]]
    assert copy.read("d").equals(old.read("d")) and copy.vacuum("d") == []

    assert old.ingest("d", second).batch_id == ids[1]  # replaces the killed old run's rows: none twice
    assert old.read("d").equals(new.read("d")) and old.read_quarantine("d").equals(new.read_quarantine("d"))
    assert DeltaTable(old.table_uri("d", "rows")).to_pyarrow_table().num_rows == 70
    assert old.vacuum("d") == []
    admin.remove_batch(old, "d", ids[0])  # the batch of null markers goes and comes back whole
    admin.restore_batch(old, "d", ids[0])
    assert old.read("d").equals(new.read("d")) and old.read_quarantine("d").equals(new.read_quarantine("d"))
    assert set(DeltaTable(old.table_uri("d", "rows")).to_pandas()[CONTENT_COLUMN]) == {i[2:] for i in ids}  # now marked
