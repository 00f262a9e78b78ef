"""Windows with holes: the flagged past hidden from a causal score, and missing-data injection.

A causal point score comes from the window that ends at the point (:mod:`vae_core.series_scores`).
When that window also holds an earlier anomaly, the anomaly's nats reach the point through the
window's rate: after a burst, the next ``window - 1`` normal points are flagged too (on the demo's
retrained sensors, 26 of one model's 47 false flags were the 26 points just after its vibration
burst). With ``TimeSeriesConfig.mask_flagged_past`` a point is scored from the window ending at it
with the earlier points that the ordinary causal score flags marked missing, as Donut (Xu et al.
2018) excludes anomalous points from its windows; the point itself is kept. The flags that decide
the mask are those of the unmasked causal score, so a point depends on the ``2 x (window - 1)``
points before it and on nothing later: a batch scored after that much context equals one long
series. The thresholds are the unmasked causal mode's, which the held-out tail (with almost
nothing to mask) calibrates.

A model trained on whole windows scores such holed windows poorly, so ``missing_injection``
(:data:`MASKED_INJECTION` by default with the mask) holes them in training: each epoch, a share of
the training windows loses one random block of 1 to ``window // 2`` grid points, masked out of the
encoder's input and the likelihood as a missing value is (Donut's missing-data injection).
The trade-off (flag precision up, NAB AUROC down) is measured in ``benchmarks/README.md``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from .engine import Engine
from .model import Batch
from .preprocess import Encoded
from .seeds import torch_generator
from .series_scores import chunk_size, window_terms


def hidden_past(flagged: np.ndarray, window: int) -> np.ndarray:
    """(L - W + 1, W) bool: which positions of each window (by start) are hidden, the flagged
    points before its last one."""
    hide = np.lib.stride_tricks.sliding_window_view(flagged.astype(bool), window).copy()
    hide[:, -1] = False
    return hide


def rescore_masked_past(
    engine: Engine, values: np.ndarray, window: int, cond: Optional[np.ndarray], flagged: np.ndarray,
    terms: dict[str, np.ndarray], feat: np.ndarray, feat_sq: np.ndarray,
) -> int:
    """Replace, in place, the causal terms of each point whose window holds flagged earlier points
    by its terms in that window with them marked missing; returns how many points were rescored.

    Parameters
    ----------
    engine : Engine
        The fitted network.
    values : array of shape (L, d)
        The series on its grid, standardised, NaN where missing.
    window : int
        W.
    cond : array of shape (L - W + 1, n_cond), optional
        Each window's conditioning inputs.
    flagged : bool array of shape (L,)
        The grid points the unmasked causal score flags.
    terms, feat, feat_sq
        :func:`~vae_core.series_scores.score_series` output (``last_only=True``) for ``values``.
    """
    L, d = values.shape
    W = window
    if L < W:
        return 0
    hide = hidden_past(flagged, W)
    rescored = 0
    for at, enc in holed_windows(values, W, cond, hide):
        t, fnll, sq = window_terms(engine.evaluate(enc, True, np.float32), enc.num_mask.reshape(len(at), W, d))
        for k in terms:
            terms[k][at] = t[k][:, -1]
        feat[at], feat_sq[at] = fnll[:, -1], sq[:, -1]
        rescored += len(at)
    return rescored


def holed_windows(values: np.ndarray, window: int, cond: Optional[np.ndarray],
                  hide: np.ndarray) -> Iterator[tuple[np.ndarray, Encoded]]:
    """The windows (by start) that hide something (``hide``: :func:`hidden_past`), in chunks: the
    point each ends at, and the windows encoded with the hidden points marked missing."""
    d, W = values.shape[1], window
    todo = np.flatnonzero(hide.any(1))
    step = chunk_size(W * d)
    for lo in range(0, len(todo), step):
        idx = todo[lo : lo + step]
        win = values[idx[:, None] + np.arange(W)]  # (n, W, d), a copy
        win[hide[idx]] = np.nan
        yield idx + W - 1, Encoded.numeric(win.reshape(len(idx), W * d), None if cond is None else cond[idx])


#: The missing-data injection that ``mask_flagged_past`` implies unless ``missing_injection`` is set:
#: on the kinds suite, the masked causal score without it flagged less precisely than the unmasked
#: one (0.831 vs 0.867); with half the windows holed, 0.962 (benchmarks/README.md).
MASKED_INJECTION = 0.5


def injection_share(missing_injection: Optional[float], mask_flagged_past: bool) -> float:
    """The share of training windows that get a hole (``TimeSeriesConfig.missing_injection``)."""
    if missing_injection is not None:
        return missing_injection
    return MASKED_INJECTION if mask_flagged_past else 0.0


def missing_injection(share: float, window: int, width: int, seed: int,
                      device: torch.device) -> Callable[[Batch], Batch]:
    """A training-batch transform: each window (a row of ``window * width`` values, position-major)
    loses, with probability ``share``, one block of 1 to ``window // 2`` consecutive positions,
    drawn from the ``"missing_injection"`` stream of ``seed`` on ``device`` (the batches')."""
    longest = max(1, window // 2)
    generator = torch_generator(seed, "missing_injection", device)

    def inject(b: Batch) -> Batch:
        n, dev = len(b), b.num.device
        pick = torch.rand(n, generator=generator, device=dev) < share
        length = torch.randint(1, longest + 1, (n,), generator=generator, device=dev)
        start = (torch.rand(n, generator=generator, device=dev) * (window - length + 1)).long()
        pos = torch.arange(window, device=dev)
        hole = pick[:, None] & (pos >= start[:, None]) & (pos < (start + length)[:, None])
        keep = (~hole).repeat_interleave(width, dim=1).to(b.num_mask.dtype)
        return replace(b, num_mask=b.num_mask * keep)

    return inject
