"""Per-point scores of a series from the windows that cover it.

Each window of ``W`` points is one row of the VAE, so its estimates are window-level: the bound
on ``-log p(window)`` and the rate. Dividing them evenly over the window's points (as the first
version did) gives one bad point's nats to its 2W-1 neighbours, and the flags smear. Here a
point's score comes from its own per-position terms:

- ``nll_iwae``: the point's reconstruction term under the importance weights of the K draws
  (:attr:`~vae_core.model.RowScores.feature_nll_iw`), plus the window's remaining part of the
  IWAE bound (its rate, in effect) shared evenly over the W positions. The W shares of one
  window sum back to that window's ``nll_iwae``.
- ``neg_elbo``: the point's expected NLL over the S ELBO draws plus KL / W.
- ``recon_error``: the point's squared error at z = mu, averaged over its observed columns.
- ``kl``: KL / W, the rate's share per point (``iwae_rate`` adds ``rate_weight`` times it).

All are in nats (``recon_error``: squared standardised units) per point, as before. A point's
value is the mean of its terms over the windows that cover it (``point_score="mean"``), or its
term in the one window that ends at it (``"last"``: the causal mode, past points only).
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from .engine import Engine
from .preprocess import Encoded

#: Windows are scored in chunks of at most this many values (windows x W x d): 16 MiB per float32
#: array, which the allocator hands back chunk after chunk. At 20,000 windows a chunk of SMD's
#: 38-column windows was 97 MiB per array, fresh pages every time, and scoring SMD machine-2-1 took
#: 18-23 s instead of 12-15 s (the same scores; benchmarks/README.md).
CHUNK_VALUES = 1 << 22
TERMS = ("neg_elbo", "nll_iwae", "recon_error", "kl")


#: Most the balanced rate weight may reach. The ratio of spreads grows without bound as the
#: encoder's rate stops varying (a nearly collapsed encoder: the demo's retrained sensors model,
#: 0.23 nats of rate per window, gave 277), and a window's rate is shared by all its points, so
#: at such a weight the rate of each window that holds one anomaly flagged the window's normal
#: points too (228 of that model's 263 false flags lay within 31 points after an anomaly).
#: 64 keeps every NAB and kinds model's own ratio (30-60); a fixed 128 lost kinds recall.
MAX_BALANCED_RATE_WEIGHT = 64.0


def balanced_rate_weight(nll_iwae: np.ndarray, kl: np.ndarray, fallback: float = 2.0) -> float:
    """The rate weight at which ``rate_weight * kl`` spreads as much as ``nll_iwae``: the ratio of
    their interquartile ranges over held-out points (``fallback`` when the rate does not vary),
    at most :data:`MAX_BALANCED_RATE_WEIGHT`.

    A point's rate share is its windows' rate / W, a window-level quantity that moves slowly along
    the series; weighted so, it carries an anomaly over the windows that hold it (NAB's long
    labelled windows) while a spike's own NLL still peaks at the spike. A well-fitted model's
    ratio is 30-60 (NAB, the kinds suite), a briefly trained one's about 3, where a weight of 8
    already drowned the NLL (benchmarks/README.md).
    """
    spread = lambda x: float(np.subtract(*np.percentile(x, [75, 25]))) if len(x) else 0.0  # noqa: E731
    s_nll, s_kl = spread(nll_iwae), spread(kl)
    weight = s_nll / s_kl if s_kl > 0 else fallback
    return min(weight, MAX_BALANCED_RATE_WEIGHT) if np.isfinite(weight) else fallback


def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(n_windows, window * d) flattened windows and their start positions."""
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (L-W+1, d, W)
    starts = np.arange(0, view.shape[0], stride)
    flat = view[starts].transpose(0, 2, 1).reshape(len(starts), -1)
    return flat, starts


def window_chunks(values: np.ndarray, window: int, cond: Optional[np.ndarray] = None) -> Iterator[tuple[np.ndarray, Encoded]]:
    """Every window of ``values`` (L, d) in order, in chunks of at most :data:`CHUNK_VALUES` values:
    each chunk's start positions and its windows encoded (with their rows of ``cond``). A chunk's
    windows are copied out of ``values`` only when it is scored."""
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (L-W+1, d, W), a view
    n, step = view.shape[0], chunk_size(window * values.shape[1])
    for lo in range(0, n, step):
        flat = view[lo : lo + step].transpose(0, 2, 1).reshape(-1, window * values.shape[1])
        yield np.arange(lo, lo + len(flat)), Encoded.numeric(flat, None if cond is None else cond[lo : lo + step])


def chunk_size(width: int) -> int:
    """How many rows of ``width`` values make a chunk (:data:`CHUNK_VALUES`)."""
    return max(1, CHUNK_VALUES // max(1, width))


def window_terms(r: dict[str, np.ndarray], seen: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-position terms of windows scored by :meth:`Engine.evaluate` (``feature_detail=True``).

    Parameters
    ----------
    r : dict
        The evaluate() results of ``n`` windows.
    seen : array of shape (n, W, d)
        1 where a value is observed.

    Returns
    -------
    terms : dict of arrays (n, W)
        :data:`TERMS`, each window's share for each of its positions.
    feature_nll, feature_sq : arrays (n, W, d)
        Per-value NLL (mean over the ELBO draws) and squared residual, for the explanations.
    """
    n, W, d = seen.shape
    fnll = r["feature_nll"].reshape(n, W, d)
    iw = r["feature_nll_iw"].reshape(n, W, d)
    sq = r["feature_sq_error"].reshape(n, W, d)
    f64 = np.float64  # the per-value terms may come as float32 (Engine.evaluate's detail_dtype): sum in float64
    rest = (r["nll_iwae"] - iw.sum((1, 2), dtype=f64)) / W  # the bound's window-level part, shared evenly
    share_kl = np.repeat((r["kl"] / W)[:, None], W, axis=1)
    terms = {
        "neg_elbo": fnll.sum(-1, dtype=f64) + share_kl,
        "nll_iwae": iw.sum(-1, dtype=f64) + rest[:, None],
        "recon_error": sq.sum(-1, dtype=f64) / np.maximum(seen.sum(-1), 1),
        "kl": share_kl,
    }
    return terms, fnll, sq


def score_series(
    engine: Engine, values: np.ndarray, window: int, last_only: bool, cond: Optional[np.ndarray] = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-grid-point terms of one series from all its windows.

    Parameters
    ----------
    engine : Engine
        The fitted network.
    values : array of shape (L, d)
        The series on its grid, standardised, NaN where missing (``L >= window``).
    window : int
        W.
    last_only : bool
        Each point from the window that ends at it (the first window also gives the W - 1 points
        before it, which no window ends at), else the mean over every window covering it.
    cond : array of shape (L - W + 1, n_cond), optional
        The conditioning inputs of each window.

    Returns
    -------
    terms : dict of arrays (L,)
        :data:`TERMS` per grid point.
    feature_nll, feature_sq : arrays (L, d)
        Per-value NLL and squared residual per grid point.
    """
    L, d = values.shape
    W = window
    acc = {k: np.zeros(L) for k in TERMS}
    feat, feat_sq, cover = np.zeros((L, d)), np.zeros((L, d)), np.zeros(L)
    for st, enc in window_chunks(values, W, cond):
        terms, fnll, sq = window_terms(engine.evaluate(enc, True, np.float32), enc.num_mask.reshape(len(st), W, d))
        take = np.ones((len(st), W))
        if last_only:
            take[:, :-1] = 0.0
            take[st == 0] = 1.0
        idx = (st[:, None] + np.arange(W)).ravel()
        for k, v in terms.items():
            acc[k] += np.bincount(idx, weights=(v * take).ravel(), minlength=L)
        for j in range(d):
            feat[:, j] += np.bincount(idx, weights=(fnll[..., j] * take).ravel(), minlength=L)
            feat_sq[:, j] += np.bincount(idx, weights=(sq[..., j] * take).ravel(), minlength=L)
        cover += np.bincount(idx, weights=take.ravel(), minlength=L)
    return {k: v / cover for k, v in acc.items()}, feat / cover[:, None], feat_sq / cover[:, None]
