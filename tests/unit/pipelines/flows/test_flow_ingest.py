"""pipelines.flows.ingest.summary_markdown: the ingest artifact's counts, quarantine by column,
ignored columns and schema (escaping of hostile names: tests/unit/pipelines/test_escaping.py)."""
from pipelines.flows.ingest import summary_markdown

REPORT = {
    "dataset": "transactions", "batch_id": "b-0123", "source": "data/t.csv", "format": "csv", "skipped": False,
    "rows_read": 20, "rows_accepted": 16, "rows_quarantined": 4,
    "quarantined_by_column": {"amount": 3, "flag": 1}, "ignored_columns": ["note"],
    "schema": {"columns": {"amount": "float", "ts": "datetime"}, "time_column": "ts"},
}  # fmt: skip


def test_the_summary_has_the_counts_the_quarantine_by_column_and_the_schema():
    lines = summary_markdown(REPORT).splitlines()
    assert lines[0] == "# Ingest into transactions"
    assert lines[2] == r"Batch b\-0123 from data/t\.csv (csv): **committed**."  # data as literal markdown text
    assert "| 20 | 16 | 4 |" in lines
    assert "| amount | 3 |" in lines and "| flag | 1 |" in lines
    assert "Ignored extra columns: note." in lines
    assert lines[-1] == "Schema: amount float, ts datetime; time column ts."


def test_a_skipped_batch_says_so_and_empty_sections_are_left_out():
    text = summary_markdown({**REPORT, "skipped": True, "quarantined_by_column": {}, "ignored_columns": [],
                             "schema": {"columns": {"x": "int"}, "time_column": None}})  # fmt: skip
    assert "**skipped: this content was already ingested**" in text
    assert "quarantined rows |" not in text and "Ignored" not in text
    assert text.endswith("Schema: x int.\n")
