"""pipelines.flows.scoring: the detector cache's copies, and one scoring call for both kinds."""
import numpy as np
import pandas as pd
import pytest

import vae_core
from pipelines.flows.scoring import DetectorCache


def test_the_cache_loads_once_and_hands_out_copies_a_caller_cannot_corrupt(fitted, frame):
    loads = []
    cache = DetectorCache(lambda key: loads.append(key) or fitted, size=2)
    first = cache.get("v1")
    assert first is not fitted and loads == ["v1"]
    before = fitted.threshold_
    first.calibrate(threshold=before * 10)  # what the threshold flow does to its copy
    second = cache.get("v1")
    assert loads == ["v1"] and second.threshold_ == before and first.threshold_ == before * 10
    with pytest.raises(ValueError):  # the shared calibration scores are read-only
        second.calibration_.scores[0] = 0.0
    pd.testing.assert_frame_equal(second.score(frame.head(20)), fitted.score(frame.head(20)))
    cache.get("v2"), cache.get("v3")  # the least recently used ("v1") is dropped
    cache.get("v1")
    assert loads == ["v1", "v2", "v3", "v1"]


def test_one_call_scores_a_table_with_no_events(fitted, frame):
    test = frame.head(40).copy()
    test.loc[test.index[3], "amount"] = 1e5
    got = vae_core.score_and_explain(fitted, test)
    assert isinstance(got, vae_core.ScoredBatch) and not got.groups_events
    assert got.scores["is_anomaly"].iloc[3] and got.scores["top_features"].iloc[3].startswith("amount=")
    assert 3 in set(got.explanation.index) and got.band is None
    assert got.new_events is None and got.continued_events is None and (got.event_of_row == -1).all()
    assert list(got.events.columns) == vae_core.scored.BATCH_EVENT_COLUMNS and got.events.empty
    with pytest.raises(ValueError, match="no context"):
        vae_core.score_and_explain(fitted, test, context=test.head(3))
    assert fitted.batch_context_points == 0 and fitted.key_columns_ == [] and not fitted.scores_whole_batches


def test_event_counts_come_from_the_batch_events():
    events = pd.DataFrame({"event_id": [0, 1, 2], "began_before": [True, False, False]})
    scored = vae_core.ScoredBatch(pd.DataFrame(), pd.DataFrame(), None, events, np.array([0, 1, 2]), groups_events=True)
    assert (scored.new_events, scored.continued_events) == (2, 1)
