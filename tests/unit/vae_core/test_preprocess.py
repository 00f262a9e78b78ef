"""vae_core.preprocess: column kinds, robust standardisation, masks of missing values, the encoding's
shapes and dtypes, errors that name the column and row, and the JSON round trip."""
import json

import numpy as np
import pandas as pd
import pytest

from vae_core import DataError
from vae_core.preprocess import IQR_TO_SIGMA, Encoded, Preprocessor, check_frame, infer_kind


def iqr(values: np.ndarray) -> float:
    q25, q75 = np.quantile(values, [0.25, 0.75])
    return float(q75 - q25)


def test_robust_standardisation_of_a_known_column_has_median_0_and_a_unit_sigma_iqr():
    values = np.arange(101.0) * 3 + 7  # median 157, IQR 150, whatever its largest value
    values[-1] = 1e4  # an outlier moves the mean and the std, not the median and the IQR
    # (shuffled: integers in increasing order are refused as a counter)
    frame = pd.DataFrame({"x": np.random.default_rng(0).permutation(values)})
    pre = Preprocessor().fit(frame)
    (spec,) = pre.columns
    assert spec.kind == "numeric" and spec.center == 157.0 and spec.scale == pytest.approx(150 / IQR_TO_SIGMA)
    assert (spec.low, spec.high) == pytest.approx((7 + 0.05 * 300, 7 + 0.95 * 300))  # 5th..95th percentile
    z = pre.transform(frame).num[:, 0].astype(np.float64)
    assert np.median(z) == pytest.approx(0.0, abs=1e-6)
    assert iqr(z) / IQR_TO_SIGMA == pytest.approx(1.0, rel=1e-6)  # the IQR of a standard normal
    assert pre.log_scales() == pytest.approx([np.log(150 / IQR_TO_SIGMA)])


def test_standard_scaling_gives_mean_0_and_std_1():
    values = np.random.default_rng(0).lognormal(size=500)
    pre = Preprocessor(scaling="standard").fit(pd.DataFrame({"x": values}))
    z = pre.transform(pd.DataFrame({"x": values})).num[:, 0].astype(np.float64)
    assert z.mean() == pytest.approx(0.0, abs=1e-5) and z.std() == pytest.approx(1.0, rel=1e-5)


def test_a_constant_column_gets_a_tiny_scale_so_any_other_value_is_far_out():
    pre = Preprocessor().fit(pd.DataFrame({"c": np.full(20, 5.0)}))
    assert pre.columns[0].scale == pytest.approx(5e-3)
    z = pre.transform(pd.DataFrame({"c": [5.0, 6.0]})).num[:, 0]
    assert z[0] == 0.0 and z[1] == pytest.approx(200.0)


def test_a_column_with_mostly_one_value_falls_back_to_its_std():
    values = np.r_[np.zeros(90), np.arange(1.0, 11.0)]  # IQR 0, std > 0
    (spec,) = Preprocessor().fit(pd.DataFrame({"x": values})).columns
    assert spec.scale == pytest.approx(values.std())


def test_shapes_dtypes_and_layout_of_an_encoding(frame):
    pre = Preprocessor(max_categories=2).fit(frame)
    kinds = {c.name: c.kind for c in pre.columns}
    assert kinds == {"amount": "numeric", "fee": "numeric", "items": "numeric", "is_online": "bool",
                     "channel": "categorical", "region": "categorical", "version": "numeric"}  # fmt: skip
    assert pre.feature_names == ["amount", "fee", "items", "version", "is_online", "channel", "region"]
    assert pre.cat_sizes == [3, 3]  # two kept categories + one slot for rare and unseen
    enc = pre.transform(frame)
    n = len(frame)
    shapes = [a.shape for a in enc.arrays()]
    assert shapes == [(n, 4), (n, 4), (n, 1), (n, 1), (n, 2), (n, 2), (n, 2)] and len(enc) == n
    assert [a.dtype for a in enc.arrays()] == [np.float32] * 4 + [np.int64] + [np.float32] * 2
    assert enc.cond is None
    sub = enc.take(np.array([3, 0]))
    np.testing.assert_array_equal(sub.num, enc.num[[3, 0]])
    np.testing.assert_array_equal(sub.cats, enc.cats[[3, 0]])


def test_masks_are_zero_exactly_where_values_are_missing():
    train = pd.DataFrame({
        "x": [1.0, 2.0, 3.0, 4.0], "b": pd.array([True, False, True, False], dtype="boolean"),
        "k": ["a", "a", "b", "c"],
    })  # fmt: skip
    pre = Preprocessor(max_categories=2).fit(train)
    new = pd.DataFrame({
        "x": [np.nan, 2.0, 3.0, 9.0], "b": pd.array([None, True, False, True], dtype="boolean"),
        "k": ["a", None, "c", "zzz"],
    })  # fmt: skip
    enc = pre.transform(new)
    np.testing.assert_array_equal(enc.num_mask[:, 0], [0, 1, 1, 1])
    assert enc.num[0, 0] == 0.0  # a missing value is 0 in the data array
    np.testing.assert_array_equal(enc.bool_mask[:, 0], [0, 1, 1, 1])
    np.testing.assert_array_equal(enc.bools[:, 0], [0, 1, 0, 1])
    spec = pre.by_kind("categorical")[0]
    assert spec.categories == ["a", "b"] and spec.rare == ["c"]
    # kept category -> its code; missing -> masked; rare (seen in training) -> the extra slot,
    # observed; never seen -> the extra slot, masked, with the fixed novelty cost
    np.testing.assert_array_equal(enc.cats[:, 0], [0, 2, 2, 2])
    np.testing.assert_array_equal(enc.cat_mask[:, 0], [1, 0, 1, 0])
    np.testing.assert_allclose(enc.cat_novelty[:, 0], [0, 0, 0, spec.novelty_nll])


def test_novelty_cost_is_the_good_turing_estimate():
    # 6 values, 2 of them seen once ("c", "d"): P(new) ~ 2 / (6 + 1)
    pre = Preprocessor().fit(pd.DataFrame({"k": ["a", "a", "b", "b", "c", "d"]}))
    assert pre.columns[0].novelty_nll == pytest.approx(-np.log(2 / 7))


def test_text_booleans_are_parsed_and_a_bad_one_names_its_column_and_row():
    train = pd.DataFrame({"b": [True, False, True]})
    pre = Preprocessor().fit(train)
    assert pre.columns[0].true_rate == pytest.approx(2 / 3)
    enc = pre.transform(pd.DataFrame({"b": ["Yes", "n", " TRUE ", "0"]}))
    np.testing.assert_array_equal(enc.bools[:, 0], [1, 0, 1, 0])
    with pytest.raises(DataError, match=r"column 'b', row 'r2': 'maybe' is not a boolean"):
        pre.transform(pd.DataFrame({"b": ["yes", "no", "maybe"]}, index=["r0", "r1", "r2"]))


def test_bad_numbers_name_the_column_the_row_and_the_count():
    pre = Preprocessor().fit(pd.DataFrame({"x": np.arange(10.0)}))
    bad = pd.DataFrame({"x": ["1", "two", "3", "four"]}, index=list("abcd"))
    with pytest.raises(DataError, match=r"column 'x', row 'b': 'two' is not a number \(2 such value"):
        pre.transform(bad)
    assert pre.transform(pd.DataFrame({"x": ["1.5", None]})).num_mask[:, 0].tolist() == [1, 0]  # numbers as text
    with pytest.raises(DataError, match=r"column 'x', row 1: infinite value \(1 in the column\)"):
        pre.transform(pd.DataFrame({"x": [1.0, np.inf]}))
    with pytest.raises(DataError, match=r"missing column\(s\) the model was fitted on: 'x'"):
        pre.transform(pd.DataFrame({"y": [1.0]}))


def test_frames_that_cannot_be_encoded_are_refused_with_the_reason():
    with pytest.raises(DataError, match="expected a pandas DataFrame, got ndarray"):
        check_frame(np.zeros((2, 2)))
    with pytest.raises(DataError, match="no columns"):
        check_frame(pd.DataFrame(index=[0]))
    with pytest.raises(DataError, match="empty"):
        check_frame(pd.DataFrame({"x": []}))
    with pytest.raises(DataError, match=r"duplicate column name\(s\): \['x'\]"):
        check_frame(pd.DataFrame([[1, 2]], columns=["x", "x"]))
    with pytest.raises(DataError, match="column 'x' has no observed value"):
        Preprocessor().fit(pd.DataFrame({"x": [np.nan, np.nan]}))


def test_column_kinds_and_the_columns_refused_as_features():
    assert infer_kind(pd.Series([True, False])) == "bool"
    assert infer_kind(pd.Series([True, None, False], dtype=object)) == "bool"
    assert infer_kind(pd.Series([1, 2], dtype="Int64")) == "numeric"
    assert infer_kind(pd.Series(["a", 1])) == "categorical"
    with pytest.raises(DataError, match="column 't' holds datetimes"):
        infer_kind(pd.Series(pd.date_range("2024-01-01", periods=2), name="t"))
    with pytest.raises(DataError, match="column 'id' looks like an identifier"):
        Preprocessor().fit(pd.DataFrame({"id": [f"u{i}" for i in range(60)]}))
    with pytest.raises(DataError, match="column 'n' looks like an identifier or a counter"):
        Preprocessor().fit(pd.DataFrame({"n": np.arange(60)}))
    Preprocessor().fit(pd.DataFrame({"n": np.arange(49)}))  # too short to tell: accepted


def test_the_json_state_rebuilds_an_identical_encoder(frame):
    pre = Preprocessor(max_categories=2, scaling="standard").fit(frame)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.scaling == "standard" and again.max_categories == 2
    for a, b in zip(pre.transform(frame).arrays(), again.transform(frame).arrays()):
        np.testing.assert_array_equal(a, b)


def test_encoded_numeric_marks_nan_as_missing_and_keeps_the_conditioning_inputs():
    values = np.array([[0.5, np.nan], [np.nan, -1.0]])
    enc = Encoded.numeric(values, cond=np.ones((2, 3)))
    np.testing.assert_array_equal(enc.num, [[0.5, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(enc.num_mask, [[1, 0], [0, 1]])
    assert enc.num.dtype == np.float32 and enc.cats.shape == (2, 0) and enc.cats.dtype == np.int64
    assert enc.cond.dtype == np.float32 and len(enc.arrays()) == 8
    assert enc.take(np.array([1])).cond.shape == (1, 3)
