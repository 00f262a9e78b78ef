"""How well the champion's flags match the injected anomalies of ``data/samples/*_labels.csv``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.demo.samples import TOP_N, SampleDataset
from pipelines.lake import BATCH_COLUMN, Lake, ROW_COLUMN


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance an injected anomaly outscores a normal row (ties: 1/2)."""
    scored = np.isfinite(scores)
    scores, positive = scores[scored], positive[scored]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def labelled_scores(lake: Lake, ds: SampleDataset, scores_key: str, samples_dir: Path) -> pd.DataFrame:
    """One model version's scores joined to the lake rows' keys and to the ground-truth labels."""
    scores = lake.read_scores(ds.name, scores_key)
    keys = lake.read(ds.name, columns=[*ds.keys, BATCH_COLUMN, ROW_COLUMN])
    labels = pd.read_csv(samples_dir / ds.labels)
    for key in ds.keys:  # align dtypes so the joins match
        if key == ds.time_column:
            keys[key] = pd.to_datetime(keys[key], utc=True).astype("datetime64[ns, UTC]")
            labels[key] = pd.to_datetime(labels[key], utc=True).astype("datetime64[ns, UTC]")
        elif pd.api.types.is_integer_dtype(labels[key]):
            keys[key] = keys[key].astype("int64")
        else:
            keys[key], labels[key] = keys[key].astype(str), labels[key].astype(str)
    scores = scores.drop(columns=[c for c in ds.keys if c in scores.columns])
    scores[ROW_COLUMN] = scores[ROW_COLUMN].astype("int64")
    keys[ROW_COLUMN] = keys[ROW_COLUMN].astype("int64")
    rows = scores.merge(keys, on=[BATCH_COLUMN, ROW_COLUMN], how="left")
    out = rows.merge(labels, on=list(ds.keys), how="left")
    out["labelled"] = out["is_injected_anomaly"].notna()
    out["is_injected_anomaly"] = out["is_injected_anomaly"].fillna(0).astype(bool)
    out["anomaly_kind"] = out["anomaly_kind"].fillna("")
    return out


def evaluate(frame: pd.DataFrame) -> dict:
    """Precision and recall of the flags against the injected anomalies, recall by kind, ROC AUC."""
    flagged = frame["is_anomaly"].fillna(False).astype(bool).to_numpy()
    injected = frame["is_injected_anomaly"].to_numpy(bool)
    hits = int((flagged & injected).sum())
    by_kind = {
        kind: {"injected": int(len(g)), "flagged": int(g["is_anomaly"].fillna(False).astype(bool).sum())}
        for kind, g in frame[injected].groupby("anomaly_kind")
    }
    return {
        "rows": int(len(frame)),
        "unlabelled_rows": int((~frame["labelled"]).sum()),
        "injected": int(injected.sum()),
        "flagged": int(flagged.sum()),
        "true_positives": hits,
        "precision": hits / flagged.sum() if flagged.sum() else float("nan"),
        "recall": hits / injected.sum() if injected.sum() else float("nan"),
        "roc_auc": roc_auc(frame["anomaly_score"].to_numpy(float), injected),
        "recall_by_kind": by_kind,
    }


def top_anomalies(frame: pd.DataFrame, ds: SampleDataset, n: int = TOP_N) -> list[dict]:
    """The ``n`` highest-scoring flagged rows, with their keys, top features and true label."""
    top = frame[frame["is_anomaly"].fillna(False).astype(bool)].nlargest(n, "anomaly_score")
    return [
        {
            BATCH_COLUMN: r[BATCH_COLUMN], ROW_COLUMN: int(r[ROW_COLUMN]),
            "key": ", ".join(_key_text(r[k]) for k in ds.keys), "anomaly_score": float(r["anomaly_score"]),
            "top_features": r.get("top_features", ""), "injected": r["anomaly_kind"] or "-",
        }
        for _, r in top.iterrows()
    ]


def _key_text(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
