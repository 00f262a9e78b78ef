"""Unit tests of benchmarks.synthetic (the kinds generator) and the event metrics it is scored with."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.metrics import event_hits, flag_precision
from benchmarks.synthetic import KINDS, VALUE_COLUMNS, SuiteSpec, make_frame

SMALL = SuiteSpec(history_days=3, test_days=5, events_per_kind=2)


@pytest.fixture(scope="module")
def frame():
    return make_frame(7, SMALL)


def test_same_seed_same_frame_other_seed_other_frame(frame):
    again = make_frame(7, SMALL)
    pd.testing.assert_frame_equal(frame.history, again.history)
    pd.testing.assert_frame_equal(frame.test, again.test)
    pd.testing.assert_frame_equal(frame.events, again.events)
    np.testing.assert_array_equal(frame.labels, again.labels)
    other = make_frame(8, SMALL)
    assert not np.allclose(frame.test["temperature"], other.test["temperature"])


def test_layout(frame):
    n_sensors = len(SMALL.temperature_noise)
    assert len(frame.history) == n_sensors * 3 * 144 and len(frame.test) == n_sensors * 5 * 144
    assert list(frame.test.columns) == ["timestamp", "sensor", *VALUE_COLUMNS]
    for part in (frame.history, frame.test):
        assert part.groupby("sensor")["timestamp"].apply(lambda t: t.diff().dropna().eq(pd.Timedelta("10min")).all()).all()
    # the test period starts right after the history, sensor by sensor
    assert (frame.test.groupby("sensor")["timestamp"].min() - frame.history.groupby("sensor")["timestamp"].max()
            == pd.Timedelta("10min")).all()
    # lightly contaminated history: the labelled spikes
    assert frame.history_labels.sum() == SMALL.history_spikes * n_sensors


def test_every_kind_is_injected_where_labelled_and_nowhere_else(frame):
    ev = frame.events
    assert ev["kind"].value_counts().to_dict() == {k: SMALL.events_per_kind for k in KINDS}
    labelled = np.zeros(len(frame.test), dtype=np.int64)
    changed = np.zeros(len(frame.test), dtype=bool)
    for e in ev.itertuples():
        rows = slice(e.start, e.stop)
        assert frame.test["sensor"].iloc[rows].eq(e.sensor).all()  # one sensor per event
        labelled[rows] = 1
        diff = (frame.test[e.column] - frame.clean_test[e.column]).to_numpy()[rows] / e.noise_sd
        other = [c for c in VALUE_COLUMNS if c != e.column][0]
        np.testing.assert_array_equal(frame.test[other].iloc[rows], frame.clean_test[other].iloc[rows])
        x = frame.test[e.column].to_numpy()
        if e.kind == "spike":
            assert e.stop - e.start == 1 and 6 <= abs(diff[0]) <= 10
        elif e.kind == "level_shift":
            assert np.allclose(diff, diff[0]) and 4 <= abs(diff[0]) <= 6
        elif e.kind == "variance_burst":
            assert diff.std() > 2.5  # noise sd times 4-6 on top of the noise
        elif e.kind == "stuck":
            assert np.ptp(x[e.start - 1 : e.stop]) == 0  # frozen at the reading before
        elif e.kind == "broken_pattern":
            assert np.abs(diff).max() > 3  # the cycle, half a day out of phase
        changed[rows] |= diff != 0
    np.testing.assert_array_equal(frame.labels, labelled)
    outside = ~labelled.astype(bool)
    for c in VALUE_COLUMNS:
        np.testing.assert_array_equal(frame.test[c][outside], frame.clean_test[c][outside])
    assert changed[labelled.astype(bool)].mean() > 0.9  # labelled points are changed points


def test_events_keep_their_distance(frame):
    for _, ev in frame.events.groupby("sensor"):
        ev = ev.sort_values("start")
        assert (ev["start"].to_numpy()[1:] - ev["stop"].to_numpy()[:-1] >= SMALL.min_gap).all()
    per_sensor = 5 * 144
    local = frame.events["start"] % per_sensor
    assert (local >= SMALL.min_gap).all()
    assert ((frame.events["stop"] - 1) % per_sensor < per_sensor - SMALL.min_gap).all()


def test_noise_levels_differ_between_sensors(frame):
    resid = (frame.clean_test["temperature"] - frame.clean_test.groupby("sensor")["temperature"]
             .transform(lambda v: v.rolling(3, center=True, min_periods=1).mean()))
    sd = resid.groupby(frame.clean_test["sensor"]).std().to_numpy()
    assert (np.diff(sd) > 0).all()  # s0 quietest ... s3 noisiest


def test_no_room_is_a_clear_error():
    with pytest.raises(ValueError, match="no room"):
        make_frame(0, SuiteSpec(history_days=2, test_days=1, events_per_kind=5))


def test_event_hits_worked_example():
    pred = np.zeros(30, dtype=int)
    pred[[5, 14, 29]] = 1
    events = [[3, 6], [10, 12], [20, 25], [26, 28]]
    # [3,6) holds 5; 14 is 3 points after [10,12)'s last point 11; 29 is 2 after [26,28)'s 27
    np.testing.assert_array_equal(event_hits(events, pred), [True, False, False, False])
    np.testing.assert_array_equal(event_hits(events, pred, tolerance=1), [True, False, False, False])
    np.testing.assert_array_equal(event_hits(events, pred, tolerance=2), [True, False, False, True])
    np.testing.assert_array_equal(event_hits(events, pred, tolerance=3), [True, True, False, True])
    with pytest.raises(ValueError, match="inside"):
        event_hits([[25, 31]], pred)


def test_flag_precision_worked_example():
    y = np.zeros(20, dtype=int)
    y[8:10] = 1
    pred = np.zeros(20, dtype=int)
    pred[[0, 6, 8, 11, 15]] = 1
    assert flag_precision(y, pred) == pytest.approx(1 / 5)
    # within 2 points: 6 (2 before 8) and 11 (2 after 9) count as well
    assert flag_precision(y, pred, tolerance=2) == pytest.approx(3 / 5)
    assert np.isnan(flag_precision(y, np.zeros(20, dtype=int)))
    with pytest.raises(ValueError, match="shape"):
        flag_precision(y, pred[:-1])
