"""The review page in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by selenium, against ``vae-anomaly review`` serving a lake with one real report.

The screenshot is kept as a test artifact in ``$VAE_ANOMALY_TEST_ARTIFACTS`` (default
``.state/test-artifacts/``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("VAE_ANOMALY_TEST_ARTIFACTS", ROOT / ".state" / "test-artifacts"))
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCRIPT = "<script>document.title='pwned'</script>"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1400")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_report(lake: Path) -> dict:
    """A real report: a small VAE fitted on normal rows, a batch with three outliers and markup."""
    from pipelines.reports import BatchFacts, build_report, detector_facts, figures, render_html, to_json
    from pipelines.reports.store import ReportRef, ReportStore
    from vae_core import VAEDetector

    rng = np.random.default_rng(0)
    z = rng.normal(size=800)
    train = pd.DataFrame({"amount": 100 + 20 * z, "fee": 2 + 0.4 * z + rng.normal(scale=0.05, size=800),
                          "channel": rng.choice(["web", "store"], size=800)})
    det = VAEDetector(seed=0, max_epochs=12).fit(train)
    batch = train.iloc[:200].copy()
    batch.loc[batch.index[:3], "amount"] = [5_000.0, -2_000.0, 7_000.0]
    batch.loc[batch.index[:3], "channel"] = SCRIPT
    scores = det.score(batch).assign(_source_row=np.arange(len(batch)))
    flagged = scores.index[scores["is_anomaly"].to_numpy(bool)]
    explanations = det.explain(batch.loc[flagged])
    explanations.index = scores.index.get_indexer(explanations.index)
    report = build_report(scores.reset_index(drop=True), batch, explanations, detector_facts(det, "pay", "1"),
                          BatchFacts(dataset="pay", batch_id="b1", rows=len(batch)))
    for item in report["items"]:  # the markup reaches the page through a shown value
        item["features"].append({"feature": "channel", "share": 0.0, "value": SCRIPT, "center": None,
                                 "low": None, "high": None, "typical": "'web', 'store'", "outside_range": False})
    figs = figures(report, None, None)
    ReportStore(str(lake)).write(ReportRef("pay", "pay-v1", "b1"), render_html(report, figs), to_json(report), figs["cards"])
    return report


def _serve(lake: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).with_name("vae-anomaly")), "review", "--lake", str(lake), "--port", str(port),
           "--reviewer", "ana"]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vae-anomaly review exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are missing: `make setup` installs them (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vae-anomaly-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_review_in_a_browser(tmp_path, browser):
    from selenium.webdriver.common.by import By

    from pipelines.reports.store import ReportStore
    from pipelines.review.app import feedback_store

    lake = tmp_path / "lake"
    report = _write_report(lake)
    assert len(report["items"]) >= 2
    port = _free_port()
    log = tmp_path / "review.log"
    proc = _serve(lake, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/healthz", proc, log)
        browser.get(base + "/")
        assert "pay-v1" in browser.page_source
        browser.find_element(By.LINK_TEXT, "review").click()
        cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
        assert len(cards) == len(report["items"])
        assert browser.title != "pwned" and SCRIPT in cards[0].text  # markup shown as text, never run
        first_key = report["items"][0]["key"]
        cards[0].find_element(By.NAME, "comment").send_keys("card skimming, confirmed")
        cards[0].find_element(By.CSS_SELECTOR, "button[value=anomaly]").click()
        # the page reloads with the confirmed item gone from the unreviewed list
        cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
        assert len(cards) == len(report["items"]) - 1
        second_key = browser.find_elements(By.CSS_SELECTOR, "input[name=key]")[0].get_attribute("value")
        cards[0].find_element(By.CSS_SELECTOR, "button[value=false_alarm]").click()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.get(base + "/review/pay?status=reviewed")
        assert len(browser.find_elements(By.CSS_SELECTOR, "article.card")) == 2
        browser.save_screenshot(str(ARTIFACTS / "review-page.png"))
        # the verdicts are in the lake's feedback table, read back from disk
        current = feedback_store(ReportStore(str(lake)), "pay").current()
        assert current.loc[first_key, "verdict"] == "anomaly"
        assert current.loc[first_key, "comment"] == "card skimming, confirmed"
        assert current.loc[first_key, "reviewer"] == "ana"
        assert current.loc[second_key, "verdict"] == "false_alarm"
        # the stored report shows the markup as text as well
        browser.get(f"{base}/reports/pay/pay-v1/b1")
        assert browser.title != "pwned" and "report" in browser.title
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        for bad in ("/reports/pay/pay-v1/..%2F..%2F..%2Fetc", "/review/..%2Fpay"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + bad)
            assert err.value.code == 404
        post = urllib.request.Request(f"{base}/verdict", method="POST", data=(
            f"dataset=pay&label=pay-v1&batch=b1&key={first_key}&verdict=false_alarm").encode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(post)
        assert err.value.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=20)
