"""Alert rules, the ledger and delivery on a real lake (Delta tables in a temporary folder) to real
receivers on 127.0.0.1: an HTTP server that records json:// posts and an SMTP server that records
mail. The batches' reports are stored with the real ReportStore (their content written here)."""
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.alerts import AlertError, AlertRule, Ledger, RuleStore, alert_failure, alert_scored, freshness
from pipelines.alerts.batches import alert_batches
from pipelines.alerts.ledger import Decision
from pipelines.reports.store import ReportRef, ReportStore

UTC = timezone.utc
KEY = "d-v1"
NOON = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def store_report(lake, batch_id, items):
    report = {"dataset": "d", "batch": {"batch_id": batch_id}, "model": {"model_name": "d", "version": "1"},
              "summary": {"rows": 5, "flagged": len(items), "n_items": len(items), "reviewed_precision": 0.5},
              "items": [{"key": f"d/{batch_id}/row/{n}", "kind": "row", "title": f"row {n}", "score": s, "p_value": 1e-3,
                         "began_before": before, "features": [{"feature": "x", "value": "99", "share": 0.9}]}
                        for n, (s, before) in enumerate(items)]}
    ReportStore(lake.url).write(ReportRef("d", KEY, batch_id), "<html></html>", json.dumps(report), {})


def batches(lake):
    return [r.batch_id for r in lake.list_batches("d")]


def summary(lake, scored, skipped=()):
    return {"dataset": "d", "scores_key": KEY, "scored": [{"batch_id": b} for b in scored], "skipped": list(skipped),
            "reports_rebuilt": []}


def add(lake, url, **kw):
    return RuleStore(lake).add(AlertRule(name=kw.pop("name", "r"), dataset="d", url=url, **kw))


def test_rules_are_stored_in_the_lake_listed_masked_and_removed(alert_lake, json_receiver):
    store = RuleStore(alert_lake)
    rule = add(alert_lake, json_receiver.url(user="bob", password="hunter22"), min_score=3.0, quiet="22:00-07:00")
    assert [r.name for r in RuleStore(alert_lake).rules("d")] == ["r"] and store.find("r").url == rule.url
    shown = store.find("r").public()
    assert "hunter22" not in json.dumps(shown) and shown["url"].startswith("json://bob:****@127.0.0.1")
    with pytest.raises(AlertError, match="an alert rule 'r' exists already"):
        add(alert_lake, json_receiver.url())
    with pytest.raises(AlertError, match="no dataset 'nope'"):
        store.add(AlertRule(name="x", dataset="nope", url=json_receiver.url()))
    store.remove("r")
    assert store.rules("d") == [] and store.all_rules() == []
    with pytest.raises(AlertError, match="no alert rule 'r'"):
        store.find("r")


def test_one_alert_per_batch_and_none_on_a_rerun(alert_lake, json_receiver):
    b1, b2 = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, False), (8.0, False), (7.0, False)])
    store_report(alert_lake, b2, [(1.0, False)])
    add(alert_lake, json_receiver.url(), min_score=5.0)
    result = alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=NOON)
    assert [(a["key"], a["state"]) for a in result["alerts"]] == [(b1, "sent"), (b2, "quiet")]  # b2 below the bar
    (post,) = json_receiver.received()
    assert post["title"] == f"[vae-anomaly] d: 3 new anomalous item(s) in batch {b1}"
    assert "1. row 0: score 9, p 0.001; x=99 (90%)" in post["message"] and "3. row 2" in post["message"]
    assert f"review: http://127.0.0.1:8765/review/d?label={KEY}&batch={b1}" in post["message"]
    again = alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=NOON)
    assert {a["state"] for a in again["alerts"]} == {"already"} and len(json_receiver.received()) == 1
    # a run killed after committing b1 and before alerting: the next run sees b1 skipped and alerts it
    add(alert_lake, json_receiver.url("late"), name="late", min_score=5.0)
    late = alert_scored(summary(alert_lake, [], skipped=[b1, b2]), alert_lake.url, now=NOON)
    assert [(a["rule"], a["key"], a["state"]) for a in late["alerts"] if a["rule"] == "late"] == []  # ingested before the rule


def test_concurrent_runs_claim_a_batch_once(alert_lake):
    ledger, mine, barrier = Ledger(alert_lake, "d"), [], threading.Barrier(4)

    def claim():
        barrier.wait()
        mine.append(ledger.claim("r", "b1", "batch", lambda rows: Decision("claimed")).mine)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(mine) == [False, False, False, True]
    assert [e["state"] for e in ledger.entries("r")] == ["unconfirmed"]  # claimed, no outcome recorded


def test_killed_between_claim_and_send_the_alert_is_not_sent_twice(alert_lake, json_receiver):
    b1, _ = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, False)])
    add(alert_lake, json_receiver.url())
    Ledger(alert_lake, "d").claim("r", b1, "batch", lambda rows: Decision("claimed"))  # the run died here
    result = alert_scored(summary(alert_lake, [b1]), alert_lake.url, now=NOON)
    assert [a["state"] for a in result["alerts"]] == ["already"] and json_receiver.received() == []
    assert [(e["key"], e["state"]) for e in Ledger(alert_lake, "d").entries()] == [(b1, "unconfirmed")]


def test_continued_events_alone_send_nothing(alert_lake, json_receiver):
    b1, b2 = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, True)])
    store_report(alert_lake, b2, [(9.0, True), (6.0, False)])
    add(alert_lake, json_receiver.url())
    result = alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=NOON)
    assert [a["state"] for a in result["alerts"]] == ["quiet", "sent"]
    (post,) = json_receiver.received()
    assert "continues: row 0 (began in an earlier batch, alerted then)" in post["message"]


def test_quiet_hours_hold_alerts_then_one_digest(alert_lake, json_receiver):
    b1, b2 = batches(alert_lake)
    for b in (b1, b2):
        store_report(alert_lake, b, [(9.0, False)])
    add(alert_lake, json_receiver.url(), quiet="22:00-07:00")
    night = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    held = alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=night)
    assert [a["state"] for a in held["alerts"]] == ["held", "held"] and json_receiver.received() == []
    morning = alert_scored(summary(alert_lake, []), alert_lake.url, now=night.replace(hour=8))
    assert [(a["key"], a["state"]) for a in morning["alerts"]] == [("digest:quiet:2026-12-07", "sent")]
    (post,) = json_receiver.received()
    assert "digest of 2 batch alert(s) held during quiet hours 22:00-07:00" in post["title"]
    assert f"- batch {b1}:" in post["message"] and f"- batch {b2}:" in post["message"]
    assert alert_scored(summary(alert_lake, []), alert_lake.url, now=night.replace(hour=9))["alerts"] == []


def test_beyond_the_daily_budget_one_digest_the_next_day(alert_lake, json_receiver):
    b1, b2 = batches(alert_lake)
    for b in (b1, b2):
        store_report(alert_lake, b, [(9.0, False)])
    add(alert_lake, json_receiver.url(), per_day=1)
    today = alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=NOON)
    assert [a["state"] for a in today["alerts"]] == ["sent", "held"] and len(json_receiver.received()) == 1
    tomorrow = alert_scored(summary(alert_lake, []), alert_lake.url, now=NOON + timedelta(days=1))
    assert [(a["key"], a["state"]) for a in tomorrow["alerts"]] == [("digest:day:2026-12-08", "sent")]
    assert "beyond the budget of 1 alert(s) a day" in json_receiver.received()[1]["title"]


def test_a_receiver_that_is_down_is_retried_then_recorded_and_nothing_raises(alert_lake, closed_port):
    b1, _ = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, False)])
    url = f"json://bob:hunter22@127.0.0.1:{closed_port}/alerts"
    add(alert_lake, url)
    result = alert_scored(summary(alert_lake, [b1]), alert_lake.url, now=NOON, attempts=3, backoff_s=0.05)
    (a,) = result["alerts"]
    assert (a["state"], a["attempts"], result["not_sent"], result["error"]) == ("failed", 3, [b1], None)
    assert "Connection error" in a["error"] and "hunter22" not in json.dumps(result)
    (entry,) = Ledger(alert_lake, "d").entries()
    assert (entry["state"], entry["attempts"]) == ("failed", 3) and "hunter22" not in entry["error"]
    assert alert_scored(summary(alert_lake, [b1]), alert_lake.url, now=NOON)["alerts"][0]["state"] == "already"


def test_mail_reaches_an_smtp_server_with_the_password_masked_everywhere_else(alert_lake, smtp_receiver, caplog):
    box, port = smtp_receiver
    b1, _ = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, False)])
    url = f"mailto://alerts:pw-s3cret@example.com:{port}?smtp=127.0.0.1&from=alerts@example.com&to=ops@example.com&mode=insecure"
    add(alert_lake, url)
    result = alert_scored(summary(alert_lake, [b1]), alert_lake.url, now=NOON)
    assert [a["state"] for a in result["alerts"]] == ["sent"]
    (mail,) = box.messages
    assert mail["Subject"] == f"[vae-anomaly] d: 1 new anomalous item(s) in batch {b1}" and mail["To"] == "ops@example.com"
    text = mail.get_payload()[0].get_payload(decode=True).decode().replace("\r\n", "\n")
    assert "1. row 0: score 9" in text and "reviewed precision: 50%" in text
    shown = json.dumps([result, RuleStore(alert_lake).find("r").public(), Ledger(alert_lake, "d").entries()]) + caplog.text
    assert "pw-s3cret" not in shown and "mailto://alerts:****@example.com" in shown


def test_freshness_alerts_once_when_no_batch_came(alert_lake, json_receiver):
    add(alert_lake, json_receiver.url(), expect_every_s=3600.0)
    latest = max(datetime.fromisoformat(r.ingested_at) for r in alert_lake.list_batches("d"))
    assert freshness(alert_lake, "d", now=latest + timedelta(minutes=30)) == []
    late = freshness(alert_lake, "d", now=latest + timedelta(hours=2))
    assert [(a["key"][:6], a["state"]) for a in late] == [("stale:", "sent")]
    assert "expects a batch of d every 1 h; the latest batch" in json_receiver.received()[0]["message"]
    assert [a["state"] for a in freshness(alert_lake, "d", now=latest + timedelta(hours=3))] == ["already"]


def test_a_failed_flow_run_alerts_the_on_failure_rules_once(alert_lake, json_receiver):
    add(alert_lake, json_receiver.url(), on_failure=True)
    add(alert_lake, json_receiver.url("other"), name="quiet-one")
    sent = alert_failure(alert_lake, "d", "score", "Failed", "LakeError: no batch", run="run-1")
    assert [(a["rule"], a["state"]) for a in sent] == [("r", "sent")]
    assert [a["state"] for a in alert_failure(alert_lake, "d", "score", "Failed", "again", run="run-1")] == ["already"]
    (post,) = json_receiver.received()
    assert post["title"] == "[vae-anomaly] d: score run failed" and "LakeError: no batch" in post["message"]


def test_the_alert_tables_are_lake_tables_that_batch_removal_restore_and_vacuum_leave_alone(alert_lake, json_receiver):
    from pipelines.lake import admin
    from pipelines.lake.tables import DATASET_TABLES, TABLES

    assert {"alert_rules", "alerts_sent"} <= set(DATASET_TABLES) <= set(TABLES)
    b1, b2 = batches(alert_lake)
    add(alert_lake, json_receiver.url())
    Ledger(alert_lake, "d").claim("r", b1, "batch", lambda rows: Decision("claimed"))
    assert Ledger(alert_lake, "d").uri == alert_lake.table_uri("d", "alerts_sent")
    before = (RuleStore(alert_lake).rules("d"), Ledger(alert_lake, "d").entries())
    admin.remove_batch(alert_lake, "d", b1)
    assert batches(alert_lake) == [b2] and (RuleStore(alert_lake).rules("d"), Ledger(alert_lake, "d").entries()) == before
    admin.restore_batch(alert_lake, "d", b1)
    alert_lake.vacuum("d", retention_hours=0)
    assert sorted(batches(alert_lake)) == sorted([b1, b2])
    assert (RuleStore(alert_lake).rules("d"), Ledger(alert_lake, "d").entries()) == before


def test_concurrent_score_runs_send_each_batch_alert_once(alert_lake, json_receiver):
    b1, b2 = batches(alert_lake)
    for b in (b1, b2):
        store_report(alert_lake, b, [(9.0, False)])
    add(alert_lake, json_receiver.url(), per_day=5)
    barrier, results = threading.Barrier(3), []

    def run():
        barrier.wait()
        results.append(alert_scored(summary(alert_lake, [b1, b2]), alert_lake.url, now=NOON))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p["title"].rsplit(" ", 1)[1] for p in json_receiver.received()) == sorted([b1, b2])
    states = sorted(a["state"] for r in results for a in r["alerts"])
    assert states == ["already"] * 4 + ["sent"] * 2 and all(r["error"] is None for r in results)


def test_a_run_killed_after_committing_scores_is_caught_up_by_the_next(alert_lake, json_receiver, tmp_path):
    add(alert_lake, json_receiver.url())
    source = tmp_path / "b3.csv"
    source.write_text("x,y\n" + "".join(f"{30 + k},{k}\n" for k in range(5)))
    b3 = alert_lake.ingest("d", source).batch_id  # ingested after the rule: scored, then the run died
    store_report(alert_lake, b3, [(9.0, False)])
    result = alert_scored(summary(alert_lake, [], skipped=[*batches(alert_lake)]), alert_lake.url, now=NOON)
    assert [(a["key"], a["state"]) for a in result["alerts"]] == [(b3, "sent")]  # not the two from before the rule
    assert json_receiver.received()[0]["title"].endswith(b3)


KILLED_RUN = """
import os, signal, sys
from datetime import datetime, timezone
from pipelines.alerts import alert_scored, deliver
deliver.send = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the claim, before the send
alert_scored({"dataset": "d", "scores_key": sys.argv[2], "scored": [{"batch_id": sys.argv[3]}], "skipped": [],
              "reports_rebuilt": []}, sys.argv[1], now=datetime(2026, 12, 8, 12, tzinfo=timezone.utc))
"""


def test_a_run_killed_with_sigkill_between_claim_and_send_is_not_sent_twice(alert_lake, json_receiver):
    import signal
    import subprocess
    import sys

    b1, _ = batches(alert_lake)
    store_report(alert_lake, b1, [(9.0, False)])
    add(alert_lake, json_receiver.url())
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, alert_lake.url, KEY, b1], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [(e["key"], e["state"]) for e in Ledger(alert_lake, "d").entries()] == [(b1, "unconfirmed")]
    again = alert_scored(summary(alert_lake, [b1]), alert_lake.url, now=NOON)
    assert [a["state"] for a in again["alerts"]] == ["already"] and json_receiver.received() == []
