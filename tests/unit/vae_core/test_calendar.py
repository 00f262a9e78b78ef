"""vae_core.calendar: the cycles worth conditioning on, the sin/cos of a known time's phase, and the
one-hot of a series."""
import numpy as np
import pandas as pd
import pytest

from vae_core.calendar import DAY_NS, WEEK_NS, calendar_periods, cycle_features, series_one_hot

HOUR_NS = 3600e9


def ns(text: str) -> float:
    return float(pd.Timestamp(text).value)


def test_a_known_timestamp_has_a_known_sin_and_cos():
    # 1970-01-01 (time 0) was a Thursday at 00:00: phase 0 of the day and of the week
    times = np.array([ns("2024-03-07T00:00Z"), ns("2024-03-07T06:00Z"), ns("2024-03-07T18:00Z"), ns("2024-03-10T12:00Z")])
    f = cycle_features(times, [DAY_NS, WEEK_NS])
    assert f.shape == (4, 4) and f.dtype == np.float32
    # day: midnight (sin 0, cos 1), 06:00 a quarter turn, 18:00 three quarters
    np.testing.assert_allclose(f[:3, :2], [[0, 1], [1, 0], [-1, 0]], atol=1e-6)
    # week: 2024-03-07 is a Thursday, phase 0; Sunday 12:00 is 3.5 days on, half a turn
    np.testing.assert_allclose(f[0, 2:], [0, 1], atol=1e-6)
    np.testing.assert_allclose(f[3, 2:], [0, -1], atol=1e-6)
    assert np.allclose(f[:, 0] ** 2 + f[:, 1] ** 2, 1) and np.allclose(f[:, 2] ** 2 + f[:, 3] ** 2, 1)


def test_a_time_a_whole_period_later_has_the_same_features():
    t = ns("2024-05-01T13:37Z")
    f = cycle_features(np.array([t, t + DAY_NS, t + WEEK_NS]), [DAY_NS])
    np.testing.assert_allclose(f[0], f[1], atol=1e-5)
    np.testing.assert_allclose(f[0], f[2], atol=1e-5)


def test_no_periods_give_an_empty_block():
    f = cycle_features(np.arange(5.0), [])
    assert f.shape == (5, 0) and f.dtype == np.float32


@pytest.mark.parametrize(
    "kind, step, span, enabled, expected",
    [
        ("datetime", HOUR_NS, 3 * WEEK_NS, True, [DAY_NS, WEEK_NS]),  # hourly over three weeks
        ("datetime", HOUR_NS, WEEK_NS, True, [DAY_NS]),  # one week: no weekday
        ("datetime", DAY_NS / 4, 3 * WEEK_NS, True, [WEEK_NS]),  # four points a day is too few for the day
        ("datetime", DAY_NS, 10 * WEEK_NS, True, []),  # daily points: neither
        ("numeric", 1.0, 1e20, True, []),  # numeric times have no calendar
        ("datetime", HOUR_NS, 3 * WEEK_NS, False, []),  # switched off
    ],
)
def test_calendar_periods_follow_the_step_and_the_span(kind, step, span, enabled, expected):
    assert calendar_periods(kind, step, span, enabled) == expected


def test_series_one_hot_marks_the_fitted_series_and_nothing_for_an_unseen_one():
    out = series_one_hot(2, 4, 3)
    assert out.shape == (3, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.tile([0, 0, 1, 0], (3, 1)))
    assert not series_one_hot(None, 4, 3).any()
    assert not series_one_hot(4, 4, 3).any() and not series_one_hot(-1, 4, 3).any()
