"""The scheduled-scoring, nightly-retraining and nightly-maintenance deployments: built, applied
to a real Prefect API and read back; and prefect.yaml declaring the same ones for workers."""
from pathlib import Path

import pytest
import yaml

from pipelines.deployments import (
    MAINTAIN_CRON, MAINTENANCE, RETRAIN_CRON, RETRAINING, SCORE_CRON, SCORING, build_deployments,
)

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
DATASETS = ["transactions", "sensors"]


def schedules_of(deployment) -> list[tuple[str, str, dict]]:
    """(cron, timezone, parameters) of each schedule, from a RunnerDeployment or an API response."""
    return sorted(
        ((s.schedule.cron, s.schedule.timezone, s.parameters) for s in deployment.schedules),
        key=lambda item: item[2]["dataset"],
    )


def test_build_gives_scoring_retraining_and_maintenance_with_one_schedule_per_dataset():
    scoring, retraining, maintenance = build_deployments(DATASETS)
    assert (scoring.name, scoring.flow_name, scoring.entrypoint) == (SCORING, "score", "pipelines.flows.score.score")
    assert (retraining.name, retraining.flow_name) == (RETRAINING, "retrain")
    assert (maintenance.name, maintenance.flow_name, maintenance.entrypoint) == (
        MAINTENANCE, "maintain", "pipelines.flows.maintain.maintain")
    assert (SCORE_CRON, RETRAIN_CRON, MAINTAIN_CRON) == ("0 * * * *", "0 2 * * *", "0 3 * * *")
    assert schedules_of(scoring) == [(SCORE_CRON, "UTC", {"dataset": d}) for d in sorted(DATASETS)]
    assert schedules_of(retraining) == [(RETRAIN_CRON, "UTC", {"dataset": d}) for d in sorted(DATASETS)]
    assert schedules_of(maintenance) == [(MAINTAIN_CRON, "UTC", {"dataset": d}) for d in sorted(DATASETS)]
    assert scoring.parameters == {} and scoring.concurrency_limit == 1  # the dataset comes from the schedule
    assert maintenance.parameters == {} and maintenance.concurrency_limit == 1  # one pass at a time
    assert "dataset" in scoring._parameter_openapi_schema.required


def test_build_options_set_crons_and_default_parameters():
    scoring, retraining, maintenance = build_deployments(
        ["sensors"], score_cron="*/15 * * * *", retrain_cron="30 3 * * 0", score_parameters={"workers": 2},
        maintain_cron="0 4 * * *", maintain_parameters={"reports_older_than": "90d"},
    )
    assert schedules_of(scoring) == [("*/15 * * * *", "UTC", {"dataset": "sensors"})]
    assert schedules_of(retraining) == [("30 3 * * 0", "UTC", {"dataset": "sensors"})]
    assert schedules_of(maintenance) == [("0 4 * * *", "UTC", {"dataset": "sensors"})]
    assert maintenance.parameters == {"dataset": "sensors", "reports_older_than": "90d"}
    assert scoring.parameters == {"dataset": "sensors", "workers": 2}  # one dataset: also the default
    with pytest.raises(ValueError):
        build_deployments([])


@pytest.mark.slow
def test_deployments_apply_to_the_api_and_read_back(prefect_harness):
    from prefect.client.orchestration import get_client

    built = build_deployments(DATASETS, score_cron="*/5 * * * *")
    ids = [d.apply() for d in built]
    with get_client(sync_client=True) as client:
        for deployment_id, expected in zip(ids, built):
            stored = client.read_deployment(deployment_id)
            assert stored.name == expected.name
            assert client.read_flow(stored.flow_id).name == expected.flow_name
            assert stored.entrypoint == expected.entrypoint and "vae-anomaly" in stored.tags
            assert schedules_of(stored) == schedules_of(expected)
            assert all(s.active for s in stored.schedules)
        scoring = client.read_deployment_by_name(f"score/{SCORING}")
        assert [s[0] for s in schedules_of(scoring)] == ["*/5 * * * *"] * 2
        assert [s[0] for s in schedules_of(client.read_deployment_by_name(f"retrain/{RETRAINING}"))] == [RETRAIN_CRON] * 2
        assert [s[0] for s in schedules_of(client.read_deployment_by_name(f"maintain/{MAINTENANCE}"))] == [MAINTAIN_CRON] * 2


def test_prefect_yaml_declares_the_same_deployments_on_the_pools():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load(PREFECT_YAML.read_text())
    assert set(raw["definitions"]["work_pools"]) == {"cpu", "gpu"}
    model = PrefectYamlModel.model_validate(raw)  # `prefect deploy` skips a file that fails this
    declared = {d.name: d for d in model.deployments}
    pools = {name: d.work_pool.name for name, d in declared.items()}
    assert pools == {SCORING: "cpu", RETRAINING: "gpu", MAINTENANCE: "cpu", "on-demand-training": "gpu"}
    for built in build_deployments(DATASETS):
        mine = declared[built.name]
        assert mine.entrypoint == built.entrypoint  # a module path: Dask workers can unpickle its tasks
        assert load_flow_from_entrypoint(mine.entrypoint).name == built.flow_name
        declared_schedules = sorted(((s.cron, s.timezone, s.parameters) for s in mine.schedules), key=lambda s: s[2]["dataset"])
        assert declared_schedules == schedules_of(built)
        assert mine.concurrency_limit.limit == built.concurrency_limit == 1
