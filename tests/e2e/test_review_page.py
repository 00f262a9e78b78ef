"""The review page in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by selenium, against ``vae-anomaly review`` serving a lake with one real report.

The screenshot is kept as a test artifact in ``$VAE_ANOMALY_TEST_ARTIFACTS`` (default
``.state/test-artifacts/``).
"""
from __future__ import annotations

import contextlib
import json
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
    """A real report: a small VAE fitted on normal rows, a batch with six outliers and markup."""
    from pipelines.reports import BatchFacts, build_report, detector_facts, figures, render_html, to_json
    from pipelines.reports.store import ReportRef, ReportStore
    from vae_core import VAEDetector

    rng = np.random.default_rng(0)
    z = rng.normal(size=800)
    train = pd.DataFrame({"amount": 100 + 20 * z, "fee": 2 + 0.4 * z + rng.normal(scale=0.05, size=800),
                          "channel": rng.choice(["web", "store"], size=800)})
    det = VAEDetector(seed=0, max_epochs=12).fit(train)
    batch = train.iloc[:200].copy()
    batch.loc[batch.index[:6], "amount"] = [5_000.0, -2_000.0, 7_000.0, 9_000.0, -5_000.0, 12_000.0]
    batch.loc[batch.index[:6], "channel"] = SCRIPT
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


@pytest.fixture(scope="module")
def stored_report(tmp_path_factory) -> tuple[Path, dict]:
    """One lake with one report, fitted once for the module; each test reviews a copy."""
    lake = tmp_path_factory.mktemp("report") / "lake"
    return lake, _write_report(lake)


def _lake_copy(stored_report, tmp_path: Path) -> tuple[Path, dict]:
    shutil.copytree(stored_report[0], tmp_path / "lake")
    return tmp_path / "lake", stored_report[1]


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


@contextlib.contextmanager
def _chrome(javascript: bool = True):
    """A headless Chromium session with a fresh profile (JavaScript off when ``javascript`` is False)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are missing: `make setup` installs them (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vae-anomaly-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser():
    with _chrome() as driver:
        yield driver


@pytest.mark.slow
def test_review_in_a_browser(tmp_path, browser, stored_report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    def submit(card, verdict: str) -> None:
        """Press a verdict button and wait for the page it redirects to."""
        card.find_element(By.CSS_SELECTOR, f"button[value={verdict}]").click()
        WebDriverWait(browser, 30).until(EC.staleness_of(card))

    from pipelines.reports.store import ReportStore
    from pipelines.review.app import feedback_store

    lake, report = _lake_copy(stored_report, tmp_path)
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
        submit(cards[0], "anomaly")
        # the page reloads with the confirmed item gone from the unreviewed list
        cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
        assert len(cards) == len(report["items"]) - 1
        second_key = browser.find_elements(By.CSS_SELECTOR, "input[name=key]")[0].get_attribute("value")
        submit(cards[0], "false_alarm")
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


def _focused_key(driver) -> str:
    return driver.execute_script("var c = document.activeElement.closest('article.card'); return c ? c.dataset.key : '';")


@pytest.mark.slow
def test_two_browsers_at_once_then_a_restart_lose_nothing(tmp_path, stored_report):
    """Two browsers answer different items at the same moment, one with the mouse and no
    JavaScript, one with the keyboard (j/k, a/e/f/n); the server is then killed by its PID and
    started again, and every verdict is in the feedback table and on the page."""
    import threading

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from pipelines.reports.store import ReportStore
    from pipelines.review.app import feedback_store

    lake, report = _lake_copy(stored_report, tmp_path)
    keys = [i["key"] for i in report["items"]]
    assert len(keys) >= 6
    verdict_of = {"a": "anomaly", "e": "expected", "f": "false_alarm", "n": "new_normal"}
    plans = {"mouse": [(keys[0], "anomaly"), (keys[2], "false_alarm"), (keys[4], "expected")],
             "keyboard": [(keys[1], "f"), (keys[3], "a"), (keys[5], "n")]}
    port, log = _free_port(), tmp_path / "review.log"
    base = f"http://127.0.0.1:{port}"
    page = base + "/review/pay?status=all"
    together = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def by_mouse(driver) -> None:
        driver.get(page)
        ActionChains(driver).send_keys("f").perform()  # no JavaScript: a bare key submits nothing
        for key, verdict in plans["mouse"]:
            button = driver.find_element(By.XPATH, f"//form[input[@name='key' and @value='{key}']]//button[@value='{verdict}']")
            together.wait()
            button.click()
            WebDriverWait(driver, 30).until(EC.staleness_of(button))

    def by_keyboard(driver) -> None:
        driver.get(page)
        for key, letter in plans["keyboard"]:
            for _ in range(2 * len(keys)):  # j moves down; from the last item, k moves back up
                if _focused_key(driver) == key:
                    break
                at = driver.execute_script("return Array.from(document.querySelectorAll('article.card'))"
                                           ".map(function (c) { return c.dataset.key; })")
                ActionChains(driver).send_keys("j" if at.index(key) > at.index(_focused_key(driver) or at[0]) else "k").perform()
            assert _focused_key(driver) == key
            card = driver.find_element(By.CSS_SELECTOR, f"article[data-key='{key}']")
            together.wait()
            ActionChains(driver).send_keys(letter).perform()
            WebDriverWait(driver, 30).until(EC.staleness_of(card))

    def run(fn, driver) -> None:
        try:
            fn(driver)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            together.abort()

    proc = _serve(lake, port, log)
    try:
        with _chrome(javascript=False) as mouse, _chrome() as keyboard:
            _wait(f"{base}/healthz", proc, log)
            threads = [threading.Thread(target=run, args=(by_mouse, mouse)), threading.Thread(target=run, args=(by_keyboard, keyboard))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            if errors:
                raise errors[0]
            os.kill(proc.pid, 9)  # killed by its PID, mid-session: nothing acknowledged may be lost
            proc.wait(timeout=20)
            proc = _serve(lake, port, log)
            _wait(f"{base}/healthz", proc, log)
            expected = {k: v for k, v in plans["mouse"]} | {k: verdict_of[x] for k, x in plans["keyboard"]}
            history = feedback_store(ReportStore(str(lake)), "pay").history()
            assert len(history) == 6 and history.set_index("item_key")["verdict"].to_dict() == expected
            keyboard.get(base + "/review/pay?status=reviewed")
            shown = {c.get_attribute("data-key"): c.find_element(By.CSS_SELECTOR, ".verdict-now").get_attribute("data-verdict")
                     for c in keyboard.find_elements(By.CSS_SELECTOR, "article.card")}
            assert shown == expected
            keyboard.get(base + "/")  # anomaly 2, expected 1 of 6: 50%
            row = keyboard.find_element(By.CSS_SELECTOR, "#versions tr[data-version='pay-v1']").text
            assert row.split()[-2:] == ["6", "50%"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_the_index_pages_and_filters_in_a_browser(tmp_path, browser, stored_report):
    """The index of a lake of many batches (issue 30): a page of them with the count, the next
    page's link, and the filter form (a version, newest first) without JavaScript."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from pipelines.reports.store import ReportRef, ReportStore
    from pipelines.review.app import feedback_store
    from pipelines.review.feedback import Verdict

    lake, report = _lake_copy(stored_report, tmp_path)
    store = ReportStore(str(lake))
    original = ReportRef("pay", "pay-v1", "b1")
    html, data, figs = store.html(original).decode(), json.dumps(store.report(original)), store.figures(original)
    for label, batch in (("pay-v1", "b2"), ("pay-v1", "b3"), ("pay-v1", "b4"), ("pay-v2", "b1"), ("pay-v2", "b2")):
        store.write(ReportRef("pay", label, batch), html, data, figs)
    feedback_store(store, "pay").add([Verdict(report["items"][0]["key"], "b2", "pay-v1", "anomaly", "ana")])
    port, log = _free_port(), tmp_path / "review.log"
    proc = _serve(lake, port, log)
    base = f"http://127.0.0.1:{port}"

    def rows() -> list[str]:
        return [r.get_attribute("data-batch") + "@" + r.find_elements(By.TAG_NAME, "td")[1].text
                for r in browser.find_elements(By.CSS_SELECTOR, "#batches tr[data-batch]")]

    try:
        _wait(f"{base}/healthz", proc, log)
        browser.get(base + "/?size=4")
        assert browser.find_element(By.ID, "total").text == "6" and "page 1 of 2" in browser.find_element(By.ID, "count").text
        first = rows()
        assert len(first) == 4 and "b2@pay-v1" not in first  # the reviewed batch comes last
        browser.find_element(By.ID, "next").click()
        WebDriverWait(browser, 30).until(EC.url_contains("page=2"))  # a click does not wait for the load
        second = rows()
        assert len(second) == 2 and second[-1] == "b2@pay-v1" and not set(first) & set(second)
        Select(browser.find_element(By.NAME, "version")).select_by_value("pay-v2")
        Select(browser.find_element(By.NAME, "order")).select_by_value("newest")
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        WebDriverWait(browser, 30).until(EC.url_contains("version=pay-v2"))
        assert "version=pay-v2" in browser.current_url and "order=newest" in browser.current_url
        assert browser.find_element(By.ID, "total").text == "2" and sorted(rows()) == ["b1@pay-v2", "b2@pay-v2"]
        assert not browser.find_elements(By.ID, "next")
        assert Select(browser.find_element(By.NAME, "version")).first_selected_option.text == "pay-v2"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
