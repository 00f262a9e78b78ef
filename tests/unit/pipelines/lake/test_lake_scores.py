"""Scores in the lake: per model version and batch, replaced on rewrite, and streamed parts visible only together."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.lake import LakeError

from lake_helpers import Crash, crash_at, tmp_files


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


def test_one_batchs_scores_are_read_from_its_partition_alone(lake, clean_csv, dirty_csv, monkeypatch):
    """A report's rebuild needs one batch's PSI: it reads that batch's partition, not every
    score of the version (issue 30)."""
    import pipelines.lake.delta as lake_delta

    a, b = lake.ingest("d", clean_csv, time_column="ts").batch_id, lake.ingest("d", dirty_csv).batch_id
    for batch_id, value in ((a, 1.0), (b, 2.0)):
        lake.write_scores("d", "m-v1", batch_id, pd.DataFrame({"_source_row": [0, 1], "score": value, "psi": value / 10}))
    opened = []
    dataset = lake_delta.arrow_dataset
    monkeypatch.setattr(lake_delta, "arrow_dataset", lambda table, **kw: opened.append(kw.get("file_pruning_predicate")) or dataset(table, **kw))
    got = lake.read_scores("d", "m-v1", batch_ids=[b])
    assert got["batch_id"].unique().tolist() == [b] and got["psi"].tolist() == [0.2, 0.2]
    assert opened == [[("model_version", "=", "m-v1"), ("batch_id", "=", b)]]
    assert lake.read_scores("d", "m-v1", batch_ids=[]).empty
