"""vae_core.engine: layer sizes, a seeded initialisation, per-row scores that add up and do not
depend on the other rows of a batch, the weights-only round trip and the atomic JSON writer."""
import numpy as np
import pytest
import torch

from vae_core.config import VAEConfig
from vae_core.engine import Engine, auto_dims, build_model, iwae_rate, read_json, write_json
from vae_core.preprocess import Preprocessor

CONFIG = VAEConfig(seed=3, elbo_samples=4, iwae_samples=6, device="cpu", hidden_dims=[16], latent_dim=3)
ROW_KEYS = {"neg_elbo", "nll_iwae", "recon_error", "kl"}
DETAIL_KEYS = {"feature_nll", "feature_sq_error", "feature_nll_iw"}


@pytest.fixture(scope="module")
def encoded(frame):
    pre = Preprocessor().fit(frame)
    return pre, pre.transform(frame.iloc[:120])


def engine_for(pre, config=CONFIG) -> Engine:
    n_num, n_bool = len(pre.by_kind("numeric")), len(pre.by_kind("bool"))
    return Engine(build_model(n_num, n_bool, pre.cat_sizes, config), config)


@pytest.mark.parametrize(
    "n_features, latent, hidden",
    [(2, 2, [32, 16]), (40, 10, [80, 40]), (1000, 16, [256, 128])],  # clipped to [2, 16], [32, 256], [16, 128]
)
def test_auto_dims_follow_the_input_width_within_their_bounds(n_features, latent, hidden):
    assert auto_dims(n_features, VAEConfig()) == (latent, hidden)


def test_auto_dims_keep_what_the_config_sets():
    assert auto_dims(40, VAEConfig(latent_dim=5, hidden_dims=[7])) == (5, [7])


def test_the_initial_weights_depend_on_the_seed_alone_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(2, 1, [3], CONFIG)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # whatever the caller's generator holds
    b = build_model(2, 1, [3], CONFIG)
    other = build_model(2, 1, [3], CONFIG.model_copy(update={"seed": 4}))
    for (name, pa), pb, po in zip(a.state_dict().items(), b.state_dict().values(), other.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder[0].weight, other.encoder[0].weight)
    assert (a.n_num, a.n_bool, a.cat_sizes, a.latent_dim) == (2, 1, [3], 3)


def test_iwae_rate_adds_the_weighted_rate():
    np.testing.assert_allclose(iwae_rate(np.array([1.0, 2.0]), np.array([0.5, 0.0]), 2.0), [2.0, 2.0])


def test_scoring_noise_is_fixed_by_the_seed(encoded):
    pre, _ = encoded
    engine = engine_for(pre)
    eps = engine.noise()
    assert eps.shape == (6, 3)  # max(elbo_samples, iwae_samples) draws of z
    assert torch.equal(eps, engine.noise()) and torch.equal(eps, engine_for(pre).noise())


def test_evaluate_gives_per_row_figures_that_add_up(encoded):
    pre, enc = encoded
    out = engine_for(pre).evaluate(enc)
    n, width = len(enc), len(pre.feature_names)
    assert set(out) == ROW_KEYS | DETAIL_KEYS
    assert all(out[k].shape == (n,) and out[k].dtype == np.float64 for k in ROW_KEYS)
    assert all(out[k].shape == (n, width) and out[k].dtype == np.float64 for k in DETAIL_KEYS)
    assert np.all(out["kl"] >= 0) and np.all(np.isfinite(out["nll_iwae"]))
    # -ELBO = the reconstruction NLL summed over the columns + the KL (Kingma & Welling eq. 10)
    np.testing.assert_allclose(out["neg_elbo"], out["feature_nll"].sum(1) + out["kl"], rtol=1e-5)
    # the reconstruction error is the mean squared error over the observed columns of a row
    observed = np.concatenate([enc.num_mask, enc.bool_mask, enc.cat_mask], 1).sum(1)
    np.testing.assert_allclose(out["recon_error"] * observed, out["feature_sq_error"].sum(1), rtol=1e-5)
    assert (enc.num_mask == 0).any()  # the frame has missing values, so the mean is not over every column


def test_a_rows_scores_do_not_depend_on_the_rows_scored_with_it(encoded):
    pre, enc = encoded
    engine = engine_for(pre)
    whole = engine.evaluate(enc, feature_detail=False)
    rows = np.array([7, 0, 99])
    part = engine.evaluate(enc.take(rows), feature_detail=False)
    assert set(part) == ROW_KEYS  # no per-feature detail asked for
    for key in ROW_KEYS:
        np.testing.assert_allclose(part[key], whole[key][rows], rtol=1e-5, atol=1e-6)
    small = engine_for(pre, CONFIG.model_copy(update={"score_batch_size": 7})).evaluate(enc, detail_dtype=np.float32)
    assert small["feature_nll"].dtype == np.float32
    np.testing.assert_allclose(small["neg_elbo"], whole["neg_elbo"], rtol=1e-5)


def test_reconstruct_gives_the_numeric_mean_and_log_variance_per_row(encoded):
    pre, enc = encoded
    mean, logvar = engine_for(pre).reconstruct(enc)
    assert mean.shape == logvar.shape == (len(enc), len(pre.by_kind("numeric")))
    assert np.all(logvar >= CONFIG.min_logvar) and np.all(logvar <= CONFIG.max_logvar)


def test_weights_and_sizes_round_trip_without_a_pickle(encoded, tmp_path):
    pre, enc = encoded
    engine = engine_for(pre)
    with torch.no_grad():
        engine.model.enc_mu.bias.add_(0.5)  # weights no fresh initialisation gives
    engine.save_weights(tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    write_json(tmp_path / "network.json", engine.state())
    loaded = Engine.load(read_json(tmp_path / "network.json"), VAEConfig(seed=3, elbo_samples=4, iwae_samples=6),
                         tmp_path / "w.pt", device="cpu")
    assert loaded.model.shape.sizes() == engine.model.shape.sizes() and loaded.device.type == "cpu"
    a, b = engine.evaluate(enc, feature_detail=False), loaded.evaluate(enc, feature_detail=False)
    for key in ROW_KEYS:
        np.testing.assert_array_equal(a[key], b[key])


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": [1.5, None], "c": "é"})
    assert read_json(path) == {"b": [1.5, None], "c": "é"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
