"""vae_core.series_masking: the causal score with the flagged past hidden (mask_flagged_past), its
batch invariance after 2 x (window - 1) points of context, and missing-data injection in training."""
import numpy as np
import pandas as pd
import pytest
import torch

from test_timeseries import TS_FAST, series_frame
import vae_core
from vae_core import TimeSeriesVAEDetector, TimeSeriesConfig, timeseries
from vae_core.model import Batch
from vae_core.preprocess import Encoded
from vae_core.series_masking import hidden_past, injection_share, missing_injection
from vae_core import series_scores
from vae_core.series_scores import window_terms


def _train():
    return pd.concat([series_frame(name="a", seed=0), series_frame(name="b", seed=1)], ignore_index=True)


@pytest.fixture(scope="module")
def masked():
    """A causal detector trained with missing-data injection that hides the flagged past, and a
    test series with a burst and a spike for it to flag."""
    det = TimeSeriesVAEDetector(seed=0, point_score="last", mask_flagged_past=True, **TS_FAST)  # holes in training too
    det.fit(_train(), time_column="timestamp", series_column="host")
    test = series_frame(n=300, seed=5, start="2024-02-01", name="a")
    test.loc[120:127, "cpu"] += np.random.default_rng(1).normal(scale=1.5, size=8)
    test.loc[200, "mem"] += 4.0
    return det, test


def _unmasked(det):
    plain = TimeSeriesVAEDetector.__new__(TimeSeriesVAEDetector)
    plain.__dict__.update(det.__dict__)
    plain.config_ = det.config_.model_copy(update={"mask_flagged_past": False})
    return plain


def test_hidden_past_hides_the_flagged_points_before_each_window_end():
    flagged = np.array([0, 1, 0, 0, 1, 1], bool)
    hide = hidden_past(flagged, 3)
    assert hide.tolist() == [[False, True, False], [True, False, False], [False, False, False], [False, True, False]]


def test_a_point_is_scored_with_its_flagged_past_marked_missing(masked):
    """Each point's masked score is its unmasked window's (ending at it) with the earlier points that
    the unmasked causal score flags set to NaN; points with nothing flagged before them keep the
    unmasked score; the flagged anomalies stay flagged."""
    det, test = masked
    plain = _unmasked(det)
    W, d = det.config_.window, len(det.value_columns_)
    flags = plain.score(test)["is_anomaly"].to_numpy(bool)
    assert flags[120:128].any() and flags[200]
    got = det.score(test)
    want = plain.score(test)
    before = np.array([flags[max(0, t - W + 1) : t].any() for t in range(len(test))])
    assert before.sum() >= W  # the burst and the spike hide something from the next windows
    np.testing.assert_allclose(got["anomaly_score"][~before], want["anomaly_score"][~before], rtol=1e-6)
    assert not np.allclose(got["anomaly_score"][before], want["anomaly_score"][before])
    # one of those points by hand: its window, the flagged earlier points missing
    t = int(np.flatnonzero(before & (np.arange(len(test)) > 130))[0])
    grid = det.context_grids(test, None)[0][0]  # the one series, on its grid (no gaps: grid point = row)
    win = grid.values[t - W + 1 : t + 1].copy()
    win[:-1][flags[t - W + 1 : t]] = np.nan
    cond = det.window_cond(grid, np.array([t - W + 1]))
    enc = Encoded.numeric(win.reshape(1, W * d), cond)
    terms, _, _ = window_terms(det.engine_.evaluate(enc), enc.num_mask.reshape(1, W, d))
    by_hand = terms["nll_iwae"][0, -1] + det.rate_weight_ * terms["kl"][0, -1]
    assert got["anomaly_score"].iloc[t] == pytest.approx(by_hand, rel=1e-5)
    assert got["is_anomaly"].to_numpy()[[*range(120, 128), 200]].any()


def test_masked_scores_are_the_same_whole_or_after_twice_the_context(masked):
    """A batch scored after the previous 2 x (window - 1) points of its series (context_points,
    which the score flow reads) equals the long series scored at once."""
    det, test = masked
    W = det.config_.window
    assert det.context_points == 2 * (W - 1) and _unmasked(det).context_points == W - 1
    assert det.with_point_score("mean").context_points == W - 1  # offline: nothing is masked
    whole = det.score(test)
    parts = []
    for lo, hi in ((0, 60), (60, 125), (125, 126), (126, 205), (205, 300)):  # boundaries inside the burst too
        before = test.iloc[max(0, lo - det.context_points) : lo]
        parts.append(det.score(test.iloc[lo:hi], context=before if len(before) else None))
    batched = pd.concat(parts)
    np.testing.assert_allclose(batched["anomaly_score"], whole["anomaly_score"], rtol=1e-5, atol=1e-5)
    assert (batched["is_anomaly"] == whole["is_anomaly"]).all()


def test_the_band_is_drawn_from_the_windows_the_masked_score_reads(masked):
    """With the flagged past hidden, a point's expected band comes from its window with those points
    missing (checked by hand after the burst), other points keep the unmasked band, and a batch
    after context_points draws the same band as the long series."""
    det, test = masked
    plain = _unmasked(det)
    W, d = det.config_.window, len(det.value_columns_)
    flags = plain.score(test)["is_anomaly"].to_numpy(bool)
    before = np.array([flags[max(0, t - W + 1) : t].any() for t in range(len(test))])
    got, want = det.expected(test), plain.expected(test)
    np.testing.assert_allclose(got.to_numpy()[~before], want.to_numpy()[~before], rtol=1e-6)
    assert not np.allclose(got.to_numpy()[before], want.to_numpy()[before])
    t = int(np.flatnonzero(before & (np.arange(len(test)) > 130))[0])
    grid = det.context_grids(test, None)[0][0]
    win = grid.values[t - W + 1 : t + 1].copy()
    win[:-1][flags[t - W + 1 : t]] = np.nan
    enc = Encoded.numeric(win.reshape(1, W * d), det.window_cond(grid, np.array([t - W + 1])))
    mu, logvar = (a.reshape(W, d)[-1] for a in det.engine_.reconstruct(enc))
    specs = det.preprocessor_.by_kind("numeric")
    for j, (name, spec) in enumerate(zip(det.value_columns_, specs)):
        assert got[(name, "mean")].iloc[t] == pytest.approx(spec.center + spec.scale * mu[j], rel=1e-5)
        assert got[(name, "std")].iloc[t] == pytest.approx(spec.scale * np.exp(logvar[j] / 2), rel=1e-5)
    lo = 130  # the burst's flags lie in the context, the points they mask in the batch
    tail = det.expected(test.iloc[lo:], context=test.iloc[lo - det.context_points : lo])
    np.testing.assert_allclose(tail.to_numpy(), got.to_numpy()[lo:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["precision", "causal", "offline"])
def test_one_call_gives_the_scores_explanation_and_band_of_the_separate_calls(masked, monkeypatch, mode):
    """score_and_explain's scores, explanation and band equal those of score_and_explain without
    the band then expected's, after a context, and
    scores the series once where the separate calls score it twice in the precision mode (the
    band's mask needs the plain causal flags); a batch with nothing flagged gets no band."""
    det, test = masked
    det = {"precision": det, "causal": _unmasked(det), "offline": det.with_point_score("mean")}[mode]
    lo = 130  # the burst's flags in the context, points they mask in the batch
    batch, context = test.iloc[lo:], test.iloc[lo - det.context_points : lo]
    passes = []
    real = timeseries.score_series
    monkeypatch.setattr(timeseries, "score_series", lambda *a, **k: passes.append(1) or real(*a, **k))
    want = vae_core.score_and_explain(det, batch, context=context, band=False)
    want_scores, want_explanation = want.scores, want.explanation
    want_band = det.expected(batch, context)
    separate, passes[:] = len(passes), []
    got = vae_core.score_and_explain(det, batch, context=context)
    assert want_scores["is_anomaly"].any() and len(want_explanation)
    pd.testing.assert_frame_equal(got.scores, want_scores)
    pd.testing.assert_frame_equal(got.explanation, want_explanation)
    pd.testing.assert_frame_equal(got.band, want_band)
    assert (len(passes), separate) == ((1, 2) if mode == "precision" else (1, 1))
    pd.testing.assert_frame_equal(got.scores.drop(columns="top_features"), det.score(batch, context=context))
    quiet = test.iloc[:100]
    assert not det.score(quiet)["is_anomaly"].any()
    got = vae_core.score_and_explain(det, quiet)
    assert got.band is None and len(got.explanation) == 0 and (got.scores["top_features"] == "").all()
    assert len(got.events) == 0 and (got.event_of_row == -1).all()


def test_scores_and_bands_are_the_same_scored_a_few_windows_at_a_time(masked, monkeypatch):
    det, test = masked
    offline = det.with_point_score("mean")
    runs = lambda: [det.score(test), det.expected(test), offline.score(test), offline.expected(test)]  # noqa: E731
    whole = runs()
    assert whole[0]["is_anomaly"].sum() > 1  # flagged points: the masked windows have something to hide
    W, d = det.config_.window, len(det.value_columns_)
    monkeypatch.setattr(series_scores, "CHUNK_VALUES", 7 * W * d)  # 7 windows a chunk instead of all 270
    for a, b in zip(whole, runs()):  # to float32's precision: a 7-row batch takes another matmul kernel
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-6)


def test_missing_injection_hides_one_block_in_a_share_of_windows():
    W, d, n = 8, 3, 4000
    b = Batch(torch.ones(n, W * d), torch.ones(n, W * d), *(torch.zeros(n, 0) for _ in range(2)),
              torch.zeros(n, 0, dtype=torch.long), torch.zeros(n, 0), torch.zeros(n, 0))
    out = missing_injection(0.5, W, d, seed=0, device=torch.device("cpu"))(b)
    seen = out.num_mask.reshape(n, W, d)
    assert (seen == seen[..., :1]).all()  # a hole takes every column of its positions
    holes = (seen[..., 0] == 0).numpy()
    lengths = holes.sum(1)
    assert 0.45 < (lengths > 0).mean() < 0.55 and lengths.max() <= W // 2
    for row in holes[lengths > 0][:200]:  # one contiguous block
        at = np.flatnonzero(row)
        assert (np.diff(at) == 1).all()
    assert set(np.unique(lengths[lengths > 0])) == set(range(1, W // 2 + 1))
    again = missing_injection(0.5, W, d, seed=0, device=torch.device("cpu"))(b)
    assert torch.equal(again.num_mask, out.num_mask) and torch.equal(out.num, b.num)
    assert torch.equal(missing_injection(0.0, W, d, 0, torch.device("cpu"))(b).num_mask, b.num_mask)


def test_missing_injection_changes_training_and_is_seeded():
    frame = series_frame(n=300, seed=0)
    fit = lambda share: TimeSeriesVAEDetector(seed=0, missing_injection=share, **{**TS_FAST, "max_epochs": 4}).fit(frame)  # noqa: E731
    a, b, plain = fit(0.5), fit(0.5), fit(0.0)
    assert a.history_[-1]["train_loss"] == b.history_[-1]["train_loss"]
    assert a.history_[-1]["train_loss"] != plain.history_[-1]["train_loss"]
    with pytest.raises(ValueError):
        TimeSeriesConfig(missing_injection=1.5)
    # the mask implies holes in training unless told otherwise
    assert injection_share(None, True) == 0.5 and injection_share(None, False) == 0.0
    assert injection_share(0.0, True) == 0.0 and injection_share(0.25, False) == 0.25


def test_the_precision_mode_continues_an_event_from_the_earlier_batch(masked):
    """In the precision mode too, a batch cut inside the burst and scored after
    batch_context_points of context has the long series' scores, and the burst is one event that
    began before the batch, with the long series' start and its flagged points' explanation."""
    det, test = masked
    W = det.config_.window
    assert det.batch_context_points == 3 * (W - 1)
    whole = vae_core.score_and_explain(det, test)
    burst = whole.event_of_row[122]
    points = np.flatnonzero(whole.event_of_row == burst)
    (start,) = whole.events.loc[whole.events["event_id"] == burst, "start"]
    cut = int(points[0]) + 3
    got = vae_core.score_and_explain(det, test.iloc[cut:], context=test.iloc[cut - det.batch_context_points : cut])
    pd.testing.assert_frame_equal(got.scores, whole.scores.iloc[cut:], rtol=1e-5, atol=1e-5)
    ours = got.event_of_row[points[points >= cut][0] - cut]
    event = got.events.set_index("event_id").loc[ours]
    assert event["began_before"] and event["start"] == start
    rows = np.flatnonzero((got.event_of_row == ours) & got.scores["is_anomaly"].to_numpy(bool))
    assert len(rows) >= 2
    want = whole.explanation.loc[rows + cut]
    pd.testing.assert_frame_equal(got.explanation.loc[rows], want.set_axis(want.index - cut), rtol=1e-5, atol=1e-5)
