"""What infra/smoke.sh verifies once the pipeline ran through the deployments: each check reads
a server's own store (the Prefect API, MLflow's PostgreSQL tables, the S3 API, the Dask
workers) and returns one line for the report, or raises :class:`CheckFailed`."""
from __future__ import annotations

import re
import shlex
from collections import Counter
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

from infra.smoke.topology import ARTIFACT_BUCKET, BUCKET_CREDENTIALS, LAKE_BUCKET, ROOT, Topology
from server_processes import query


class CheckFailed(AssertionError):
    """A smoke check did not hold; the message says what was found."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@contextmanager
def prefect_client(topology: Topology) -> Iterator:
    """A sync Prefect client on the topology's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: topology.prefect_url}), get_client(sync_client=True) as client:
        yield client


def flow_run(topology: Topology, run_id: str):
    with prefect_client(topology) as client:
        return client.read_flow_run(run_id)


def ran_on_pool(topology: Topology, run_id: str, pool: str, other_pools: Iterable[str]) -> str:
    """The run is COMPLETED, belongs to ``pool`` and was submitted by that pool's worker only
    (the worker logs ``Worker '<name>' submitting flow run '<id>'``)."""
    run = flow_run(topology, run_id)
    require(run.state_type.value == "COMPLETED", f"flow run {run.name} ({run_id}) is {run.state_type.value}: {run.state.message}")
    require(run.work_pool_name == pool, f"flow run {run.name} is in pool {run.work_pool_name!r}, not {pool!r}")
    submitted = f"submitting flow run '{run_id}'"
    require(submitted in topology.log(f"worker-{pool}"), f"the {pool} worker's log does not show it submitting {run_id}")
    for other in other_pools:
        require(submitted not in topology.log(f"worker-{other}"), f"the {other} worker also submitted {run_id}")
    return f"{run.name} ({run_id[:8]}): COMPLETED, pool {pool}, submitted by smoke-worker-{pool}"


def registry_in_postgres(topology: Topology, model: str, versions: int) -> str:
    """MLflow's PostgreSQL holds the model, ``versions`` READY versions, the champion and
    challenger aliases and per-epoch metrics of every version's run."""
    pg = topology.pg
    require(query(pg, "mlflow", "SELECT name FROM registered_models") == [(model,)], "registered_models: not exactly the one model")
    rows = query(pg, "mlflow", "SELECT version, run_id, status FROM model_versions WHERE name = %s ORDER BY version", (model,))
    require([(v, s) for v, _, s in rows] == [(i, "READY") for i in range(1, versions + 1)], f"model_versions: {rows}")
    aliases = dict(query(pg, "mlflow", "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (model,)))
    require({"champion", "challenger"} <= set(aliases), f"registered_model_aliases: {aliases}")
    for _, run_id, _ in rows:
        metrics = dict(query(pg, "mlflow", "SELECT key, count(*) FROM metrics WHERE run_uuid = %s GROUP BY key", (run_id,)))
        require({"threshold", "epochs_trained"} <= set(metrics) and max(metrics.values()) >= 2, f"metrics of run {run_id}: {metrics}")
    return f"MLflow PostgreSQL: model {model!r}, versions {[r[0] for r in rows]} READY, aliases {aliases}, per-epoch metrics"


def s3_keys(topology: Topology, bucket: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=topology.s3_url, region_name="us-east-1",
                      aws_access_key_id=BUCKET_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=BUCKET_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def objects_in_bucket(topology: Topology, versions: int, batches: int) -> str:
    """The S3 API lists every model version's MLmodel in the artifact bucket, and the lake's
    batch and score Parquet files (no leftover temporary files) in the lake bucket."""
    artifacts = s3_keys(topology, ARTIFACT_BUCKET)
    models = [k for k in artifacts if k.endswith("/MLmodel")]
    require(len(models) >= versions, f"{ARTIFACT_BUCKET}: {len(models)} MLmodel files for {versions} versions: {artifacts[:20]}")
    lake = s3_keys(topology, LAKE_BUCKET)
    parquet = [k for k in lake if k.endswith(".parquet")]
    score_files = [k for k in parquet if "score" in k]
    require(len(parquet) - len(score_files) >= batches, f"{LAKE_BUCKET}: {len(parquet)} Parquet files for {batches} batches: {lake[:30]}")
    require(score_files, f"{LAKE_BUCKET}: no score files: {lake[:30]}")
    require(not [k for k in lake if "/.tmp-" in k], f"{LAKE_BUCKET}: temporary files left: {[k for k in lake if '/.tmp-' in k]}")
    return (f"S3 {ARTIFACT_BUCKET}: {len(artifacts)} objects, {len(models)} MLmodel; "
            f"S3 {LAKE_BUCKET}: {len(lake)} objects, {len(parquet)} Parquet ({len(score_files)} of scores)")


def score_tasks_on_dask(topology: Topology, batches: int) -> str:
    """Score-batch tasks ran on the Dask workers (at least one per scored batch)."""
    from dask.utils import key_split
    from distributed import Client

    counts: Counter = Counter()

    def finished(dask_worker) -> list[str]:
        return [str(e[0]) for e in dask_worker.state.log if len(e) > 1 and e[1] == "put-in-memory"]

    with Client(topology.dask_address, timeout=60) as client:
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        for address, keys in client.run(finished).items():
            for key in keys:
                counts[(names.get(address, address), key_split(key))] += 1
    scoring = {k: n for k, n in counts.items() if "score" in k[1]}
    require(sum(scoring.values()) >= batches, f"Dask workers finished {dict(counts)}; expected {batches} score tasks")
    return f"Dask: score tasks finished per worker {dict(sorted(scoring.items()))}"


def _lake(topology: Topology):
    """The lake in the bucket, through the lake's own API."""
    from pipelines.lake import Lake

    return Lake(f"s3://{LAKE_BUCKET}", endpoint_url=topology.s3_url, key=BUCKET_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                secret=BUCKET_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def _score_counts(topology: Topology, dataset: str) -> dict:
    """Score rows per (model version, batch), read back through the lake's own API."""
    return _lake(topology).read_scores(dataset).groupby(["model_version", "batch_id"]).size().to_dict()


def alerts_once(topology: Topology, dataset: str, rule: str, receiver, timeout: float = 90) -> str:
    """What the alert rule ``rule`` told the json:// ``receiver`` (on 127.0.0.1, in this
    process): one post per batch the ledger (``alerts_sent`` in the bucket) says was sent, none
    twice across the killed run and its re-run, no claim left unconfirmed; and the killed score
    run's CRASHED state alerted by the server's automation (``vae-anomaly alerts automations``)."""
    import time

    from pipelines.alerts import Ledger

    entries = [e for e in Ledger(_lake(topology), dataset).entries(rule) if e["kind"] == "batch"]
    sent = sorted(e["key"] for e in entries if e["state"] == "sent")
    require(bool(sent), f"rule {rule} sent no batch alert; its ledger: {entries}")
    require(all(e["state"] in ("sent", "quiet") for e in entries), f"rule {rule}: batch alerts not sent: {entries}")
    deadline = time.monotonic() + timeout
    while not any(p["title"].endswith("score run crashed") for p in receiver.received()) and time.monotonic() < deadline:
        time.sleep(1)
    posts = receiver.received()
    batch_posts = sorted(p["title"].rsplit(" ", 1)[1] for p in posts if " new anomalous " in p["title"])
    require(batch_posts == sent, f"posts of batch alerts {batch_posts}, the ledger's sent {sent}")
    crashed = [p for p in posts if p["title"] == f"[vae-anomaly] {dataset}: score run crashed"]
    require(len(crashed) == 1, f"expected one post of the crashed score run, got {[p['title'] for p in posts]}")
    return (f"rule {rule}: {len(sent)} batch alert(s) received once each ({', '.join(sent)}), "
            f"{len(entries) - len(sent)} batch(es) with nothing over the bar; the crashed run alerted by the server")


def champion(topology: Topology, model: str) -> str:
    """The version behind the model's champion alias, from MLflow's PostgreSQL."""
    aliases = dict(query(topology.pg, "mlflow", "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (model,)))
    return str(aliases["champion"])


def scores_complete(topology: Topology, dataset: str, rows: dict[str, int], versions: Optional[set[str]] = None) -> str:
    """Each batch has exactly one score row per ingested row from every version that scored
    (or from each of ``versions``): nothing half-written or written twice by a killed Dask
    worker, read back through the lake's own API."""
    counts = _score_counts(topology, dataset)
    if versions is not None:
        counts = {k: n for k, n in counts.items() if str(k[0]) in versions}
    expected = {(version, b): n for version in (versions or {v for v, _ in counts}) for b, n in rows.items()}
    require(counts == expected, f"score rows per (model version, batch) {counts}, expected {expected}")
    return f"lake scores: {counts} rows, one per ingested row"


def no_partial_scores(topology: Topology, dataset: str, rows: dict[str, int], batch_id: str) -> str:
    """After a run was killed scoring ``batch_id``: every batch with scores has all its rows
    (the batch's Delta commit happened whole or not at all); says which it was."""
    counts = _score_counts(topology, dataset)
    partial = {k: n for k, n in counts.items() if n != rows[k[1]]}
    require(not partial, f"partly written score batches {partial} (ingested rows {rows})")
    written = sorted(v for v, b in counts if b == batch_id)
    outcome = f"committed whole by version(s) {written}" if written else "not committed (no score rows)"
    return f"no partial batch in the lake; the killed run's batch {batch_id}: {outcome}"


def crashed(topology: Topology, run_id: str, since: float, timeout: float) -> str:
    """The flow run becomes CRASHED (the heartbeat automation) within ``timeout`` s of ``since``
    (a ``time.monotonic()``); a run still RUNNING then is the zombie the automation should catch."""
    import time

    run = flow_run(topology, run_id)
    while run.state_type.value == "RUNNING" and time.monotonic() < since + timeout:
        time.sleep(2)
        run = flow_run(topology, run_id)
    require(run.state_type.value == "CRASHED", f"flow run {run.name} is {run.state_type.value} "
            f"{time.monotonic() - since:.0f} s after its worker died: {run.state.message}")
    return f"{run.name} ({run_id[:8]}) CRASHED {time.monotonic() - since:.0f} s after the kill: {run.state.message!r}"


def scores_match_serial(topology: Topology, dataset: str, version: str, batch_ids: Optional[list[str]] = None) -> str:
    """The scores the Dask workers wrote (one of them killed mid-task) equal the model's scores
    of the same rows computed here, serially in this process (one torch thread, as on the
    workers): the flow's own steps, ``vae_core.score_with_explanations`` on ``nodes.feature_frame``."""
    import os

    import numpy as np

    os.environ.update(  # this process's settings: the run's servers, state under its folder
        topology.bucket_env(), MLFLOW_TRACKING_URI=topology.mlflow_url, VAE_ANOMALY_HOME=str(topology.root / "home"),
        VAE_ANOMALY_TORCH_THREADS="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    import vae_core
    from pipelines import nodes
    from pipelines.flows.common import lake_for, tracking_for
    from pipelines.settings import apply_torch_threads

    apply_torch_threads()
    tracking = tracking_for(topology.mlflow_url)
    det, _ = tracking.load_detector(tracking.model_uri(dataset, version=version))
    lake = lake_for(f"s3://{LAKE_BUCKET}")
    stored = lake.read_scores(dataset, f"{dataset}-v{version}")
    if batch_ids is not None:
        stored = stored[stored["batch_id"].isin(batch_ids)]
    worst, compared = 0.0, 0
    for batch_id, written in stored.groupby("batch_id"):
        rows = lake.read(dataset, batch_ids=[batch_id]).reset_index(drop=True)
        serial = vae_core.score_with_explanations(det, nodes.feature_frame(rows))
        serial.index = rows["_source_row"].to_numpy()
        written = written.set_index("_source_row")
        require(sorted(written.index) == sorted(serial.index), f"batch {batch_id}: the stored rows are not the batch's rows")
        diff = np.abs(written["anomaly_score"].to_numpy(float) - serial.loc[written.index, "anomaly_score"].to_numpy(float))
        worst, compared = max(worst, float(diff.max())), compared + len(diff)
        flags = (written["is_anomaly"].to_numpy(bool) == serial.loc[written.index, "is_anomaly"].to_numpy(bool)).all()
        require(bool(flags), f"batch {batch_id}: anomaly flags differ from the serial scoring")
    require(compared > 0 and worst == 0.0, f"scores differ from the serial scoring by up to {worst:g} ({compared} rows)")
    return f"{compared} scores identical to serial in-process scoring (max |difference| {worst:g}), flags equal"


def batch_matches_serial(topology: Topology, dataset: str, batch_id: str) -> str:
    """:func:`scores_match_serial` on ``batch_id`` for every version that scored it."""
    labels = sorted(v for v, b in _score_counts(topology, dataset) if b == batch_id)
    require(bool(labels), f"batch {batch_id} has no scores")
    return "; ".join(f"{label}: {scores_match_serial(topology, dataset, label.rsplit('-v', 1)[1], [batch_id])}"
                     for label in labels)


README_SECTION = "## Running on servers"


def readme_commands(text: str) -> list[list[str]]:
    """The commands of the README's "Running on servers" section: every line of its ``sh``
    blocks but comments, ``export`` lines and leading ``VAR=value`` assignments, split as a
    shell would."""
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
                tokens.pop(0)
            if tokens and tokens[0] != "export":
                commands.append(tokens)
    return commands


def shows(shown: list[str], ran: list[str]) -> bool:
    """True if ``ran`` is the command ``shown`` (``<...>`` stands for any value), possibly
    with more options: the same program, and ``shown``'s words in order."""
    patterns = [re.compile(".+".join(re.escape(p) for p in re.split(r"<[^<>]+>", word))) for word in shown]
    if not patterns or not patterns[0].fullmatch(ran[0]):
        return False
    i = 1
    for word in ran[1:]:
        if i < len(patterns) and patterns[i].fullmatch(word):
            i += 1
    return i == len(patterns)


def setup_commands() -> dict[str, list[list[str]]]:
    """The commands of the one-shot setup that docker compose (service ``deployments``) and
    Kubernetes (Job ``vae-anomaly-setup``, infra/k8s/setup.yaml) run: each ``sh -c`` script
    split at ``&&``, per file."""
    import yaml

    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    (compose_script,) = compose["services"]["deployments"]["command"]
    (job,) = [d for d in yaml.safe_load_all((ROOT / "infra" / "k8s" / "setup.yaml").read_text()) if d]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    require(container["command"] == ["/bin/sh", "-c"], f"the setup Job runs {container['command']}, not a shell script")
    (job_script,) = container["args"]
    return {name: [shlex.split(part) for part in script.split("&&")]
            for name, script in (("infra/docker-compose.yml", compose_script), ("infra/k8s/setup.yaml", job_script))}


def readme_is_what_ran(topology: Topology) -> str:
    """Every command the README shows for the topology, and every command of the compose and
    Kubernetes setup one-shots, is one this smoke ran."""
    shown = readme_commands((ROOT / "README.md").read_text())
    require(len(shown) >= 5, f"README.md's {README_SECTION!r} section shows {len(shown)} commands")
    missing = [" ".join(c) for c in shown if not any(shows(c, ran) for ran in topology.commands)]
    require(not missing, "README commands the smoke did not run: " + "; ".join(missing))
    setup = setup_commands()
    for where, commands in setup.items():
        missing = [" ".join(c) for c in commands if not any(shows(c, ran) for ran in topology.commands)]
        require(not missing, f"{where}'s setup commands the smoke did not run: " + "; ".join(missing))
    n_setup = sum(map(len, setup.values()))
    return (f"the {len(shown)} commands of README.md's {README_SECTION!r} and the {n_setup} of the compose and "
            f"Kubernetes setup one-shots are among the {len(topology.commands)} the smoke ran")
