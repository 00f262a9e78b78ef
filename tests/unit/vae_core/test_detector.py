"""VAEDetector: mixed types, missing values, determinism, persistence, bad input, explanations."""
import numpy as np
import pandas as pd
import pytest

from vae_fixtures import FAST, assert_scores_close, mixed_frame
from vae_core import SCORE_COLUMNS, DataError, NotFittedError, VAEConfig, VAEDetector


def test_score_has_one_row_per_input_row_in_order(fitted, frame):
    shuffled = frame.sample(frac=1.0, random_state=1)
    out = fitted.score(shuffled)
    assert list(out.columns) == SCORE_COLUMNS
    assert out.index.equals(shuffled.index)
    assert np.isfinite(out[["neg_elbo", "nll_iwae", "recon_error", "p_value"]].to_numpy()).all()
    assert out["is_anomaly"].dtype == bool
    assert ((out["p_value"] > 0) & (out["p_value"] <= 1)).all()
    # the same rows in another order get the same scores
    assert_scores_close(out.loc[frame.index], fitted.score(frame))


def test_mixed_types_are_typed_as_expected(fitted):
    kinds = {c.name: c.kind for c in fitted.preprocessor_.columns}
    assert kinds == {
        "amount": "numeric", "fee": "numeric", "items": "numeric", "is_online": "bool",
        "channel": "categorical", "region": "categorical", "version": "numeric",
    }


def test_scores_do_not_depend_on_how_rows_are_batched(fitted, frame):
    whole = fitted.score(frame)
    parts = pd.concat([fitted.score(frame.iloc[:100]), fitted.score(frame.iloc[100:])])
    assert_scores_close(whole, parts)


def test_evaluate_and_reconstruct_put_each_batch_of_rows_in_its_own_place(fitted, frame):
    from vae_core.engine import Engine

    enc = fitted.preprocessor_.transform(frame)  # 600 rows: ten 64-row batches, the last one short
    small = Engine(fitted.engine_.model, fitted.config_.model_copy(update={"score_batch_size": 64}))
    whole, part = small.evaluate(enc), small.evaluate(enc.take(np.arange(130, 200)))
    width = len(fitted.preprocessor_.columns)
    for key, values in whole.items():
        assert values.dtype == np.float64 and len(values) == len(frame)
        assert values.shape[1:] == (() if values.ndim == 1 else (width,))
        np.testing.assert_allclose(values[130:200], part[key], rtol=1e-6, atol=1e-6, err_msg=key)
    assert small.evaluate(enc, detail_dtype=np.float32)["feature_nll"].dtype == np.float32
    empty = small.evaluate(enc.take(np.arange(0)))
    assert {k: v.shape for k, v in empty.items()} == {k: (0, *v.shape[1:]) for k, v in whole.items()}
    (mean, logvar), (part_mean, part_logvar) = small.reconstruct(enc), small.reconstruct(enc.take(np.arange(130, 200)))
    assert mean.shape == logvar.shape == (len(frame), fitted.engine_.model.n_num) and mean.dtype == np.float64
    np.testing.assert_allclose(mean[130:200], part_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logvar[130:200], part_logvar, rtol=1e-6, atol=1e-6)


def test_same_seed_gives_identical_scores(frame):
    a = VAEDetector(seed=3, **FAST).fit(frame).score(frame)
    b = VAEDetector(seed=3, **FAST).fit(frame).score(frame)
    c = VAEDetector(seed=4, **FAST).fit(frame).score(frame)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.allclose(a["neg_elbo"], c["neg_elbo"])


def test_save_load_gives_identical_scores_and_flags(fitted, frame, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = VAEDetector.load(tmp_path / "model")
    pd.testing.assert_frame_equal(fitted.score(frame), loaded.score(frame), check_exact=True)
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.config_ == fitted.config_
    assert {p.name for p in (tmp_path / "model").iterdir()} == {
        "weights.pt", "config.json", "preprocessor.json", "calibration.json", "history.json"
    }


def test_an_injected_anomaly_is_flagged_and_explained(fitted, frame):
    normal = frame.iloc[:50].copy()
    odd = normal.copy()
    odd.iloc[0, odd.columns.get_loc("amount")] = 400.0  # 15 sigma
    base, scored = fitted.score(normal), fitted.score(odd)
    assert scored["is_anomaly"].iloc[0]
    assert scored["anomaly_score"].iloc[0] > base["anomaly_score"].max()
    expl = fitted.explain(odd.iloc[:1], top_k=3)
    assert list(expl.columns) == ["rank", "feature", "share", "excess_nll", "value", "typical"]
    top = expl.iloc[0]
    assert top["feature"] == "amount" and top["value"] == 400.0 and top["share"] > 0.9
    assert len(expl) == 3 and (expl.index == odd.index[0]).all()


def test_unseen_category_is_evidence_not_a_crash(fitted, frame):
    rows = frame.iloc[:20].copy()
    seen = fitted.score(rows)["anomaly_score"]
    rows["channel"] = "carrier-pigeon"
    unseen = fitted.score(rows)["anomaly_score"]
    # a never-seen category costs -log P(new category) nats on top of the other columns' terms
    spec = next(c for c in fitted.preprocessor_.columns if c.name == "channel")
    assert spec.novelty_nll == pytest.approx(np.log(len(frame) - frame["channel"].isna().sum() + 1))
    assert (unseen > seen).all()
    expl = fitted.explain(rows.iloc[:3], top_k=1)
    assert (expl["feature"] == "channel").all() and (expl["value"] == "carrier-pigeon").all()


def test_a_constant_column_that_changes_is_anomalous(fitted, frame):
    rows = frame.iloc[:20].copy()
    rows["version"] = 2.0
    assert fitted.score(rows)["is_anomaly"].all()


def test_missing_values_are_scored(fitted, frame):
    rows = frame.iloc[:5].copy()
    rows = rows.astype({"is_online": object})
    rows.loc[:, ["amount", "channel", "is_online"]] = np.nan
    out = fitted.score(rows)
    assert np.isfinite(out["neg_elbo"]).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.drop(columns=["fee"]), r"missing column\(s\).*'fee'"),
        (lambda f: f.iloc[:0], "empty"),
        (lambda f: f.astype({"amount": object}).assign(amount=lambda d: d["amount"].where(d.index != "r3", "12,5")),
         r"column 'amount', row 'r3': '12,5' is not a number"),
        (lambda f: f.assign(fee=lambda d: d["fee"].where(d.index != "r7", np.inf)), r"column 'fee', row 'r7': infinite"),
        (lambda f: f.assign(is_online=lambda d: d["is_online"].astype(object).where(d.index != "r2", "maybe")),
         r"column 'is_online', row 'r2': 'maybe' is not a boolean"),
    ],
    ids=["missing-column", "empty", "non-numeric-string", "inf", "bad-boolean"],
)
def test_bad_input_gets_one_clear_error(fitted, frame, mutate, message):
    with pytest.raises(DataError, match=message):
        fitted.score(mutate(frame.iloc[:10].copy()))


def test_bad_training_input_is_refused(frame):
    with pytest.raises(DataError, match="datetimes"):
        VAEDetector(**FAST).fit(frame.assign(when=pd.Timestamp("2024-01-01")))
    with pytest.raises(DataError, match="no observed value"):
        VAEDetector(**FAST).fit(frame.assign(empty=np.nan))
    with pytest.raises(DataError, match="'txn_id' looks like an identifier"):
        VAEDetector(**FAST).fit(frame.assign(txn_id=[f"t{i}" for i in range(len(frame))]))
    with pytest.raises(DataError, match="'txn_no' looks like an identifier or a counter"):
        VAEDetector(**FAST).fit(frame.assign(txn_no=np.arange(len(frame)) + 1000))
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        VAEDetector(**FAST).fit(frame.to_numpy())


def test_config_typos_and_bad_values_fail_early():
    with pytest.raises(ValueError, match="latent_dimm"):
        VAEDetector(latent_dimm=3)
    with pytest.raises(ValueError, match="contamination"):
        VAEDetector(contamination=2.0)
    det = VAEDetector(seed=1, config=VAEConfig(latent_dim=3), max_epochs=5)
    assert det.seed == 1 and det.overrides == {"max_epochs": 5}


def test_unfitted_detector_says_so(frame):
    with pytest.raises(NotFittedError):
        VAEDetector().score(frame)


def test_callback_sees_every_epoch_and_can_stop(frame):
    seen = []

    def callback(m):
        seen.append(m)
        return m.epoch < 4

    det = VAEDetector(seed=0, **{**FAST, "max_epochs": 50}).fit(frame, callback=callback)
    assert [m.epoch for m in seen] == [1, 2, 3, 4] and len(det.history_) == 4
    assert all(np.isfinite([m.train_loss, m.val_neg_elbo, m.train_kl]).all() for m in seen)
    # the KL weight warms up instead of being clamped to zero
    assert seen[0].beta < seen[-1].beta and seen[-1].train_kl > 0


def test_recalibration_moves_the_threshold_without_retraining(fitted, frame):
    det = VAEDetector.load(fitted.save(__import__("tempfile").mkdtemp()))
    before = det.threshold_
    det.calibrate(contamination=0.2)
    assert det.threshold_ < before
    det.calibrate(method="pot", risk=1e-4)
    assert det.config_.threshold_method == "pot" and det.threshold_ > before
    frac = det.score(frame)["is_anomaly"].mean()
    assert frac < 0.05


def test_a_fixed_threshold_is_kept_through_save_and_load(fitted, frame, tmp_path):
    det = VAEDetector.load(fitted.save(tmp_path / "a"))
    scores = det.score(frame)["anomaly_score"]
    cut = float(scores.quantile(0.9))
    det.calibrate(threshold=cut)
    assert det.config_.threshold_method == "fixed" and det.threshold_ == cut
    assert det.score(frame)["is_anomaly"].sum() == (scores > cut).sum()
    again = VAEDetector.load(det.save(tmp_path / "b"))
    assert again.threshold_ == cut and again.calibration_.scores.tolist() == fitted.calibration_.scores.tolist()
    again.calibrate(method="quantile")  # back to a rule: the fixed value is dropped
    assert again.config_.fixed_threshold is None and again.threshold_ == fitted.threshold_
    with pytest.raises(ValueError, match="fixed_threshold"):
        again.calibrate(method="fixed")


def test_pyod_style_api(fitted, frame):
    s = fitted.decision_function(frame)
    p = fitted.predict(frame)
    assert s.shape == p.shape == (len(frame),)
    assert set(np.unique(p)) <= {0, 1}
    np.testing.assert_array_equal(p, (s > fitted.threshold_).astype(int))


def test_device_selection_prefers_cuda_when_present(monkeypatch):
    import torch

    from vae_core import select_device

    assert select_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no GPU here: only the choice is tested
    assert select_device("auto").type == "cuda"


def test_data_nll_is_in_data_units():
    # robust scaling is scale-equivariant: data x10 trains the same network on the same
    # standardised values, so -log p in data units differs by exactly log(10) per numeric value
    frame = mixed_frame(300)[["amount", "fee", "items"]].fillna(1.0)
    a = VAEDetector(seed=0, **FAST).fit(frame)
    b = VAEDetector(seed=0, **FAST).fit(frame * 10)
    np.testing.assert_allclose(b.data_nll(frame * 10) - a.data_nll(frame), 3 * np.log(10), atol=1e-3)
    np.testing.assert_allclose(a.score(frame)["nll_iwae"], b.score(frame * 10)["nll_iwae"], atol=1e-4)


def test_trimmed_training_ignores_the_worst_rows_of_each_batch(frame):
    plain = VAEDetector(seed=0, **FAST).fit(frame)
    trimmed = VAEDetector(seed=0, trim_fraction=0.2, **FAST).fit(frame)
    a, b = plain.score(frame), trimmed.score(frame)
    assert np.isfinite(b["nll_iwae"]).all() and not np.allclose(a["nll_iwae"], b["nll_iwae"])
    # the warm-up epochs are not trimmed, so the first epoch is the same
    assert plain.history_[0]["train_loss"] == trimmed.history_[0]["train_loss"]


def test_default_anomaly_score_is_nll_iwae_plus_weighted_rate(fitted, frame):
    assert fitted.config_.anomaly_score == "iwae_rate" and fitted.config_.rate_weight == 2.0
    kl = fitted.engine_.evaluate(fitted.preprocessor_.transform(frame), feature_detail=False)["kl"]
    out = fitted.score(frame)
    assert (kl > 0).all()
    np.testing.assert_allclose(out["anomaly_score"], out["nll_iwae"] + 2.0 * kl, rtol=1e-12)
    # the threshold was calibrated on that same score
    assert (out["is_anomaly"] == (out["anomaly_score"] > fitted.threshold_)).all()
    plain = VAEDetector(seed=0, anomaly_score="nll_iwae", **FAST).fit(frame).score(frame)
    np.testing.assert_array_equal(plain["anomaly_score"], plain["nll_iwae"])


def test_dropout_is_seeded_off_at_scoring_and_leaves_the_callers_rng_alone(frame):
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    det = VAEDetector(seed=0, **FAST).fit(frame)
    assert torch.equal(torch.get_rng_state(), before)
    model = det.engine_.model
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules()) and not model.training
    assert not any(isinstance(m, torch.nn.Dropout) for m in VAEDetector(seed=0, dropout=0.0, **FAST).fit(frame).engine_.model.modules())
    pd.testing.assert_frame_equal(det.score(frame), det.score(frame), check_exact=True)


def test_a_model_saved_before_dropout_and_rate_weight_existed_still_loads(frame, tmp_path):
    import json

    old = VAEDetector(seed=0, dropout=0.0, anomaly_score="nll_iwae", **FAST).fit(frame)
    old.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    meta = json.loads(path.read_text())
    del meta["config"]["dropout"], meta["config"]["rate_weight"]
    path.write_text(json.dumps(meta))
    loaded = VAEDetector.load(tmp_path / "m")
    assert loaded.config_.dropout == 0.0 and loaded.config_.anomaly_score == "nll_iwae"
    pd.testing.assert_frame_equal(old.score(frame), loaded.score(frame), check_exact=True)
