"""Analytic checks of the estimators: KL, and ELBO >= IWAE >= exact -log p on a linear-Gaussian VAE."""
import math

import torch

from vae_core.model import VAE, Batch, NetworkShape, gaussian_kl, score_rows
from vae_core.preprocess import Encoded


def test_kl_of_identical_gaussians_is_zero():
    mu = torch.zeros(5, 3)
    logvar = torch.zeros(5, 3)
    assert torch.all(gaussian_kl(mu, logvar) == 0)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p))


def _linear_gaussian_vae(d=4, latent=2, sigma2=0.3, seed=0):
    """A linear decoder x = W z + b + noise, and a linear encoder near the exact posterior: its
    mean shifted by 0.3 and its variance the inflated diagonal of the posterior covariance, so
    the ELBO is not tight."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, latent, generator=g)
    b = torch.randn(d, generator=g)
    vae = VAE(NetworkShape(d, 0, (), latent, (), "feature", min_logvar=-10, max_logvar=10))
    post_cov = torch.linalg.inv(torch.eye(latent) + W.T @ W / sigma2)
    A = post_cov @ W.T / sigma2
    with torch.no_grad():
        vae.dec_out.weight.copy_(W)
        vae.dec_out.bias.copy_(b)
        vae.num_logvar.fill_(math.log(sigma2))
        vae.enc_mu.weight.zero_()
        vae.enc_mu.weight[:, :d] = A  # encoder input is [x * mask, mask]
        vae.enc_mu.bias.copy_(-A @ b + 0.3)
        vae.enc_logvar.weight.zero_()
        vae.enc_logvar.bias.copy_(torch.log(torch.diagonal(post_cov)) + 0.5)
    exact = torch.distributions.MultivariateNormal(b, W @ W.T + sigma2 * torch.eye(d))
    return vae.eval(), exact


def _batch(x: torch.Tensor) -> Batch:
    return Batch(*(torch.from_numpy(a) for a in Encoded.numeric(x.numpy()).arrays()))


@torch.no_grad()
def test_elbo_bounds_iwae_bounds_exact_likelihood():
    vae, exact = _linear_gaussian_vae()
    x = exact.sample(torch.Size([200]))
    nll_exact = -exact.log_prob(x)
    b = _batch(x)
    eps = torch.randn(4000, vae.latent_dim, generator=torch.Generator().manual_seed(1))
    r = score_rows(vae, b, eps, elbo_samples=4000, iwae_samples=4000)
    gap_elbo = (r.neg_elbo - nll_exact)
    gap_iwae = (r.nll_iwae - nll_exact)
    # Jensen: -ELBO >= -log p >= ... and IWAE is in between, up to Monte Carlo error
    assert gap_elbo.mean() > 0.1, "the diagonal posterior should leave a real ELBO gap"
    assert torch.all(gap_elbo > -0.02)
    assert torch.all(r.neg_elbo >= r.nll_iwae - 0.02)
    assert gap_iwae.abs().mean() < 0.02
    assert gap_iwae.mean() < gap_elbo.mean() / 5


@torch.no_grad()
def test_iwae_approaches_exact_as_k_grows():
    vae, exact = _linear_gaussian_vae(seed=3)
    x = exact.sample(torch.Size([300]))
    nll_exact = -exact.log_prob(x)
    b = _batch(x)
    errors = []
    for k in (1, 10, 100, 4000):
        # every row shares the K draws, so average over repetitions to estimate E[IWAE_K]
        reps = [
            score_rows(vae, b, torch.randn(k, vae.latent_dim, generator=torch.Generator().manual_seed(1000 * k + r)), k, k)
            for r in range(15 if k < 4000 else 1)
        ]
        errors.append(float(torch.stack([(r.nll_iwae - nll_exact).mean() for r in reps]).mean()))
    # IWAE_K is a lower bound of log p whose gap shrinks with K (Burda et al., theorem 1)
    assert errors[0] > errors[1] > errors[2] > -0.03
    assert abs(errors[3]) < 0.03 < errors[0]


@torch.no_grad()
def test_missing_values_are_left_out_of_the_likelihood():
    vae, exact = _linear_gaussian_vae()
    x = exact.sample(torch.Size([50]))
    eps = torch.randn(8, vae.latent_dim, generator=torch.Generator().manual_seed(0))
    x_missing = x.clone()
    x_missing[:, 0] = float("nan")
    full = score_rows(vae, _batch(x), eps, 8, 8)
    part = score_rows(vae, _batch(x_missing), eps, 8, 8)
    assert torch.all(part.feature_nll[:, 0] == 0)
    assert torch.all(torch.isfinite(part.neg_elbo))
    assert not torch.allclose(full.neg_elbo, part.neg_elbo)


@torch.no_grad()
def test_student_t_likelihood_matches_torch_distributions():
    from vae_core.model import Decoded

    vae = VAE(NetworkShape(3, 0, (), 2, (), "feature", student_dof=4.0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g)
    mean, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    d = Decoded(mean, logvar, torch.zeros(5, 0), torch.zeros(5, 0))
    nll = vae.feature_nll(d, _batch(x))
    expected = -torch.distributions.StudentT(4.0, mean, torch.exp(0.5 * logvar)).log_prob(x)
    torch.testing.assert_close(nll, expected)


@torch.no_grad()
def test_category_nll_is_the_log_softmax_of_the_true_class_and_the_novelty_charge():
    """The category term (computed with the class axis first, for speed) equals
    -log softmax(logits)[true class] over the last axis, per draw and row; an unseen category
    (novelty) adds its charge and a missing one counts 0."""
    from vae_core.model import Decoded

    sizes = (4, 5)
    vae = VAE(NetworkShape(0, 0, sizes, 2, (), "feature"))
    g = torch.Generator().manual_seed(0)
    k, n = 3, 7
    logits = torch.randn(k, n, sum(sizes), generator=g)
    cats = torch.stack([torch.randint(0, s, (n,), generator=g) for s in sizes], dim=1)
    mask = torch.ones(n, len(sizes))
    mask[2, 0] = 0.0  # a missing value
    novelty = torch.zeros(n, len(sizes))
    novelty[4, 1] = 3.5  # an unseen category's charge
    b = Batch(torch.zeros(n, 0), torch.zeros(n, 0), torch.zeros(n, 0), torch.zeros(n, 0), cats, mask, novelty)
    d = Decoded(torch.zeros(k, n, 0), torch.zeros(k, n, 0), torch.zeros(k, n, 0), logits)
    nll = vae.feature_nll(d, b)
    assert nll.shape == (k, n, len(sizes))
    for j, (off, size) in enumerate(zip((0, sizes[0]), sizes)):
        logp = torch.log_softmax(logits[..., off : off + size], dim=-1)
        expected = -logp.gather(-1, cats[:, j].expand(k, n).unsqueeze(-1)).squeeze(-1) * mask[:, j] + novelty[:, j]
        torch.testing.assert_close(nll[..., j], expected, rtol=0, atol=1e-6)
    assert torch.all(nll[:, 2, 0] == 0)
