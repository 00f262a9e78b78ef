"""benchmarks.ranks: league means, ranks with failed detectors, wins against the best peer."""
import math

import pytest

from benchmarks import ranks
from benchmarks.report import league_md

OURS = ranks.OURS


def _rec(d, seed, key, auroc=None, auprc=None, error=None):
    r = {"dataset": d, "seed": seed, "key": key}
    if error:
        r["error"] = error
    else:
        r |= {"auroc": auroc, "auprc": auprc}
    return r


# two sets, two seeds; "mcd" fails on seed 1 of set b
RECORDS = [
    _rec("a", 0, OURS, 0.9, 0.5), _rec("a", 1, OURS, 0.7, 0.3),
    _rec("a", 0, "iforest", 0.6, 0.6), _rec("a", 1, "iforest", 0.6, 0.6),
    _rec("a", 0, "mcd", 0.5, 0.1), _rec("a", 1, "mcd", 0.5, 0.1),
    _rec("b", 0, OURS, 0.6, 0.2), _rec("b", 1, OURS, 0.6, 0.2),
    _rec("b", 0, "iforest", 0.7, 0.4), _rec("b", 1, "iforest", 0.9, 0.4),
    _rec("b", 0, "mcd", 0.99, 0.9), _rec("b", 1, "mcd", error="ValueError: singular covariance"),
]
KEYS = [OURS, "iforest", "mcd"]


def test_per_dataset_means_over_seeds_and_a_failed_seed_fails_the_set():
    datasets, keys, table = ranks.per_dataset(RECORDS, "auroc")
    assert datasets == ["a", "b"] and keys == KEYS
    assert table["a"][OURS] == pytest.approx(0.8)
    assert table["b"]["iforest"] == pytest.approx(0.8)
    assert math.isnan(table["b"]["mcd"])  # its seed-0 0.99 does not count: the set is failed


def test_failed_detectors_share_the_bottom_rank_and_ties_are_averaged():
    table = {"s": {"x": 0.7, "y": 0.7, "z": float("nan"), "w": float("nan"), "v": 0.9}}
    r = ranks.rank_table(table, ["s"], ["x", "y", "z", "w", "v"])["s"]
    assert r == {"v": 1.0, "x": 2.5, "y": 2.5, "z": 4.5, "w": 4.5}


def test_league_means_over_completed_sets_ranks_over_all_and_common_means():
    datasets, keys, table = ranks.per_dataset(RECORDS, "auroc")
    lg = ranks.league(table, datasets, keys)
    # set a: ours 0.8 (1), iforest 0.6 (2), mcd 0.5 (3); set b: iforest 0.8 (1), ours 0.6 (2), mcd failed (3)
    assert lg[OURS]["avg_rank"] == pytest.approx(1.5)
    assert lg["iforest"]["avg_rank"] == pytest.approx(1.5)
    assert lg["mcd"]["avg_rank"] == pytest.approx(3.0)
    assert (lg["mcd"]["n_sets"], lg["mcd"]["failed"], lg["mcd"]["mean"]) == (1, 1, pytest.approx(0.5))
    assert lg[OURS]["mean"] == pytest.approx(0.7)
    assert lg[OURS]["n_common"] == 1 and lg[OURS]["common_mean"] == pytest.approx(0.8)


def test_versus_best_peer_skips_failed_peers_and_head_to_head_skips_failed_sets():
    datasets, _, table = ranks.per_dataset(RECORDS, "auroc")
    vb = {v["dataset"]: v for v in ranks.versus_best_peer(table, datasets, OURS, ["iforest", "mcd"])}
    assert vb["a"]["best_peer"] == "iforest" and vb["a"]["margin"] == pytest.approx(0.2) and vb["a"]["win"]
    assert vb["b"]["best_peer"] == "iforest" and vb["b"]["margin"] == pytest.approx(-0.2)
    assert vb["b"]["win"] is False
    h = ranks.head_to_head(table, datasets, OURS, ["iforest", "mcd"])
    assert h["iforest"] == {"wins": 1, "losses": 1, "ties": 0}
    assert h["mcd"] == {"wins": 1, "losses": 0, "ties": 0}


def test_league_markdown_lists_the_failure_with_its_reason():
    md = "\n".join(league_md(RECORDS))
    assert "ours against 2 peers" in md
    assert "MCD on b: `seed 1: ValueError: singular covariance`" in md
    assert "AUROC: 1 wins, 1 losses" in md
