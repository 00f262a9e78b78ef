"""Challenger and champion on reviewed items: precision at the champion's alert count.

Both models score every reviewed item (a table row, or a series event: its highest point score
in the event's span, flagged when any point of the span is). ``k`` is how many of those items
the champion flags; each model's ``k`` highest-scoring items are its alerts, and its precision
is the share of them that reviewers confirmed (verdict ``anomaly``). Fixing ``k`` compares the
rankings at the same alert load, so a model cannot look better by flagging less.

``expected`` counts as not confirmed here (unlike the page's precision of flags, where an
``expected`` flag was right): retraining keeps expected items as normal data, so a challenger
that learned them scores them lower, as the verdict asked, and must not lose for it.

A time series' items are scored in the mode of the scores their report was made from, the one
the reviewers saw (causal, ``point_score="last"``, unless the report's scores key ends in
``-offline``): a model scores its fitted mode's way only when the two agree.

The reviewed items are not held out: the challenger trained on the false alarms as normal rows
(what the verdicts asked for). The comparison measures whether it learned that without losing
the confirmed anomalies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from pipelines import nodes
from pipelines.review.feedback import VERDICTS
from pipelines.review.labels import covered
from pipelines.review.threshold import MIN_REVIEWS

CONFIRMED = ("anomaly",)  # verdicts that count as a hit in the comparison


@dataclass(frozen=True)
class ReviewedComparison:
    """Both models' precision at ``k`` (the champion's alert count) on ``items`` reviewed items."""

    items: int
    confirmed: int
    k: int
    champion_precision: Optional[float]
    challenger_precision: Optional[float]
    min_items: int = MIN_REVIEWS

    @property
    def applies(self) -> bool:
        """Whether the figures may block a promotion: enough reviewed items, and the champion flags one."""
        return self.items >= self.min_items and self.k > 0

    def metrics(self) -> dict[str, float]:
        """The figures as MLflow metrics of the challenger's run (absent precision left out)."""
        out = {"reviewed_compared_items": self.items, "reviewed_compared_confirmed": self.confirmed,
               "reviewed_alerts_k": self.k}
        for name, value in (("champion", self.champion_precision), ("challenger", self.challenger_precision)):
            if value is not None:
                out[f"reviewed_precision_at_k_{name}"] = value
        return out


def precision_at_k(scores: np.ndarray, confirmed: np.ndarray, k: int) -> Optional[float]:
    """Share of confirmed items among the ``k`` highest ``scores`` (ties: the earlier item); None when ``k`` is 0."""
    if k <= 0:
        return None
    top = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    return float(np.asarray(confirmed, bool)[top].mean())


def compare_reviewed(champion_scores: np.ndarray, champion_flags: np.ndarray, challenger_scores: np.ndarray,
                     confirmed: np.ndarray, min_items: int = MIN_REVIEWS) -> ReviewedComparison:
    """Precision at the champion's alert count for both models (arrays aligned item by item)."""
    confirmed = np.asarray(confirmed, bool)
    k = int(np.asarray(champion_flags, bool).sum())
    return ReviewedComparison(len(confirmed), int(confirmed.sum()), k, precision_at_k(champion_scores, confirmed, k),
                              precision_at_k(challenger_scores, confirmed, k), min_items)


def combined_decision(promoted: bool, rule: str, reviewed: Optional[ReviewedComparison]) -> tuple[bool, str]:
    """The held-out rule, then the reviewed items' veto: a challenger whose precision at ``k``
    is below the champion's is not promoted, however good its -log p (applies only with at
    least ``min_items`` reviewed items and ``k`` > 0)."""
    if reviewed is None or not reviewed.applies:
        n = 0 if reviewed is None else reviewed.items
        return promoted, f"{rule}; reviewed items: {n}, too few to compare (at least {MIN_REVIEWS} and one champion alert)"
    worse = reviewed.challenger_precision < reviewed.champion_precision
    text = (f"reviewed items: precision at the champion's {reviewed.k} alert(s) of {reviewed.items} "
            f"({reviewed.confirmed} confirmed): challenger {reviewed.challenger_precision:.0%} vs champion "
            f"{reviewed.champion_precision:.0%} (not promoted if lower)")
    if promoted and worse:
        return False, f"kept the champion: {text}; held-out: {rule}"
    return promoted, f"{rule}; {text}"


def in_mode(det: Any, point_score: str) -> Any:
    """``det`` scoring a time series in ``point_score`` mode (a table's detector has no modes)."""
    return det.with_point_score(point_score) if getattr(det, "time_column_", None) is not None else det


def both_item_scores(champion: Any, challenger: Any, rows: pd.DataFrame, items: pd.DataFrame,
                     time_column: Optional[str], series_column: Optional[str]) -> dict[str, np.ndarray]:
    """:func:`item_scores` of both models, each item in the mode of its report's scores (its
    ``label``, :func:`pipelines.nodes.point_score_of`): ``champion``, ``flags`` (the champion's),
    ``challenger`` and ``found``, aligned with ``items``."""
    out = {"champion": np.zeros(len(items)), "flags": np.zeros(len(items), bool),
           "challenger": np.zeros(len(items)), "found": np.zeros(len(items), bool)}
    modes = np.array([nodes.point_score_of(str(label)) for label in items["label"]], dtype=object)
    for mode in dict.fromkeys(modes):
        part = modes == mode
        some = items[part]
        out["champion"][part], out["flags"][part], out["found"][part] = item_scores(
            in_mode(champion, mode), rows, some, time_column, series_column)
        out["challenger"][part] = item_scores(in_mode(challenger, mode), rows, some, time_column, series_column)[0]
    return out


def item_scores(det: Any, rows: pd.DataFrame, items: pd.DataFrame, time_column: Optional[str],
                series_column: Optional[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's score and flag under ``det``, and which items were found in ``rows``.

    ``rows`` are lake rows (``batch_id``, ``_source_row``) of the items' batches; a time series'
    rows are scored together, so an event's windows have their neighbours."""
    rows = rows.reset_index(drop=True)
    scored = det.score(nodes.feature_frame(rows)) if len(rows) else pd.DataFrame(columns=["anomaly_score", "is_anomaly"])
    score = scored["anomaly_score"].to_numpy(float)
    flag = scored["is_anomaly"].to_numpy(bool)
    out_score, out_flag, found = (np.zeros(len(items)), np.zeros(len(items), bool), np.zeros(len(items), bool))
    every = tuple(VERDICTS)
    for i in range(len(items)):
        hit = covered(rows, items.iloc[[i]], every, time_column, series_column)
        if hit.any():
            out_score[i], out_flag[i], found[i] = np.nanmax(score[hit]), flag[hit].any(), True
    return out_score, out_flag, found
