"""``--on-failure`` rules on a real Prefect server (the session's temporary API): the automation
that alerts a failed flow run, sent by the server itself to a json:// receiver on 127.0.0.1."""
import time

import pytest


def test_a_failed_flow_run_on_a_server_is_alerted_by_its_automation(prefect_harness, alert_lake, json_receiver):
    from prefect import flow
    from prefect.client.orchestration import get_client

    from pipelines.alerts import AlertRule, RuleStore
    from pipelines.alerts.automation import PREFIX, ensure_failure_automations

    RuleStore(alert_lake).add(AlertRule(name="srv", dataset="d", url=json_receiver.url("srv", user="bob", password="hunter22"),
                                        on_failure=True))
    made = ensure_failure_automations(alert_lake)
    assert made["automations"] == [{"rule": "srv", "automation": PREFIX + "srv", "action": "created"}]
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(PREFIX + "srv")
        assert "hunter22" not in automation.model_dump_json()  # the URL is in the block, a secret

    @flow(name="alerts-broken")
    def broken(dataset: str) -> None:
        raise RuntimeError("the feed is gone")

    with pytest.raises(RuntimeError):
        broken("d")
    deadline = time.monotonic() + 60
    while not json_receiver.received() and time.monotonic() < deadline:
        time.sleep(0.5)
    (post,) = json_receiver.received()
    assert post["title"] == "[vae-anomaly] d: alerts-broken run failed"
    assert "ended Failed" in post["message"] and post["auth"]

    RuleStore(alert_lake).remove("srv")
    assert ensure_failure_automations(alert_lake)["automations"] == [
        {"rule": "srv", "automation": PREFIX + "srv", "action": "deleted"}]
