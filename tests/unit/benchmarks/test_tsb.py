"""benchmarks.tsb and tsb_report: TSB-AD's flag rule, the summary and check tables, merging runs;
against TSB-AD's own code where it is installed (.venv-tsb)."""
import numpy as np
import pytest

from benchmarks import tsb, tsb_report, vus


def test_three_sigma_flags_are_main_pys_rule_and_scale_free():
    s = np.zeros(200)
    s[50], s[120] = 10.0, 1.0  # mean + 3 sd of the scaled score is ~0.22: only the 10 is above
    np.testing.assert_array_equal(np.flatnonzero(tsb.three_sigma_flags(s)), [50])
    np.testing.assert_array_equal(tsb.three_sigma_flags(5 * s - 3), tsb.three_sigma_flags(s))
    assert not tsb.three_sigma_flags(np.ones(10)).any()  # a constant score flags nothing


def test_zscore_leaves_a_constant_column_at_zero():
    x = np.c_[np.arange(10.0), np.full(10, 4.0)]
    z = tsb.zscore(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, 0].std(), 1)
    assert (z[:, 1] == 0).all()


def _rec(source, series, key, vus_pr, ours=None, **kw):
    base = {"source": source, "series": series, "key": key, "window": 24, "n": 100, "fit_s": 1.0, "score_s": 0.1,
            "vus_pr": vus_pr, "ours_vus_pr": vus_pr if ours is None else ours, "vus_roc": 0.5, "auc_pr": 0.2,
            "auc_roc": 0.6, "event_recall": 1.0, "flag_precision": float("nan"), "flag_rate": 0.0}
    return base | kw


def test_summary_means_per_detector_best_vus_pr_first_and_counts_failures():
    recs = [_rec("nab", "a", "ours causal", 0.4), _rec("nab", "b", "ours causal", 0.2, flag_precision=0.5, flag_rate=0.1),
            _rec("nab", "a", "IForest", 0.5), {"source": "nab", "series": "b", "key": "IForest", "error": "boom"},
            _rec("smd", "m", "PCA", 0.9)]
    rows = tsb_report.summary(recs, "nab")
    assert [r["key"] for r in rows] == ["IForest", "ours causal"]
    iforest, ours = rows
    assert (iforest["series"], iforest["errors"], iforest["vus_pr"]) == (1, 1, 0.5)
    assert ours["vus_pr"] == pytest.approx(0.3) and ours["flag_precision"] == 0.5 and ours["no_flags"] == 1


def test_the_vus_check_names_the_largest_difference_per_series_and_merge_keeps_every_run():
    a = {"records": [_rec("nab", "a", "ours causal", 0.4, 0.4 + 1e-9), _rec("nab", "a", "POLY", 0.3, 0.2)],
         "meta": {"command": "one"}}
    b = {"records": [_rec("smd", "m", "PCA", 0.9)], "meta": {"command": "two"}}
    merged = tsb_report.merge([a, b])
    (nab, smd) = tsb_report.vus_check(merged["records"])
    assert nab["at"] == "POLY" and nab["max_abs_diff"] == pytest.approx(0.1) and smd["max_abs_diff"] == 0
    md = tsb_report.render(merged)
    assert "## NAB: mean over series" in md and "## SMD: mean over series" in md
    assert "`one`" in md and "`two`" in md and "| series | window | ours causal | POLY |" in md and "| a | 24 | 0.400 | 0.300 |" in md


def test_benchmarks_vus_equals_tsb_ads_vus_pr_on_random_cases():
    basic = pytest.importorskip("TSB_AD.evaluation.basic_metrics")  # only in .venv-tsb (numpy < 2)
    rng = np.random.default_rng(0)
    for case in range(12):
        n = int(rng.integers(200, 600))
        y = np.zeros(n, int)
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(0, n - 30))
            y[a:a + int(rng.integers(1, 30))] = 1
        s = rng.random(n) + 1.5 * y * rng.random(n)
        window = int(rng.integers(4, 60))
        ref = basic.generate_curve(y, s, window, "opt", 250)[-1]
        assert vus.vus_pr(y, s, window) == pytest.approx(ref, abs=1e-12), case


def test_the_four_metrics_are_get_metrics_own():
    metrics = pytest.importorskip("TSB_AD.evaluation.metrics")  # only in .venv-tsb (numpy < 2)
    rng = np.random.default_rng(1)
    y = np.zeros(500, int)
    y[100:130] = y[300:302] = 1
    s = rng.random(500) + y * rng.random(500)
    ref = metrics.get_metrics(s, y, slidingWindow=40)
    got = tsb.tsb_metrics(s, y, 40)
    assert got == {"vus_pr": ref["VUS-PR"], "vus_roc": ref["VUS-ROC"], "auc_pr": ref["AUC-PR"], "auc_roc": ref["AUC-ROC"]}
