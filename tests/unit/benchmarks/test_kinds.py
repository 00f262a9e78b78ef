"""Unit tests of benchmarks.kinds: pooling of the per-frame records, and a baselines-only run."""

import numpy as np
import pytest

from benchmarks import kinds
from benchmarks.synthetic import KINDS


def _rec(key, kinds_hits, n_flagged, precision, auroc, vus_pr, n_points=1000):
    return {"seed": 0, "key": key, "kinds": [k for k, _ in kinds_hits], "hits": [h for _, h in kinds_hits],
            "n_flagged": n_flagged, "n_points": n_points, "flag_precision": precision,
            "n_flagged_near": round(precision * n_flagged), "auroc": auroc, "vus_pr": vus_pr}


def test_summarise_pools_events_and_flags_over_frames():
    a = _rec("x", [("spike", True), ("stuck", False), ("spike", False)], 10, 0.5, 0.8, 0.4)
    b = _rec("x", [("spike", True), ("stuck", True)], 30, 0.9, 0.6, 0.2)
    out = kinds.summarise([a, b, {"seed": 1, "key": "x", "error": "boom"}])["x"]
    assert out["recall"]["spike"] == pytest.approx(2 / 3)
    assert out["recall"]["stuck"] == pytest.approx(1 / 2)
    assert np.isnan(out["recall"]["level_shift"])  # no such event: not counted as a miss
    assert out["mean_recall"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert out["events"] == {"spike": 3, "level_shift": 0, "variance_burst": 0, "stuck": 2, "broken_pattern": 0}
    # (5 + 27) flags near an event out of 40: pooled, not the mean of 0.5 and 0.9
    assert out["flag_precision"] == pytest.approx(32 / 40)
    assert out["flag_rate"] == pytest.approx(40 / 2000)
    assert out["auroc"] == pytest.approx(0.7) and out["vus_pr"] == pytest.approx(0.3)
    assert out["frames"] == 2


def test_baselines_only_run_reports_every_kind():
    logged = []
    res = kinds.run_kinds([0], 32, vae_ok=False, log=logged.append, spec=kinds.QUICK_SPEC)
    assert {r["key"] for r in res["records"]} == {"robust_z", "iforest_win"}
    for key, v in res["summary"].items():
        assert v["events"] == {k: kinds.QUICK_SPEC.events_per_kind for k in KINDS}
        assert 0 <= v["mean_recall"] <= 1 and 0 <= v["flag_precision"] <= 1
        assert 0 <= v["auroc"] <= 1 and 0 < v["vus_pr"] <= 1
        # a 1% budget on the history: the test period flags a few percent at most
        assert 0 < v["flag_rate"] < 0.1
    assert len(logged) == 2


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "last"])
def test_our_record_is_of_the_test_rows_scored_after_their_context(monkeypatch, mode):
    """The suite's run of vae_core: one model fitted on every sensor's history, each sensor's test
    period scored after the last 2 x (window - 1) history points; the record holds the test rows'
    scores and flags at the model's own threshold, as the detector fitted alike gives them
    sensor by sensor (briefly trained: this checks the wiring, not the accuracy)."""
    import json

    import pandas as pd

    from benchmarks import metrics
    from vae_core import TimeSeriesVAEDetector

    params, window = {"max_epochs": 2, "point_score": mode}, 16
    monkeypatch.setenv("VAE_ANOMALY_BENCH_TS_PARAMS", json.dumps(params))
    seen = []
    real = kinds._ours
    monkeypatch.setattr(kinds, "_ours", lambda *a: seen.append(real(*a)) or seen[-1])
    res = kinds.run_kinds([0], window, vae_ok=True, log=lambda m: None, spec=kinds.QUICK_SPEC)
    (ours,) = [r for r in res["records"] if r["key"] == "vae_core_ts/anomaly_score"]
    assert "error" not in ours, ours.get("error")

    frame = kinds.synthetic.make_frame(0, kinds.QUICK_SPEC)
    det = TimeSeriesVAEDetector(seed=0, window=window, **params).fit(frame.history, series_column="sensor")
    want = pd.concat([det.score(test, context=frame.history[frame.history["sensor"] == name].tail(det.context_points))
                      for name, test in frame.test.groupby("sensor", sort=False)])
    assert want.index.equals(frame.test.index)
    (got,) = seen
    np.testing.assert_allclose(got.scores["anomaly_score"], want["anomaly_score"].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(got.extra["is_anomaly"].astype(bool), want["is_anomaly"].to_numpy(bool))
    flags = want["is_anomaly"].to_numpy(bool)
    assert ours["n_points"] == len(frame.test) and ours["n_flagged"] == flags.sum() > 0
    assert ours["hits"] == metrics.event_hits(frame.events[["start", "stop"]].to_numpy(), flags, kinds.TOLERANCE).tolist()
    assert ours["auroc"] == pytest.approx(metrics.auroc(frame.labels, want["anomaly_score"].to_numpy()), abs=1e-9)
