"""What a report is built from: the model's saved facts and the batch's facts (plain data).

A report is a pure function of what the score flow wrote (the batch's scores and rows) plus
these facts; nothing here loads a model or reads the lake.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

DRIFT_BANDS = ((0.1, "stable", "no meaningful shift from the calibration scores"),
               (0.25, "moderate", "a moderate shift: worth a look if it persists"),
               (float("inf"), "major", "a major shift: the data no longer looks like the training data; consider retraining"))


def drift_verdict(psi: Optional[float]) -> dict[str, Any]:
    """A plain-language verdict for a population stability index (the usual 0.1 / 0.25 bands)."""
    if psi is None or not np.isfinite(psi):
        return {"psi": None, "level": "unknown", "text": "no drift figure for this batch"}
    for bound, level, text in DRIFT_BANDS:
        if psi < bound:
            return {"psi": float(psi), "level": level, "text": text}
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ColumnFacts:
    """What training learned about one feature column: kind, centre and typical range."""

    name: str
    kind: str  # numeric, bool, categorical
    center: Optional[float] = None  # the training median (robust scaling) or mean
    low: Optional[float] = None  # 5th percentile
    high: Optional[float] = None  # 95th percentile
    typical: str = ""  # the same in words, e.g. "10 to 250" or "'atm', 'pos', ..."


@dataclass(frozen=True)
class ModelFacts:
    """The scoring model version as a report shows it."""

    model_name: str
    version: str
    threshold: float
    threshold_method: str  # quantile or pot
    threshold_rule: str  # e.g. "99th percentile of held-out normal scores"
    calibration_scores: np.ndarray
    columns: dict[str, ColumnFacts]
    aliases: tuple[str, ...] = ()
    run_id: Optional[str] = None
    time_column: Optional[str] = None
    series_column: Optional[str] = None

    @property
    def is_timeseries(self) -> bool:
        return self.time_column is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("calibration_scores")
        d["columns"] = {k: asdict(v) for k, v in self.columns.items()}
        d["aliases"] = list(self.aliases)
        d["calibration_rows"] = int(len(self.calibration_scores))
        return d


@dataclass(frozen=True)
class BatchFacts:
    """The scored batch: its id, size and data-quality notes."""

    dataset: str
    batch_id: str
    rows: int
    quarantined: int = 0
    source: Optional[str] = None
    psi: Optional[float] = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. unseen categories

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def detector_facts(det: Any, model_name: str, version: str, aliases: tuple[str, ...] = (),
                   run_id: Optional[str] = None) -> ModelFacts:
    """:class:`ModelFacts` of a fitted vae_core detector (either kind)."""
    cal = det.calibration_
    if cal.method == "pot":
        rule = f"peaks over threshold (generalised Pareto tail) at risk {cal.risk:g}"
    else:
        rule = f"{100 * (1 - cal.contamination):g}th percentile of the held-out normal rows' scores"
    columns = {}
    for spec in det.preprocessor_.columns:
        numeric = spec.kind == "numeric"
        columns[spec.name] = ColumnFacts(
            name=spec.name, kind=spec.kind,
            center=float(spec.center) if numeric else None,
            low=float(spec.low) if numeric else None, high=float(spec.high) if numeric else None,
            typical=_typical(spec),
        )
    return ModelFacts(
        model_name=model_name, version=str(version), threshold=float(det.threshold_),
        threshold_method=cal.method, threshold_rule=rule, calibration_scores=np.asarray(cal.scores, float),
        columns=columns, aliases=tuple(aliases), run_id=run_id,
        time_column=getattr(det, "time_column_", None), series_column=getattr(det, "series_column_", None),
    )


def _typical(spec: Any) -> str:
    from vae_core.detector import typical_text  # moves to vae_core.explain with the vae_core split

    return typical_text(spec)
