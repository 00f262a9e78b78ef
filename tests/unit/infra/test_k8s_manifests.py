"""infra/k8s/ validated offline: every manifest against the Kubernetes JSON schemas
(kubernetes-validate's bundled copies, strict: unknown fields are errors), the work pools' base
job templates rendered the way Prefect's Kubernetes worker renders them and the resulting Job
validated, and the names that tie the pieces together (pools, ConfigMap, Secret, Dask Service)
checked against each other and against prefect.yaml.

The DaskCluster is a custom resource whose schema ships with the dask-kubernetes operator, not
with Kubernetes: what is validated of it is what Kubernetes will run, its scheduler and worker
pod specs (as Pods) and its scheduler Service spec (as a Service).
"""
from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.server.schemas.actions import validate_base_job_template
from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "infra" / "k8s"
POOL_TEMPLATES = sorted((K8S / "work-pools").glob("*.json"))
KUBERNETES_VERSION = "1.30"  # the oldest release the manifests are meant for
CUSTOM_KINDS = {"DaskCluster"}
NAMESPACE = "vae-anomaly"


def manifests() -> list[tuple[str, dict]]:
    """(file name, document) for every YAML document under infra/k8s/."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def validate(resource: dict) -> None:
    """kubernetes-validate in strict mode; a failure names the resource and the field."""
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path)
        pytest.fail(f"{resource['kind']}/{resource.get('metadata', {}).get('name')}: {where}: {error.message}")


def as_pod(name: str, spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def load_template(path: Path) -> dict:
    return json.loads(path.read_text())


def render_job(template: dict, values: dict) -> dict:
    """The Job a Kubernetes worker would submit for a flow run with these job variables.

    The rendering is Prefect's own (variable defaults, then ``apply_values``, as in
    ``BaseJobConfiguration.from_template_and_values``); the finishing steps are those
    prefect-kubernetes' ``KubernetesWorkerJobConfiguration.prepare_for_flow_run`` takes: env
    as a list of name/value pairs, the command split into args, ``generateName`` from the name.
    """
    variables = BaseJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    variables.update(values)
    config = apply_values(copy.deepcopy(template["job_configuration"]), variables)
    job = config["job_manifest"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {**(config.get("env") or {}), "PREFECT__FLOW_RUN_ID": "00000000-0000-0000-0000-000000000000"}
    container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    container["args"] = shlex.split(config.get("command") or "prefect flow-run execute")
    job["metadata"]["generateName"] = f"{config['name']}-"
    job["metadata"]["labels"] = config.get("labels") or {}
    return job


def submitted(job: dict) -> dict:
    """``job`` as the API server keeps it. prefect-kubernetes refuses a template without
    ``parallelism: 1`` and ``completions: 1`` in the *pod* spec (its ``_get_base_job_manifest``),
    where Kubernetes does not know them: the API server drops unknown fields with a warning
    (``fieldValidation=Warn``, its default), so they are dropped here before the strict check."""
    job = copy.deepcopy(job)
    pod = job["spec"]["template"]["spec"]
    assert (pod.pop("parallelism"), pod.pop("completions")) == (1, 1)
    return job


FLOW_RUN = {"name": "lucky-otter", "labels": {"prefect.io/flow-run-name": "lucky-otter"}}


@pytest.mark.parametrize(
    "name,doc", [(n, d) for n, d in manifests() if d["kind"] not in CUSTOM_KINDS],
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}-{v['metadata']['name']}",
)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(name, doc):
    validate(doc)
    assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE or doc["kind"] == "Namespace"


def test_the_dask_clusters_pods_and_service_are_valid():
    (cluster,) = by_kind("DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    spec = cluster["spec"]
    validate(as_pod("scheduler", spec["scheduler"]["spec"]))
    validate(as_pod("worker", spec["worker"]["spec"]))
    validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scheduler"}, "spec": spec["scheduler"]["service"]})
    assert spec["worker"]["replicas"] >= 2
    assert spec["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == cluster["metadata"]["name"]


def test_the_validator_rejects_what_kubernetes_would():
    """The schemas are really applied: an unknown field and a wrongly typed one both fail."""
    (cluster,) = by_kind("DaskCluster")
    pod = as_pod("worker", copy.deepcopy(cluster["spec"]["worker"]["spec"]))
    pod["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    pod = as_pod("worker", copy.deepcopy(cluster["spec"]["worker"]["spec"]))
    pod["spec"]["containers"][0]["args"] = "dask worker"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", POOL_TEMPLATES, ids=lambda p: p.stem)
def test_pool_templates_pass_prefects_checks_and_render_valid_jobs(path):
    template = load_template(path)
    validate_base_job_template(template)  # what the server checks on `prefect work-pool create`
    schema = template["variables"]
    jsonschema.Draft202012Validator.check_schema(schema)
    defaults = BaseJobConfiguration._get_base_config_defaults(schema["properties"])
    jsonschema.validate(defaults, schema)  # every default is a valid value of its variable

    job = render_job(template, FLOW_RUN)
    validate(submitted(job))
    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env_from = job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert [e.get("configMapRef", e.get("secretRef"))["name"] for e in env_from] == ["vae-anomaly-config", "vae-anomaly-bucket"]
    # a deployment's job variables override the defaults and still give a valid Job
    validate(submitted(render_job(template, {**FLOW_RUN, "image": "registry.example/vae-anomaly:1.2", "memory_limit": "32Gi",
                                   "env": {"VAE_ANOMALY_TORCH_THREADS": "4"}})))


def test_the_gpu_pool_asks_for_a_gpu_node_and_the_cpu_pool_does_not():
    gpu = render_job(load_template(K8S / "work-pools" / "gpu.json"), FLOW_RUN)["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["containers"][0]["image"].startswith("vae-anomaly-gpu")
    two = render_job(load_template(K8S / "work-pools" / "gpu.json"), {**FLOW_RUN, "gpu_count": 2})
    assert two["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2

    cpu = render_job(load_template(K8S / "work-pools" / "cpu.json"), FLOW_RUN)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in cpu and "tolerations" not in cpu
    assert cpu["containers"][0]["image"].startswith("vae-anomaly-cpu")


def test_pools_match_the_deployments_in_prefect_yaml_and_the_workers():
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    used = {d["work_pool"]["name"] for d in project["deployments"]}
    declared = {p["name"] for p in project["definitions"]["work_pools"].values()}
    templates = {p.stem for p in POOL_TEMPLATES}
    assert used == declared == templates == {"cpu", "gpu"}
    for template in map(load_template, POOL_TEMPLATES):
        assert template["job_configuration"]["job_manifest"]["metadata"]["annotations"]["vae-anomaly/pool"] in templates
    polled = set()
    for deployment in by_kind("Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["prefect", "worker", "start"] and args[args.index("--type") + 1] == "kubernetes"
        polled.add(args[args.index("--pool") + 1])
    assert polled == templates  # one worker per pool


def test_settings_reach_every_pod_from_one_configmap_and_one_secret():
    (config,) = by_kind("ConfigMap")
    (secret,) = by_kind("Secret")
    assert {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "VAE_ANOMALY_LAKE", "VAE_ANOMALY_DASK_ADDRESS"} <= set(config["data"])
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert not set(config["data"]) & set(secret["stringData"])  # no credential in the ConfigMap

    (cluster,) = by_kind("DaskCluster")
    service = f"{cluster['metadata']['name']}-scheduler"  # the Service the operator creates
    assert config["data"]["VAE_ANOMALY_DASK_ADDRESS"] == f"tcp://{service}.{NAMESPACE}.svc:8786"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in worker["envFrom"]]
    assert refs == [config["metadata"]["name"], secret["metadata"]["name"]]
    for template in map(load_template, POOL_TEMPLATES):
        properties = template["variables"]["properties"]
        assert properties["config_map"]["default"] == config["metadata"]["name"]
        assert properties["bucket_secret"]["default"] == secret["metadata"]["name"]
    for deployment in by_kind("Deployment"):
        (env,) = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env["valueFrom"]["configMapKeyRef"] == {"name": config["metadata"]["name"], "key": "PREFECT_API_URL"}
