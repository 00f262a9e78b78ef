"""vae_core.events: flagged points -> events, on worked examples."""
import numpy as np
import pandas as pd
import pytest

from vae_core.events import find_events


def hours(n: int) -> pd.Series:
    return pd.Series(pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"))


def test_consecutive_flags_with_small_gaps_form_one_event():
    flags = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1], bool)
    scores = np.arange(12.0)
    events, member = find_events(hours(12), flags, scores, max_gap=2)
    assert len(events) == 2
    first, second = events.iloc[0], events.iloc[1]
    assert (first.start, first.end, first.peak) == (hours(12)[1], hours(12)[5], hours(12)[5])
    assert (first.points, first.flagged_points, first.peak_score) == (5, 3, 5.0)
    assert (second.points, second.flagged_points) == (2, 2)
    # gap points inside an event belong to it; points outside belong to none
    assert member.tolist() == [-1, 0, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1]


def test_a_gap_longer_than_max_gap_splits_and_max_gap_zero_needs_adjacency():
    flags = np.array([1, 0, 1, 0, 0, 0, 1], bool)
    assert len(find_events(hours(7), flags, np.ones(7), max_gap=1)[0]) == 2
    assert len(find_events(hours(7), flags, np.ones(7), max_gap=0)[0]) == 3
    assert len(find_events(hours(7), flags, np.ones(7), max_gap=3)[0]) == 1


def test_series_are_grouped_separately_and_input_order_does_not_matter():
    t = hours(6)
    times = pd.concat([t, t], ignore_index=True)
    series = pd.Series(["a"] * 6 + ["b"] * 6)
    flags = np.zeros(12, bool)
    flags[[4, 5, 6, 7]] = True  # the end of a, the start of b: adjacent rows, two series
    scores = np.arange(12.0)
    events, member = find_events(times, flags, scores, series=series, max_gap=2)
    assert events["series"].tolist() == ["a", "b"]
    assert events["flagged_points"].tolist() == [2, 2]
    shuffle = np.random.default_rng(0).permutation(12)
    ev2, member2 = find_events(times[shuffle].reset_index(drop=True), flags[shuffle], scores[shuffle],
                               series=series[shuffle].reset_index(drop=True), max_gap=2)
    pd.testing.assert_frame_equal(events, ev2)
    assert (member2 == member[shuffle]).all()


def test_integer_time_and_no_flags():
    events, member = find_events(pd.Series(np.arange(5)), np.zeros(5, bool), np.zeros(5))
    assert events.empty and (member == -1).all()
    events, _ = find_events(pd.Series(np.arange(10, 15)), np.array([0, 1, 1, 0, 0], bool), np.array([0, 3, 9, 0, 0.0]))
    assert (events.start[0], events.end[0], events.peak[0]) == (11, 12, 12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        find_events(hours(3), np.zeros(2, bool), np.zeros(3))
    with pytest.raises(ValueError, match="max_gap"):
        find_events(hours(3), np.zeros(3, bool), np.zeros(3), max_gap=-1)


def test_event_excess_sums_each_events_points():
    from vae_core.events import event_excess

    excess = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 3.0], [4.0, 4.0], [0.0, 1.0]])
    member = np.array([-1, 0, 0, -1, 1])
    out = event_excess(excess, member)
    np.testing.assert_array_equal(out, [[1.0, 0.0], [2.5, 2.0], [2.5, 2.0], [4.0, 4.0], [0.0, 1.0]])
    assert event_excess(excess, np.full(5, -1)) is excess
