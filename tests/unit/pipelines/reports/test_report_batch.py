"""pipelines.reports.batch: a report's reviewed precision from the feedback table, no report read."""
import pandas as pd
import pytest

from pipelines.reports import batch as report_batch
from pipelines.reports.store import ReportStore
from pipelines.review.feedback import FeedbackStore, Verdict, precision_by_version


def test_a_reports_precision_comes_from_the_verdicts_alone(lake, monkeypatch):
    """Each report's header shows its version's precision so far; reading every reviewed report
    for it made a year of hourly reports quadratic (issue 30)."""
    feedback = FeedbackStore(lake.table_uri("d", "feedback"), lake.delta_options)
    feedback.add([Verdict("k1", "b1", "m-v1", "anomaly", "ann"), Verdict("k2", "b1", "m-v1", "false_alarm", "ann"),
                  Verdict("k3", "b2", "m-v1", "expected", "ann"), Verdict("k4", "b1", "m-v2", "false_alarm", "ann")])
    feedback.add([Verdict("k2", "b1", "m-v1", "anomaly", "bo")])  # a changed verdict: the latest counts

    def opened(self, ref):
        raise AssertionError(f"a report was read: {ref}")

    monkeypatch.setattr(ReportStore, "report", opened)
    assert report_batch.reviewed_precision(lake, "d", "m-v1") == 1.0
    assert report_batch.reviewed_precision(lake, "d", "m-v2") == 0.0
    assert report_batch.reviewed_precision(lake, "d", "m-v3") is None  # no verdicts on it yet


def test_precision_by_version_counts_each_items_current_verdict():
    current = pd.DataFrame({"model_version": ["m-v1", "m-v1", "m-v1", "m-v2"],
                            "verdict": ["anomaly", "new_normal", "expected", "false_alarm"]},
                           index=pd.Index(["a", "b", "c", "a"], name="item_key"))
    got = precision_by_version(current).set_index("label")
    assert got.loc["m-v1", "reviewed"] == 3 and got.loc["m-v1", "precision"] == pytest.approx(2 / 3)
    assert got.loc["m-v2", "precision"] == 0.0 and precision_by_version(current.iloc[:0]).empty
