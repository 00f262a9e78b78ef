"""Alert rules on a real Prefect server (the session's temporary API): the automations that alert
a failed flow run and a feed that stopped (``--expect-every``), sent by the server itself to a
json:// receiver and an SMTP server (aiosmtpd) on 127.0.0.1."""
import time

import pytest


def test_a_failed_flow_run_on_a_server_is_alerted_by_its_automation(prefect_harness, alert_lake, json_receiver,
                                                                   smtp_receiver):
    from prefect import flow
    from prefect.client.orchestration import get_client

    from pipelines.alerts import AlertRule, RuleStore
    from pipelines.alerts.automation import PREFIX, ensure_automations

    box, port = smtp_receiver
    mail = (f"mailto://alerts:pw-s3cret@example.com:{port}?smtp=127.0.0.1&from=alerts@example.com&to=ops@example.com"
            "&mode=insecure")
    RuleStore(alert_lake).add(AlertRule(name="srv", dataset="d", url=json_receiver.url("srv", user="bob", password="hunter22"),
                                        on_failure=True))
    RuleStore(alert_lake).add(AlertRule(name="mail", dataset="d", url=mail, on_failure=True))
    made = ensure_automations(alert_lake)
    assert made["automations"] == [{"rule": r, "automation": PREFIX + r, "action": "created"} for r in ("mail", "srv")]
    with get_client(sync_client=True) as client:
        for name in ("srv", "mail"):
            (automation,) = client.read_automations_by_name(PREFIX + name)
            shown = automation.model_dump_json()  # the URL is in the block, a secret
            assert "hunter22" not in shown and "pw-s3cret" not in shown

    @flow(name="alerts-broken")
    def broken(dataset: str) -> None:
        raise RuntimeError("the feed is gone")

    with pytest.raises(RuntimeError):
        broken("d")
    (post,) = wait_for_posts(json_receiver, 1)
    assert post["title"] == "[vae-anomaly] d: alerts-broken run failed"
    assert "ended Failed" in post["message"] and post["auth"]
    deadline = time.monotonic() + 60
    while not box.messages and time.monotonic() < deadline:
        time.sleep(0.5)
    (message,) = box.messages  # the same alert, mailed by the server to the SMTP server on 127.0.0.1
    assert message["Subject"] == "[vae-anomaly] d: alerts-broken run failed" and message["To"] == "ops@example.com"

    for name in ("srv", "mail"):
        RuleStore(alert_lake).remove(name)
    assert sorted(a["action"] for a in ensure_automations(alert_lake)["automations"]) == ["deleted", "deleted"]


def wait_for_posts(receiver, n, timeout=60):
    deadline = time.monotonic() + timeout
    while len(receiver.received()) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return receiver.received()


def test_no_batch_for_expect_every_is_alerted_by_the_servers_automation_once_per_silence(prefect_harness, alert_lake,
                                                                                        json_receiver, tmp_path):
    from pipelines.alerts import AlertRule, RuleStore, alert_scored
    from prefect.client.orchestration import get_client

    from pipelines.alerts.automation import FRESH_PREFIX, INGESTED, automated, ensure_automations
    from pipelines.flows.ingest import ingest

    rule = RuleStore(alert_lake).add(AlertRule(name="feed", dataset="d", url=json_receiver.url("feed"), min_score=1e12,
                                               expect_every_s=10.0))  # a proactive trigger's shortest window
    assert automated([rule]) == set()
    made = ensure_automations(alert_lake)
    assert made["automations"] == [{"rule": "feed", "automation": FRESH_PREFIX + "feed", "action": "created"}]
    assert automated([rule]) == {"feed"}  # the score flow leaves this rule's freshness to the server
    # the clock started at the newest batch (ingested before the automation): one alert 10 s after it
    latest = alert_lake.list_batches("d")[-1].batch_id
    (post,) = wait_for_posts(json_receiver, 1)
    assert post["title"] == "[vae-anomaly] d: no new batch for 10 s"
    assert f"expects a batch of d every 10 s; the latest batch, {latest}, was ingested at" in post["message"]
    scored = alert_scored({"dataset": "d", "scores_key": "d-v1", "scored": [], "skipped": [], "reports_rebuilt": []},
                          alert_lake.url)
    assert scored["rules"] == 1 and scored["alerts"] == []  # the score flow does not tell this silence again
    # a batch through the ingest flow starts the clock again: one more alert, naming it
    source = tmp_path / "b3.csv"
    source.write_text("x,y\n" + "".join(f"{30 + k},{k}\n" for k in range(5)))
    new = ingest("d", str(source), lake_url=alert_lake.url)["batch_id"]
    posts = wait_for_posts(json_receiver, 2)
    assert len(posts) == 2 and f"the latest batch, {new}, was ingested" in posts[1]["message"]
    with get_client(sync_client=True) as client:  # once per silence: the window opens only after a batch
        (automation,) = client.read_automations_by_name(FRESH_PREFIX + "feed")
    assert (automation.trigger.after, automation.trigger.posture.value) == ({INGESTED}, "Proactive")
    RuleStore(alert_lake).remove("feed")
    assert [a["action"] for a in ensure_automations(alert_lake)["automations"]] == ["deleted"]
