"""pipelines.reports: report data and HTML from real (small) fitted detectors."""
import json
import re

import numpy as np
import pandas as pd
import pytest

import vae_core

from pipelines.reports import BatchFacts, build_report, detector_facts, drift_verdict, figures, render_html, to_json
from pipelines.reports.build import MAX_ITEMS, short_text

SCRIPT = "<script>alert('x')</script>"


def _tabular_report(fitted, frame, psi=0.05):
    batch = frame.iloc[:200].copy()
    batch.loc[batch.index[:3], "amount"] = [5_000.0, -3_000.0, 9_000.0]  # three clear outliers
    batch.loc[batch.index[0], "channel"] = SCRIPT  # an unseen category holding markup
    scores = fitted.score(batch)
    scores["_source_row"] = np.arange(len(batch))
    flagged = scores.index[scores["is_anomaly"].to_numpy(bool)]
    explanations = fitted.explain(batch.loc[flagged])
    explanations.index = scores.index.get_indexer(explanations.index)  # positions in the scores frame
    facts = detector_facts(fitted, "fraud", "7", aliases=("champion",), run_id="run123")
    report = build_report(scores.reset_index(drop=True), batch, explanations, facts,
                          BatchFacts(dataset="tx", batch_id="b1", rows=len(batch), quarantined=4, psi=psi))
    return report, scores


def test_tabular_report_header_items_and_cards(fitted, frame):
    report, scores = _tabular_report(fitted, frame)
    s = report["summary"]
    assert s["rows"] == 200 and s["flagged"] == int(scores["is_anomaly"].sum()) >= 3
    assert s["n_items"] == s["flagged"] == len(report["items"])  # one item per flagged row
    assert s["threshold"] == pytest.approx(fitted.threshold_)
    assert "99th percentile" in s["threshold_rule"]
    assert report["model"]["aliases"] == ["champion"] and report["model"]["run_id"] == "run123"
    top = report["items"][0]
    assert top["score"] == max(i["score"] for i in report["items"])  # highest first
    assert top["margin"] == pytest.approx(top["score"] - fitted.threshold_)
    assert top["features"][0]["feature"] == "amount" and top["features"][0]["outside_range"]
    assert "4 row(s)" in report["quality"][0]
    html = render_html(report, figures(report, None, None))
    assert html.count('<article class="card"') == len(report["items"])
    cards = re.findall(r'<article class="card".*?</article>', html, flags=re.S)
    assert all("<svg" in c or "<img" in c for c in cards)  # a plot per card
    # offline: nothing to fetch (no src/href to the network, no CSS url(), no <link>), and no script
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\((?!#)|<link|@import""", html) and "<script" not in html


def test_values_from_data_are_escaped_and_cut(fitted, frame):
    report, _ = _tabular_report(fitted, frame)
    report["items"][0]["features"][0]["value"] = SCRIPT  # whatever a value holds
    report["batch"]["source"] = SCRIPT
    html = render_html(report, figures(report, None, None))
    assert "<script" not in html and "&lt;script&gt;" in html
    assert len(short_text("x" * 200_000)) == 80 and short_text(0.1 + 0.2) == "0.3"


def test_json_has_the_same_items(fitted, frame):
    report, _ = _tabular_report(fitted, frame)
    back = json.loads(to_json(report))
    assert [i["key"] for i in back["items"]] == [i["key"] for i in report["items"]]
    assert back["summary"] == json.loads(json.dumps(report["summary"]))


def test_drift_verdicts():
    assert drift_verdict(0.05)["level"] == "stable"
    assert drift_verdict(0.2)["level"] == "moderate"
    assert drift_verdict(0.4)["level"] == "major"
    assert drift_verdict(None)["level"] == "unknown"


@pytest.fixture(scope="module")
def series_case():
    from vae_core import TimeSeriesVAEDetector

    rng = np.random.default_rng(0)
    t = pd.date_range("2026-01-01", periods=600, freq="5min", tz="UTC")

    def frame(shift_at=None):
        parts = []
        for name, phase in (("s1", 0.0), ("s2", 1.0)):
            v = np.sin(np.arange(len(t)) * 2 * np.pi / 96 + phase) + rng.normal(scale=0.05, size=len(t))
            if shift_at is not None and name == "s2":
                v[shift_at : shift_at + 30] += 4.0  # a level shift of 30 points
            parts.append(pd.DataFrame({"ts": t, "host": name, "load": v}))
        return pd.concat(parts, ignore_index=True)

    det = TimeSeriesVAEDetector(seed=0, window=16, max_epochs=6).fit(frame(), time_column="ts", series_column="host")
    batch = frame(shift_at=300)
    scores = det.score(batch)
    scores["_source_row"] = np.arange(len(batch))
    return det, batch, scores


def test_timeseries_report_groups_flags_into_events(series_case):
    det, batch, scores = series_case
    facts = detector_facts(det, "load", "1")
    report = build_report(scores, batch, None, facts, BatchFacts(dataset="hosts", batch_id="b2", rows=len(batch)))
    events = report["items"]
    assert 1 <= report["summary"]["n_items"] < report["summary"]["flagged"]  # grouped, not per point
    shift = next(e for e in events if e["series"] == "s2" and e["start"] <= "2026-01-02T01:30" <= e["end"])
    assert shift["flagged_points"] >= 10
    html = render_html(report, figures(report, batch, scores))
    assert html.count('<article class="card"') == len(events)
    assert len(html.encode()) < 2_000_000
    assert "expected (mean ± 2 sd)" not in html
    # with the model's expected band, each card draws it beneath the observed values
    banded = render_html(report, figures(report, batch, scores, det.expected(batch)))
    assert banded.count("expected (mean ± 2 sd)") == len(events)  # the legend, as SVG text
    assert banded.count("<path") > html.count("<path")
    with pytest.raises(ValueError, match="rows"):
        build_report(scores, None, None, facts, BatchFacts(dataset="hosts", batch_id="b2", rows=len(batch)))


def test_an_event_that_began_in_an_earlier_batch_says_so(series_case, tmp_path):
    """With the events the detector found with the batch's context (the score flow's), the level
    shift cut by the batch boundary is one item starting before the batch, marked as begun in an
    earlier batch on its card; the report does not split or renumber the detector's events."""
    det, frame, _ = series_case
    cut = pd.Timestamp("2026-01-02T01:15", tz="UTC")  # the shift of s2 starts at 01:00
    batch = frame[frame["ts"] >= cut]
    before = frame[frame["ts"] < cut]
    context = before.groupby("host", sort=False).tail(det.batch_context_points)
    got = vae_core.score_and_explain(det, batch, context=context)
    scores = got.scores.reset_index(drop=True).assign(_source_row=np.arange(len(batch)))
    facts = detector_facts(det, "load", "1")
    report = build_report(scores, batch, got.explanation, facts, BatchFacts(dataset="hosts", batch_id="b2", rows=len(batch)),
                          events=(got.events, got.event_of_row))
    assert report["summary"]["n_items"] == len(got.events)
    (shift,) = [e for e in report["items"] if e["began_before"]]
    assert shift["series"] == "s2" and shift["start"] < cut.isoformat() <= shift["end"]
    assert shift["features"] and shift["features"][0]["feature"] == "load"
    figs = figures(report, batch, scores)
    html = render_html(report, figs)
    assert html.count("began in an earlier batch") == 1
    from fastapi.testclient import TestClient

    from pipelines.reports.store import ReportRef, ReportStore
    from pipelines.review.app import create_app

    ReportStore(str(tmp_path)).write(ReportRef("hosts", "load-v1", "b2"), html, to_json(report), figs["cards"])
    page = TestClient(create_app(str(tmp_path), reviewer="ana")).get("/review/hosts")
    assert page.status_code == 200 and page.text.count("began in an earlier batch") == 1
    alone = build_report(scores, batch, got.explanation, facts, BatchFacts(dataset="hosts", batch_id="b2", rows=len(batch)))
    assert not any(e["began_before"] for e in alone["items"])  # found in the rows alone: no earlier batch
    assert min(e["start"] for e in alone["items"] if e["series"] == "s2") >= cut.isoformat()


def test_many_flags_are_capped(fitted, frame):
    batch = frame.copy()
    batch["amount"] = batch["amount"] * 50  # every row flagged
    scores = fitted.score(batch).assign(_source_row=np.arange(len(batch)))
    report = build_report(scores, batch, None, detector_facts(fitted, "m", "1"),
                          BatchFacts(dataset="d", batch_id="b", rows=len(batch)))
    assert report["summary"]["flagged"] > MAX_ITEMS == len(report["items"]) == report["summary"]["items_shown"]


@pytest.mark.slow
def test_a_long_batch_with_many_events_and_their_bands_stays_small(series_case):
    """A 10,000-point batch with the most event cards, each with its expected band, makes a
    report under 2 MB (slow: it draws 100 cards)."""
    det = series_case[0]
    rng = np.random.default_rng(1)
    t = pd.date_range("2026-01-03", periods=5000, freq="5min", tz="UTC")
    parts = []
    for name, phase in (("s1", 0.0), ("s2", 1.0)):
        v = np.sin(np.arange(len(t)) * 2 * np.pi / 96 + phase) + rng.normal(scale=0.05, size=len(t))
        v[np.arange(150, 5000, 97)] += 5.0  # a spike every 97 points: many events
        parts.append(pd.DataFrame({"ts": t, "host": name, "load": v}))
    batch = pd.concat(parts, ignore_index=True)
    scores = det.score(batch).assign(_source_row=np.arange(len(batch)))
    report = build_report(scores, batch, None, detector_facts(det, "load", "1"),
                          BatchFacts(dataset="hosts", batch_id="b3", rows=len(batch)))
    assert report["summary"]["n_items"] >= 50
    band = det.expected(batch)
    html = render_html(report, figures(report, batch, scores, band))
    assert len(html.encode()) < 2_000_000, len(html.encode())
    assert html.count("expected (mean ± 2 sd)") == len(report["items"]) == 100


def test_share_bars_are_escaped_svg_in_proportion():
    from pipelines.reports.plots import shares_plot

    svg = shares_plot([{"feature": "a<img src=x onerror=alert(1)>", "share": 0.6}, {"feature": "b", "share": 0.15}])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<img" not in svg and "a&lt;img src=x onerror" in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', svg)]
    assert len(widths) == 2 and widths[0] == pytest.approx(4 * widths[1])
