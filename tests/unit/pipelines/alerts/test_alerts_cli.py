"""``vae-anomaly alerts``: the README's Alerts commands, run in-process against a real lake and a
real json:// receiver on 127.0.0.1, and the CLI's own path for a failed flow run (no server)."""
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from infra.smoke.checks import shows  # noqa: E402

SECTION = "## Alerts"


def readme_alert_commands() -> list[list[str]]:
    """The ``vae-anomaly`` lines of the README's Alerts section's ``sh`` blocks."""
    text = (ROOT / "README.md").read_text()
    section = text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [shlex.split(line, comments=True) for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    return [t for t in lines if t and t[0] == "vae-anomaly"]


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``vae-anomaly ARGS --json`` in-process on a lake with a small ``transactions`` dataset."""
    from pipelines.cli.app import main
    from pipelines.lake import Lake

    lake = Lake(tmp_path / "lake")
    source = tmp_path / "t.csv"
    source.write_text("amount,country\n" + "".join(f"{k},{k % 3}\n" for k in range(6)))
    lake.ingest("transactions", source)
    monkeypatch.setenv("VAE_ANOMALY_LAKE", lake.url)
    monkeypatch.setenv("VAE_ANOMALY_HOME", str(tmp_path / "home"))
    ran = []

    def run(*argv):
        ran.append(["vae-anomaly", *argv])
        code = main([*argv, "--json"])
        out = capsys.readouterr()
        return code, (json.loads(out.out) if out.out.strip() else None), out.err

    run.ran, run.lake, run.tmp = ran, lake, tmp_path
    return run


def test_the_readmes_alert_commands_add_list_test_log_and_remove(cli, json_receiver, smtp_receiver):
    _, port = smtp_receiver
    code, added, _ = cli("alerts", "add", "transactions", "--to", json_receiver.url(), "--min-score", "5", "--name", "txn-ops")
    assert code == 0 and added["rules"][0]["bar"] == "1+ new item(s) score >= 5"
    mail = (f"mailto://alerts:pw-s3cret@example.com:{port}?smtp=127.0.0.1&from=alerts@example.com&to=ops@example.com"
            "&mode=insecure")
    code, _, _ = cli("alerts", "add", "transactions", "--to", mail, "--quiet", "22:00-07:00", "--alerts-per-day", "10",
                     "--on-failure", "--expect-every", "2h", "--name", "txn-mail")
    assert code == 0
    code, listed, _ = cli("alerts", "list")
    assert [(r["name"], r["quiet"], r["per_day"], r["on_failure"], r["expect_every_s"]) for r in listed["rules"]] == [
        ("txn-mail", "22:00-07:00", 10, True, 7200.0), ("txn-ops", None, None, False, None)]
    assert "pw-s3cret" not in json.dumps(listed) and listed["rules"][0]["url"].startswith("mailto://alerts:****@example.com")
    code, tested, _ = cli("alerts", "test", "txn-ops")
    assert code == 0 and tested["alerts"][0]["state"] == "sent"
    assert json_receiver.received()[0]["title"] == "[vae-anomaly] test of alert rule txn-ops"
    assert cli("alerts", "log", "transactions")[1] == {"action": "log", "alerts": []}  # a test is not in the ledger
    code, fresh, _ = cli("alerts", "freshness", "transactions")
    assert code == 0 and fresh["alerts"] == []  # ingested just now: within 2h
    code, _, err = cli("alerts", "add", "transactions", "--to", "nosuch://pw-s3cret@x", "--name", "bad")
    assert code == 2 and "nosuch://*** is not a URL Apprise can send to" in err and "pw-s3cret" not in err
    code, removed, _ = cli("alerts", "remove", "txn-ops")
    assert code == 0 and [r["name"] for r in cli("alerts", "list")[1]["rules"]] == ["txn-mail"]
    shown = readme_alert_commands()
    for ran in cli.ran:  # every command this test ran is in the README's Alerts section
        if "bad" not in ran:  # the refused URL is not a README command
            assert any(shows(s, ran) for s in shown), f"README's Alerts section does not show {ran}"


def test_a_failed_flow_run_on_the_cli_alerts_the_on_failure_rules(cli, json_receiver, prefect_harness):
    cli("alerts", "add", "transactions", "--to", json_receiver.url(), "--on-failure", "--name", "txn-fail")
    drift = cli.tmp / "drift.csv"
    drift.write_text("amount,other\n1,2\n")
    code, _, err = cli("ingest", "transactions", str(drift))
    assert code == 2 and "schema" in err.lower()
    (post,) = json_receiver.received()
    assert post["title"] == "[vae-anomaly] transactions: ingest run failed" and "SchemaError" in post["message"]
