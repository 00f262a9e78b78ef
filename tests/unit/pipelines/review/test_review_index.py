"""The review index over a real lake: paginated, filtered by dataset and version, unreviewed
batches first, a batch count, and only the shown page's reports read (issue 30)."""
import json
import re

import pytest
from fastapi.testclient import TestClient

from pipelines.lake import Lake
from pipelines.reports.store import ReportRef, ReportStore
from pipelines.review.app import create_app, feedback_store
from pipelines.review.feedback import Verdict
from pipelines.review.index import BadQuery, IndexQuery


@pytest.fixture
def lake_of_reports(tmp_path):
    """Dataset ``tx``: five batches in ingest order, each with a report of version ``tx-v1`` (the
    first two also of ``tx-v2``); dataset ``pay``: one batch. Verdicts on ``tx-v1``'s second and
    fourth batch."""
    lake = Lake(tmp_path / "lake")
    store = ReportStore(str(tmp_path / "lake"))
    batches = {}
    for dataset, n in (("tx", 5), ("pay", 1)):
        for i in range(n):
            source = tmp_path / f"{dataset}{i}.csv"
            source.write_text("id,amount\n" + "".join(f"{i * 10 + k},{k}.5\n" for k in range(3)))
            batches.setdefault(dataset, []).append(lake.ingest(dataset, source).batch_id)
    for dataset, ids in batches.items():
        for i, batch in enumerate(ids):
            for label in [f"{dataset}-v1"] + ([f"{dataset}-v2"] if dataset == "tx" and i < 2 else []):
                report = {"summary": {"rows": 3, "flagged": 1, "items_shown": 1},
                          "items": [{"key": f"{dataset}/{batch}/row/0", "kind": "row", "score": 9.0, "source_row": 0}]}
                store.write(ReportRef(dataset, label, batch), "<html></html>", json.dumps(report), {})
    tx = batches["tx"]
    feedback_store(store, "tx").add([Verdict(f"tx/{tx[1]}/row/0", tx[1], "tx-v1", "anomaly", "ann"),
                                     Verdict(f"tx/{tx[3]}/row/0", tx[3], "tx-v1", "false_alarm", "ann")])
    return str(tmp_path / "lake"), batches


def shown(page: str) -> list[str]:
    return re.findall(r'<tr data-batch="([^"]+)">', page)


def test_the_index_pages_filters_and_puts_unreviewed_batches_first(lake_of_reports, monkeypatch):
    url, batches = lake_of_reports
    tx = batches["tx"]
    client = TestClient(create_app(url, reviewer="ana"))
    read = []
    report = ReportStore.report
    monkeypatch.setattr(ReportStore, "report", lambda self, ref: read.append(ref) or report(self, ref))

    first = client.get("/?dataset=tx&version=tx-v1&size=2")
    assert first.status_code == 200 and '<span id="total">5</span>' in first.text and "page <span id=\"page\">1</span> of 3" in first.text
    assert shown(first.text) == [tx[4], tx[2]]  # unreviewed, newest first
    assert len(read) == 2  # the page's reports only
    second = client.get(re.search(r'id="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")).text
    assert shown(second) == [tx[0], tx[3]]  # the last unreviewed, then the reviewed ones, newest first
    assert shown(client.get("/?dataset=tx&version=tx-v1&size=2&page=3").text) == [tx[1]]
    assert shown(client.get("/?dataset=tx&version=tx-v1&size=2&page=9").text) == [tx[1]]  # past the end: the last
    assert 'id="prev"' in second and 'id="next"' in second
    assert shown(client.get("/?dataset=tx&version=tx-v1&order=newest").text) == tx[::-1]

    versions = client.get("/?dataset=tx&version=tx-v1").text.split('id="versions"', 1)[1]
    assert re.search(r'data-version="tx-v1"><td>tx</td><td>tx-v1</td><td class="num">2</td>\s*<td class="num">50%', versions)
    assert '<span id="total">7</span>' in client.get("/?dataset=tx").text  # both versions of tx
    everything = client.get("/").text
    assert '<span id="total">8</span>' in everything and batches["pay"][0] in everything
    assert '<option value="pay">pay</option>' in everything and '<option value="tx-v2">tx-v2</option>' in everything
    assert client.get("/?order=sideways").status_code == 400 and client.get("/?page=0").status_code == 400
    assert client.get("/?dataset=../etc").status_code == 404  # names pass the lake's rule


def test_the_page_links_keep_the_filters():
    query = IndexQuery("tx", "tx-v1", "newest", 2, 10)
    assert query.href(page=3) == "/?dataset=tx&version=tx-v1&order=newest&page=3&size=10"
    assert IndexQuery().href() == "/"
    with pytest.raises(BadQuery):
        IndexQuery(page=0).check()
