"""``vae-anomaly demo``: the whole path on the committed sample data, from a fresh clone.

Every step is a real flow run in this process, against the configured settings (by default
state under ``.state/``, the lake under ``data/lake``, Prefect's temporary local API)::

    1. ingest batches 1 and 2 of each sample dataset (the history)
    2. train on them: version 1 becomes the champion        (skipped if a champion exists)
    3. ingest what arrives later: batch 3, and transactions_bad.csv (4 rows quarantined)
    4. score every batch with the champion                  (batches already scored are skipped)
    5. retrain on the 3 newest batches: challenger vs champion, promote or keep
                                                            (skipped if this demo did it already)
    6. if the champion changed, score every batch with the new champion
    7. compare the champion's flags with data/samples/*_labels.csv, which no model ever sees

A re-run without ``--fresh`` is safe: ingest skips content already in the lake, scoring skips
batches the model version has scored, and the training steps are skipped as noted. Which
retraining the demo did is remembered in ``<VAE_ANOMALY_HOME>/demo.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from pipelines.lake import Lake
from pipelines.settings import Settings, get_settings

#: Detector settings for the demo: fewer epochs than the default 200, to stay within a few
#: minutes on two CPU cores (early stopping usually ends training before this anyway).
DEMO_PARAMS = {"max_epochs": 60}
#: torch threads unless OMP_NUM_THREADS says otherwise. These models are small: on a shared
#: two-core machine one thread fitted the transactions model in 3.7 s, two threads took 47 s.
DEMO_THREADS = 1
RECENT_BATCHES = 3
TOP_N = 10
STATE_FILE = "demo.json"


class DemoError(Exception):
    """The demo cannot run as configured (e.g. ``--fresh`` against a store it must not wipe)."""


@dataclass(frozen=True)
class SampleDataset:
    """One sample dataset of ``data/samples`` and how the demo feeds it."""

    name: str
    history: tuple[str, ...]  # ingested before the first training
    later: tuple[str, ...]  # ingested after it
    labels: str
    keys: tuple[str, ...]  # columns that join lake rows to the labels
    time_column: Optional[str] = None
    series_column: Optional[str] = None
    exclude: tuple[str, ...] = ()  # columns the model must not see


DATASETS = (
    SampleDataset(
        "transactions",
        history=("transactions_batch1.csv", "transactions_batch2.parquet"),
        later=("transactions_batch3.jsonl", "transactions_bad.csv"),
        labels="transactions_labels.csv",
        keys=("txn_id",),
        exclude=("txn_id",),  # a unique, increasing key: every new batch would look unusual
    ),
    SampleDataset(
        "sensors",
        history=("sensors_batch1.csv", "sensors_batch2.parquet"),
        later=("sensors_batch3.jsonl",),
        labels="sensors_labels.csv",
        keys=("timestamp", "sensor"),
        time_column="timestamp",
        series_column="sensor",
    ),
)


# ----------------------------------------------------------------------------- state


def _local_path(uri: str) -> Optional[Path]:
    """The file behind a ``sqlite:///`` or ``file://`` URI or a plain path; ``None`` for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).absolute()
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path).absolute()
    if not parsed.scheme or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri).absolute()
    return None


def _inside(path: Optional[Path], folder: Path) -> bool:
    return path is not None and (path == folder or folder in path.parents)


def wipe(settings: Settings) -> list[str]:
    """Delete what the demo made: its lake datasets, and the tracking store, Prefect home and demo
    state when they are the local ones under ``VAE_ANOMALY_HOME``.

    Raises
    ------
    DemoError
        The tracking store is elsewhere (a server, or a file outside ``VAE_ANOMALY_HOME``): the
        demo does not delete a store it did not create.
    """
    home = settings.home.absolute()
    store = _local_path(settings.mlflow_tracking_uri)
    if not _inside(store, home):
        raise DemoError(
            f"--fresh only wipes a tracking store under VAE_ANOMALY_HOME ({home}); MLFLOW_TRACKING_URI is "
            f"{settings.mlflow_tracking_uri}: unset it, or remove the demo's models there yourself"
        )
    removed = []
    lake = Lake(settings.lake_url)
    for ds in DATASETS:
        folder = f"{lake.root}/{ds.name}"
        if lake.fs.exists(folder):
            lake.fs.rm(folder, recursive=True)
            removed.append(folder)
    local = [store, Path(f"{store}-journal"), _local_path(settings.mlflow_artifact_root), home / STATE_FILE]
    if settings.prefect_api_url is None:  # the temporary API keeps its database in PREFECT_HOME
        local.append(settings.prefect_home.absolute())
    for path in local:
        empty_dir = path is not None and path.is_dir() and not any(path.iterdir())
        if _inside(path, home) and path.exists() and not empty_dir:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(str(path))
    return removed


def _load_state(settings: Settings) -> dict:
    path = settings.home / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(settings: Settings, state: dict) -> None:
    path = settings.home / STATE_FILE
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


# ----------------------------------------------------------------------------- evaluation


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
    keys = lake.read(ds.name, columns=[*ds.keys, "batch_id", "_source_row"])
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
    scores["_source_row"] = scores["_source_row"].astype("int64")
    keys["_source_row"] = keys["_source_row"].astype("int64")
    rows = scores.merge(keys, on=["batch_id", "_source_row"], how="left")
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
            "batch_id": r["batch_id"], "_source_row": int(r["_source_row"]),
            "key": ", ".join(_key_text(r[k]) for k in ds.keys), "anomaly_score": float(r["anomaly_score"]),
            "top_features": r.get("top_features", ""), "injected": r["anomaly_kind"] or "-",
        }
        for _, r in top.iterrows()
    ]


def _key_text(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


# ----------------------------------------------------------------------------- the run


def run(
    fresh: bool = False,
    say: Optional[Callable[[str], None]] = None,
    bars: Callable[[], ContextManager] = nullcontext,
    on_start: Optional[Callable[[], None]] = None,
) -> dict:
    """Run the demo; returns the summary that :func:`render` prints.

    Parameters
    ----------
    fresh : bool
        :func:`wipe` the demo's state first.
    say : callable, optional
        Receives one line (rich markup) per step; ``None`` is silent.
    bars : callable
        Returns the context manager to wrap each flow run in (the CLI's progress bars).
    on_start : callable, optional
        Called once Prefect is imported (the CLI adjusts Prefect's console logging there).
    """
    started = time.monotonic()
    say = say or (lambda line: None)
    settings = get_settings()
    samples_dir = settings.project_root / "data" / "samples"
    removed = wipe(settings) if fresh else []
    if removed:
        say(f"[dim]--fresh: removed {len(removed)} path(s) of earlier demo state[/]")
    settings.ensure_home()
    settings.prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect's database goes there

    from pipelines.flows.common import tracking_for
    from pipelines.flows.ingest import ingest
    from pipelines.flows.retrain import retrain
    from pipelines.flows.score import score
    from pipelines.flows.train import train
    from pipelines.nodes import score_label

    if on_start is not None:
        on_start()
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(DEMO_THREADS)
    tracking = tracking_for(None)
    lake = Lake(settings.lake_url)
    state = _load_state(settings)
    out: dict[str, Any] = {"datasets": {}}

    def flow_run(fn: Callable, *args: Any, **kwargs: Any) -> dict:
        with bars():
            return fn(*args, **kwargs)

    def ingest_files(ds: SampleDataset, files: tuple[str, ...], into: list) -> None:
        for name in files:
            r = flow_run(ingest, ds.name, str(samples_dir / name), time_column=ds.time_column)
            into.append(r)
            what = "already in the lake" if r["skipped"] else f"{r['rows_accepted']} rows"
            if r["rows_quarantined"]:
                what += f", [yellow]{r['rows_quarantined']} quarantined[/]"
            say(f"   {ds.name} <- {name}: {r['batch_id']} ({what})")

    say("[bold]1. ingest the history (batches 1 and 2)[/]")
    for ds in DATASETS:
        out["datasets"][ds.name] = {"ingested": [], "scored": []}
        ingest_files(ds, ds.history, out["datasets"][ds.name]["ingested"])

    say("[bold]2. train on the history; the first version becomes the champion[/]")
    for ds in DATASETS:
        info = out["datasets"][ds.name]
        champion = tracking.get_alias_version(ds.name, "champion")
        if champion is not None:
            say(f"   {ds.name}: champion v{champion} exists, not training again")
            info["trained"] = None
            continue
        history = [r["batch_id"] for r in info["ingested"]]
        r = flow_run(
            train, ds.name, batch_ids=history, series_column=ds.series_column,
            exclude_columns=list(ds.exclude) or None, params=DEMO_PARAMS,
        )
        info["trained"] = r
        say(f"   {ds.name}: v{r['version']} on {r['rows']} rows, {r['epochs']} epochs ({', '.join(r['aliases'])})")

    say("[bold]3. ingest the later batches[/]")
    for ds in DATASETS:
        ingest_files(ds, ds.later, out["datasets"][ds.name]["ingested"])

    def score_all(ds: SampleDataset) -> dict:
        r = flow_run(score, ds.name)
        out["datasets"][ds.name]["scored"].append(r)
        say(
            f"   {ds.name} with v{r['model_version']}: {len(r['scored'])} batch(es), {r['rows']} rows, "
            f"{r['anomalies']} flagged; {len(r['skipped'])} already scored"
        )
        return r

    say("[bold]4. score every batch with the champion[/]")
    for ds in DATASETS:
        score_all(ds)

    say(f"[bold]5. retrain on the {RECENT_BATCHES} newest batches: challenger vs champion[/]")
    for ds in DATASETS:
        info = out["datasets"][ds.name]
        done = state.get(ds.name, {}).get("retrained")
        if done and done in tracking.get_aliases(ds.name).values():
            say(f"   {ds.name}: retrained already (v{done}), not again")
            info["retrain"] = None
            continue
        r = flow_run(retrain, ds.name, recent_batches=RECENT_BATCHES, params=DEMO_PARAMS)
        info["retrain"] = r
        state.setdefault(ds.name, {})["retrained"] = r["challenger_version"]
        _save_state(settings, state)
        say(f"   {ds.name}: {r['rule']}")

    say("[bold]6. score with the champion again (only what it has not scored)[/]")
    for ds in DATASETS:
        score_all(ds)

    for ds in DATASETS:
        info = out["datasets"][ds.name]
        champion = tracking.get_alias_version(ds.name, "champion")
        key = score_label(ds.name, champion)  # the scores' key in the lake
        frame = labelled_scores(lake, ds, key, samples_dir)
        batches = lake.list_batches(ds.name)
        info.update(
            champion=champion,
            scores_key=key,
            batches=[b.batch_id for b in batches],
            scored_batches=sorted(lake.scored_batches(ds.name, key)),
            quarantined=sum(b.rows_quarantined for b in batches),
            scores_path=f"{lake.url.rstrip('/')}/{ds.name}/scores/model_version={key}",
            evaluation=evaluate(frame),
            top=top_anomalies(frame, ds),
        )
    out.update(
        seconds=round(time.monotonic() - started, 1),
        lake=lake.url,
        tracking_uri=settings.mlflow_tracking_uri,
        prefect_api_url=settings.prefect_api_url,
        prefect_home=str(settings.prefect_home),
    )
    return out


# ----------------------------------------------------------------------------- the summary


def where_to_look(summary: dict) -> list[tuple[str, str]]:
    """(what, command or path) lines for the summary."""
    uri = summary["tracking_uri"]
    mlflow = f"open {uri}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}"
    prefect = (
        f"open {summary['prefect_api_url'].removesuffix('/api')}" if summary.get("prefect_api_url")
        else f"PREFECT_HOME={summary['prefect_home']} prefect server start"
    )
    rows = [("MLflow runs and registry", mlflow), ("Prefect flow runs", prefect)]
    for name, info in summary["datasets"].items():
        rows.append((f"{name} scores (v{info['champion']})", info["scores_path"]))
    rows.append(("quarantined rows", f"{summary['lake'].rstrip('/')}/transactions/quarantine"))
    return rows


def render(summary: dict) -> list:
    """Rich renderables for the demo summary."""
    from rich.table import Table

    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.0%}"

    out: list = []
    look = Table(title=f"demo finished in {summary['seconds']:.0f} s: where to look", title_justify="left",
                 show_header=False, box=None, padding=(0, 2))
    look.add_column(style="bold")
    look.add_column(overflow="fold")
    for what, where in where_to_look(summary):
        look.add_row(what, where)
    out.append(look)

    quality = Table(title="flags vs the injected anomalies of data/samples/*_labels.csv (never shown to the models)",
                    title_justify="left")
    for name in ("dataset", "model", "rows", "injected", "flagged", "caught", "precision", "recall", "ROC AUC"):
        quality.add_column(name, justify="left" if name == "dataset" else "right")
    kinds = []
    for name, info in summary["datasets"].items():
        e = info["evaluation"]
        quality.add_row(
            name, f"v{info['champion']}", str(e["rows"]), str(e["injected"]), str(e["flagged"]), str(e["true_positives"]),
            pct(e["precision"]), pct(e["recall"]), "-" if e["roc_auc"] != e["roc_auc"] else f"{e['roc_auc']:.3f}",
        )
        caught = ", ".join(f"{k} {v['flagged']}/{v['injected']}" for k, v in e["recall_by_kind"].items())
        kinds.append(f"  {name}: caught by kind: {caught or '-'}")
    out.append(quality)
    out.append("\n".join(kinds))

    for name, info in summary["datasets"].items():
        retrain = info.get("retrain")
        if retrain:
            verdict = "promoted the challenger" if retrain["promoted"] else "kept the champion"
            out.append(f"[bold]{name} retraining[/]: {verdict} (challenger v{retrain['challenger_version']} "
                       f"{retrain['challenger_nll']:.3f} vs champion v{retrain['champion_version']} "
                       f"{retrain['champion_nll']:.3f} nats/row, -log p on the same held-out rows)")
        top = Table(title=f"top {len(info['top'])} anomalies of {name} (v{info['champion']})", title_justify="left")
        for col in ("key", "batch", "score", "top features", "injected"):
            top.add_column(col, justify="right" if col == "score" else "left", overflow="fold")
        for r in info["top"]:
            top.add_row(r["key"], r["batch_id"], f"{r['anomaly_score']:.4g}", str(r["top_features"]), r["injected"])
        out.append(top)
    return out
