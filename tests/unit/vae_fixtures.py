"""Helpers shared by the vae_core unit tests (a module name of its own: `conftest` is ambiguous
when several test folders are collected together)."""
import numpy as np
import pandas as pd

FAST = dict(max_epochs=15, kl_warmup_epochs=3, elbo_samples=4, iwae_samples=8)


def mixed_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Correlated numeric, integer, boolean, categorical and constant columns with a few NaNs."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "amount": 100 + 20 * z + rng.normal(scale=2, size=n),
            "fee": 2.0 + 0.4 * z + rng.normal(scale=0.05, size=n),
            "items": rng.poisson(3, size=n),  # int64
            "is_online": z + rng.normal(scale=0.3, size=n) > 0,
            "channel": np.where(z > 0.5, "web", np.where(z < -0.5, "store", "phone")),
            "region": pd.Categorical(rng.choice(["north", "south"], size=n)),
            "version": np.ones(n),  # constant
        },
        index=[f"r{i}" for i in range(n)],
    )
    frame.loc[frame.index[::37], "fee"] = np.nan
    frame.loc[frame.index[::53], "channel"] = None
    return frame


def assert_scores_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, scores equal up to float rounding (BLAS sums in another order when batches
    differ); p-values are a step function of the score, so they may move by one step."""
    assert a.index.equals(b.index) and list(a.columns) == list(b.columns)
    cols = ["neg_elbo", "nll_iwae", "recon_error", "anomaly_score"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["p_value"], b["p_value"], atol=0.02)
    assert (a["is_anomaly"] != b["is_anomaly"]).mean() < 0.01
