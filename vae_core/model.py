"""The VAE: an MLP encoder q(z|x), an MLP decoder p(x|z) with one likelihood per column kind,
and the per-row estimators used for training and scoring.

Notation follows Kingma & Welling (2014), "Auto-Encoding Variational Bayes" (``mu``, ``logvar``,
``reparameterize``) and Burda et al. (2016), "Importance Weighted Autoencoders".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class Batch:
    """Tensors of one mini-batch (see :class:`vae_core.preprocess.Encoded`)."""

    num: torch.Tensor
    num_mask: torch.Tensor
    bools: torch.Tensor
    bool_mask: torch.Tensor
    cats: torch.Tensor
    cat_mask: torch.Tensor
    cat_novelty: torch.Tensor
    cond: Optional[torch.Tensor] = None  # (n, n_cond) conditioning inputs (time series: calendar, series id)

    def __len__(self) -> int:
        return self.num.shape[0]


@dataclass
class Decoded:
    """Parameters of p(x|z) for every column kind."""

    num_mean: torch.Tensor
    num_logvar: torch.Tensor
    bool_logits: torch.Tensor
    cat_logits: torch.Tensor


@dataclass(frozen=True)
class NetworkShape:
    """Everything that fixes a :class:`VAE`'s layers and likelihoods: what builds a fresh network
    and what rebuilds a saved one.

    Parameters
    ----------
    n_num, n_bool : int
        Numbers of numeric and boolean columns.
    cat_sizes : tuple of int
        Slots of each categorical column.
    latent_dim : int
        Size of z.
    hidden_dims : tuple of int
        Encoder widths; the decoder mirrors them. ``()`` gives a linear encoder and decoder.
    decoder_variance : {"feature", "row"}
        One learned log-variance per numeric column, or one predicted per row.
    min_logvar, max_logvar : float
        Clamp of the Gaussian log-variances.
    row_logvar_range : float, optional
        With ``"row"`` variance: how far a row's log-variance may move from its column's.
    student_dof : float, optional
        Student-t numeric likelihood with these degrees of freedom (None: Gaussian).
    dropout : float
        Dropout rate after each hidden layer while training (Srivastava et al. 2014); inactive in
        ``eval()`` mode, so scoring is deterministic.
    n_cond : int
        Conditioning inputs given to both the encoder and the decoder (a conditional VAE, Sohn et
        al. 2015); they are inputs, not modelled, so they add nothing to the likelihood. 0: none.
    """

    n_num: int
    n_bool: int
    cat_sizes: tuple[int, ...]
    latent_dim: int
    hidden_dims: tuple[int, ...]
    decoder_variance: str = "feature"
    min_logvar: float = -6.0
    max_logvar: float = 6.0
    row_logvar_range: Optional[float] = None
    student_dof: Optional[float] = None
    dropout: float = 0.0
    n_cond: int = 0

    def __post_init__(self):
        object.__setattr__(self, "cat_sizes", tuple(int(c) for c in self.cat_sizes))
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))

    SAVED = ("n_num", "n_bool", "cat_sizes", "latent_dim", "hidden_dims")  # the sizes, in config.json's "network"

    def sizes(self) -> dict:
        """The JSON-ready sizes saved as a model's ``"network"`` (the rest comes from its config)."""
        d = asdict(self)
        out = {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in self.SAVED}
        return {**out, "n_cond": self.n_cond} if self.n_cond else out


def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear + SiLU layers, each followed by dropout when ``dropout`` > 0 (none at 0, so the
    weights' names are those of models saved before dropout existed)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """Mixed-type VAE: Gaussian (learned variance), Bernoulli and categorical likelihoods.

    Parameters
    ----------
    shape : NetworkShape
        Column counts, layer sizes and likelihood settings.
    """

    def __init__(self, shape: NetworkShape):
        super().__init__()
        self.shape = shape
        n_num, n_bool, latent_dim, hidden_dims, dropout = (
            shape.n_num, shape.n_bool, shape.latent_dim, list(shape.hidden_dims), shape.dropout
        )
        self.n_num, self.n_bool, self.cat_sizes = n_num, n_bool, list(shape.cat_sizes)
        self.latent_dim = latent_dim
        self.row_variance = shape.decoder_variance == "row"
        self.min_logvar, self.max_logvar = shape.min_logvar, shape.max_logvar
        self.row_logvar_range = shape.row_logvar_range
        self.student_dof = shape.student_dof
        self.n_cond = shape.n_cond
        n_cat_slots = sum(self.cat_sizes)
        in_dim = 2 * n_num + 2 * n_bool + n_cat_slots + shape.n_cond
        self.encoder = _mlp([in_dim, *hidden_dims], dropout)
        enc_out = hidden_dims[-1] if hidden_dims else in_dim
        self.enc_mu = nn.Linear(enc_out, latent_dim)
        self.enc_logvar = nn.Linear(enc_out, latent_dim)
        self.decoder = _mlp([latent_dim + shape.n_cond, *reversed(hidden_dims)], dropout)
        dec_out = hidden_dims[0] if hidden_dims else latent_dim + shape.n_cond
        out_dim = n_num * (2 if self.row_variance else 1) + n_bool + n_cat_slots
        self.dec_out = nn.Linear(dec_out, out_dim)
        self.num_logvar = nn.Parameter(torch.zeros(n_num))
        offsets = torch.tensor([0, *self.cat_sizes], dtype=torch.long).cumsum(0)[:-1]
        self.register_buffer("cat_offsets", offsets, persistent=False)

    @property
    def widest_layer(self) -> int:
        """The most values one row produces in any layer (bounds memory while scoring)."""
        return max(m.out_features for m in self.modules() if isinstance(m, nn.Linear))

    # ---------------------------------------------------------------- q(z|x)
    def encoder_input(self, b: Batch) -> torch.Tensor:
        """Observed values (0 where missing), their masks, and one-hot categories."""
        parts = [b.num * b.num_mask, b.num_mask, b.bools * b.bool_mask, b.bool_mask]
        if self.cat_sizes:
            onehot = b.num.new_zeros(len(b), sum(self.cat_sizes))
            onehot.scatter_(1, b.cats + self.cat_offsets, b.cat_mask)
            parts.append(onehot)
        if self.n_cond:
            parts.append(b.cond)
        return torch.cat(parts, dim=1)

    def encode(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the Gaussian q(z|x)."""
        h = self.encoder(self.encoder_input(b))
        logvar = self.enc_logvar(h).clamp(-12.0, 8.0)
        return self.enc_mu(h), logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps (the reparameterisation trick, Kingma & Welling eq. 10)."""
        return mu + torch.exp(0.5 * logvar) * eps

    # ---------------------------------------------------------------- p(x|z)
    def decode(self, z: torch.Tensor, cond: Optional[torch.Tensor] = None) -> Decoded:
        """Likelihood parameters for z of shape (..., n, latent_dim), given the rows' ``cond``
        (n, n_cond) when the network is conditional."""
        if self.n_cond:
            z = torch.cat([z, cond.to(z.dtype).expand(*z.shape[:-1], self.n_cond)], dim=-1)
        out = self.dec_out(self.decoder(z)).float()
        i = self.n_num
        mean = out[..., :i]
        if self.row_variance:
            # optionally within +-row_logvar_range of the column's learned log-variance, which
            # limits how far the decoder can widen its variance for one row
            logvar = out[..., i : 2 * i]
            if self.row_logvar_range is not None:
                logvar = self.num_logvar.float() + self.row_logvar_range * torch.tanh(logvar)
            i *= 2
        else:
            logvar = self.num_logvar.float().expand_as(mean)
        logvar = logvar.clamp(self.min_logvar, self.max_logvar)
        bool_logits = out[..., i : i + self.n_bool]
        cat_logits = out[..., i + self.n_bool :]
        return Decoded(mean, logvar, bool_logits, cat_logits)

    def feature_nll(self, d: Decoded, b: Batch) -> torch.Tensor:
        """-log p(x_j | z) per column j, shape (..., n, n_features); 0 where x_j is missing."""
        z2 = (b.num - d.num_mean) ** 2 * torch.exp(-d.num_logvar)
        if self.student_dof:
            nu = self.student_dof  # Student-t with nu degrees of freedom and scale exp(logvar / 2)
            const = math.lgamma(nu / 2) - math.lgamma((nu + 1) / 2) + 0.5 * math.log(nu * math.pi)
            num_nll = const + 0.5 * d.num_logvar + 0.5 * (nu + 1) * torch.log1p(z2 / nu)
        else:
            num_nll = 0.5 * (LOG_2PI + d.num_logvar + z2)
        parts = [num_nll * b.num_mask]
        if self.n_bool:
            bern = F.binary_cross_entropy_with_logits(
                d.bool_logits, b.bools.expand_as(d.bool_logits), reduction="none"
            )
            parts.append(bern * b.bool_mask)
        for j, (off, size) in enumerate(zip(self.cat_offsets.tolist(), self.cat_sizes)):
            # the category axis first: a softmax over a short last axis (4-5 classes) is the slow
            # case of torch's CPU kernel; along a contiguous first axis it is 1.2-1.4x faster
            logp = torch.log_softmax(d.cat_logits[..., off : off + size].movedim(-1, 0).contiguous(), dim=0)
            target = b.cats[:, j].expand(logp.shape[1:]).unsqueeze(0)
            nll = -logp.gather(0, target).squeeze(0) * b.cat_mask[:, j] + b.cat_novelty[:, j]
            parts.append(nll.unsqueeze(-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # numeric only: no copy

    def feature_sq_error(self, d: Decoded, b: Batch) -> torch.Tensor:
        """Squared reconstruction error per column: (x - mean)^2, (x - p)^2, Brier score for categories."""
        parts = [(b.num - d.num_mean) ** 2 * b.num_mask]
        if self.n_bool:
            parts.append((b.bools - torch.sigmoid(d.bool_logits)) ** 2 * b.bool_mask)
        for j, (off, size) in enumerate(zip(self.cat_offsets.tolist(), self.cat_sizes)):
            p = torch.softmax(d.cat_logits[..., off : off + size], dim=-1)
            p_true = p.gather(-1, b.cats[:, j : j + 1]).squeeze(-1)
            brier = 1.0 - 2.0 * p_true + (p**2).sum(-1)
            brier = torch.where(b.cat_novelty[:, j] > 0, 2.0, brier * b.cat_mask[:, j])  # 2: the worst Brier score
            parts.append(brier.unsqueeze(-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def observed(self, b: Batch) -> torch.Tensor:
        """Mask of observed values per column, shape (n, n_features)."""
        return torch.cat([b.num_mask, b.bool_mask, torch.maximum(b.cat_mask, (b.cat_novelty > 0).float())], dim=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension (Kingma & Welling, appendix B)."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)


@dataclass
class RowScores:
    """Per-row estimates for one batch."""

    neg_elbo: torch.Tensor  # (n,)
    nll_iwae: torch.Tensor  # (n,)
    recon_error: torch.Tensor  # (n,)
    kl: torch.Tensor  # (n,)
    feature_nll: torch.Tensor  # (n, n_features), mean over the S ELBO samples
    feature_sq_error: torch.Tensor  # (n, n_features) at z = mu
    feature_nll_iw: torch.Tensor  # (n, n_features): E under the normalised importance weights of the K draws


def score_rows(model: VAE, b: Batch, eps: torch.Tensor, elbo_samples: int, iwae_samples: int) -> RowScores:
    """ELBO, IWAE and reconstruction estimates for each row of ``b``.

    ``eps`` (K, latent_dim) holds standard-normal draws shared by every row ("common random
    numbers"): each row's estimate is unbiased, and it does not depend on which other rows share
    its batch, so scores are reproducible however the data is split.

    - neg_elbo = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), the expectation over the first S draws and
      the KL in closed form (Kingma & Welling eq. 10).
    - nll_iwae = -log (1/K sum_k p(x, z_k) / q(z_k|x)) over the first K draws (Burda et al. eq. 8).
    - recon_error = mean over observed columns of the squared error at z = mu.
    - feature_nll_iw = sum_k w_k (-log p(x_j|z_k)) with w = softmax(log_w) over the K draws: each
      column's share of nll_iwae's reconstruction part (the rest of nll_iwae is a row-level rate).
    """
    mu, logvar = model.encode(b)
    mu, logvar = mu.float(), logvar.float()
    z = model.reparameterize(mu.unsqueeze(0), logvar.unsqueeze(0), eps.unsqueeze(1))  # (K, n, L)
    fnll = model.feature_nll(model.decode(z, b.cond), b)  # (K, n, F)
    kl = gaussian_kl(mu, logvar).sum(-1)
    log_px_z = -fnll.sum(-1)  # (K, n)
    log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
    log_qz = -0.5 * (eps.unsqueeze(1) ** 2 + LOG_2PI + logvar.unsqueeze(0)).sum(-1)
    log_w = log_px_z + log_pz - log_qz
    nll_iwae = -(torch.logsumexp(log_w[:iwae_samples], dim=0) - math.log(min(iwae_samples, len(eps))))
    weights = torch.softmax(log_w[:iwae_samples], dim=0)  # (K, n)
    feat_iw = (weights.unsqueeze(-1) * fnll[:iwae_samples]).sum(0)
    feat = fnll[:elbo_samples].mean(0)
    sq = model.feature_sq_error(model.decode(mu, b.cond), b)
    observed = model.observed(b)
    recon = sq.sum(-1) / observed.sum(-1).clamp_min(1.0)
    return RowScores(feat.sum(-1) + kl, nll_iwae, recon, kl, feat, sq, feat_iw)
