"""infra/docker-compose.yml validated offline (this machine has no Docker engine to run it).

The file is checked against the Compose Specification's JSON schema, the one `docker compose`
validates with (the copy that check-jsonschema ships and validates with as its builtin
``vendor.compose-spec``), as written and after variable interpolation from infra/.env.example.
Then the names that tie it together are checked: what ``depends_on`` names exists and can be
waited for in the way asked; every variable without a default is in .env.example; the workers
poll prefect.yaml's pools; the Prefect image is the pinned release; the setup one-shot registers
the deployments and the automation after the workers that create the pools. That the setup's
commands are ones the smoke test runs is checked by the smoke itself
(``infra.smoke.checks.readme_is_what_ran``).
"""
from __future__ import annotations

import copy
import json
import re
import shlex
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from infra.smoke.checks import setup_commands  # noqa: E402

COMPOSE = ROOT / "infra" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
SCHEMA = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
# $$ (a literal $), ${NAME}, ${NAME:-default} / ${NAME-default}, $NAME: the forms this file uses
VARIABLE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def variables(text: str) -> dict[str, bool]:
    """Each variable the text interpolates, and whether every use of it has a default."""
    found: dict[str, bool] = {}
    for m in VARIABLE.finditer(text):
        name = m["braced"] or m["bare"]
        if name:
            found[name] = found.get(name, True) and m["op"] is not None
    return found


def interpolate(node, env: dict[str, str]):
    """``node`` with every string interpolated as compose does for these forms."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def value(m: re.Match) -> str:
        if m["dollar"]:
            return "$"
        name = m["braced"] or m["bare"]
        got = env.get(name)
        if m["op"] == ":-" and not got:
            return m["default"]
        if m["op"] == "-" and got is None:
            return m["default"]
        return got or ""

    return VARIABLE.sub(value, node)


def schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def command_of(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


@pytest.mark.parametrize("interpolated", [False, True], ids=["as-written", "interpolated"])
def test_the_compose_file_is_valid_against_the_compose_specification(interpolated):
    doc = interpolate(compose(), env_example()) if interpolated else compose()
    assert schema_errors(doc) == []


def test_the_schema_check_rejects_what_compose_would():
    doc = compose()
    typo = copy.deepcopy(doc)
    typo["services"]["mlflow"]["depend_on"] = typo["services"]["mlflow"].pop("depends_on")
    assert any("'depend_on'" in e for e in schema_errors(typo))
    condition = copy.deepcopy(doc)
    condition["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert any(e.startswith("$.services.mlflow.depends_on: ") and "service_ready" in e for e in schema_errors(condition))
    ports = copy.deepcopy(doc)
    ports["services"]["minio"]["ports"] = "9000:9000"  # one port, not a list of them
    assert "$.services.minio.ports: '9000:9000' is not of type 'array'" in schema_errors(ports)
    assert all(e.startswith("$.services.minio") for e in schema_errors(ports))


def test_interpolation_follows_composes_rules_for_the_forms_used():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET} $$SET $SET", env) == "x d  d  $SET x"
    assert variables("${A} ${B:-1} ${A:-2} $$C $D") == {"A": False, "B": True, "D": False}


def test_every_variable_without_a_default_is_in_the_env_example_and_every_example_is_used():
    used = variables(COMPOSE.read_text())
    example = env_example()
    assert sorted(n for n, has_default in used.items() if not has_default and n not in example) == []
    assert sorted(set(example) - set(used)) == []


def test_what_a_service_waits_for_exists_and_can_be_waited_for_that_way():
    services = compose()["services"]
    waits = 0
    for name, service in services.items():
        for target, how in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} waits for {target}, which is not a service"
            other = services[target]
            if how["condition"] == "service_healthy":
                assert "healthcheck" in other, f"{name} waits for {target} to be healthy; it has no healthcheck"
            elif how["condition"] == "service_completed_successfully":
                assert other.get("restart") == "no", f"{target} is waited for to finish, but it restarts"
            # a service outside the dask profile must not need one that only the profile starts
            assert set(other.get("profiles", [])) <= set(service.get("profiles", [])), (name, target)
            waits += 1
    assert waits >= 10
    for name, service in services.items():  # every long-running service says when it is up
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} runs for good and has no healthcheck"


def test_the_workers_poll_the_pools_of_prefect_yaml_and_the_gpu_worker_reserves_a_gpu():
    services = compose()["services"]
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in project["deployments"]}
    polled = {}
    for name, service in services.items():
        cmd = command_of(service) if "command" in service else []
        if cmd[:3] == ["prefect", "worker", "start"]:
            polled[cmd[cmd.index("--pool") + 1]] = name
    assert set(polled) == pools == {"cpu", "gpu"}
    devices = services[polled["gpu"]]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services[polled["cpu"]]


def test_the_prefect_server_image_is_the_pinned_prefect_release():
    pinned = re.search(r"^prefect==([\w.]+)$", (ROOT / "constraints.txt").read_text(), re.M)[1]
    image = compose()["services"]["prefect-server"]["image"]
    default = re.fullmatch(r"\$\{PREFECT_IMAGE:-(.+)\}", image)[1]
    for tag in (default, env_example()["PREFECT_IMAGE"]):
        assert tag.startswith(f"prefecthq/prefect:{pinned}-"), tag
    assert str(yaml.safe_load((ROOT / "prefect.yaml").read_text())["prefect-version"]) == pinned


def test_the_setup_one_shot_registers_deployments_and_the_automation_once_the_pools_exist():
    services = compose()["services"]
    setup = services["deployments"]
    commands = setup_commands()
    assert commands["infra/docker-compose.yml"] == [["prefect", "--no-prompt", "deploy", "--all"], ["vae-anomaly", "automations"]]
    assert commands["infra/k8s/setup.yaml"] == commands["infra/docker-compose.yml"]  # the same setup on both
    assert setup["entrypoint"] == ["/bin/sh", "-c"] and setup["restart"] == "no"
    # the pools exist once their workers are up: each worker creates its own on first start
    workers = [n for n, s in services.items() if "command" in s and command_of(s)[:3] == ["prefect", "worker", "start"]]
    assert {w: setup["depends_on"][w]["condition"] for w in workers} == dict.fromkeys(workers, "service_healthy")
    assert setup["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert setup["environment"]["PREFECT_API_URL"] == services["worker-cpu"]["environment"]["PREFECT_API_URL"]
    assert setup["image"] == services["worker-cpu"]["image"]  # the image with prefect.yaml and the flows
