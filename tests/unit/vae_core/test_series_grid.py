"""vae_core.series_grid: each series on its regular grid (gaps and missing values as NaN, times on one
point averaged, short series padded on the left), and the time-ordered training split of windows."""
import numpy as np
import pandas as pd
import pytest

from vae_core import DataError
from vae_core.series_grid import MAX_GRID_GROWTH, build_grids, repeated_times_kept, training_split


def grids(t, v, window=2, series=None, names=("",), step=1.0, duplicates=None):
    frame = pd.DataFrame({"t": t, "v": v, **({"s": series} if series is not None else {})})
    values = np.asarray(v, np.float64).reshape(-1, 1)
    return build_grids(frame, np.asarray(t, np.float64), values, "t", "s" if series is not None else None,
                       list(names), step, window, duplicates)


def test_a_gap_and_a_missing_value_are_nan_on_the_grid():
    (g,) = grids([10, 11, 13, 14], [1.0, np.nan, 3.0, 4.0])
    assert g.values.shape == (5, 1) and g.values.dtype == np.float32
    np.testing.assert_array_equal(g.values[:, 0], [1.0, np.nan, np.nan, 3.0, 4.0])  # 11: missing; 12: no row
    np.testing.assert_array_equal(g.rows, [0, 1, 2, 3])
    np.testing.assert_array_equal(g.points, [0, 1, 3, 4])
    assert g.origin == 10.0 and g.code == 0


def test_the_step_sets_the_grid_and_nearby_times_on_one_point_are_averaged():
    # step 2: times 0 and 0.6 both round to point 0, 4 is point 2
    (g,) = grids([0.0, 0.6, 4.0], [1.0, 3.0, 5.0], step=2.0)
    np.testing.assert_array_equal(g.values[:, 0], [2.0, np.nan, 5.0])
    np.testing.assert_array_equal(g.points, [0, 0, 2])


def test_a_series_shorter_than_the_window_is_padded_on_the_left():
    (g,) = grids([5, 6, 7], [1.0, 2.0, 3.0], window=5)
    np.testing.assert_array_equal(g.values[:, 0], [np.nan, np.nan, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(g.points, [2, 3, 4])
    assert g.origin == 3.0  # the time of grid position 0, two steps before the first row


def test_each_series_gets_its_own_grid_with_its_fitted_position():
    out = grids([0, 0, 1, 1, 2], [1.0, 10.0, 2.0, 20.0, 30.0], series=["a", "b", "a", "b", "b"], names=("b", "z"))
    by_rows = {tuple(g.rows): g for g in out}
    a, b = by_rows[(0, 2)], by_rows[(1, 3, 4)]
    np.testing.assert_array_equal(a.values[:, 0], [1.0, 2.0])
    np.testing.assert_array_equal(b.values[:, 0], [10.0, 20.0, 30.0])
    assert b.code == 0 and a.code is None  # "a" was not among the fitted series


def test_timestamps_too_irregular_for_the_step_are_refused_naming_the_series_and_column():
    far = 2 * MAX_GRID_GROWTH + 10  # two rows that far apart on a step-1 grid
    with pytest.raises(DataError, match=r"series 'x' spans \d+ steps of 1 for only 2 rows in column 't'"):
        grids([0, far], [1.0, 2.0], series=["x", "x"], names=("x",))
    grids([0, 2 * MAX_GRID_GROWTH - 1], [1.0, 2.0])  # within the bound: accepted


def test_repeated_times_are_refused_by_default_and_an_unknown_rule_is_a_value_error():
    frame = pd.DataFrame({"t": [0, 1, 1]}, index=["a", "b", "c"])
    rows, t = np.arange(3), np.array([0.0, 1.0, 1.0])
    with pytest.raises(DataError, match=r"rows 'b' and 'c' have the same time '1' in column 't'"):
        repeated_times_kept(frame, rows, t, "", "t")
    np.testing.assert_array_equal(repeated_times_kept(frame, rows, t, "", "t", "last"), [True, False, True])
    with pytest.raises(ValueError, match="duplicates must be"):
        repeated_times_kept(frame, rows, t, "", "t", "middle")
    assert repeated_times_kept(frame, rows, np.arange(3.0), "", "t").all()  # no repeats: every row


def no_cond(g, starts):
    return np.zeros((len(starts), 0))


def test_the_training_split_is_time_ordered_and_leaves_out_empty_windows():
    values = np.arange(20.0)
    values[2:6] = np.nan  # the windows (of width 3) that start at 2 and 3 hold no observed value
    (g,) = grids(np.arange(20), values, window=3)
    train, val, cuts = training_split([g], window=3, stride=1, validation_fraction=0.25, seed=0, cond=no_cond)
    assert cuts == [15] and train.shape[1] == val.shape[1] == 3
    firsts = lambda w: [int(r[np.isfinite(r)][0] - np.flatnonzero(np.isfinite(r))[0]) for r in w]  # noqa: E731
    # training windows end at or before the cut (start + 3 <= 15); validation ones start at 15 - 1 or later
    assert firsts(train) == [0, 1, *range(4, 13)] and firsts(val) == [14, 15, 16, 17]
    assert all(np.isfinite(w).any() for w in train)


def test_the_conditioning_inputs_follow_each_window():
    (g,) = grids(np.arange(10), np.arange(10.0), window=4)
    train, val, _ = training_split([g], 4, 1, 0.2, 0, cond=lambda g, starts: starts[:, None] * 100.0)
    assert train.shape[1] == 5
    np.testing.assert_array_equal(train[:, 4], train[:, 0] * 100)  # each window's start


def test_too_few_windows_for_a_time_split_are_split_at_random_by_the_seed():
    (g,) = grids(np.arange(6), np.arange(6.0), window=4)  # 3 windows: none validates in time order
    a = training_split([g], 4, 1, 0.3, seed=1, cond=no_cond)
    b = training_split([g], 4, 1, 0.3, seed=1, cond=no_cond)
    assert len(a[0]) == 2 and len(a[1]) == 1
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    together = np.sort(np.concatenate([a[0][:, 0], a[1][:, 0]]))
    np.testing.assert_array_equal(together, [0, 1, 2])  # every window, once
    (short,) = grids([0, 1], [1.0, 2.0], window=4)
    with pytest.raises(DataError, match="need at least 5 points for window=4"):
        training_split([short], 4, 1, 0.3, 0, cond=no_cond)
