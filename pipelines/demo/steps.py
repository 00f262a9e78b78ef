"""The demo's steps, each a real flow run in this process (see :mod:`pipelines.demo`)."""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Optional

from pipelines.demo.evaluation import evaluate, labelled_scores, top_anomalies
from pipelines.demo.reviewer import review_batches
from pipelines.review.threshold import enough
from pipelines.demo.samples import DATASETS, DEMO_PARAMS, DEMO_THREADS, RECENT_BATCHES, SampleDataset
from pipelines.demo.state import load_state, save_state, wipe
from pipelines.lake import Lake
from pipelines.settings import get_settings


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
    from pipelines.flows.threshold import threshold
    from pipelines.flows.train import train
    from pipelines.nodes import score_label

    if on_start is not None:
        on_start()
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(DEMO_THREADS)
    tracking = tracking_for(None)
    lake = Lake(settings.lake_url)
    state = load_state(settings)
    out: dict[str, Any] = {"datasets": {}}

    def registered(name: str, version: Optional[str]) -> bool:
        """Whether the state's version is still in the registry (it was not wiped since)."""
        try:
            return version is not None and tracking.get_version(name, version) is not None
        except tracking.TrackingError:
            return False

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
        events = "" if r.get("events") is None else f" in {r['events']} events"
        say(
            f"   {ds.name} with v{r['model_version']}: {len(r['scored'])} batch(es), {r['rows']} rows, "
            f"{r['anomalies']} flagged{events}; {len(r['skipped'])} already scored"
        )
        return r

    def review_step(ds: SampleDataset) -> Optional[dict]:
        """Verdicts on the history batches' report items, a threshold from them (a new champion with
        the same weights), then the later batches scored by it: precision and recall before and after."""
        done = state.get(ds.name, {}).get("reviewed")
        if done and registered(ds.name, done.get("version")):
            say(f"   {ds.name}: reviewed already (v{done['version']}), not again")
            return done
        before_version = tracking.get_alias_version(ds.name, "champion")
        before_key = score_label(ds.name, before_version)
        batches = [r.batch_id for r in lake.list_batches(ds.name)]
        history, later = batches[: len(ds.history)], batches[len(ds.history):]
        verdicts = review_batches(lake, ds, before_key, history, samples_dir)
        if not enough(verdicts["anomaly"], verdicts["false_alarm"]):
            say(f"   {ds.name}: {verdicts['anomaly']} confirmed and {verdicts['false_alarm']} false alarms on the history "
                f"batches: too few verdicts to move the threshold (v{before_version} stays)")
            return {"version": None, "from_version": before_version, "verdicts": verdicts}
        r = flow_run(threshold, ds.name, promote=True)
        flow_run(score, ds.name)  # every batch: the later ones are the test, the history was reviewed
        after_key = score_label(ds.name, r["version"])

        def on_later(key: str) -> dict:
            frame = labelled_scores(lake, ds, key, samples_dir)
            return evaluate(frame[frame["batch_id"].isin(later)])

        result = {"version": r["version"], "from_version": before_version, "verdicts": verdicts,
                  "threshold_before": r["previous"], "threshold_after": r["threshold"], "rule": r["rule"],
                  "before": on_later(before_key), "after": on_later(after_key)}
        state.setdefault(ds.name, {})["reviewed"] = result
        save_state(settings, state)
        b, a = result["before"], result["after"]
        say(f"   {ds.name}: {verdicts['anomaly']} confirmed, {verdicts['false_alarm']} false alarms -> v{r['version']}; "
            f"later batches: precision {b['precision']:.0%} -> {a['precision']:.0%}, recall {b['recall']:.0%} -> {a['recall']:.0%}")
        return result

    from pipelines.demo.alerts import DemoAlerts

    alerts = DemoAlerts(lake, [ds.name for ds in DATASETS]).start(say)
    say("[bold]4. score every batch with the champion[/]")
    for ds in DATASETS:
        score_all(ds)

    say(f"[bold]5. retrain on the {RECENT_BATCHES} newest batches: challenger vs champion[/]")
    for ds in DATASETS:
        info = out["datasets"][ds.name]
        done = state.get(ds.name, {}).get("retrained")
        if done and registered(ds.name, done):
            say(f"   {ds.name}: retrained already (v{done}), not again")
            info["retrain"] = None
            continue
        r = flow_run(retrain, ds.name, recent_batches=RECENT_BATCHES, params=DEMO_PARAMS)
        info["retrain"] = r
        state.setdefault(ds.name, {})["retrained"] = r["challenger_version"]
        save_state(settings, state)
        say(f"   {ds.name}: {r['rule']}")

    say("[bold]6. score with the champion again (only what it has not scored)[/]")
    for ds in DATASETS:
        score_all(ds)

    say("[bold]7. review the first batches' flags (verdicts from the label files), recalibrate, score the rest[/]")
    for ds in DATASETS:
        out["datasets"][ds.name]["review"] = review_step(ds)

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
    out["alerts"] = alerts.finish(say)
    out.update(
        seconds=round(time.monotonic() - started, 1),
        lake=lake.url,
        tracking_uri=settings.mlflow_tracking_uri,
        prefect_api_url=settings.prefect_api_url,
        prefect_home=str(settings.prefect_home),
    )
    return out
