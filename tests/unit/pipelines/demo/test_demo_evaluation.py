"""pipelines.demo.evaluation: ROC AUC, precision and recall of the flags against the injected
anomalies, the top flagged rows, and the join of a version's scores to the labels (a real lake)."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.demo.evaluation import evaluate, labelled_scores, roc_auc, top_anomalies
from pipelines.demo.samples import SampleDataset


def test_roc_auc_of_known_orderings():
    positive = np.array([False, False, True, True])
    assert roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), positive) == 1.0  # every anomaly outscores every normal row
    assert roc_auc(np.array([4.0, 3.0, 2.0, 1.0]), positive) == 0.0
    assert roc_auc(np.ones(4), positive) == 0.5  # ties count one half
    assert roc_auc(np.array([1.0, np.nan, 3.0, np.inf]), positive) == 1.0  # unscored rows are left out
    assert np.isnan(roc_auc(np.arange(4.0), np.zeros(4, bool)))  # no anomaly: undefined


def test_roc_auc_agrees_with_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=300).astype(float)  # many ties
    positive = rng.random(300) < 0.2 + 0.1 * scores
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), rel=1e-12)


def flags(frame_rows):
    return pd.DataFrame(frame_rows, columns=["is_anomaly", "is_injected_anomaly", "anomaly_kind", "anomaly_score", "labelled"])


def test_evaluate_counts_hits_precision_recall_and_recall_by_kind():
    frame = flags([
        (True, True, "spike", 9.0, True), (True, False, "", 8.0, True), (False, True, "drift", 1.0, True),
        (False, False, "", 0.5, True), (None, False, "", 0.1, False), (True, True, "spike", 7.0, True),
    ])  # fmt: skip
    e = evaluate(frame)
    assert (e["rows"], e["unlabelled_rows"], e["injected"], e["flagged"], e["true_positives"]) == (6, 1, 3, 3, 2)
    assert e["precision"] == pytest.approx(2 / 3) and e["recall"] == pytest.approx(2 / 3)  # a missing flag is no flag
    assert e["recall_by_kind"] == {"drift": {"injected": 1, "flagged": 0}, "spike": {"injected": 2, "flagged": 2}}
    assert e["roc_auc"] == pytest.approx(roc_auc_score(frame["is_injected_anomaly"], frame["anomaly_score"]))
    none = evaluate(flags([(False, False, "", 1.0, True)]))
    assert np.isnan(none["precision"]) and np.isnan(none["recall"]) and none["recall_by_kind"] == {}


def test_top_anomalies_are_the_highest_flagged_rows_with_their_keys():
    ds = SampleDataset("sensors", (), (), "labels.csv", keys=("timestamp", "sensor"))
    frame = flags([(True, True, "spike", 5.0, True), (False, False, "", 99.0, True), (True, False, "", 7.0, True)])
    frame["timestamp"] = pd.to_datetime(["2024-03-01T10:15:42Z", "2024-03-01T11:00:00Z", "2024-03-02T00:05:00Z"])
    frame["sensor"], frame["batch_id"], frame["_source_row"] = ["s1", "s2", "s3"], "b1", [0, 1, 2]
    top = top_anomalies(frame, ds, n=5)
    assert [t["_source_row"] for t in top] == [2, 0]  # the unflagged 99 is not listed
    assert top[0] == {"batch_id": "b1", "_source_row": 2, "key": "2024-03-02 00:05, s3", "anomaly_score": 7.0,
                      "top_features": "", "injected": "-"}  # fmt: skip
    assert top[1]["injected"] == "spike" and top[1]["key"] == "2024-03-01 10:15, s1"
    assert len(top_anomalies(frame, ds, n=1)) == 1


def test_labelled_scores_join_a_versions_scores_to_the_labels(lake, tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("txn_id,amount\n" + "".join(f"{100 + i},{i}.5\n" for i in range(6)))
    batch = lake.ingest("t", source).batch_id
    lake.write_scores("t", "t-v1", batch, pd.DataFrame({
        "_source_row": [5, 0, 3], "anomaly_score": [9.0, 1.0, 4.0], "is_anomaly": [True, False, True],
    }))  # fmt: skip
    (tmp_path / "labels.csv").write_text("txn_id,is_injected_anomaly,anomaly_kind\n105,1,spike\n100,0,\n")
    ds = SampleDataset("t", (), (), "labels.csv", keys=("txn_id",))
    out = labelled_scores(lake, ds, "t-v1", tmp_path).set_index("txn_id").sort_index()
    assert out.index.tolist() == [100, 103, 105]  # each scored row joined to its lake key
    assert out["labelled"].tolist() == [True, False, True]  # row 103 has no label
    assert out["is_injected_anomaly"].tolist() == [False, False, True]
    assert out["anomaly_kind"].tolist() == ["", "", "spike"] and out.loc[105, "anomaly_score"] == 9.0
