"""pipelines.alerts' decisions and messages as pure functions: the bar, continued events, quiet
hours, the daily budget, the message's content and links, and the masking of URLs."""
from datetime import datetime, timezone

import pytest

from pipelines.alerts import message
from pipelines.alerts.batches import decide, digest_due
from pipelines.alerts.rules import AlertError, AlertRule, parse_duration, quiet_window
from pipelines.alerts.secrets import mask_url, scrub

UTC = timezone.utc
RULE = AlertRule(name="r", dataset="d", url="json://127.0.0.1:9/alerts")


def item(n, score, p=1e-4, before=False, kind="row"):
    return {"key": f"d/b1/{kind}/{n}", "kind": kind, "title": f"row {n}", "score": score, "p_value": p,
            "began_before": before, "features": [{"feature": "amount", "value": "9999", "share": 0.61},
                                                  {"feature": "country", "value": "XX\x1b[31m", "share": 0.2}]}


def report(items, batch="b1", precision=None, flagged=None):
    return {"dataset": "d", "batch": {"batch_id": batch, "dataset": "d"}, "model": {"model_name": "d", "version": "3"},
            "summary": {"rows": 1900, "flagged": len(items) if flagged is None else flagged, "n_items": len(items),
                        "reviewed_precision": precision},
            "items": items}


def test_one_alert_per_batch_lists_the_top_five_with_features_precision_and_links():
    alert = message.batch_alert(report([item(i, 20.0 - i) for i in range(8)], batch="b 1/x", precision=0.75), RULE,
                                "http://review.example:8765/", "d-v3")
    assert message.should_alert(alert, RULE) and len(alert.new) == 8
    body = message.body(alert, RULE)
    lines = body.splitlines()
    assert "dataset: d" in lines and "batch: b 1/x" in lines and "model: d v3" in lines
    assert "flagged: 8 of 1900 rows, 8 item(s); 8 new over the bar of rule r (1+ new item(s) flagged by the model)" in lines
    assert "reviewed precision: 75% of this version's reviewed items were real" in lines
    ranked = [line for line in lines if line[:2] in {f"{n}." for n in range(1, 9)}]
    assert [r.split()[2].rstrip(":") for r in ranked] == ["0", "1", "2", "3", "4"]  # five, highest score first
    assert ": score 20, p 0.0001; amount=9999 (61%), country=XX[31m (20%)" in ranked[0]  # the escape byte dropped
    assert "report: http://review.example:8765/reports/d/d-v3/b%201%2Fx" in lines
    assert "review: http://review.example:8765/review/d?label=d-v3&batch=b+1%2Fx" in lines
    assert "\x1b" not in body and alert.title == "[vae-anomaly] d: 8 new anomalous item(s) in batch b 1/x"
    assert "not reviewed yet" in message.body(message.batch_alert(report([item(1, 5.0)]), RULE, "http://r", "d-v3"), RULE)


def test_a_continued_event_does_not_alert_again_and_is_said_to_continue():
    rule = AlertRule(name="r", dataset="d", url=RULE.url)
    only_old = message.batch_alert(report([item(1, 9.0, before=True, kind="event")]), rule, "http://r", "d-v1")
    assert not message.should_alert(only_old, rule) and decide(rule, only_old, [], datetime.now(UTC)).state == "quiet"
    mixed = message.batch_alert(report([item(1, 9.0, before=True, kind="event"), item(2, 7.0, kind="event")]), rule,
                                "http://r", "d-v1")
    assert message.should_alert(mixed, rule) and [i["title"] for i in mixed.new] == ["row 2"]
    assert "continues: row 1 (began in an earlier batch, alerted then), score 9" in message.body(mixed, rule)
    assert mixed.title.endswith("1 new anomalous event(s) in batch b1")


def test_the_rules_bar_score_p_value_and_item_count():
    items = [item(1, 9.0, p=0.001), item(2, 4.0, p=0.02), item(3, 3.0, p=0.2)]
    by_score = AlertRule(name="r", dataset="d", url=RULE.url, min_score=4.0)
    assert [i["title"] for i in message.batch_alert(report(items), by_score, "http://r", "k").new] == ["row 1", "row 2"]
    by_p = AlertRule(name="r", dataset="d", url=RULE.url, min_p=0.01)
    assert [i["title"] for i in message.batch_alert(report(items), by_p, "http://r", "k").new] == ["row 1"]
    three = AlertRule(name="r", dataset="d", url=RULE.url, min_items=3, min_score=4.0)
    assert not message.should_alert(message.batch_alert(report(items), three, "http://r", "k"), three)
    below = message.batch_alert(report(items), AlertRule(name="r", dataset="d", url=RULE.url, min_score=50), "http://r", "k")
    assert decide(RULE, below, [], datetime.now(UTC)).state == "quiet"  # all below the bar: nothing is sent


def test_quiet_hours_hold_alerts_for_one_digest_after_them():
    quiet = AlertRule(name="r", dataset="d", url=RULE.url, quiet="22:00-07:00")
    alert = message.batch_alert(report([item(1, 9.0)]), quiet, "http://r", "k")
    at_night = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
    held = decide(quiet, alert, [], at_night)
    assert (held.state, held.window) == ("held", "quiet:2026-12-07")  # the window began the evening before
    assert decide(quiet, alert, [], datetime(2026, 12, 7, 23, 30, tzinfo=UTC)).window == "quiet:2026-12-07"
    assert decide(quiet, alert, [], datetime(2026, 12, 8, 7, 0, tzinfo=UTC)).state == "claimed"
    assert not digest_due(quiet, "quiet:2026-12-07", at_night)
    assert digest_due(quiet, "quiet:2026-12-07", datetime(2026, 12, 8, 7, 1, tzinfo=UTC))
    assert quiet_window("09:00-17:00", datetime(2026, 12, 8, 8, 59, tzinfo=UTC)) is None
    assert quiet_window("09:00-17:00", datetime(2026, 12, 8, 9, 0, tzinfo=UTC)) == "quiet:2026-12-08"


def test_the_daily_budget_holds_the_rest_of_the_day_for_a_digest():
    rule = AlertRule(name="r", dataset="d", url=RULE.url, per_day=2)
    alert = message.batch_alert(report([item(1, 9.0)]), rule, "http://r", "k")
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    sent = [{"state": "claimed", "kind": "batch", "at": datetime(2026, 12, 8, h, tzinfo=UTC)} for h in (1, 2)]
    yesterday = [{"state": "claimed", "kind": "batch", "at": datetime(2026, 12, 7, 23, tzinfo=UTC)}]
    assert decide(rule, alert, sent[:1] + yesterday, now).state == "claimed"
    held = decide(rule, alert, sent, now)
    assert (held.state, held.window, held.content["batch_id"]) == ("held", "day:2026-12-08", "b1")
    assert not digest_due(rule, "day:2026-12-08", now) and digest_due(rule, "day:2026-12-08", datetime(2026, 12, 9, 0, 5, tzinfo=UTC))
    title, text = message.digest("d", rule, "day:2026-12-08", [held.content, {**held.content, "batch_id": "b2"}])
    assert title == "[vae-anomaly] d: digest of 2 batch alert(s) held beyond the budget of 2 alert(s) a day"
    assert "- batch b1: 1 new item(s), top row 1 score 9" in text and "- batch b2:" in text


@pytest.mark.parametrize("url, secret, shown", [
    ("json://bob:hunter22@127.0.0.1:8080/alerts", "hunter22", "json://bob:****@127.0.0.1:8080/alerts"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "TIiajkdnlazkcOXrIdevi7FQ", "slack://T...2/A...D/T...Q/"),
    ("mailto://alerts:pw-s3cret@example.com:2525?smtp=127.0.0.1&to=ops@example.com", "pw-s3cret", "mailto://alerts:****@example.com"),
    ("nosuchservice://token-abcdef@host/xyz", "token-abcdef", "nosuchservice://***"),
])
def test_secrets_in_urls_are_masked_in_what_is_shown_and_in_error_text(url, secret, shown):
    masked = mask_url(url)
    assert secret not in masked and masked.startswith(shown)
    error = f"ConnectionError: could not post to {url} (user {url.split('://')[1].split('@')[0]})"
    assert secret not in scrub(error, [url]) and "ConnectionError: could not post to" in scrub(error, [url])


def test_bad_rules_say_what_is_wrong():
    good = dict(name="r", dataset="d", url=RULE.url)
    for bad, words in [
        (dict(url="nosuch://pw-s3cret@x"), "nosuch://*** is not a URL Apprise can send to"),
        (dict(min_score=1.0, min_p=0.1), "give --min-score or --min-p, not both"),
        (dict(min_p=2.0), "--min-p must be in (0, 1]"),
        (dict(min_items=0), "--min-items must be at least 1"),
        (dict(quiet="25:00-07:00"), "--quiet '25:00-07:00': expected HH:MM-HH:MM"),
        (dict(per_day=0), "--alerts-per-day must be at least 1"),
        (dict(name="a/b"), "invalid alert rule name"),
    ]:
        with pytest.raises(AlertError, match=None) as err:
            AlertRule(**{**good, **bad}).check()
        assert words in str(err.value) and "pw-s3cret" not in str(err.value)
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800
    with pytest.raises(AlertError, match="expected a positive number and a unit"):
        parse_duration("2 hours")
