"""The training loop (AdamW, KL warm-up, early stopping) and its per-epoch metrics."""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .config import VAEConfig
from .device import DeviceData, autocast_for
from .model import VAE, Batch, gaussian_kl
from .preprocess import Encoded
from .seeds import stream_seed, torch_generator


@dataclass
class EpochMetrics:
    """What the per-epoch callback receives (all losses are means per row, in nats)."""

    epoch: int
    beta: float
    train_loss: float
    train_recon: float
    train_kl: float
    val_neg_elbo: float
    val_recon: float
    val_kl: float
    seconds: float
    best: bool

    def as_dict(self) -> dict:
        """Plain dict, e.g. for metric logging."""
        return asdict(self)


EpochCallback = Callable[[EpochMetrics], Optional[bool]]


def _elbo_terms(model: VAE, b: Batch, eps: torch.Tensor, free_bits: float) -> tuple[torch.Tensor, ...]:
    """Per-row reconstruction NLL (one z sample), KL, and the KL after free bits."""
    mu, logvar = model.encode(b)
    mu, logvar = mu.float(), logvar.float()
    z = model.reparameterize(mu, logvar, eps)
    recon = model.feature_nll(model.decode(z, b.cond), b).sum(-1)
    kl_dim = gaussian_kl(mu, logvar)
    kl = kl_dim.sum(-1)
    if free_bits > 0:
        # Kingma et al. (2016): no penalty below `free_bits` nats per dimension (batch average)
        kl_pen = torch.clamp(kl_dim.mean(0), min=free_bits).sum().expand_as(kl)
    else:
        kl_pen = kl
    return recon, kl, kl_pen


def _seeded_global_rng(fit):
    """Run ``fit`` with torch's global generator forked and seeded (the ``"dropout"`` stream).

    Dropout draws from that generator: this makes a seed give the same model, and leaves the
    caller's RNG state as it was."""

    @functools.wraps(fit)
    def wrapper(model, train, val, config, device, callback=None, augment=None):
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(stream_seed(config.seed, "dropout"))
            return fit(model, train, val, config, device, callback, augment)

    return wrapper


@_seeded_global_rng
def train_vae(
    model: VAE,
    train: Encoded,
    val: Encoded,
    config: VAEConfig,
    device: torch.device,
    callback: Optional[EpochCallback] = None,
    augment: Optional[Callable[[Batch], Batch]] = None,
) -> list[EpochMetrics]:
    """Fit ``model`` in place on ``train``; keep the weights with the best validation ELBO.

    The loss is -ELBO with the KL weight beta raised linearly from 0 to 1 over
    ``kl_warmup_epochs`` (Bowman et al. 2016), so the KL term is never switched off. Early
    stopping watches the full (beta = 1) validation ELBO, and only once the warm-up is over.
    ``callback`` gets an :class:`EpochMetrics` per epoch and may return False to stop; ``augment``
    transforms each training batch (not the validation rows), e.g. the time series' missing-data
    injection (:func:`vae_core.series_masking.missing_injection`).
    Deterministic for a seed: dropout's draws are seeded too (:func:`_seeded_global_rng`).
    """
    gen = torch_generator(config.seed, "shuffle")
    noise_gen = torch_generator(config.seed, "train_noise", device)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    use_amp = device.type == "cuda" and config.mixed_precision
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    tr, va = DeviceData(train, device), DeviceData(val, device)
    bs = min(config.batch_size, max(2, tr.n))
    steps_per_epoch = max(1, tr.n // bs)
    max_epochs = config.max_epochs
    if config.max_steps:
        max_epochs = max(1, min(max_epochs, config.max_steps // steps_per_epoch))
    warmup = min(config.kl_warmup_epochs, max(0, max_epochs // 3))
    val_eps = torch.randn(va.n, model.latent_dim, generator=torch_generator(config.seed, "validation_noise")).to(device)

    history: list[EpochMetrics] = []
    best, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        beta = min(1.0, epoch / warmup) if warmup else 1.0
        model.train()
        perm = torch.randperm(tr.n, generator=gen)
        sums = torch.zeros(3, device=device)
        seen = 0
        for s in range(steps_per_epoch):
            b = tr.batch(perm[s * bs : (s + 1) * bs])
            if augment is not None:
                b = augment(b)
            eps = torch.randn(len(b), model.latent_dim, generator=noise_gen, device=device)
            with autocast_for(device, use_amp):
                recon, kl, kl_pen = _elbo_terms(model, b, eps, config.free_bits)
                row_loss = recon + beta * kl_pen
                if config.trim_fraction > 0 and epoch > warmup:
                    # trimmed ELBO: the worst rows of the batch (likely anomalies in unlabelled
                    # training data) do not pull the model towards themselves
                    keep = max(1, int(round(len(row_loss) * (1 - config.trim_fraction))))
                    row_loss = torch.topk(row_loss, keep, largest=False).values
                loss = row_loss.mean()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(opt)
            scaler.update()
            sums += torch.stack([loss.detach() * len(b), recon.detach().sum(), kl.detach().sum()])
            seen += len(b)
        train_loss, train_recon, train_kl = (sums / max(seen, 1)).tolist()

        model.eval()
        vsum = torch.zeros(2, device=device)
        with torch.inference_mode(), autocast_for(device, use_amp):
            for i, b in enumerate(va.slices(4096)):
                recon, kl, _ = _elbo_terms(model, b, val_eps[i * 4096 : i * 4096 + len(b)], 0.0)
                vsum += torch.stack([recon.sum(), kl.sum()])
        val_recon, val_kl = (vsum / max(va.n, 1)).tolist()
        val_elbo = val_recon + val_kl
        improved = epoch > warmup and (not np.isfinite(best) or val_elbo < best - 1e-4 * abs(best))
        if epoch <= warmup or improved:
            best_state = copy.deepcopy(model.state_dict())
            if improved:
                best, stale = val_elbo, 0
        else:
            stale += 1
        m = EpochMetrics(
            epoch, beta, train_loss, train_recon, train_kl, val_elbo, val_recon, val_kl,
            time.perf_counter() - t0, bool(improved),
        )
        history.append(m)
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {train_loss})")
        if callback is not None and callback(m) is False:
            break
        if stale >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return history
