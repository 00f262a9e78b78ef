"""benchmarks.lake_age: its batches, its count of each table's files, and its results table."""
import json

import pytest

from benchmarks import lake_age
from benchmarks.lake_age import DATASET, STEPS, TABLES, batch_frame, markdown, ratios, table_files


def test_each_batch_has_its_outliers_and_its_own_content():
    a, b = batch_frame(1, 40), batch_frame(2, 40)
    assert len(a) == 40 and (a["amount"].iloc[:3] >= 5_000).all() and (a["amount"].iloc[3:] < 1_000).all()
    assert not a["ref"].isin(b["ref"]).any()  # another content: another batch id, never a skipped ingest
    assert batch_frame(1, 40).equals(a)  # the same batch whatever runs before


def test_table_files_counts_each_commit_of_a_real_lake(lake, tmp_path):
    for i in range(3):
        path = tmp_path / f"b{i}.parquet"
        batch_frame(i, 20).to_parquet(path, index=False)
        lake.ingest(DATASET, str(path))
    files = table_files(lake, DATASET)
    assert files["batches"] == {"files": 3, "log_entries": 3, "checkpoints": 0, "version": 2}
    assert files["rows"]["files"] == 3 and files["rows"]["log_entries"] == 3
    assert files["scores"] == {"files": 0, "log_entries": 0, "checkpoints": 0, "version": -1}  # not scored yet
    assert files["reports"] == {"files": 0}


def _result(times: list[float]) -> dict:
    files = {t: {"files": 1, "log_entries": 2, "checkpoints": 0, "version": 1} for t in TABLES} | {"reports": {"files": 3}}
    sizes = [{"n": n, "steps": {s: t for s in STEPS}, "files": files, "history_s": 1.0, "maintenance_runs": 0}
             for n, t in zip((10, 100), times)]
    return {"rows": 100, "sizes": sizes, "description": "d"}


def test_ratios_and_the_table_are_against_the_first_size():
    result = _result([0.5, 1.5])
    assert ratios(result["sizes"])[1] == {s: pytest.approx(3.0) for s in STEPS}
    text = markdown(result)
    assert "| 100 | 1.500 s (3.00x) |" in text and "| 10 | 0.500 s (1.00x) |" in text
    assert "1 / 2" in text  # files / log entries


def test_results_are_written_as_markdown_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(lake_age, "RESULTS", tmp_path)
    md, js = lake_age.write_results(_result([1.0, 1.0]), label="t")
    assert md.name == "lake_age-t.md" and json.loads(js.read_text())["sizes"][1]["n"] == 100
    assert not list(tmp_path.glob(".*.tmp"))


def test_sizes_must_increase():
    with pytest.raises(SystemExit):
        lake_age.main(["--sizes", "100,10"])
