"""``vae-anomaly demo`` end to end, as a user runs it: a fresh run, then a re-run that must be safe."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.lake import Lake

SCRIPT = Path(sys.executable).with_name("vae-anomaly")
DATASETS = ("transactions", "sensors")


def run_demo(env: dict, *args: str) -> dict:
    result = subprocess.run([str(SCRIPT), "demo", "--json", *args], env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def score_files(lake_root: Path) -> dict[str, int]:
    """Every scores file with its modification time in nanoseconds."""
    return {str(p): p.stat().st_mtime_ns for p in lake_root.glob("*/scores/*/*/*.parquet")}


@pytest.mark.slow
def test_demo_from_nothing_then_again(tmp_path):
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: install the project (pip install -c constraints.txt -e '.[dev]')")
    home, lake_root = tmp_path / "home", tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "VAE_ANOMALY_"))}
    env.update(VAE_ANOMALY_HOME=str(home), VAE_ANOMALY_LAKE=str(lake_root))  # everything else: the defaults

    first = run_demo(env, "--fresh")
    lake = Lake(lake_root)
    from pipelines import tracking

    tracking.configure(f"sqlite:///{home / 'mlflow.db'}")
    for name in DATASETS:
        info = first["datasets"][name]
        champion = tracking.get_alias_version(name, "champion")
        assert champion is not None and champion == info["champion"]
        batches = [b.batch_id for b in lake.list_batches(name)]
        assert len(batches) == (4 if name == "transactions" else 3) and info["batches"] == batches
        assert set(lake.scored_batches(name, info["scores_key"])) == set(batches)  # every batch scored
        assert info["evaluation"]["rows"] == sum(b.rows_accepted for b in lake.list_batches(name))
        assert info["evaluation"]["injected"] > 0
    assert first["datasets"]["transactions"]["quarantined"] == 4
    alerts = first["alerts"]  # what the demo's own json:// receiver got: one alert per flagged batch
    assert alerts and {a["dataset"] for a in alerts} <= set(DATASETS)
    assert len({(a["dataset"], a["title"]) for a in alerts}) == len(alerts)  # a batch's id is in its title
    scored_once = score_files(lake_root)

    second = run_demo(env)  # no --fresh: ingest and scoring must skip what is done
    for name in DATASETS:
        info = second["datasets"][name]
        assert all(r["skipped"] for r in info["ingested"])
        assert all(r["scored"] == [] for r in info["scored"])  # nothing scored twice
        assert info["trained"] is None and info["retrain"] is None
        assert info["champion"] == first["datasets"][name]["champion"]
        assert info["evaluation"] == first["datasets"][name]["evaluation"]
    assert score_files(lake_root) == scored_once
    assert second["alerts"] == []  # the ledger kept what the first run sent
