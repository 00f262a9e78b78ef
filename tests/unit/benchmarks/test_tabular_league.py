"""benchmarks: the ten tabular peers build, a detector past its time limit fails, runs merge."""
import time

import pytest

from benchmarks import baselines, detectors
from benchmarks.merge import merge_results


def test_the_ten_peers_build_with_their_defaults():
    assert len(baselines.TABULAR_BASELINES) == 10
    for name in baselines.TABULAR_BASELINES:
        det = baselines.make_tabular_baseline(name, 3)
        assert hasattr(det, "fit") and hasattr(det, "decision_function"), name
    assert baselines.make_tabular_baseline("mcd", 3).random_state == 3
    assert baselines.make_tabular_baseline("dif", 3).random_state == 3


def test_time_limit_stops_python_code_and_leaves_no_alarm_behind():
    t = time.perf_counter()
    with pytest.raises(detectors.DetectorTimeout, match="0.2 s"):
        with detectors.time_limit(0.2):
            while True:
                pass
    assert time.perf_counter() - t < 2
    with detectors.time_limit(0.2):
        pass
    time.sleep(0.3)  # the alarm was cancelled: nothing is raised here
    with detectors.time_limit(None):
        time.sleep(0.01)


def _result(seeds, records, options=None):
    opts = {"seeds": seeds, "out_name": "x", "train_cap": 5000} | (options or {})
    meta = {"options": opts, "command": f"run --seeds {seeds}", "wall_s": 10.0 + seeds[0],
            "load_average_1_5_15": {"start": [1, 1, 1], "end": [2, 2, 2]}, "problems": [],
            "vae_core": {"available": True, "error": "", "source": {"sha256": "abc", "newest_mtime": "t"}},
            "notes": [f"seeds {seeds}; rest"]}
    return {"tabular": {"seeds": seeds, "records": records}, "meta": meta}


def _r(seed, key):
    return {"dataset": "a", "seed": seed, "key": key, "auroc": 0.5, "auprc": 0.1, "fit_s": 1.0,
            "score_s": 0.5, "n_train": 20, "n_train_before_cap": 20, "n_test": 10, "anomaly_rate": 0.1}


def test_merge_concatenates_seeds_and_refuses_duplicates_and_other_options():
    m = merge_results([_result([0], [_r(0, "iforest")]), _result([1], [_r(1, "iforest")])], ["s0", "s1"])
    assert m["tabular"]["seeds"] == [0, 1] and len(m["tabular"]["records"]) == 2
    assert m["tabular"]["speed"]["iforest"]["runs"] == 2
    assert m["meta"]["notes"] == ["seeds [0, 1]; rest"] and m["meta"]["wall_s"] == 11.0
    with pytest.raises(ValueError, match="also in s0"):
        merge_results([_result([0], [_r(0, "iforest")]), _result([0], [_r(0, "iforest")])], ["s0", "s0b"])
    with pytest.raises(ValueError, match="train_cap"):
        merge_results([_result([0], [_r(0, "iforest")]), _result([1], [_r(1, "iforest")], {"train_cap": 1})],
                      ["s0", "s1"])


def test_a_partial_run_is_read_from_its_records_jsonl_and_merged(tmp_path, monkeypatch):
    import json

    from benchmarks import merge
    from benchmarks.report import render_markdown

    path = tmp_path / "half.jsonl"
    meta = _result([0], [])["meta"] | {"date": "d", "machine": {"cpu_count": 2, "torch": "t", "torch_threads": 1,
                                                                 "python": "3", "pyod": "p", "sklearn": "s",
                                                                 "platform": "x"},
                                       "load_average_start": [1, 1, 1], "data_root": "/data"}
    meta["options"]["records_jsonl"] = str(path)
    (tmp_path / "half.jsonl.meta.json").write_text(json.dumps(meta))
    path.write_text("".join(json.dumps(_r(s, k)) + "\n" for s in (0, 1) for k in ("iforest", "vae_core/anomaly_score")))
    m = merge.merge_results([merge.load_partial(path)], ["half.jsonl"])
    assert m["tabular"]["seeds"] == [0, 1] and len(m["tabular"]["records"]) == 4
    assert m["meta"]["wall_s"] == pytest.approx(6.0)  # 4 x (fit 1.0 + score 0.5): no wall time for a partial run
    md = render_markdown(m)
    assert "League over 1 tabular sets" in md and "partial runs" in md


def test_a_run_of_ours_alone_takes_the_peers_of_another_run_on_the_same_splits():
    from benchmarks.merge import with_peers
    from benchmarks.report import league_md

    ours = _result([0, 1], [_r(s, "vae_core/anomaly_score") for s in (0, 1)])
    peers = _result([0, 1, 2], [_r(s, k) for s in (0, 1, 2) for k in ("iforest", "vae_core/anomaly_score")])
    m = with_peers(ours, peers, "league.json")
    keys = sorted((r["seed"], r["key"]) for r in m["tabular"]["records"])
    assert keys == [(0, "iforest"), (0, "vae_core/anomaly_score"), (1, "iforest"), (1, "vae_core/anomaly_score")]
    assert "league.json" in m["meta"]["notes"][-1] and "League over 1 tabular sets" in "\n".join(league_md(
        m["tabular"]["records"]))
    with pytest.raises(ValueError, match="no peer records for a seed 1"):
        with_peers(ours, _result([0], [_r(0, "iforest")]), "p")
    other_split = _r(1, "iforest") | {"n_test": 11}
    with pytest.raises(ValueError, match="other row counts"):
        with_peers(ours, _result([0, 1], [_r(0, "iforest"), other_split]), "p")
    with pytest.raises(ValueError, match="train_cap"):
        with_peers(ours, _result([0, 1], [_r(0, "iforest"), _r(1, "iforest")], {"train_cap": 1}) | {
            "tabular": {"seeds": [0, 1], "train_cap": 1, "records": []}}, "p")
    with pytest.raises(ValueError, match="already holds"):
        with_peers(peers, peers, "p")
