"""Settings read from a plain dict (no environment, no Prefect): defaults, overrides, Prefect env."""
import os
from pathlib import Path

import threading

import pytest
import torch

from pipelines.settings import PROJECT_ROOT, Settings, apply_prefect_env, apply_torch_threads


def test_settings_defaults_follow_home_and_project_root(tmp_path):
    settings = Settings.from_env({"VAE_ANOMALY_HOME": str(tmp_path / "state")})
    assert settings.project_root == PROJECT_ROOT == Path(__file__).resolve().parents[3]
    assert settings.lake_url == str(PROJECT_ROOT / "data" / "lake")
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert settings.mlflow_artifact_root == (tmp_path / "state" / "mlartifacts").as_uri()
    assert settings.prefect_home == tmp_path / "state" / "prefect"
    assert settings.prefect_api_url is None and settings.dask_address is None
    assert settings.benchdata_dir == PROJECT_ROOT.parent / "shared" / "benchdata"
    assert Settings.from_env({}).home == PROJECT_ROOT / ".state"


def test_settings_read_overrides_from_the_environment():
    settings = Settings.from_env(
        {
            "VAE_ANOMALY_LAKE": "s3://bucket/lake",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "PREFECT_API_URL": "http://127.0.0.1:4200/api",
            "VAE_ANOMALY_DASK_ADDRESS": "tcp://127.0.0.1:8786",
            "VAE_ANOMALY_BENCHDATA": "",  # empty counts as unset
        }
    )
    assert settings.lake_url == "s3://bucket/lake" and settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api" and settings.dask_address == "tcp://127.0.0.1:8786"
    assert settings.benchdata_dir == PROJECT_ROOT.parent / "shared" / "benchdata"


PREFECT_DEFAULTS = ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")


def unset(monkeypatch, *names: str) -> None:
    """Remove ``names`` from the environment; the test's end restores them (also if set meanwhile)."""
    for name in names:
        monkeypatch.setenv(name, "placeholder")  # records the original value for the restore
        monkeypatch.delenv(name)


def test_apply_prefect_env_fills_in_what_is_unset(monkeypatch, tmp_path):
    unset(monkeypatch, *PREFECT_DEFAULTS)
    settings = Settings.from_env({"VAE_ANOMALY_HOME": str(tmp_path)})
    assert apply_prefect_env(settings) == {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "prefect") and (tmp_path / "prefect").is_dir()
    assert apply_prefect_env(settings) == {}


def test_apply_prefect_env_keeps_what_is_set(monkeypatch, tmp_path):
    unset(monkeypatch, "PREFECT_HOME")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "30")
    settings = Settings.from_env({"VAE_ANOMALY_HOME": str(tmp_path)})
    assert apply_prefect_env(settings) == {"PREFECT_HOME": str(tmp_path / "prefect")}
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "30"


def test_torch_threads_setting_is_parsed_and_checked():
    assert Settings.from_env({}).torch_threads is None
    assert Settings.from_env({"VAE_ANOMALY_TORCH_THREADS": " 3 "}).torch_threads == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=r"VAE_ANOMALY_TORCH_THREADS must be a whole number >= 1, got"):
            Settings.from_env({"VAE_ANOMALY_TORCH_THREADS": bad})


def test_apply_torch_threads_sets_the_calling_thread_and_leaves_torch_alone_when_unset():
    seen = {}

    def task(settings, key):
        seen[key] = (apply_torch_threads(settings), torch.get_num_threads())

    before = torch.get_num_threads()
    target = 2 if before != 2 else 3
    try:
        worker = threading.Thread(target=task, args=(Settings.from_env({"VAE_ANOMALY_TORCH_THREADS": str(target)}), "set"))
        worker.start()
        worker.join()
        assert seen["set"] == (target, target)
        worker = threading.Thread(target=task, args=(Settings.from_env({}), "unset"))
        worker.start()
        worker.join()
        assert seen["unset"] == (None, target)  # unset: the count is not touched
    finally:
        torch.set_num_threads(before)


def test_apply_mlflow_env_caps_http_retries_unless_set(monkeypatch):
    from pipelines.settings import MLFLOW_HTTP_DEFAULTS, apply_mlflow_env

    for name in MLFLOW_HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # the user's choice wins
    applied = apply_mlflow_env()
    assert applied == {k: v for k, v in MLFLOW_HTTP_DEFAULTS.items() if k != "MLFLOW_HTTP_REQUEST_TIMEOUT"}
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    assert apply_mlflow_env() == {}
