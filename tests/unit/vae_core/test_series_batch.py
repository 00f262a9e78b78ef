"""vae_core.series_batch's bookkeeping: which context rows' flags may start an event, and the
events of context and batch cut down to the batch's."""
import numpy as np
import pandas as pd

from vae_core.events import find_events
from vae_core.series_batch import settled_rows, batch_events


def test_only_settled_context_rows_start_events():
    """Each series' first `unsettled` context rows (by time, whatever the row order) are not
    settled, unless the series has fewer rows than a full context: then it is its whole history."""
    context = pd.DataFrame({"t": [3, 1, 2, 4, 5, 1, 2], "s": ["a", "a", "a", "a", "a", "b", "b"]})
    assert settled_rows(context, "t", "s", unsettled=2, full=5).tolist() == [True, False, False, True, True, True, True]
    assert settled_rows(context, "t", "s", unsettled=2, full=2).tolist() == [True, False, False, True, True, False, False]
    single = pd.DataFrame({"t": [1, 2, 3]})
    assert settled_rows(single, "t", None, unsettled=1, full=3).tolist() == [False, True, True]


def test_the_batch_keeps_the_events_that_reach_it_with_its_own_peak():
    """Context rows 0-3, batch rows 4-9: an event wholly in the context is dropped, one crossing
    the boundary keeps its start and counts but takes its peak from the batch's rows, one inside
    the batch is new; ids are numbered again from 0 and gap rows keep their event's id."""
    times = np.arange(10)
    flags = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], bool)  # gap of 1 inside the second event
    score = np.array([9, 0, 0, 8, 2, 0, 3, 0, 0, 5], float)
    events, member = find_events(pd.Series(times), flags, score, max_gap=1)
    assert member.tolist() == [0, -1, -1, 1, 1, 1, 1, -1, -1, 2]
    out, of_row = batch_events(events, member, 4, times[4:], score[4:])
    assert of_row.tolist() == [0, 0, 0, -1, -1, 1]
    assert out["event_id"].tolist() == [0, 1] and out["began_before"].tolist() == [True, False]
    assert out["start"].tolist() == [3, 9] and out["end"].tolist() == [6, 9]
    assert out["points"].tolist() == [4, 1] and out["flagged_points"].tolist() == [3, 1]
    assert out["peak"].tolist() == [6, 9] and out["peak_score"].tolist() == [3.0, 5.0]  # not the context's 8
    none, of_none = batch_events(events.iloc[:0], np.full(10, -1), 4, times[4:], score[4:])
    assert len(none) == 0 and (of_none == -1).all()
