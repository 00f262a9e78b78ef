"""pipelines.demo.state: what ``--fresh`` wipes (only what the demo made, only under its home),
and the demo's remembered state."""
import pytest

from pipelines.demo.state import DemoError, load_state, save_state, wipe
from pipelines.settings import Settings


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"VAE_ANOMALY_HOME": str(tmp_path / "home"), "VAE_ANOMALY_LAKE": str(tmp_path / "lake"), **env})


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def test_fresh_wipes_the_demo_datasets_and_the_local_stores_and_nothing_else(tmp_path):
    s = settings(tmp_path)
    home, lake = tmp_path / "home", tmp_path / "lake"
    made = [touch(lake / "transactions" / "rows" / "p.parquet"), touch(lake / "sensors" / "batches" / "b.json"),
            touch(home / "mlflow.db"), touch(home / "mlartifacts" / "1" / "m.pt"), touch(home / "demo.json"),
            touch(home / "prefect" / "prefect.db")]  # fmt: skip
    kept = [touch(lake / "mine" / "rows" / "p.parquet"), touch(home / "notes.txt")]
    removed = wipe(s)
    assert not any(p.exists() for p in made) and all(p.exists() for p in kept)
    assert sorted(removed) == sorted([str(lake / "transactions"), str(lake / "sensors"), str(home / "mlflow.db"),
                                      str(home / "mlartifacts"), str(home / "demo.json"), str(home / "prefect")])  # fmt: skip
    assert wipe(s) == []  # nothing left to remove: a second wipe is a no-op


def test_a_prefect_server_keeps_its_home(tmp_path):
    s = settings(tmp_path, PREFECT_API_URL="http://127.0.0.1:4200/api")
    prefect_db = touch(tmp_path / "home" / "prefect" / "prefect.db")
    wipe(s)
    assert prefect_db.exists()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "sqlite:///{tmp}/elsewhere/mlflow.db"])
def test_fresh_refuses_a_tracking_store_it_did_not_create(tmp_path, uri):
    s = settings(tmp_path, MLFLOW_TRACKING_URI=uri.format(tmp=tmp_path))
    data = touch(tmp_path / "lake" / "transactions" / "rows" / "p.parquet")
    with pytest.raises(DemoError, match="only wipes a tracking store under VAE_ANOMALY_HOME"):
        wipe(s)
    assert data.exists()  # refused before anything was deleted


def test_the_demo_state_round_trips_and_starts_empty(tmp_path):
    s = settings(tmp_path)
    s.ensure_home()
    assert load_state(s) == {}
    save_state(s, {"retrained": {"transactions": "3"}})
    assert load_state(s) == {"retrained": {"transactions": "3"}}
    assert sorted(p.name for p in s.home.iterdir()) == ["demo.json"]  # no temporary file left
