"""pipelines.tracking's model parts that need no tracking store: the served model's requirements,
the detector kind tag, the calibration histogram, the served model's predict (through MLflow's own
context class, loaded from its file as MLflow loads it) and finding the detector in a model folder."""
import importlib.metadata
import importlib.util

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModelContext

import vae_core
from pipelines.tracking import DETECTOR_ARTIFACT, SERVED_MODEL_FILE, TrackingError, serving_requirements
from pipelines.tracking.loading import detector_dir
from pipelines.tracking.runs import calibration_histogram, detector_kind

TINY = dict(max_epochs=2, kl_warmup_epochs=1, elbo_samples=2, iwae_samples=2)


@pytest.fixture(scope="module")
def detector(frame):
    return vae_core.VAEDetector(seed=0, **TINY).fit(frame.iloc[:300])


@pytest.fixture(scope="module")
def series_detector():
    t = pd.date_range("2024-01-01", periods=120, freq="h", tz="UTC")
    frame = pd.DataFrame({"t": t, "v": np.sin(np.arange(120) / 4.0)})
    return vae_core.TimeSeriesVAEDetector(seed=0, window=8, **TINY).fit(frame, time_column="t")


def test_serving_requirements_pin_the_installed_versions_without_local_builds():
    reqs = dict(r.split("==") for r in serving_requirements())
    assert set(reqs) == {"mlflow", "torch", "pandas", "numpy", "pyarrow", "pydantic"}
    for package, version in reqs.items():
        installed = importlib.metadata.version(package)
        assert "+" not in version and installed.split("+")[0] == version


def test_the_kind_tag_tells_a_table_from_a_time_series(detector, series_detector):
    assert detector_kind(detector) == "tabular" and detector_kind(series_detector) == "timeseries"


def test_the_calibration_histogram_counts_every_calibration_score_and_marks_the_threshold(detector):
    fig = calibration_histogram(detector)
    (ax,) = fig.axes
    assert sum(p.get_height() for p in ax.patches) == len(detector.calibration_.scores)
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [detector.threshold_] * 2
    assert ax.get_title() == f"Held-out calibration scores (n={len(detector.calibration_.scores)})"
    assert detector.config_.anomaly_score in ax.get_xlabel()


def served_model_class():
    """The served model module, run from its file as MLflow's models-from-code runs it."""
    spec = importlib.util.spec_from_file_location("served_model_under_test", SERVED_MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VAEAnomalyModel


def test_the_served_model_scores_like_vae_core_and_takes_top_k_per_request(detector, frame, tmp_path):
    model = served_model_class()()
    with pytest.raises(RuntimeError, match="not loaded"):
        model.predict(None, frame.head(2))
    saved = detector.save(tmp_path / DETECTOR_ARTIFACT)
    model.load_context(PythonModelContext({DETECTOR_ARTIFACT: str(saved)}, {"top_k": 1, "detector_artifact": DETECTOR_ARTIFACT}))
    rows = frame.iloc[300:340]
    pd.testing.assert_frame_equal(model.predict(None, rows), vae_core.score_with_explanations(detector, rows, top_k=1))
    pd.testing.assert_frame_equal(model.predict(None, rows, params={"top_k": 3}),
                                  vae_core.score_with_explanations(detector, rows, top_k=3))


def test_the_detector_folder_is_found_from_the_models_flavor(tmp_path):
    model = mlflow.models.Model()
    model.add_flavor("python_function", artifacts={DETECTOR_ARTIFACT: {"path": "artifacts/detector"}})
    model.save(str(tmp_path / "MLmodel"))
    assert detector_dir(tmp_path) == tmp_path / "artifacts" / "detector"
    with pytest.raises(TrackingError, match="is not a vae-anomaly pyfunc model"):
        detector_dir(tmp_path / "empty")
