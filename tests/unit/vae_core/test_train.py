"""vae_core.train: the KL warm-up, early stopping that keeps the best weights, the step cap, the
callback's stop, determinism for a seed, and a clear error when training diverges."""
import numpy as np
import pytest
import torch

from vae_core.config import VAEConfig
from vae_core.device import DeviceData
from vae_core.engine import build_model
from vae_core.model import gaussian_kl
from vae_core.preprocess import Encoded
from vae_core.seeds import torch_generator
from vae_core.train import EpochMetrics, train_vae

CPU = torch.device("cpu")
TINY = dict(device="cpu", hidden_dims=[8], latent_dim=2, batch_size=64, max_steps=None, patience=50)


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    x = np.concatenate([z, 2 * z, -z], 1) + rng.normal(scale=0.1, size=(n, 3))
    return Encoded.numeric(x[: n * 3 // 4]), Encoded.numeric(x[n * 3 // 4 :])


def fit(**overrides):
    config = VAEConfig(**{**TINY, "max_epochs": 3, "kl_warmup_epochs": 0, **overrides})
    model = build_model(3, 0, [], config)
    train, val = data()
    return model, train_vae(model, train, val, config, CPU), config


def val_neg_elbo(model, val: Encoded, seed: int) -> float:
    """The validation -ELBO as the loop computes it: one z per row from the "validation_noise" stream."""
    eps = torch.randn(len(val), model.latent_dim, generator=torch_generator(seed, "validation_noise"))
    (b,) = DeviceData(val, CPU).slices(4096)
    with torch.no_grad():
        mu, logvar = model.encode(b)
        z = model.reparameterize(mu, logvar, eps)
        recon = model.feature_nll(model.decode(z), b).sum(-1)
        return float((recon + gaussian_kl(mu, logvar).sum(-1)).mean())


def test_the_kl_weight_rises_linearly_over_the_warm_up_then_stays_at_1():
    _, history, _ = fit(max_epochs=6, kl_warmup_epochs=3)  # warm-up: min(3, 6 // 3) = 2 epochs
    assert [m.epoch for m in history] == [1, 2, 3, 4, 5, 6]
    assert [m.beta for m in history] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert not any(m.best for m in history[:2])  # the warm-up epochs are never "best"
    _, history, _ = fit(max_epochs=2, kl_warmup_epochs=10)  # too short for a warm-up
    assert [m.beta for m in history] == [1.0, 1.0]


def test_a_seed_gives_the_same_model_and_the_callers_rng_is_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, history_a, _ = fit(dropout=0.2)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # whatever the caller's generator holds, dropout draws the seed's masks
    b, history_b, _ = fit(dropout=0.2)
    strip = lambda h: [{k: v for k, v in m.as_dict().items() if k != "seconds"} for m in h]  # noqa: E731
    assert strip(history_a) == strip(history_b)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    c, history_c, _ = fit(dropout=0.2, seed=1)
    assert strip(history_c) != strip(history_a)


def test_early_stopping_keeps_the_weights_of_the_best_validation_elbo():
    model, history, config = fit(max_epochs=60, patience=1, learning_rate=0.05, seed=1)
    assert len(history) < 60 and not history[-1].best  # stopped at the first epoch without a gain
    best = [m for m in history if m.best][-1]
    assert history[-1].val_neg_elbo > best.val_neg_elbo * 1.01  # the last epoch's weights are worse
    assert val_neg_elbo(model, data()[1], config.seed) == pytest.approx(best.val_neg_elbo, rel=1e-5)
    assert not model.training  # left in eval mode


def test_max_steps_caps_the_epochs():
    # 150 training rows in batches of 64: 2 steps an epoch, so 5 steps allow 2 epochs
    _, history, _ = fit(max_epochs=10, max_steps=5)
    assert len(history) == 2


def test_a_callback_that_returns_false_stops_training_after_that_epoch():
    seen: list[EpochMetrics] = []

    def callback(m: EpochMetrics):
        seen.append(m)
        return False if m.epoch == 2 else None

    config = VAEConfig(**{**TINY, "max_epochs": 5, "kl_warmup_epochs": 0})
    train, val = data()
    history = train_vae(build_model(3, 0, [], config), train, val, config, CPU, callback)
    assert [m.epoch for m in history] == [m.epoch for m in seen] == [1, 2]
    assert set(history[0].as_dict()) == {
        "epoch", "beta", "train_loss", "train_recon", "train_kl", "val_neg_elbo", "val_recon", "val_kl", "seconds", "best",
    }  # fmt: skip
    m = history[0]
    assert m.val_neg_elbo == pytest.approx(m.val_recon + m.val_kl) and m.train_kl >= 0


def test_the_augmentation_changes_training_batches_only():
    calls = []

    def augment(b):
        calls.append(len(b))
        return b

    config = VAEConfig(**{**TINY, "max_epochs": 2, "kl_warmup_epochs": 0})
    train, val = data()
    train_vae(build_model(3, 0, [], config), train, val, config, CPU, augment=augment)
    assert calls == [64, 64] * 2  # two training batches an epoch; the 50 validation rows never


def test_a_diverging_training_is_a_floating_point_error_naming_the_epoch():
    config = VAEConfig(**{**TINY, "max_epochs": 3, "kl_warmup_epochs": 0})
    huge = Encoded.numeric(np.full((100, 3), 1e30))
    with pytest.raises(FloatingPointError, match="training diverged at epoch 1"):
        train_vae(build_model(3, 0, [], config), huge, huge.take(np.arange(10)), config, CPU)
