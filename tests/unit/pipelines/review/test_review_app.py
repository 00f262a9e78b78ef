"""The review app in-process (FastAPI's TestClient) over a real lake folder and Delta feedback table."""
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipelines.reports import BatchFacts, build_report, detector_facts, figures, render_html, to_json
from pipelines.reports.store import ReportRef, ReportStore
from pipelines.review.app import create_app, feedback_store

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def lake_with_report(tmp_path, fitted, frame):
    batch = frame.iloc[:150].copy()
    batch.loc[batch.index[:2], "amount"] = [9_000.0, -4_000.0]
    batch.loc[batch.index[0], "channel"] = SCRIPT
    scores = fitted.score(batch).assign(_source_row=np.arange(len(batch)))
    flagged = scores.index[scores["is_anomaly"].to_numpy(bool)]
    explanations = fitted.explain(batch.loc[flagged])
    explanations.index = scores.index.get_indexer(explanations.index)
    report = build_report(scores.reset_index(drop=True), batch, explanations, detector_facts(fitted, "tx", "1"),
                          BatchFacts(dataset="tx", batch_id="b1", rows=len(batch)))
    report["items"][0]["features"][0]["value"] = SCRIPT  # whatever a cell holds reaches the page as text
    figs = figures(report, None, None)
    store = ReportStore(str(tmp_path / "lake"))
    store.write(ReportRef("tx", "tx-v1", "b1"), render_html(report, figs), to_json(report), figs["cards"])
    return str(tmp_path / "lake"), report


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_index_review_and_verdicts(lake_with_report):
    url, report = lake_with_report
    client = TestClient(create_app(url, reviewer="ana"))
    index = client.get("/")
    assert index.status_code == 200 and "tx-v1" in index.text and f"0 / {len(report['items'])}" in index.text
    page = client.get("/review/tx")
    assert page.status_code == 200
    assert page.text.count('<article class="card') == len(report["items"])
    assert SCRIPT not in page.text and "&lt;script&gt;" in page.text
    first, second = report["items"][0]["key"], report["items"][1]["key"]
    form = {"dataset": "tx", "label": "tx-v1", "batch": "b1", "csrf": csrf_of(page.text), "next": "/review/tx"}
    r = client.post("/verdict", data={**form, "key": first, "verdict": "anomaly", "comment": "real"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/tx"
    client.post("/verdict", data={**form, "key": second, "verdict": "false_alarm"})
    client.post("/verdict", data={**form, "key": second, "verdict": "new_normal"})  # changed: latest wins
    store = feedback_store(ReportStore(url), "tx")
    assert len(store.history()) == 3
    current = store.current()
    assert current.loc[first, "verdict"] == "anomaly" and current.loc[first, "reviewer"] == "ana"
    assert current.loc[second, "verdict"] == "new_normal"
    item = report["items"][0]  # the verdict carries its item: the reviewed labels read no report
    assert (current.loc[first, "score"], current.loc[first, "source_row"], current.loc[first, "kind"]) == (
        item["score"], item["source_row"], "row")
    unreviewed = client.get("/review/tx").text
    assert unreviewed.count('<article class="card') == len(report["items"]) - 2
    reviewed = client.get("/review/tx?status=reviewed").text
    assert reviewed.count('<article class="card') == 2 and 'data-verdict="anomaly"' in reviewed
    assert client.get("/review/tx?status=all&verdict=new_normal").text.count('<article class="card') == 1
    index = client.get("/").text  # anomaly right, new_normal wrong: 50% for the version and the batch
    versions = index.split('id="versions"', 1)[1]
    assert re.search(r'data-version="tx-v1"><td>tx</td><td>tx-v1</td><td class="num">2</td>\s*<td class="num">50%', versions)
    assert f"2 / {len(report['items'])}" in index


def test_the_only_script_is_the_keyboard_one_allowed_by_its_hash(lake_with_report):
    import base64
    import hashlib

    url, _ = lake_with_report
    page = TestClient(create_app(url, reviewer="ana")).get("/review/tx")
    scripts = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
    assert len(scripts) == 1 and page.text.count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page.headers["content-security-policy"]
    assert page.text.count('tabindex="-1"') == page.text.count('<article class="card')
    assert 'accesskey="a"' in page.text and "autofocus" in page.text  # without JS: access keys on the first item


def test_safety(lake_with_report, tmp_path):
    url, report = lake_with_report
    client = TestClient(create_app(url, reviewer="ana"))
    page = client.get("/review/tx").text
    form = {"dataset": "tx", "label": "tx-v1", "batch": "b1", "key": report["items"][0]["key"], "verdict": "anomaly"}
    assert client.post("/verdict", data=form).status_code == 403  # no form token
    assert client.post("/verdict", data={**form, "csrf": "forged"}).status_code == 403
    fresh = TestClient(create_app(url, reviewer="eve"))  # another browser: no cookie of ours
    assert fresh.post("/verdict", data={**form, "csrf": csrf_of(page)}).status_code == 403
    good = {**form, "csrf": csrf_of(page)}
    assert client.post("/verdict", data={**good, "key": "tx/b1/row/999999"}).status_code == 404  # not an item
    assert client.post("/verdict", data={**good, "verdict": "maybe"}).status_code == 400
    for path in ("/review/..%2F..%2Fetc", "/reports/tx/..%2F..%2F/b1", "/reports/tx/tx-v1/..", "/review/nope",
                 "/reports/..%2Fsecret/tx-v1/b1"):
        assert client.get(path).status_code == 404, path
    (tmp_path / "secret.txt").write_text("s")
    assert "s" != client.get("/reports/tx/tx-v1/b1").text and client.get("/reports/tx/tx-v1/b1").status_code == 200
    assert len(feedback_store(ReportStore(url), "tx").history()) == 0


def test_token_required_when_set(lake_with_report):
    url, _ = lake_with_report
    client = TestClient(create_app(url, reviewer="ana", token="s3cret"))
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/").status_code == 200  # the token is kept in a cookie
