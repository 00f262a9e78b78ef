"""The ``ingest`` Prefect flow run for real against a temporary Prefect API."""
import pytest

from pipelines.lake import Lake


def markdown_artifacts(flow_run_id) -> list:
    """The markdown artifacts a flow run published, read back through the Prefect client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    artifact_filter = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["markdown"])
    )
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=artifact_filter)


@pytest.mark.slow
def test_ingest_flow_commits_quarantines_and_publishes_a_summary(prefect_harness, tmp_path, samples_dir):
    from pipelines.flows.ingest import ingest

    lake_url = str(tmp_path / "lake")
    bad_file = str(samples_dir / "transactions_bad.csv")
    first = ingest(dataset="transactions", source=str(samples_dir / "transactions_batch1.csv"), lake_url=lake_url)
    assert (first["rows_read"], first["rows_accepted"], first["skipped"]) == (1900, 1900, False)

    state = ingest(dataset="transactions", source=bad_file, lake_url=lake_url, return_state=True)
    report = state.result()
    assert (report["rows_read"], report["rows_accepted"], report["rows_quarantined"]) == (20, 16, 4)
    assert report["dataset"] == "transactions" and report["quarantined_by_column"]["amount"] == 2
    assert [b.batch_id for b in Lake(lake_url).list_batches("transactions")] == [first["batch_id"], report["batch_id"]]

    (artifact,) = markdown_artifacts(state.state_details.flow_run_id)
    assert artifact.key == "ingest-transactions"
    assert "| 20 | 16 | 4 |" in artifact.data and "| amount | 2 |" in artifact.data

    again = ingest(dataset="transactions", source=bad_file, lake_url=lake_url, return_state=True)
    assert again.result()["skipped"] and again.result()["batch_id"] == report["batch_id"]
    (artifact,) = markdown_artifacts(again.state_details.flow_run_id)
    assert "skipped" in artifact.data
    assert len(Lake(lake_url).list_batches("transactions")) == 2


@pytest.mark.slow
def test_ingest_flow_fails_on_schema_drift_without_committing(prefect_harness, tmp_path, samples_dir):
    from pipelines.flows.ingest import ingest

    lake_url = str(tmp_path / "lake")
    ingest("sensors", str(samples_dir / "sensors_batch1.csv"), time_column="timestamp", lake_url=lake_url)
    state = ingest("sensors", str(samples_dir / "transactions_bad.csv"), lake_url=lake_url, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="missing column.*'timestamp'"):
        state.result()
    assert len(Lake(lake_url).list_batches("sensors")) == 1


def test_only_transient_failures_are_retried():
    from types import SimpleNamespace

    from pipelines.flows.common import is_transient
    from pipelines.lake import SchemaError, SourceError

    def retried(exc: BaseException) -> bool:
        return is_transient(None, None, SimpleNamespace(data=exc))

    def caused(exc: Exception, cause: BaseException) -> Exception:
        exc.__cause__ = cause
        return exc

    assert retried(OSError("connection reset")) and retried(TimeoutError())
    assert retried(caused(SourceError("cannot read"), ConnectionResetError()))
    assert not retried(caused(SourceError("cannot read"), FileNotFoundError()))
    assert not retried(SchemaError("missing column 'x'"))
    assert not retried(ValueError("bad parameter"))
    from pipelines.errors import TrackingError

    assert not retried(TrackingError("model 'x' has no alias 'champion'"))  # MLflow retried already
