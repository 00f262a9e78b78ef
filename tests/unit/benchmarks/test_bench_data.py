"""benchmarks.data: repeated NAB timestamps are spread between their neighbours."""
import numpy as np
import pandas as pd
import pytest

from benchmarks.data import load_nab, nab_names
from benchmarks.data import spread_repeated_times


def _times(*hm):
    return pd.Series(pd.to_datetime([f"2014-03-09 {x}" for x in hm]), name="timestamp")


def test_a_dst_run_gets_the_lost_hour_back():
    t = _times("01:54", "01:59", *["03:00"] * 12, "03:04")
    out = spread_repeated_times(t)
    expected = _times("01:54", "01:59", *[f"02:{m:02d}" for m in range(4, 60, 5)], "03:04")
    pd.testing.assert_series_equal(out, expected)


def test_a_doubled_time_is_split_and_distinct_times_are_kept():
    t = _times("11:00", "12:00", "12:00", "13:00")
    out = spread_repeated_times(t)
    assert list(out.dt.strftime("%H:%M")) == ["11:00", "11:40", "12:20", "13:00"]
    same = _times("11:00", "12:00")
    assert spread_repeated_times(same) is same


@pytest.mark.parametrize("hm, msg", [(("12:00", "12:00", "13:00"), "start"), (("11:00", "12:00", "12:00"), "end"),
                                     (("12:00", "11:00", "11:00"), "not sorted")])
def test_runs_at_an_end_and_unsorted_times_are_refused(hm, msg):
    with pytest.raises(ValueError, match=msg):
        spread_repeated_times(_times(*hm))


def test_no_nab_series_repeats_a_time():
    try:
        names = nab_names()
    except FileNotFoundError:
        pytest.skip("benchmark data not found")
    for name in names:
        df = load_nab(name)
        assert not df["timestamp"].duplicated().any(), name
        assert (np.diff(df["timestamp"].to_numpy()) > np.timedelta64(0)).all(), name
