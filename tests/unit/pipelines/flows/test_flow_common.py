"""pipelines.flows.common: artifact keys, naive UTC times for MLflow, which failures an I/O task
retries (through the task's own retry condition, called as Prefect calls it), the lake and the
epoch logger the training flows use."""
import pandas as pd
import pytest
from prefect.states import Failed

from pipelines import progress
from pipelines.flows.common import IO_RETRIES, IO_RETRY_DELAY, Registered, artifact_key, epoch_logger, io_task, lake_for, naive_utc
from pipelines.lake import LakeError
from pipelines.tracking import TrackingError
from vae_core import DataError
from vae_core.train import EpochMetrics


@pytest.mark.parametrize(
    "parts, key",
    [
        (("score", "Transactions", "b-0123ABcd"), "score-transactions-b-0123abcd"),
        (("report", "my data.set", "2024_01"), "report-my-data-set-2024-01"),  # Prefect keys: a-z, 0-9, -
        (("_x_", "ÄÖ!"), "x"),  # no leading, trailing or repeated dashes
    ],
)
def test_artifact_keys_are_lowercase_letters_digits_and_dashes(parts, key):
    assert artifact_key(*parts) == key


def test_naive_utc_converts_aware_times_and_leaves_the_rest_and_the_input_alone():
    aware = pd.Series(pd.to_datetime(["2024-07-01T12:00"]).tz_localize("Europe/Paris"))  # 10:00 UTC
    frame = pd.DataFrame({"t": aware, "naive": pd.to_datetime(["2024-07-01T12:00"]), "x": [1.5]})
    out = naive_utc(frame)
    assert out["t"].dt.tz is None and out["t"][0] == pd.Timestamp("2024-07-01T10:00")
    assert out["naive"][0] == pd.Timestamp("2024-07-01T12:00") and out["x"][0] == 1.5
    assert isinstance(frame["t"].dtype, pd.DatetimeTZDtype)  # the caller's frame is unchanged


def retried(exc: BaseException) -> bool:
    """What the I/O task's retry condition says for a run that raised ``exc`` (Prefect's
    engine wraps the exception in ``Failed(data=exc)`` before calling it)."""
    t = io_task("probe")(lambda: None)
    assert (t.retries, t.retry_delay_seconds) == (IO_RETRIES, IO_RETRY_DELAY)
    return t.retry_condition_fn(t, None, Failed(data=exc))


def lake_error(cause: BaseException) -> LakeError:
    try:
        raise LakeError("cannot write") from cause
    except LakeError as e:
        return e


def test_io_tasks_retry_transient_failures_and_not_bad_input():
    assert retried(ConnectionError("reset by peer")) and retried(TimeoutError()) and retried(RuntimeError("x"))
    assert retried(lake_error(PermissionError("busy")))  # an OSError under the lake: maybe transient
    assert not retried(ValueError("bad parameter"))
    assert not retried(DataError("column 'x', row 3: 'abc' is not a number"))
    assert not retried(TrackingError("no registered model 'm'"))  # MLflow's client retried already
    assert not retried(LakeError("dataset 'd' has no batches"))  # no cause: the lake's own verdict
    assert not retried(lake_error(FileNotFoundError("gone")))  # missing stays missing


def test_the_lake_is_the_given_one_or_the_configured_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ANOMALY_LAKE", str(tmp_path / "configured"))
    assert lake_for(None).url == str(tmp_path / "configured")
    assert lake_for(str(tmp_path / "given")).url == str(tmp_path / "given")


def test_registered_to_dict_has_the_train_flows_result_keys():
    r = Registered("m", "3", "run-1", "models:/m/3", rows=10, threshold=1.5, device="cpu", epochs=4)
    assert r.to_dict() == {"model_name": "m", "version": "3", "run_id": "run-1", "model_uri": "models:/m/3",
                           "rows": 10, "threshold": 1.5, "device": "cpu", "epochs": 4}  # fmt: skip


class RecordingRun:
    """Records what is logged to it: the one method of a TrainingRun that the logger calls."""

    def __init__(self):
        self.logged = []

    def log_epoch(self, metrics, step=None):
        self.logged.append((metrics, step))


def test_the_epoch_logger_logs_each_epoch_at_its_step_and_reports_progress():
    run, reports = RecordingRun(), []
    m = EpochMetrics(epoch=3, beta=1.0, train_loss=2.5, train_recon=2.0, train_kl=0.5, val_neg_elbo=2.75,
                     val_recon=2.25, val_kl=0.5, seconds=0.1, best=True)  # fmt: skip
    with progress.installed(lambda *a: reports.append(a)):
        assert epoch_logger(run, "transactions", 40)(m) is None  # never stops training
    ((metrics, step),) = run.logged
    assert step == 3 and "epoch" not in metrics and "best" not in metrics
    assert metrics == {"beta": 1.0, "train_loss": 2.5, "train_recon": 2.0, "train_kl": 0.5, "val_neg_elbo": 2.75,
                       "val_recon": 2.25, "val_kl": 0.5, "seconds": 0.1}  # fmt: skip
    assert reports == [("epochs", "transactions", 3, 40, {"loss": 2.5, "val_elbo": 2.75})]
