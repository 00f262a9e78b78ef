"""pipelines.review.labels: verdicts to labels, and training data without confirmed anomalies."""
import numpy as np
import pandas as pd

from pipelines.review.labels import ITEM_COLUMNS, version_precision, without_confirmed


def items(rows):
    return pd.DataFrame([dict(zip(ITEM_COLUMNS, r)) for r in rows], columns=ITEM_COLUMNS)


def test_tables_drop_confirmed_rows_only():
    frame = pd.DataFrame({"batch_id": ["b1"] * 4 + ["b2"] * 2, "_source_row": [0, 1, 2, 3, 0, 1], "x": np.arange(6.0)})
    verdicts = items([
        ("k1", "row", "m-v1", "b1", 9.0, "anomaly", 1, None, None, None),
        ("k2", "row", "m-v1", "b1", 8.0, "false_alarm", 2, None, None, None),
        ("k3", "row", "m-v1", "b2", 7.0, "anomaly", 0, None, None, None),
    ])
    kept, n = without_confirmed(frame, verdicts)
    assert n == 2 and kept["x"].tolist() == [0.0, 2.0, 3.0, 5.0]


def test_series_mask_the_confirmed_event_of_its_series_only():
    t = pd.date_range("2026-01-01", periods=6, freq="h", tz="UTC")
    frame = pd.DataFrame({"batch_id": "b1", "_source_row": range(12), "ts": list(t) * 2,
                          "host": ["a"] * 6 + ["b"] * 6, "load": np.arange(12.0)})
    verdicts = items([("k", "event", "m-v1", "b1", 9.0, "anomaly", None, "a", t[2].isoformat(), t[3].isoformat()),
                      ("k2", "event", "m-v1", "b1", 9.0, "new_normal", None, "b", t[0].isoformat(), t[5].isoformat())])
    masked, n = without_confirmed(frame, verdicts, time_column="ts", series_column="host")
    assert n == 2 and len(masked) == 12
    assert masked["load"].isna().tolist() == [False, False, True, True] + [False] * 8
    assert masked["ts"].equals(frame["ts"])  # the grid stays: only values are masked


def test_version_precision_counts_expected_as_right():
    verdicts = items([
        ("k1", "row", "m-v1", "b1", 9.0, "anomaly", 1, None, None, None, "run1"),
        ("k2", "row", "m-v1", "b1", 8.0, "false_alarm", 2, None, None, None, "run1"),
        ("k3", "row", "m-v1", "b2", 7.0, "expected", 0, None, None, None, "run1"),
        ("k4", "row", "m-v1", "b2", 7.0, "new_normal", 3, None, None, None, "run1"),
        ("k1", "row", "m-v2", "b1", 9.0, "anomaly", 1, None, None, None, "run2"),
    ])
    v = version_precision(verdicts).set_index("label")
    assert v.loc["m-v1", "reviewed"] == 4 and v.loc["m-v1", "precision"] == 0.5 and v.loc["m-v1", "run_id"] == "run1"
    assert v.loc["m-v2", "precision"] == 1.0 and version_precision(verdicts.iloc[:0]).empty


def test_reviewed_items_read_only_the_reports_that_hold_a_verdict(tmp_path):
    """The items come from the reports the verdicts name (batch and version), of the one
    version asked for; a report nobody reviewed is never read, so the cost follows the reviews."""
    import json

    from pipelines.reports.store import ReportRef, ReportStore
    from pipelines.review.feedback import FeedbackStore, Verdict
    from pipelines.review.labels import reviewed_items

    store = ReportStore(str(tmp_path))
    for label, batch in (("m-v1", "b1"), ("m-v1", "b2"), ("m-v2", "b1")):
        report = {"model": {"run_id": f"run-{label}"},
                  "items": [{"key": f"{label}-{batch}-{i}", "kind": "row", "score": 5.0 - i, "source_row": i} for i in range(2)]}
        store.write(ReportRef("ds", label, batch), "<html></html>", json.dumps(report), {})
    feedback = FeedbackStore(str(tmp_path / "ds" / "feedback"))
    feedback.add([Verdict("m-v1-b1-0", "b1", "m-v1", "anomaly", "ann"), Verdict("m-v2-b1-1", "b1", "m-v2", "false_alarm", "ann")])
    read = []
    real_report = store.report
    store.report = lambda ref: read.append(ref) or real_report(ref)  # an instance attribute: the store's own seam
    got = reviewed_items(store, feedback, "ds", label="m-v1")
    assert got[["key", "label", "batch_id", "score", "verdict", "run_id"]].values.tolist() == [
        ["m-v1-b1-0", "m-v1", "b1", 5.0, "anomaly", "run-m-v1"]] and got["real"].tolist() == [True]
    assert read == [ReportRef("ds", "m-v1", "b1")]  # not b2 (no verdict), not m-v2 (another version)
    every = reviewed_items(store, feedback, "ds")
    assert sorted(every["key"]) == ["m-v1-b1-0", "m-v2-b1-1"] and every["real"].tolist().count(True) == 1


def test_verdicts_carry_their_items_so_no_report_is_read_and_old_verdicts_still_are(tmp_path):
    """A verdict stored with its item's facts (what the review page stores) needs no report; a
    verdict from a feedback table of before those columns has its report read (issue 30)."""
    import json

    import pyarrow as pa
    from deltalake import write_deltalake

    from pipelines.reports.store import ReportRef, ReportStore
    from pipelines.review.feedback import SCHEMA, FeedbackStore, item_verdict
    from pipelines.review.labels import reviewed_items

    store = ReportStore(str(tmp_path))
    items = {b: [{"key": f"ds/{b}/row/{i}", "kind": "row", "score": 5.0 - i, "source_row": i} for i in range(2)]
             for b in ("b1", "b2")}
    for batch, its in items.items():
        store.write(ReportRef("ds", "m-v1", batch), "<html></html>", json.dumps({"model": {"run_id": "r1"}, "items": its}), {})
    uri = str(tmp_path / "ds" / "feedback")
    old_columns = SCHEMA.names[:8]  # a table written before the item's columns
    write_deltalake(uri, pa.table({"action_id": ["a0"], "at": pa.array([pd.Timestamp("2026-01-01", tz="UTC")], pa.timestamp("us", tz="UTC")),
                                   "reviewer": ["ann"], "item_key": ["ds/b1/row/1"], "batch_id": ["b1"],
                                   "model_version": ["m-v1"], "verdict": ["false_alarm"], "comment": [""]},
                                  schema=pa.schema([SCHEMA.field(n) for n in old_columns])))
    feedback = FeedbackStore(uri)
    feedback.add([item_verdict(items["b2"][0], "b2", "m-v1", "anomaly", "ann", run_id="r1")])
    read = []
    real_report = store.report
    store.report = lambda ref: read.append(ref) or real_report(ref)
    got = reviewed_items(store, feedback, "ds", label="m-v1")
    assert got[["key", "batch_id", "score", "verdict", "source_row", "run_id"]].values.tolist() == [
        ["ds/b1/row/1", "b1", 4.0, "false_alarm", 1, "r1"], ["ds/b2/row/0", "b2", 5.0, "anomaly", 0, "r1"]]
    assert read == [ReportRef("ds", "m-v1", "b1")]  # only the old verdict's report
    assert feedback.history().columns.tolist()[:8] == old_columns and feedback.history()["score"].notna().sum() == 1
