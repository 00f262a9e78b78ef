"""The part both detectors share: building, training and evaluating a VAE on encoded arrays,
and saving it as weights + JSON (never a pickle)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .config import VAEConfig
from .device import DeviceData, autocast_for, select_device
from .model import VAE, Batch, NetworkShape, score_rows
from .preprocess import Encoded
from .seeds import stream_seed, torch_generator
from .train import EpochCallback, EpochMetrics, train_vae

FORMAT = "vae-anomaly/1"
SCORE_ELEMENTS = 1 << 23  # bound on K * rows * (widest layer) held at once while scoring: ~32 MiB a tensor
#: The bound on a CPU: tensors of ~8 MiB stay in cache (2,048-row batches of the pipeline
#: benchmark's model scored 1.3x faster than 8,192-row ones, with bit-identical scores).
CPU_SCORE_ELEMENTS = 1 << 21


def auto_dims(n_features: int, config: VAEConfig) -> tuple[int, list[int]]:
    """Latent size and hidden widths from the input width, unless the config sets them."""
    latent = config.latent_dim or int(np.clip(n_features // 4, 2, 16))
    hidden = config.hidden_dims
    if hidden is None:
        hidden = [int(np.clip(2 * n_features, 32, 256)), int(np.clip(n_features, 16, 128))]
    return latent, list(hidden)


def network_shape(n_num: int, n_bool: int, cat_sizes: list[int], config: VAEConfig, n_cond: int = 0) -> NetworkShape:
    """The network for these columns under ``config`` (layer sizes from :func:`auto_dims`), with
    ``n_cond`` conditioning inputs."""
    latent, hidden = auto_dims(n_num + n_bool + len(cat_sizes), config)
    return NetworkShape(
        n_num, n_bool, tuple(cat_sizes), latent, tuple(hidden), config.decoder_variance, config.min_logvar,
        config.max_logvar, config.row_logvar_range, config.student_dof, config.dropout, n_cond,
    )


def build_model(n_num: int, n_bool: int, cat_sizes: list[int], config: VAEConfig, n_cond: int = 0) -> VAE:
    """A freshly initialised VAE; the initialisation depends on ``config.seed`` alone."""
    shape = network_shape(n_num, n_bool, cat_sizes, config, n_cond)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.seed, "init"))
        return VAE(shape)


def iwae_rate(nll_iwae: np.ndarray, kl: np.ndarray, rate_weight: float) -> np.ndarray:
    """The ``"iwae_rate"`` anomaly score: -log p(x) (IWAE) plus ``rate_weight`` times the rate.

    The rate KL(q(z|x) || p(z)) is the information, in nats, that the encoder spends on the row
    (Alemi et al. 2018, "Fixing a Broken ELBO"). A row the encoder must place far out in the
    prior's tail is unusual even when the decoder then reconstructs it well, e.g. anomalies that
    form their own cluster in unlabelled training rows, or that a flexible decoder reconstructs.
    -ELBO already counts the rate once; ``rate_weight`` = 2 scores like a beta = 3 ELBO.
    """
    return nll_iwae + rate_weight * kl


def robust_scale(x: np.ndarray) -> list[float]:
    """``[median, IQR]`` of ``x`` (the IQR floored at 1e-12), JSON-ready: the scale of a robust z-score."""
    q1, med, q3 = np.percentile(np.asarray(x, np.float64), [25, 50, 75])
    return [float(med), float(max(q3 - q1, 1e-12))]


def iwae_rate_recon(iwae_rate_score: np.ndarray, recon_error: np.ndarray, scales: dict[str, list[float]]) -> np.ndarray:
    """The ``"iwae_rate_recon"`` anomaly score: the robust z-score of ``iwae_rate`` plus that of
    ``recon_error``, each ``(x - median) / IQR`` with the ``scales`` (:func:`robust_scale`) of the
    held-out rows of ``fit``.

    The two see different anomalies: a likelihood in nats is dominated by the columns the decoder
    is sure of (a small variance makes a small residual cost many nats), and the rate by rows the
    encoder places far out; the mean squared residual on the standardised scale weighs every column
    alike, and catches a row that is off in columns the decoder models loosely. The scales are fixed
    at fit time, so a row's score does not depend on the rows scored with it.
    """
    (m_s, s_s), (m_r, s_r) = scales["iwae_rate"], scales["recon_error"]
    return (iwae_rate_score - m_s) / s_s + (recon_error - m_r) / s_r


class Engine:
    """A VAE with its config and device; fits and scores :class:`Encoded` arrays."""

    def __init__(self, model: VAE, config: VAEConfig, device: Optional[torch.device] = None):
        self.model = model
        self.config = config
        self.device = device or select_device(config.device)
        self.model.to(self.device).eval()

    def fit(self, train: Encoded, val: Encoded, callback: Optional[EpochCallback] = None,
            augment: Optional[Callable[[Batch], Batch]] = None) -> list[EpochMetrics]:
        """Train in place (``augment``: a training-batch transform); returns the per-epoch history."""
        return train_vae(self.model, train, val, self.config, self.device, callback, augment)

    def noise(self) -> torch.Tensor:
        """The fixed standard-normal draws shared by all rows at scoring time."""
        k = max(self.config.elbo_samples, self.config.iwae_samples)
        gen = torch_generator(self.config.seed, "score_noise")
        return torch.randn(k, self.model.latent_dim, generator=gen)

    @torch.inference_mode()
    def evaluate(self, enc: Encoded, feature_detail: bool = True, detail_dtype: type = np.float64) -> dict[str, np.ndarray]:
        """Per-row neg_elbo, nll_iwae, recon_error, kl and (optionally) per-feature NLL / squared error.

        Rows are scored in batches sized so that K x rows x features stays bounded, so memory
        does not grow with the number of rows. The per-row figures are float64; the per-feature
        ones ``detail_dtype`` (float32, as computed, saves a copy of three rows x features arrays
        for a caller that sums them in float64 itself). Each batch is copied into arrays allocated
        once, so its tensors are freed at once and later batches' intermediates reuse their memory
        rather than asking for fresh pages (timings in benchmarks/README.md).
        """
        cfg = self.config
        eps = self.noise()
        k = len(eps)
        bound = CPU_SCORE_ELEMENTS if self.device.type == "cpu" else SCORE_ELEMENTS
        rows = int(max(64, min(cfg.score_batch_size, bound // (k * self.model.widest_layer))))
        data = DeviceData(enc, self.device, resident_bytes=0)
        eps = eps.to(self.device)
        n, width = len(enc), self.model.n_num + self.model.n_bool + len(self.model.cat_sizes)
        out = {key: np.empty(n) for key in ("neg_elbo", "nll_iwae", "recon_error", "kl")}
        if feature_detail:
            out.update({key: np.empty((n, width), detail_dtype) for key in ("feature_nll", "feature_sq_error", "feature_nll_iw")})
        use_amp = self.device.type == "cuda" and cfg.mixed_precision
        lo = 0
        for b in data.slices(rows):
            with autocast_for(self.device, use_amp):
                r = score_rows(self.model, b, eps, cfg.elbo_samples, cfg.iwae_samples)
            for key, dest in out.items():
                dest[lo : lo + len(b)] = getattr(r, key).float().cpu().numpy()
            lo += len(b)
        return out

    @torch.inference_mode()
    def reconstruct(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """Mean and log-variance of p(x | z = mu(x)) for the numeric columns, arrays (n, n_num)."""
        data = DeviceData(enc, self.device, resident_bytes=0)
        mean, logvar = np.empty((len(enc), self.model.n_num)), np.empty((len(enc), self.model.n_num))
        lo = 0
        for b in data.slices(self.config.score_batch_size):  # into arrays allocated once, as in evaluate()
            mu, _ = self.model.encode(b)
            d = self.model.decode(mu.float(), b.cond)
            mean[lo : lo + len(b)] = d.num_mean.float().cpu().numpy()
            logvar[lo : lo + len(b)] = d.num_logvar.float().cpu().numpy()
            lo += len(b)
        return mean, logvar

    # ---------------------------------------------------------------- persistence
    def state(self) -> dict:
        """JSON-ready sizes of the network (:meth:`NetworkShape.sizes`)."""
        return self.model.shape.sizes()

    def save_weights(self, path: Path) -> None:
        """Weights only, loadable with ``weights_only=True``."""
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)

    @classmethod
    def load(cls, state: dict, config: VAEConfig, weights: Path, device: Optional[str] = None) -> "Engine":
        """Rebuild the network from ``state`` (:meth:`state`) and load ``weights`` safely."""
        sized = config.model_copy(update={"latent_dim": state["latent_dim"], "hidden_dims": state["hidden_dims"]})
        model = VAE(network_shape(state["n_num"], state["n_bool"], state["cat_sizes"], sized, state.get("n_cond", 0)))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return cls(model, config, select_device(device or config.device))


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """Read a JSON file written by :func:`write_json`."""
    with open(path) as f:
        return json.load(f)
