"""The "iwae_rate_recon" anomaly score: robust z-scores of iwae_rate and recon_error on the held-out rows."""
import json

import numpy as np
import pandas as pd
import pytest

from vae_fixtures import FAST, assert_scores_close
from vae_core import TimeSeriesConfig, VAEDetector
from vae_core.detector import split_indices


@pytest.fixture(scope="module")
def combo(frame):
    return VAEDetector(seed=0, anomaly_score="iwae_rate_recon", **FAST).fit(frame)


def _z(x, ref):
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    return (x - med) / (q3 - q1)


def test_it_is_the_sum_of_two_robust_z_scores_scaled_on_the_held_out_rows(combo, fitted, frame):
    # the score does not change training: the default detector of the same seed is the same network
    out, plain = combo.score(frame), fitted.score(frame)
    pd.testing.assert_frame_equal(out[["neg_elbo", "nll_iwae", "recon_error"]],
                                  plain[["neg_elbo", "nll_iwae", "recon_error"]], check_exact=True)
    _, val_idx = split_indices(len(frame), combo.config_.validation_fraction, 0)
    held_out = fitted.score(frame.iloc[val_idx])
    expected = (_z(plain["anomaly_score"], held_out["anomaly_score"])
                + _z(plain["recon_error"], held_out["recon_error"]))
    np.testing.assert_allclose(out["anomaly_score"], expected, rtol=1e-9, atol=1e-9)
    # calibrated on that score: about 1% of the held-out rows above the threshold, around 0 at the median
    assert (out["is_anomaly"] == (out["anomaly_score"] > combo.threshold_)).all()
    assert abs(np.median(combo.score(frame.iloc[val_idx])["anomaly_score"])) < 0.5


def test_a_row_scores_the_same_alone_as_in_any_batch(combo, frame):
    whole = combo.score(frame)
    alone = pd.concat([combo.score(frame.iloc[[i]]) for i in (0, 7, 311)])
    assert_scores_close(alone, whole.iloc[[0, 7, 311]])
    again = VAEDetector(seed=0, anomaly_score="iwae_rate_recon", **FAST).fit(frame).score(frame)
    pd.testing.assert_frame_equal(whole, again, check_exact=True)


def test_save_and_load_keep_the_scales(combo, frame, tmp_path):
    combo.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["score_scales"] == combo.score_scales_
    loaded = VAEDetector.load(tmp_path / "m")
    pd.testing.assert_frame_equal(combo.score(frame), loaded.score(frame), check_exact=True)


@pytest.mark.parametrize("column, value", [("amount", 400.0), ("fee", 6.0)])
def test_an_injected_feature_is_flagged_and_named(combo, frame, column, value):
    normal = frame.iloc[:50].copy()
    odd = normal.copy()
    odd.iloc[0, odd.columns.get_loc(column)] = value
    base, scored = combo.score(normal), combo.score(odd)
    assert scored["is_anomaly"].iloc[0] and scored["anomaly_score"].iloc[0] > base["anomaly_score"].max()
    assert scored["recon_error"].iloc[0] > base["recon_error"].max()  # the recon part moved too
    top = combo.explain(odd.iloc[:1], top_k=3).iloc[0]
    assert top["feature"] == column and top["value"] == value and top["share"] > 0.8


def test_the_series_detector_refuses_it():
    with pytest.raises(ValueError, match="anomaly_score"):
        TimeSeriesConfig(anomaly_score="iwae_rate_recon")
