"""The score flow's alerts on a real Prefect API, a real MLflow server and a real lake, to real
json:// receivers on 127.0.0.1: one grouped alert per scored batch after its commit, none on a
re-run, a receiver that is down (retried, recorded, the run still green, the artifact says so),
and freshness checked by the scheduled score run."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 6, "kl_warmup_epochs": 2, "elbo_samples": 2, "iwae_samples": 4}


@pytest.fixture(scope="module")
def env(txn_env):
    """The three transaction batches in a lake, and a small model trained on the first."""
    from pipelines.flows.train import train
    from pipelines.lake import Lake

    first = Lake(txn_env["lake_url"]).list_batches("transactions")[0].batch_id
    train("transactions", model_name="txn-alerts", exclude_columns=["txn_id"], params=FAST, batch_ids=[first], **txn_env)
    return txn_env


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scored_batches_alert_once_each_and_a_down_receiver_leaves_the_run_green(env, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from pipelines.alerts import AlertRule, Ledger, RuleStore, deliver
    from pipelines.alerts.receiver import JsonReceiver
    from pipelines.flows.score import score
    from pipelines.lake import Lake

    monkeypatch.setattr(deliver, "BACKOFF_S", 0.05)  # the retries' waits, shortened
    lake = Lake(env["lake_url"])
    rules = RuleStore(lake)
    with JsonReceiver() as receiver:
        rules.add(AlertRule(name="ops", dataset="transactions", url=receiver.url("ops", user="bob", password="hunter22")))
        rules.add(AlertRule(name="down", dataset="transactions", url=f"json://bob:hunter22@127.0.0.1:{_closed_port()}/x"))
        rules.add(AlertRule(name="fresh", dataset="transactions", url=receiver.url("fresh"), min_score=1e12,
                            expect_every_s=1.0))
        time.sleep(1.1)  # the newest batch is now older than the "fresh" rule expects
        first = score("transactions", model_name="txn-alerts", **env)
        flagged = [s["batch_id"] for s in first["scored"] if s["anomalies"] > 0]
        assert flagged, "the sample batches have injected anomalies"
        alerts = first["alerts"]
        sent = [a["key"] for a in alerts["alerts"] if a["rule"] == "ops" and a["state"] == "sent"]
        assert sent == flagged and alerts["error"] is None
        posts = [p for p in receiver.received() if p["path"] == "/ops"]
        assert [p["title"].rsplit(" ", 1)[1] for p in posts] == flagged  # one alert per batch, grouped
        assert all(p["auth"] and "model: txn-alerts v1" in p["message"] for p in posts)
        body = posts[0]["message"]
        assert 1 <= sum(line[:2] in {"1.", "2.", "3.", "4.", "5."} for line in body.splitlines()) <= 5
        assert f"review: http://127.0.0.1:8765/review/transactions?label=txn-alerts-v1&batch={flagged[0]}" in body
        # the receiver that is down: tried three times per batch, recorded, and the run completed
        down = [a for a in alerts["alerts"] if a["rule"] == "down"]
        assert [(a["state"], a["attempts"]) for a in down] == [("failed", 3)] * len(flagged)
        assert alerts["not_sent"] == flagged and "hunter22" not in str(first)
        # freshness, from the score run: the feed is older than 1 s
        (stale,) = [a for a in alerts["alerts"] if a["rule"] == "fresh" and a["kind"] == "stale"]
        assert stale["state"] == "sent" and [p["path"] for p in receiver.received()].count("/fresh") == 1

        again = score("transactions", model_name="txn-alerts", **env)
        assert again["scored"] == [] and len([p for p in receiver.received() if p["path"] == "/ops"]) == len(flagged)
        assert {a["state"] for a in again["alerts"]["alerts"] if a["rule"] != "fresh"} <= {"already"}

    states = {(e["rule"], e["key"]): e["state"] for e in Ledger(lake, "transactions").entries()}
    assert all(states[("ops", b)] == "sent" and states[("down", b)] == "failed" for b in flagged)

    async def artifact():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["alerts-transactions"])))
            return [a.data for a in found]

    (markdown,) = asyncio.run(artifact())  # the re-run had nothing new to say: no second artifact
    assert f"**{len(flagged)} alert(s) did not go out**" in markdown and "hunter22" not in markdown
    assert "json://bob:\\*\\*\\*\\*@127\\.0\\.0\\.1" in markdown  # masked, then escaped for markdown
