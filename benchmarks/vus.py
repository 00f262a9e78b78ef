"""VUS-PR: the volume under the range-precision-recall surface (Paparrizos et al. 2022).

"Volume Under the Surface: a new accuracy evaluation measure for time-series anomaly
detection" (VLDB 2022) is the headline metric of TSB-AD. It softens the edges of each labelled
anomaly range with a *buffer* and averages a range-based average precision over every buffer
length ``w = 0 .. L``. For one buffer length ``w`` (``h = w // 2`` points on each side):

- **buffered labels**: each point up to ``h`` steps before a range's first point or after its
  last point gets ``sqrt(1 - d / w)`` (``d`` = steps to that range's edge); the values a point
  gets from several ranges add up, and every label is capped at 1 (a labelled point is 1);
- **buffered ranges**: ``[start - h, end + h]`` of every labelled range, clipped to the series,
  merged where they overlap;
- at a threshold ``t`` a point is flagged when ``s >= t``. With ``P`` labelled points, ``TP0``
  of them flagged and ``A`` = the sum of the buffer labels of the flagged unlabelled points,
  ``TP = TP0 + A``; recall = ``min(TP / (P + A / 2), 1)`` times the fraction of buffered ranges
  holding a flagged point (existence); precision = ``TP / (points flagged)``;
- the range-AP is ``sum_k (recall_k - recall_(k-1)) * precision_k`` over the thresholds from
  the highest score down (recall_0 = 0).

VUS-PR is the mean of the range-AP over ``w = 0 .. L``. With ``w = 0`` there is no buffer and
the recall is point recall times event recall; for a single labelled range at every distinct
score this is exactly sklearn's ``average_precision_score``.

TSB-AD evaluates 250 thresholds, the scores at ranks ``linspace(0, n - 1, 250)`` of the sorted
scores (the default here, ``n_thresholds=250``); ``n_thresholds=None`` uses every distinct
score. This module follows the definition as TSB-AD computes it (its
``RangeAUC_volume_opt``), vectorised: per buffer length one pass over the points and one
``searchsorted`` for all thresholds, no loop over thresholds.
"""

from __future__ import annotations

import numpy as np

from .metrics import _validate, segments

__all__ = ["buffered_labels", "buffered_ranges", "range_pr_auc", "range_pr_surface", "vus_pr"]

#: Thresholds TSB-AD evaluates (``thre=250``).
TSB_AD_THRESHOLDS = 250


def buffered_labels(y, buffer: int) -> np.ndarray:
    """Labels with a square-root ramp of ``buffer // 2`` points on both sides of every range.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    buffer : int
        Buffer length ``w``; a point ``d`` steps outside a range gets ``sqrt(1 - d / w)`` for
        ``1 <= d <= w // 2``. Contributions of several ranges add up; the result is capped at 1.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        Values in [0, 1]; 1 on every labelled point.
    """
    y = np.asarray(y)
    out = (y == 1).astype(np.float64)
    half = int(buffer) // 2
    seg = segments(y)
    if half == 0 or len(seg) == 0:
        return out
    d = np.arange(1, half + 1)
    ramp = np.broadcast_to(np.sqrt(1.0 - d / buffer), (len(seg), half))
    pos = np.concatenate([((seg[:, 1] - 1)[:, None] + d).ravel(), (seg[:, 0][:, None] - d).ravel()])
    val = np.concatenate([ramp.ravel(), ramp.ravel()])
    inside = (pos >= 0) & (pos < len(y))
    np.add.at(out, pos[inside], val[inside])
    return np.minimum(out, 1.0)


def buffered_ranges(y, buffer: int) -> np.ndarray:
    """Labelled ranges widened by ``buffer // 2`` points on each side, clipped and merged.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels.
    buffer : int
        Buffer length ``w``.

    Returns
    -------
    numpy.ndarray of int, shape (k, 2)
        ``[start, stop)`` pairs; two widened ranges are merged when they overlap (ranges that
        only touch stay apart, as in TSB-AD).
    """
    y = np.asarray(y)
    seg = segments(y)
    if len(seg) == 0:
        return seg
    half = int(buffer) // 2
    lo = np.maximum(seg[:, 0] - half, 0)
    hi = np.minimum(seg[:, 1] + half, len(y))
    first = np.concatenate(([True], lo[1:] >= hi[:-1]))
    last = np.concatenate((first[1:], [True]))
    return np.stack([lo[first], hi[last]], axis=1)


def _thresholds(s: np.ndarray, n_thresholds: int | None) -> np.ndarray:
    """Thresholds from the highest score down: TSB-AD's rank sample, or every distinct score."""
    if n_thresholds is None:
        return np.unique(s)[::-1]
    if n_thresholds < 1:
        raise ValueError(f"n_thresholds must be >= 1 or None, got {n_thresholds}")
    desc = np.sort(s)[::-1]
    return desc[np.linspace(0, len(s) - 1, n_thresholds).astype(np.int64)]


def _count_at_or_above(sorted_asc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How many values of ``sorted_asc`` are ``>= t``, for every ``t``."""
    return len(sorted_asc) - np.searchsorted(sorted_asc, t, side="left")


def _range_ap(y: np.ndarray, s: np.ndarray, buffers, n_thresholds: int | None) -> np.ndarray:
    """Range-AP at each buffer length of ``buffers``, for validated ``y`` (with positives) and ``s``."""
    n_pos = int(y.sum())
    t = _thresholds(s, n_thresholds)
    n_flagged = _count_at_or_above(np.sort(s), t)
    tp_labelled = _count_at_or_above(np.sort(s[y == 1]), t)
    normal = y == 0
    order = np.argsort(-s[normal], kind="mergesort")
    n_normal_flagged = _count_at_or_above(np.sort(s[normal]), t)
    out = []
    for w in buffers:
        # buffer credit of the flagged unlabelled points: a prefix sum in descending score order
        credit = np.concatenate(([0.0], np.cumsum(buffered_labels(y, w)[normal][order])))
        a = credit[n_normal_flagged]
        ranges = buffered_ranges(y, w)
        inside = np.zeros(len(s) + 1, dtype=np.int64)
        np.add.at(inside, ranges[:, 0], 1)
        np.add.at(inside, ranges[:, 1], -1)
        # reduceat runs from one range start to the next: points between ranges are masked out
        masked = np.where(np.cumsum(inside[:-1]) > 0, s, -np.inf)
        range_max = np.sort(np.maximum.reduceat(masked, ranges[:, 0]))
        existence = _count_at_or_above(range_max, t) / len(ranges)
        tp = tp_labelled + a
        recall = np.minimum(tp / (n_pos + a / 2.0), 1.0) * existence
        precision = tp / n_flagged
        out.append(float(np.sum(np.diff(recall, prepend=0.0) * precision)))
    return np.asarray(out)


def range_pr_surface(y, s, max_buffer: int, n_thresholds: int | None = TSB_AD_THRESHOLDS) -> np.ndarray:
    """Range-based average precision for every buffer length ``0 .. max_buffer``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous (no NaN).
    max_buffer : int
        Largest buffer length ``L`` (TSB-AD passes the series' estimated period).
    n_thresholds : int or None, default 250
        Thresholds at evenly spaced ranks of the sorted scores, as TSB-AD; ``None`` = every
        distinct score.

    Returns
    -------
    numpy.ndarray of float, shape (max_buffer + 1,)
        Range-AP at ``w = 0 .. max_buffer``; all ``nan`` without labelled points.
    """
    y, s = _validate(y, s)
    if max_buffer < 0:
        raise ValueError(f"max_buffer must be >= 0, got {max_buffer}")
    if y.sum() == 0:
        return np.full(max_buffer + 1, np.nan)
    return _range_ap(y, s, range(max_buffer + 1), n_thresholds)


def range_pr_auc(y, s, buffer: int, n_thresholds: int | None = TSB_AD_THRESHOLDS) -> float:
    """Range-based average precision at one buffer length (one slice of the VUS surface).

    Parameters
    ----------
    y, s : array_like, shape (n,)
        Binary labels and scores, as in :func:`range_pr_surface`.
    buffer : int
        Buffer length ``w`` (0 = no buffer: recall = point recall x event recall).
    n_thresholds : int or None, default 250
        See :func:`range_pr_surface`.

    Returns
    -------
    float
        The range-AP; ``nan`` without labelled points.
    """
    y, s = _validate(y, s)
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    if y.sum() == 0:
        return float("nan")
    return float(_range_ap(y, s, [buffer], n_thresholds)[0])


def vus_pr(y, s, max_buffer: int, n_thresholds: int | None = TSB_AD_THRESHOLDS) -> float:
    """VUS-PR: the mean range-based average precision over buffer lengths ``0 .. max_buffer``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous (no NaN).
    max_buffer : int
        Largest buffer length ``L``.
    n_thresholds : int or None, default 250
        See :func:`range_pr_surface`.

    Returns
    -------
    float
        VUS-PR in [0, 1]; ``nan`` without labelled points.
    """
    surface = range_pr_surface(y, s, max_buffer, n_thresholds)
    return float(np.mean(surface))
