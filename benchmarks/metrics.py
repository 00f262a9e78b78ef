"""Detection metrics for the benchmark: ranking metrics and best-F1 scores.

The ranking and best-F1 functions take a binary label vector ``y`` (1 = anomaly) and a score
vector ``s`` (higher = more anomalous) of the same length.  Scores may hold
``+inf``/``-inf`` (they are ranked like any other value); ``NaN`` scores are
rejected, because no ranking of them is defensible — the caller decides what
a missing score means.

``best_f1`` and ``best_f1_pa`` search *every* threshold of the form
``s >= t`` for ``t`` in the set of distinct scores, vectorised with one sort:
no Python loop over thresholds.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "auroc",
    "auprc",
    "best_f1",
    "point_adjust",
    "best_f1_pa",
    "segments",
    "composite_f1",
    "best_composite_f1",
    "event_hits",
    "flag_precision",
]


def _validate(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y and s must be 1-D and of equal length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must be binary (0/1)")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} NaN score(s); replace them before scoring")
    return y.astype(np.int64), s


def _finite_ranks(s: np.ndarray) -> np.ndarray:
    """Average ranks of ``s``; order-preserving, ties kept, infinities allowed."""
    if np.isfinite(s).all():
        return s
    return rankdata(s, method="average")


def auroc(y, s) -> float:
    """Area under the ROC curve.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        AUROC, or ``nan`` when ``y`` holds a single class.
    """
    y, s = _validate(y, s)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, _finite_ranks(s)))


def auprc(y, s) -> float:
    """Area under the precision-recall curve, as average precision.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        ``sklearn.metrics.average_precision_score``; ``nan`` without positives.
    """
    y, s = _validate(y, s)
    if y.max() == 0:
        return float("nan")
    return float(average_precision_score(y, _finite_ranks(s)))


def _best_weighted_f1(scores: np.ndarray, tp_w: np.ndarray, fp_w: np.ndarray, n_pos: float):
    """Best F1 over thresholds ``score >= t`` for weighted items.

    Each item contributes ``tp_w`` true positives and ``fp_w`` false positives
    when flagged.  F1 = 2 TP / (TP + FP + P).
    """
    if n_pos == 0:
        return float("nan"), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s_sorted = scores[order]
    tp = np.cumsum(tp_w[order])
    fp = np.cumsum(fp_w[order])
    # Only the last item of each run of tied scores is a reachable cut.
    last_of_tie = np.ones(s_sorted.shape[0], dtype=bool)
    last_of_tie[:-1] = s_sorted[1:] != s_sorted[:-1]
    tp, fp, thr = tp[last_of_tie], fp[last_of_tie], s_sorted[last_of_tie]
    f1 = 2.0 * tp / (tp + fp + n_pos)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thr[i])


def best_f1(y, s, return_threshold: bool = False):
    """Best point-wise F1 over all thresholds, without point adjustment.

    A point is flagged when ``s >= t``; every distinct score is tried as ``t``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous.
    return_threshold : bool, default False
        Also return the threshold that attains the best F1.

    Returns
    -------
    float or (float, float)
        Best F1 (``nan`` without positives), optionally with its threshold.
    """
    y, s = _validate(y, s)
    pos = y.astype(np.float64)
    f1, thr = _best_weighted_f1(s, pos, 1.0 - pos, float(pos.sum()))
    return (f1, thr) if return_threshold else f1


def segments(y) -> np.ndarray:
    """Contiguous runs of ``y == 1``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels.

    Returns
    -------
    numpy.ndarray of int, shape (k, 2)
        ``[start, stop)`` index pairs of the k labelled segments.
    """
    y = np.asarray(y).astype(np.int8)
    d = np.diff(np.concatenate(([0], y, [0])))
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1)


def point_adjust(y, pred) -> np.ndarray:
    """Point adjustment (Xu et al. 2018, "Donut").

    If any point inside a contiguous labelled anomaly segment is predicted
    anomalous, every point of that segment counts as predicted; predictions
    outside segments are unchanged.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    pred : array_like of int or bool, shape (n,)
        Binary predictions.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Adjusted predictions.
    """
    y = np.asarray(y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if y.shape != pred.shape:
        raise ValueError("y and pred must have the same shape")
    out = pred.copy()
    seg = segments(y)
    if len(seg):
        hit = _segment_any(pred, seg)
        starts = np.zeros(y.shape[0], dtype=np.int64)
        starts[seg[:, 0]] = 1
        seg_id = np.cumsum(starts) - 1  # index of the segment a point is in (if inside)
        out[y] = hit[seg_id[y]]
    return out.astype(np.int64)


def _segment_any(pred: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """``pred[a:b].any()`` for each ``[a, b)`` in ``seg``, via a prefix sum."""
    c = np.concatenate(([0], np.cumsum(pred, dtype=np.int64)))
    return (c[seg[:, 1]] - c[seg[:, 0]]) > 0


def _segment_max(y: np.ndarray, s: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """The highest score inside each labelled segment of ``seg`` (from :func:`segments`)."""
    # reduceat runs from one segment start to the next (or to the end); with
    # normal points masked to -inf that run's max is the segment's max.
    return np.maximum.reduceat(np.where(y == 1, s, -np.inf), seg[:, 0])


def best_f1_pa(y, s, return_threshold: bool = False):
    """Best F1 over all thresholds, with point adjustment.

    With point adjustment a labelled segment is detected at threshold ``t`` iff
    its maximum score is ``>= t``, and then all its points are true positives.
    So each segment is one item (score = segment max, weight = its length)
    and each normal point is one false-positive item; one sort then gives the
    F1 of every threshold.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous.
    return_threshold : bool, default False
        Also return the threshold that attains the best F1.

    Returns
    -------
    float or (float, float)
        Best point-adjusted F1 (``nan`` without positives), optionally with
        its threshold.
    """
    y, s = _validate(y, s)
    seg = segments(y)
    if len(seg) == 0:
        return (float("nan"), float("nan")) if return_threshold else float("nan")
    seg_max = _segment_max(y, s, seg)
    seg_len = (seg[:, 1] - seg[:, 0]).astype(np.float64)
    normal = s[y == 0]
    scores = np.concatenate((seg_max, normal))
    tp_w = np.concatenate((seg_len, np.zeros(normal.shape[0])))
    fp_w = np.concatenate((np.zeros(seg.shape[0]), np.ones(normal.shape[0])))
    f1, thr = _best_weighted_f1(scores, tp_w, fp_w, float(seg_len.sum()))
    return (f1, thr) if return_threshold else f1


def composite_f1(y, pred) -> float:
    """Composite F1 (Garg et al. 2021): point-wise precision with event-wise recall.

    Recall is the fraction of labelled events (contiguous runs of ``y == 1``) with at least one
    flagged point; precision is the fraction of flagged points that are labelled. Finding an
    event by one point counts as fully as point adjustment would, but every false alarm still
    costs precision, so flagging many scattered points does not look like detection.

    Parameters
    ----------
    y, pred : array_like of int or bool, shape (n,)
        Labels and predictions, 1 = anomaly.

    Returns
    -------
    float
        The F1 (``nan`` without labelled events; 0 when nothing is flagged).
    """
    y = np.asarray(y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if y.shape != pred.shape:
        raise ValueError("y and pred must have the same shape")
    seg = segments(y)
    if len(seg) == 0:
        return float("nan")
    if not pred.any():
        return 0.0
    recall = _segment_any(pred, seg).mean()
    precision = (pred & y).sum() / pred.sum()
    return float(0.0 if recall + precision == 0 else 2 * precision * recall / (precision + recall))


def best_composite_f1(y, s) -> float:
    """Best :func:`composite_f1` over every threshold ``s >= t`` (t in the distinct scores).

    Flagged points, flagged labelled points and detected events (an event is detected at ``t``
    iff its highest score is ``>= t``) are counts of sorted arrays at or above ``t``, so every
    threshold is evaluated with three sorts and ``searchsorted``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    s : array_like of float, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        The best composite F1 (``nan`` without labelled events).
    """
    y, s = _validate(y, s)
    seg = segments(y)
    if len(seg) == 0:
        return float("nan")
    seg_max = np.sort(_segment_max(y, s, seg))
    flagged_all, flagged_pos = np.sort(s), np.sort(s[y == 1])
    t = np.unique(s)
    flagged = len(s) - np.searchsorted(flagged_all, t, side="left")
    tp = len(flagged_pos) - np.searchsorted(flagged_pos, t, side="left")
    recall = (len(seg_max) - np.searchsorted(seg_max, t, side="left")) / len(seg_max)
    precision = tp / flagged
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(f1.max())


def _binary(name: str, v) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim != 1 or not np.isin(v, (0, 1)).all():
        raise ValueError(f"{name} must be a 1-D 0/1 or boolean vector")
    return v.astype(bool)


def event_hits(events, pred, tolerance: int = 0) -> np.ndarray:
    """Which events hold a flagged point, each widened by ``tolerance`` points on both sides.

    Parameters
    ----------
    events : array_like of int, shape (k, 2)
        ``[start, stop)`` row ranges of the events (e.g. from :func:`segments`).
    pred : array_like of int or bool, shape (n,)
        Flags, 1 = flagged.
    tolerance : int, default 0
        An event counts as recalled if a point in ``[start - tolerance, stop + tolerance)`` is
        flagged (clipped to the series).

    Returns
    -------
    numpy.ndarray of bool, shape (k,)
    """
    pred = _binary("pred", pred)
    ev = np.asarray(events, dtype=np.int64).reshape(-1, 2)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if len(ev) and (ev[:, 0].min() < 0 or ev[:, 1].max() > len(pred) or (ev[:, 1] <= ev[:, 0]).any()):
        raise ValueError(f"events must be non-empty [start, stop) ranges inside the {len(pred)} flags")
    widened = np.stack([np.maximum(ev[:, 0] - tolerance, 0), np.minimum(ev[:, 1] + tolerance, len(pred))], axis=1)
    return _segment_any(pred, widened)


def flag_precision(y, pred, tolerance: int = 0) -> float:
    """Share of the flagged points that are labelled (or within ``tolerance`` points of one).

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels, 1 = anomaly.
    pred : array_like of int or bool, shape (n,)
        Flags.
    tolerance : int, default 0
        A flag up to this many points before or after a labelled point counts as correct, as
        :func:`event_hits` counts it as finding the event.

    Returns
    -------
    float
        Precision in [0, 1]; ``nan`` when nothing is flagged.
    """
    y, pred = _binary("y", y), _binary("pred", pred)
    if y.shape != pred.shape:
        raise ValueError(f"y and pred must have the same shape, got {y.shape} and {pred.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not pred.any():
        return float("nan")
    c = np.concatenate(([0], np.cumsum(y, dtype=np.int64)))
    i = np.arange(len(y))
    near = c[np.minimum(i + tolerance + 1, len(y))] - c[np.maximum(i - tolerance, 0)] > 0
    return float((pred & near).sum() / pred.sum())
