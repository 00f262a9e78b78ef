"""pipelines.tracking against a real MLflow tracking server (SQLite backend, proxied artifacts).

One tiny detector is trained and registered once for the module; the tests read it back through
MlflowClient, load it from the registry, and serve it with ``mlflow models serve``.
"""
from __future__ import annotations

import http.server
import json
import os
import pickletools
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import vae_core
from pipelines import tracking
from pipelines.tracking import TrackingError
from vae_core import SCORE_COLUMNS, TimeSeriesVAEDetector, VAEDetector

pytestmark = pytest.mark.slow

EXPERIMENT = "tracking-test"
MODEL = "txn-tracking-test"
TINY = dict(max_epochs=5, kl_warmup_epochs=1, elbo_samples=4, iwae_samples=4, hidden_dims=[16, 8], latent_dim=2)
EPOCH_METRICS = ["train_loss", "train_recon", "train_kl", "val_neg_elbo", "val_recon", "val_kl", "beta"]


def synthetic_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A numeric, a boolean and a categorical column, loosely related."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "amount": np.exp(3 + 0.5 * z + rng.normal(scale=0.2, size=n)),
            "is_online": z + rng.normal(scale=0.5, size=n) > 0,
            "channel": np.where(z > 0.5, "web", np.where(z < -0.5, "store", "phone")),
        }
    )


def train_and_register(frame: pd.DataFrame, model_name: str, run_name: str, seed: int = 0, detector=None):
    """Train (unless ``detector`` is given) and register it, with the TrainingRun's methods."""
    with tracking.start_training_run(EXPERIMENT, run_name, params={"rows": len(frame)}) as run:
        if detector is None:
            detector = VAEDetector(seed=seed, **TINY).fit(frame, callback=run.log_epoch)
        info = run.log_detector(detector, model_name, frame.head(5))  # no alias changes
    return SimpleNamespace(run_id=run.run_id, detector=detector, info=info)


@pytest.fixture(scope="module")
def server(mlflow_server):
    """The tracking server, configured for this module (and un-configured afterwards)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mp.setenv("MLFLOW_REGISTRY_URI", mlflow_server)
    mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    assert tracking.configure(mlflow_server) == mlflow_server
    try:
        yield mlflow_server
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        mp.undo()
        tracking.configure(None)


@pytest.fixture(scope="module")
def client(server) -> MlflowClient:
    return MlflowClient(tracking_uri=server, registry_uri=server)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture(scope="module")
def first(server, frame):
    """Version 1 of MODEL, logged the way the flows do it: the run object passed to fit, then aliases."""
    with tracking.start_training_run(EXPERIMENT, "first", params={"rows": len(frame), "source": "synthetic"},
                                     tags={"purpose": "test"}) as run:
        detector = VAEDetector(seed=0, **TINY).fit(frame, callback=run.log_epoch)
        info = run.log_detector(detector, MODEL, frame.head(5))
    aliases = tracking.apply_new_version_aliases(info.name, info.version)
    return SimpleNamespace(run_id=run.run_id, detector=detector, info=info, aliases=aliases)


def test_training_run_logs_every_epoch_as_metrics(first, client):
    history = first.detector.history_
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    for key in EPOCH_METRICS:
        points = sorted(client.get_metric_history(first.run_id, key), key=lambda m: m.step)
        assert [m.step for m in points] == [h["epoch"] for h in history], key
        assert [m.value for m in points] == pytest.approx([h[key] for h in history], rel=1e-12), key
    assert run.data.metrics["threshold"] == pytest.approx(first.detector.threshold_, rel=1e-12)
    assert run.data.metrics["epochs_trained"] == len(history)


def test_params_tags_and_score_histogram(first, client, tmp_path):
    run = client.get_run(first.run_id)
    params = run.data.params
    assert params["rows"] == "300" and params["source"] == "synthetic"  # the run's own params
    assert params["max_epochs"] == "5" and params["hidden_dims"] == "[16, 8]"  # the detector config
    assert params["latent_dim"] == "2" and params["kind"] == "tabular" and params["n_features"] == "3"
    assert run.data.tags["purpose"] == "test"
    assert (run.data.tags["registered_model"], run.data.tags["registered_version"]) == (MODEL, first.info.version)

    assert tracking.HISTOGRAM_FILE in [a.path for a in client.list_artifacts(first.run_id, "plots")]
    png = client.download_artifacts(first.run_id, tracking.HISTOGRAM_FILE, str(tmp_path))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_first_version_is_registered_as_champion_and_challenger(first, client):
    info = first.info
    assert (info.name, info.version, info.run_id) == (MODEL, "1", first.run_id)
    assert info.model_uri == tracking.model_uri(MODEL, version=1) == f"models:/{MODEL}/1"
    assert first.aliases == ["challenger", "champion"]
    assert set(tracking.get_version(MODEL, 1).aliases) == {"champion", "challenger"}
    mv = client.get_model_version(MODEL, "1")
    assert mv.run_id == first.run_id and mv.tags["kind"] == "tabular"
    assert tracking.get_alias_version(MODEL, "champion") == "1"
    assert tracking.get_alias_version(MODEL, "challenger") == "1"
    # the model's signature: the three input columns in, the scores and top_features out
    model_info = mlflow.models.get_model_info(tracking.model_uri(MODEL, alias="champion"))
    assert model_info.signature.inputs.input_names() == ["amount", "is_online", "channel"]
    assert model_info.signature.outputs.input_names() == SCORE_COLUMNS + ["top_features"]


def test_load_detector_gives_the_same_scores_and_caches_the_download(first, frame, tmp_path):
    uri = tracking.model_uri(MODEL, alias="champion")
    assert uri == f"models:/{MODEL}@champion"
    detector, info = tracking.load_detector(uri, cache_dir=tmp_path)
    assert (info.version, info.run_id) == ("1", first.run_id)
    pd.testing.assert_frame_equal(detector.score(frame), first.detector.score(frame), check_exact=True)
    np.testing.assert_array_equal(detector.calibration_.scores, first.detector.calibration_.scores)

    weights = next((tmp_path / MODEL / "1").rglob("weights.pt"))
    before = weights.stat()
    again, _ = tracking.load_detector(tracking.model_uri(MODEL, version=1), cache_dir=tmp_path)
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not downloaded again
    pd.testing.assert_frame_equal(again.score(frame.head(20)), first.detector.score(frame.head(20)), check_exact=True)

    no_cache, _ = tracking.load_detector(uri)  # temporary download folder
    assert no_cache.threshold_ == first.detector.threshold_


def _pickles(folder: Path) -> list[str]:
    """Files under ``folder`` that are pickles: by name, or by content (a pickle stream that
    pickletools reads to its STOP opcode, as cloudpickle writes them)."""
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix in (".pkl", ".pickle", ".cloudpickle"):
            found.append(str(path))
            continue
        data = path.read_bytes()
        if data[:1] == b"\x80" and len(data) > 2 and 2 <= data[1] <= 5:  # protocol 2-5 header
            try:
                ops = [op.name for op, _, _ in pickletools.genops(data)]
            except Exception:
                continue
            if ops and ops[-1] == "STOP":
                found.append(str(path))
    return found


def test_the_model_is_logged_from_code_without_any_pickle(first, tmp_path):
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=tracking.get_version(MODEL, 1).source, dst_path=str(tmp_path)))
    assert (local / "MLmodel").exists() and (local / "artifacts" / "detector" / "config.json").exists()
    assert _pickles(local) == []
    flavor = mlflow.models.Model.load(str(local)).flavors["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("served_model.py")
    code = next(local.rglob("served_model.py")).read_text()
    imported = {line.split()[1].split(".")[0] for line in code.splitlines() if line.startswith(("import ", "from "))}
    assert imported == {"__future__", "typing", "mlflow", "pandas", "vae_core"}
    # the pickle check does find one: a file MLflow's cloudpickle flavour would write
    import cloudpickle

    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "python_model").write_bytes(cloudpickle.dumps({"top_k": 3}))
    assert _pickles(tmp_path / "probe") == [str(tmp_path / "probe" / "python_model")]


def test_a_model_logged_by_the_previous_release_still_loads(server, first, frame, tmp_path):
    """The previous release logged a cloudpickled wrapper with the vae_core save folder as its
    ``detector`` artifact; load_detector reads that folder, never the pickle."""
    saved = first.detector.save(tmp_path / "detector")
    with tracking.start_training_run(EXPERIMENT, "old-format") as run:
        logged = mlflow.initialize_logged_model(name="vae_detector", source_run_id=run.run_id, experiment_id=run.experiment_id)
        model_info = mlflow.models.Model.log(
            artifact_path=None, name="vae_detector", flavor=mlflow.pyfunc, run_id=run.run_id, model_id=logged.model_id,
            python_model=_OldWrapper(), artifacts={"detector": str(saved)}, pip_requirements=["mlflow"],
        )
    info = tracking.register(model_info.model_uri, f"{MODEL}-old", run_id=run.run_id)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(tmp_path / "dl")))
    assert _pickles(local)  # really the old format
    detector, loaded = tracking.load_detector(tracking.model_uri(f"{MODEL}-old", version=info.version), cache_dir=tmp_path / "c")
    assert loaded.version == info.version
    pd.testing.assert_frame_equal(detector.score(frame), first.detector.score(frame), check_exact=True)


class _OldWrapper(mlflow.pyfunc.PythonModel):
    """Stands in for the previous release's cloudpickled VAEAnomalyModel."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input


def test_pyfunc_model_loads_without_this_project(first, frame, tmp_path):
    """The model file and the vae_core copy in the model are all a served model needs."""
    tracking.load_detector(tracking.model_uri(MODEL, version=1), cache_dir=tmp_path)
    script = textwrap.dedent(
        f"""
        import sys, mlflow.pyfunc, pandas as pd
        model = mlflow.pyfunc.load_model({str(tmp_path / MODEL / "1")!r})
        out = model.predict(pd.read_json(sys.stdin, orient="split"))
        print(sorted(m for m in ("pipelines", "vae_core") if m in sys.modules))
        print(sys.modules["vae_core"].__file__)
        print(len(out), list(out.columns))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], input=frame.head(8).to_json(orient="split"), capture_output=True,
        text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules, vae_core_file, shape = done.stdout.strip().splitlines()[-3:]
    assert modules == "['vae_core']"  # loading the model never imported pipelines
    assert vae_core_file.startswith(str(tmp_path / MODEL / "1" / "code" / "vae_core"))
    assert shape == f"8 {SCORE_COLUMNS + ['top_features']}"


def test_champion_scores_over_rest_with_mlflow_models_serve(first, frame, server, mlflow_cli, free_tcp_port):
    url = f"http://127.0.0.1:{free_tcp_port}"
    mlflow_cli.start(
        "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(free_tcp_port), "-w", "1",
        env={"MLFLOW_TRACKING_URI": server}, ready_url=f"{url}/ping", timeout=240,
    )
    rows = frame.iloc[:64]
    payload = {
        "dataframe_split": {
            "columns": list(rows.columns),
            "index": [int(i) for i in rows.index],
            "data": [[float(a), bool(b), str(c)] for a, b, c in rows.itertuples(index=False)],
        },
        "params": {"top_k": 2},
    }
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        served = pd.DataFrame(json.loads(response.read())["predictions"])

    expected = vae_core.score_with_explanations(first.detector, rows, top_k=2).reset_index(drop=True)
    assert list(served.columns) == SCORE_COLUMNS + ["top_features"]
    for column in ["neg_elbo", "nll_iwae", "recon_error", "anomaly_score", "p_value"]:
        np.testing.assert_array_equal(served[column].to_numpy(float), expected[column].to_numpy(float), err_msg=column)
    assert served["is_anomaly"].tolist() == expected["is_anomaly"].tolist()
    assert served["top_features"].tolist() == expected["top_features"].tolist()
    assert all(1 <= len(t.split(", ")) <= 2 for t in served["top_features"] if t)


def test_new_versions_are_challengers_until_promoted(first, frame, client, tmp_path):
    name = f"{MODEL}-lifecycle"
    v1 = train_and_register(frame, name, "lifecycle-1", detector=first.detector)
    assert (v1.info.version, v1.info.aliases) == ("1", ())  # registering sets no alias
    assert tracking.get_alias_version(name, "champion") is None
    assert tracking.apply_new_version_aliases(name, v1.info.version) == ["challenger", "champion"]

    v2 = train_and_register(frame, name, "lifecycle-2", seed=1)
    assert tracking.apply_new_version_aliases(name, v2.info.version) == ["challenger"]
    assert tracking.get_aliases(name) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "1").aliases == ["champion"]

    assert tracking.promote(name, "2") == "1"  # returns the previous champion
    assert tracking.get_aliases(name) == {"champion": "2", "challenger": "2"}
    detector, info = tracking.load_detector(tracking.model_uri(name, alias="champion"), cache_dir=tmp_path)
    assert (info.version, info.run_id) == ("2", v2.run_id)
    pd.testing.assert_frame_equal(detector.score(frame), v2.detector.score(frame), check_exact=True)

    tracking.set_alias(name, "champion", 1)  # roll back by hand
    assert tracking.get_alias_version(name, "champion") == "1"
    with pytest.raises(TrackingError, match=f"no version 7 of registered model '{name}'"):
        tracking.promote(name, 7)


def test_time_series_detector_round_trips(server, tmp_path):
    n = 240
    rng = np.random.default_rng(0)
    series = pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="min"),
        "cpu": np.sin(np.arange(n) / 8) + rng.normal(scale=0.1, size=n),
        "mem": np.cos(np.arange(n) / 8) + rng.normal(scale=0.1, size=n),
    })
    with tracking.start_training_run(EXPERIMENT, "timeseries") as run:
        detector = TimeSeriesVAEDetector(seed=0, window=8, max_epochs=2, kl_warmup_epochs=1, elbo_samples=2,
                                         iwae_samples=2).fit(series, callback=run.log_epoch)
        info = run.log_detector(detector, f"{MODEL}-ts", series.head(32))
    loaded, loaded_info = tracking.load_detector(info.model_uri, cache_dir=tmp_path)
    assert isinstance(loaded, TimeSeriesVAEDetector) and loaded_info == info
    assert (loaded.time_column_, loaded.value_columns_) == ("timestamp", ["cpu", "mem"])
    pd.testing.assert_frame_equal(loaded.score(series), detector.score(series), check_exact=True)
    # the served model scores causally, as the score flow stores scores; a request may ask for offline
    served = mlflow.pyfunc.load_model(info.model_uri)
    causal, offline = detector.with_point_score("last").score(series), detector.score(series)
    assert not np.allclose(causal["anomaly_score"], offline["anomaly_score"])  # the modes differ here
    np.testing.assert_allclose(served.predict(series)["anomaly_score"], causal["anomaly_score"], rtol=1e-6)
    np.testing.assert_allclose(served.predict(series, params={"point_score": "mean"})["anomaly_score"],
                               offline["anomaly_score"], rtol=1e-6)


def test_log_comparison_records_metrics_and_the_decision(server, client):
    with tracking.start_training_run(EXPERIMENT, "retrain") as run:
        run.log_comparison(
            {"holdout_nll_champion": float("inf"), "holdout_nll_challenger": 2.5, "note": "text is left out"},
            "promoted", details={"rule": "no champion yet", "champion_version": "", "challenger_version": "2"},
        )
    data = client.get_run(run.run_id).data
    assert data.metrics == {"holdout_nll_challenger": 2.5}
    assert data.tags["promotion.decision"] == "promoted" and data.tags["promotion.rule"] == "no champion yet"
    assert (data.tags["promotion.champion_version"], data.tags["promotion.challenger_version"]) == ("", "2")
    tracking.TrainingRun(run.run_id).log_comparison({"holdout_rows": 40}, "rejected")  # by id, after the run ended
    data = client.get_run(run.run_id).data
    assert data.metrics["holdout_rows"] == 40 and data.tags["promotion.decision"] == "rejected"
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_failed_training_marks_the_run_failed(server, client):
    with pytest.raises(ZeroDivisionError):
        with tracking.start_training_run(EXPERIMENT, "boom") as run:
            run.log_epoch({"epoch": 1, "train_loss": 1.0})
            1 / 0
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_epoch_logging_failures_warn_once_and_never_stop_training(server, caplog):
    missing = tracking.TrainingRun("0" * 32)  # no such run on the server
    with caplog.at_level("WARNING", logger="pipelines.tracking"):
        for epoch in (1, 2, 3):
            assert missing.log_epoch({"epoch": epoch, "train_loss": 1.0}) is None
    warnings = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(warnings) == 1 and "from epoch 1 on" in warnings[0].getMessage()


def test_missing_models_and_aliases_give_clear_errors(first):
    assert tracking.get_alias_version("no-such-model", "champion") is None
    assert tracking.get_alias_version(MODEL, "gold") is None
    with pytest.raises(TrackingError) as err:
        tracking.load_detector(tracking.model_uri(MODEL, alias="gold"))
    assert str(err.value) == f"no model version with alias 'gold' for model '{MODEL}'; run `vae-anomaly train` first"
    with pytest.raises(TrackingError) as err:
        tracking.load_detector("models:/no-such-model@champion")
    assert str(err.value) == "no registered model 'no-such-model' (looked for its 'champion' version); run `vae-anomaly train` first"
    with pytest.raises(TrackingError, match="^no registered model 'no-such-model'; run `vae-anomaly train` first$"):
        tracking.require_model("no-such-model")
    with pytest.raises(TrackingError, match="^no version 9 of registered model"):
        tracking.load_detector(tracking.model_uri(MODEL, version=9))
    with pytest.raises(TrackingError, match="unsupported model URI"):
        tracking.load_detector("runs:/abc/model")
    with pytest.raises(ValueError):
        tracking.model_uri(MODEL)


def test_a_server_that_is_not_running_fails_fast(server, free_tcp_port):
    with pytest.raises(TrackingError, match=r"^cannot reach the MLflow tracking server at http://127\.0\.0\.1:\d+ "):
        tracking.configure(f"http://127.0.0.1:{free_tcp_port}")
    assert mlflow.get_tracking_uri() == server  # unchanged


class _HealthyButFailing(http.server.BaseHTTPRequestHandler):
    """Answers /health, 503 for everything else; counts the requests it refused."""

    refused = 0

    def _answer(self) -> None:
        if self.path.rstrip("/") == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        type(self).refused += 1
        self.send_response(503)
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


def test_a_server_that_fails_every_request_is_reported_after_few_retries(server):
    """MLflow's defaults (7 retries, backoff factor 2) retried a 503 for about four minutes; the
    retries are capped (pipelines.settings.MLFLOW_HTTP_DEFAULTS): three requests, then the error."""
    from pipelines.settings import MLFLOW_HTTP_DEFAULTS

    _HealthyButFailing.refused = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyButFailing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        tracking.configure(url)  # /health answers: configured
        with pytest.raises(TrackingError, match="^cannot read alias 'champion' of model 'transactions': .*503"):
            tracking.get_alias("transactions", "champion")
        assert _HealthyButFailing.refused == 1 + int(MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    finally:
        httpd.shutdown()
        httpd.server_close()
        tracking.configure(server)


def test_invalid_model_names_are_refused_before_anything_is_logged(server, client):
    for bad in ("../evil/x", "a/b", "", " x", "x" * 129):
        with pytest.raises(TrackingError, match="^invalid model name"):
            tracking.check_model_name(bad)
    assert tracking.check_model_name("txn-v2_1.0") == "txn-v2_1.0"


def test_local_sqlite_store_keeps_artifacts_under_the_state_dir(server, tmp_path, monkeypatch):
    """configure() with a SQLite URI: experiments keep their artifacts next to the database."""
    monkeypatch.chdir(tmp_path)  # MLflow's own default would be ./mlruns here
    state = tmp_path / "state"
    try:
        assert tracking.configure(f"sqlite:///{state / 'mlflow.db'}") == f"sqlite:///{state / 'mlflow.db'}"
        with tracking.start_training_run("local-exp", "local") as run:
            run.log_epoch({"epoch": 1, "val_neg_elbo": 2.5})
        local = MlflowClient()
        experiment = local.get_experiment(run.experiment_id)
        assert experiment.artifact_location == (state / "mlartifacts" / "local-exp").as_uri()
        assert local.get_metric_history(run.run_id, "val_neg_elbo")[0].value == 2.5
        assert not (tmp_path / "mlruns").exists()
    finally:
        tracking.configure(server)
