"""Static checks of the deployment files against each other and the operational contract.

Kubernetes manifests (deploy/k8s), docker-compose.yml, the Dockerfile, the CI workflow, the gunicorn
configuration and the Grafana dashboard. No database, no cluster, no Docker engine needed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from iam_project.roles import EXTENSIBLE
from iam_project.roles import ROLES as ROLE_COMMANDS

ROOT = Path(__file__).resolve().parents[2]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
K8S_OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "example"
K8S_KAFKA_OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "kafka"
COMPOSE_KAFKA_FILE = ROOT / "docker-compose.kafka.yml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "ci.yml"
DOCKERFILE = ROOT / "Dockerfile"
GUNICORN_CONF = ROOT / "iam_project" / "gunicorn.conf.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "iam-service.json"

IMAGE = "registry.example.com/citadel/iam-service"
CONTAINER_UID = 10001
KUBERNETES_VERSION = "1.30"  # oldest cluster version the manifests must validate against

# The configuration names of the contract (docs/runbook.md, DESIGN.md).
SECRET_ENV = {"DATABASE_URL", "EVENT_BUS_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY"}
OPTIONAL_SECRET_ENV = {"DATABASE_REPLICA_URLS"}  # read replicas: credentials, so in the Secret too
CONTRACT_ENV = (
    SECRET_ENV
    | OPTIONAL_SECRET_ENV
    | {
        "IAM_ENV",
        "ALLOWED_HOSTS",
        "DEBUG",
        "LOG_LEVEL",
        "IAM_ROLE",
        "OUTBOX_RELAY_INTERVAL",
        "OUTBOX_RELAY_BATCH_SIZE",
        "OUTBOX_RETENTION_HOURS",
        "NATS_STREAM_NAME",
        "NATS_STREAM_REPLICAS",
        "WORKER_METRICS_PORT",
        "PROMETHEUS_MULTIPROC_DIR",
        "DB_STATEMENT_TIMEOUT_MS",
        "DB_STARTUP_WAIT_SECONDS",
        "REPLICA_MAX_LAG_SECONDS",
        "REPLICA_CHECK_SECONDS",
        "SECURE_SSL_REDIRECT",
        "GUNICORN_WORKERS",
        "GUNICORN_TIMEOUT",
        "PORT",
    }
)

# Role -> (Deployment name or None, command from iam_project.roles, the one source of the commands).
DEPLOYMENTS = {"web": "iam-service", "worker": "iam-service-worker", "beat": "iam-service-beat", "migrate": None}
ROLES = {role: (DEPLOYMENTS[role], list(command)) for role, command in ROLE_COMMANDS.items()}
WEB_PORT = 8000
WORKER_METRICS_PORT = 9100


# --- loading ---------------------------------------------------------------------------------------
def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S_BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def _manifests() -> list[dict]:
    return [doc for path in _manifest_files() for doc in _load_all(path)]


def _of_kind(kind: str) -> list[dict]:
    return [doc for doc in _manifests() if doc["kind"] == kind]


def _deployments() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in _of_kind("Deployment")}


def _workloads() -> list[dict]:
    """Deployments and Jobs: everything with a pod template."""
    return _of_kind("Deployment") + _of_kind("Job")


def _pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _containers(workload: dict) -> list[dict]:
    spec = _pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def _role_of(workload: dict) -> str:
    return workload["spec"]["template"]["metadata"]["labels"]["component"]


def _named_port(container: dict, name_or_number) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    for port in container.get("ports", []):
        if port.get("name") == name_or_number:
            return port["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {name_or_number!r}")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW_FILE.read_text())


# --- Kubernetes: structure ------------------------------------------------------------------------
def test_every_manifest_parses_with_kind_and_name():
    files = _manifest_files()
    assert {p.name for p in files} >= {
        "configmap.yaml",
        "secret.example.yaml",
        "deployment-web.yaml",
        "deployment-worker.yaml",
        "deployment-beat.yaml",
        "service.yaml",
        "job-migrate.yaml",
        "pdb.yaml",
        "hpa.yaml",
        "servicemonitor.yaml",
    }
    for path in files:
        docs = _load_all(path)
        assert docs, f"{path.name} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), path.name
            assert doc["metadata"]["name"].startswith("iam-service"), path.name
            assert doc["metadata"]["labels"]["app"] == "iam-service", path.name


def test_kustomization_lists_every_manifest_except_the_example_secret():
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    expected = {p.name for p in _manifest_files()} - {"secret.example.yaml"}
    assert listed == expected
    assert "namespace" not in kustomization, "the namespace belongs to the overlay"


def test_overlay_sets_namespace_image_and_replica_bounds():
    overlay = yaml.safe_load((K8S_OVERLAY / "kustomization.yaml").read_text())
    assert overlay["namespace"] == "citadel"
    assert overlay["resources"] == ["../../base"]
    (image,) = overlay["images"]
    assert image["name"] == IMAGE and image.get("newName", IMAGE) == IMAGE and image["newTag"]
    patched = {(p["target"]["kind"], p["target"]["name"]) for p in overlay["patches"]}
    assert ("HorizontalPodAutoscaler", "iam-service") in patched
    assert ("HorizontalPodAutoscaler", "iam-service-worker") in patched
    assert not any(name == "iam-service-beat" for _, name in patched), "beat stays at 1 replica"


def test_the_three_deployments_and_the_migrate_job_exist():
    deployments = _deployments()
    assert set(deployments) == {name for name, _ in ROLES.values() if name}
    for role, (name, _) in ROLES.items():
        if name:
            assert _role_of(deployments[name]) == role
            assert deployments[name]["metadata"]["labels"] == {"app": "iam-service", "component": role}
    (job,) = _of_kind("Job")
    assert job["metadata"]["name"] == "iam-service-migrate"
    assert _role_of(job) == "migrate"


def test_every_pod_template_has_app_and_component_labels():
    for workload in _workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels.get("app") == "iam-service", workload["metadata"]["name"]
        assert labels.get("component") in ROLES, workload["metadata"]["name"]


def test_deployment_selectors_select_app_and_component_and_do_not_overlap():
    deployments = list(_deployments().values())
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app", "component"}, deployment["metadata"]["name"]
        assert "matchExpressions" not in deployment["spec"]["selector"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items(), deployment["metadata"]["name"]
    for a, b in itertools.permutations(deployments, 2):
        selector = a["spec"]["selector"]["matchLabels"]
        labels = b["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items(), (
            f"{a['metadata']['name']} selects the pods of {b['metadata']['name']}"
        )
    # The Job's pods are not picked up by any Deployment either.
    (job,) = _of_kind("Job")
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    for deployment in deployments:
        assert not deployment["spec"]["selector"]["matchLabels"].items() <= job_labels.items()


def test_beat_runs_exactly_one_replica_with_recreate_and_no_autoscaler_or_pdb():
    beat = _deployments()["iam-service-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] != "iam-service-beat"
    for pdb in _of_kind("PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].get("component") != "beat"


def test_autoscalers_target_web_and_worker_which_leave_replicas_to_them():
    deployments = _deployments()
    targets = {}
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1"
        assert ref["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        targets[ref["name"]] = hpa
    assert set(targets) == {"iam-service", "iam-service-worker"}
    for name in targets:
        # A replicas field would be reset by every `kubectl apply`, fighting the autoscaler.
        assert "replicas" not in deployments[name]["spec"], name


def test_pod_disruption_budgets_select_existing_pods():
    deployments = _deployments()
    for pdb in _of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matches = [
            name
            for name, d in deployments.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, pdb["metadata"]["name"]


# --- Kubernetes: commands, ports, probes ----------------------------------------------------------
def test_container_commands_are_the_contract_commands():
    for workload in _workloads():
        role = _role_of(workload)
        (container,) = _pod_spec(workload)["containers"]
        expected = ROLES[role][1]
        command = container["command"] + container.get("args", [])
        assert command[: len(expected)] == expected, workload["metadata"]["name"]
        if role not in EXTENSIBLE:
            assert command == expected
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("IAM_ROLE") == role, workload["metadata"]["name"]


def test_web_service_port_80_targets_the_web_container_port_8000():
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    service = services["iam-service"]
    assert service["spec"]["selector"] == {"app": "iam-service", "component": "web"}
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == 80
    (web,) = _pod_spec(_deployments()["iam-service"])["containers"]
    assert _named_port(web, port["targetPort"]) == WEB_PORT
    assert _named_port(web, "http") == WEB_PORT
    env = {e["name"]: e.get("value") for e in web.get("env", [])}
    assert env.get("PORT", str(WEB_PORT)) == str(WEB_PORT)


def test_worker_metrics_service_is_headless_on_port_9100():
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    service = services["iam-service-worker-metrics"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"app": "iam-service", "component": "worker"}
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["port"] == WORKER_METRICS_PORT
    (worker,) = _pod_spec(_deployments()["iam-service-worker"])["containers"]
    assert _named_port(worker, port["targetPort"]) == WORKER_METRICS_PORT


def test_service_monitors_scrape_web_http_and_worker_metrics_ports():
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    scraped = {}
    for monitor in _of_kind("ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        for endpoint in monitor["spec"]["endpoints"]:
            port_names = {p["name"] for p in service["spec"]["ports"]}
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
            scraped[service["metadata"]["name"]] = endpoint["port"]
    assert scraped == {"iam-service": "http", "iam-service-worker-metrics": "metrics"}


def test_web_probes_use_healthz_and_readyz_on_the_container_port():
    (web,) = _pod_spec(_deployments()["iam-service"])["containers"]
    expected_paths = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe_name, path in expected_paths.items():
        probe = web[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert _named_port(web, probe["port"]) == WEB_PORT, probe_name


def test_worker_and_beat_have_liveness_probes_that_need_no_http_server():
    (worker,) = _pod_spec(_deployments()["iam-service-worker"])["containers"]
    probe = worker["livenessProbe"]
    port = (probe.get("tcpSocket") or probe.get("httpGet"))["port"]
    assert _named_port(worker, port) == WORKER_METRICS_PORT
    assert "startupProbe" in worker
    (beat,) = _pod_spec(_deployments()["iam-service-beat"])["containers"]
    command = beat["livenessProbe"]["exec"]["command"]
    assert command[0] == "python"
    # The probe watches the schedule file that beat is told to keep on the writable /tmp.
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    assert schedule.startswith("/tmp/") and schedule in command[-1]


def test_web_drains_before_shutdown_within_the_grace_period():
    deployment = _deployments()["iam-service"]
    (web,) = _pod_spec(deployment)["containers"]
    assert web["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    grace = _pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace == 30
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert 5 + _gunicorn_settings()["graceful_timeout"] <= grace


# --- Kubernetes: security and resources ------------------------------------------------------------
def test_every_pod_runs_non_root_read_only_with_a_tmp_empty_dir():
    for workload in _workloads():
        name = workload["metadata"]["name"]
        spec = _pod_spec(workload)
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] == CONTAINER_UID, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in _containers(workload):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc.get("runAsNonRoot", True) is True, name
            assert sc.get("runAsUser", CONTAINER_UID) == CONTAINER_UID, name
            assert sc.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, name
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def test_prometheus_multiproc_dir_is_a_writable_mount_everywhere():
    (configmap,) = _of_kind("ConfigMap")
    directory = configmap["data"]["PROMETHEUS_MULTIPROC_DIR"]
    for workload in _workloads():
        for container in _containers(workload):
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert directory in mounts or str(Path(directory).parent) in mounts, workload["metadata"]["name"]


def test_deployments_have_a_30_second_grace_period():
    for deployment in _deployments().values():
        assert _pod_spec(deployment)["terminationGracePeriodSeconds"] == 30


# --- Kubernetes: configuration ---------------------------------------------------------------------
def test_configmap_and_secret_hold_only_contract_names_in_the_right_place():
    (configmap,) = _of_kind("ConfigMap")
    (secret,) = _of_kind("Secret")
    assert configmap["metadata"]["name"] == "iam-service-config"
    assert secret["metadata"]["name"] == "iam-service-secrets"
    config_keys = set(configmap["data"])
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert config_keys <= CONTRACT_ENV, config_keys - CONTRACT_ENV
    assert secret_keys == SECRET_ENV | OPTIONAL_SECRET_ENV
    assert not config_keys & (SECRET_ENV | OPTIONAL_SECRET_ENV), "secrets must not be in the ConfigMap"
    assert all(isinstance(v, str) for v in configmap["data"].values())
    assert configmap["data"]["IAM_ENV"] == "production"
    assert configmap["data"]["WORKER_METRICS_PORT"] == str(WORKER_METRICS_PORT)


def test_containers_reference_only_contract_env_names_and_the_shared_config():
    for workload in _workloads():
        for container in _containers(workload):
            name = f"{workload['metadata']['name']}/{container['name']}"
            env_names = {e["name"] for e in container.get("env", [])}
            assert env_names <= CONTRACT_ENV, (name, env_names - CONTRACT_ENV)
            assert not env_names & SECRET_ENV, f"{name}: secrets come from the Secret"
            refs = container["envFrom"]
            assert {"configMapRef": {"name": "iam-service-config"}} in refs, name
            assert {"secretRef": {"name": "iam-service-secrets"}} in refs, name


def test_every_container_uses_the_service_image():
    for workload in _workloads():
        for container in _containers(workload):
            # The tag comes from kustomize `images` (overlay / CI), never from the base.
            assert container["image"] == IMAGE, workload["metadata"]["name"]


# --- Kubernetes: rendered overlay and schema -------------------------------------------------------
def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _rendered_overlay(overlay: Path = K8S_OVERLAY) -> list[dict]:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    result = subprocess.run([*command, str(overlay)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_overlay_renders_with_namespace_and_tagged_image():
    overlay = yaml.safe_load((K8S_OVERLAY / "kustomization.yaml").read_text())
    tag = overlay["images"][0]["newTag"]
    docs = _rendered_overlay()
    assert {d["metadata"].get("namespace") for d in docs} == {"citadel"}
    assert not [d for d in docs if d["kind"] == "Secret"], "the example Secret must not be applied"
    images = {
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"{IMAGE}:{tag}"}
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpas["iam-service"]["spec"]["minReplicas"] >= 2
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "iam-service" in config["data"]["ALLOWED_HOSTS"].split(",")


def _schema_validate(docs: list[dict]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no bundled schema
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - message on failure
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_base_manifests_match_the_kubernetes_schema():
    _schema_validate(_manifests())


def test_rendered_overlay_matches_the_kubernetes_schema():
    _schema_validate(_rendered_overlay())


# --- the Kafka variant: overlay and compose override ----------------------------------------------
KRAFT_ENV = {
    "KAFKA_PROCESS_ROLES",
    "KAFKA_NODE_ID",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
}


def _assert_kraft(env: dict[str, str], advertised_host: str) -> None:
    assert set(env) >= KRAFT_ENV, KRAFT_ENV - set(env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [name for name in env if "ZOOKEEPER" in name], "KRaft mode: no ZooKeeper"
    node, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert node == env["KAFKA_NODE_ID"]
    assert f"{env['KAFKA_CONTROLLER_LISTENER_NAMES']}://:{voter.rsplit(':', 1)[1]}" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{advertised_host}:9092"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the relay creates its topic


def test_kafka_overlay_adds_a_kraft_broker_and_the_topic_settings():
    overlay = yaml.safe_load((K8S_KAFKA_OVERLAY / "kustomization.yaml").read_text())
    assert "../example" in overlay["resources"]
    docs = _rendered_overlay(K8S_KAFKA_OVERLAY)
    assert {d["metadata"].get("namespace") for d in docs} == {"citadel"}
    assert not [d for d in docs if d["kind"] == "Secret"], "the example Secret must not be applied"
    (kafka,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (container,) = _pod_spec(kafka)["containers"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", container["image"]), container["image"]
    env = {item["name"]: item["value"] for item in container["env"]}
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == kafka["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"  # stable pod names for the advertised listener
    _assert_kraft(env, f"{kafka['metadata']['name']}-0.{service['metadata']['name']}")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[kafka["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]] == env["KAFKA_LOG_DIRS"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["KAFKA_TOPIC"] == "iam.events" and int(config["data"]["KAFKA_TOPIC_PARTITIONS"]) >= 1
    # The service's own workloads are those of the example overlay, unchanged.
    example = {(d["kind"], d["metadata"]["name"]): d for d in _rendered_overlay()}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            assert doc == example[(doc["kind"], doc["metadata"]["name"])], doc["metadata"]["name"]
    _schema_validate(docs)


def _compose_kafka() -> dict:
    return yaml.safe_load(COMPOSE_KAFKA_FILE.read_text())


def test_compose_kafka_override_runs_the_roles_on_a_kraft_broker():
    base, override = _compose()["services"], _compose_kafka()["services"]
    kafka = override["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"]), kafka["image"]
    _assert_kraft(kafka["environment"], "kafka")
    assert kafka["volumes"] == [f"kafka-data:{kafka['environment']['KAFKA_LOG_DIRS']}"]
    assert "kafka-data" in _compose_kafka()["volumes"]
    assert kafka["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    for role in APP_SERVICES:
        environment = override[role]["environment"]
        assert environment["EVENT_BUS_URL"] == "kafka://kafka:9092", role
        assert environment["KAFKA_TOPIC"] and int(environment["KAFKA_TOPIC_PARTITIONS"]) >= 1, role
        assert set(override[role]) <= {"environment", "depends_on"}, role  # image and command from the base
        if role != "migrate":
            assert override[role]["depends_on"] == {"kafka": {"condition": "service_healthy"}}, role
            assert base[role]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def docker_compose(*args: str) -> subprocess.CompletedProcess:
    """``docker compose ARGS`` in the repository, skipped (with the reason) where there is no compose plugin."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed (no compose plugin)")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False)
    if version.returncode != 0:
        pytest.skip("docker compose is not available (no compose plugin)")
    result = subprocess.run(
        [docker, "compose", *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result


def test_compose_kafka_variant_is_valid_for_docker_compose():
    result = docker_compose("-f", str(COMPOSE_FILE), "-f", str(COMPOSE_KAFKA_FILE), "config", "--format", "json")
    merged = json.loads(result.stdout)["services"]
    for role in APP_SERVICES:  # the override's variables merged into the shared environment
        assert merged[role]["environment"]["EVENT_BUS_URL"] == "kafka://kafka:9092", role
        assert merged[role]["environment"]["IAM_ROLE"] == role


# --- docker compose --------------------------------------------------------------------------------
APP_SERVICES = ("migrate", "web", "worker", "beat")
STORES = ("postgres", "redis", "nats")


def test_compose_has_every_service_with_healthchecks():
    services = _compose()["services"]
    assert set(services) == {*STORES, *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["nats"]["image"].startswith("nats:2.10")
    assert "-js" in services["nats"]["command"]
    assert services["nats"]["command"][services["nats"]["command"].index("-sd") + 1] == "/data"
    for name in (*STORES, "web", "worker", "beat"):
        healthcheck = services[name]["healthcheck"]
        assert not healthcheck.get("disable"), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["migrate"]["restart"] == "no"


def test_compose_each_store_keeps_its_data_in_a_named_volume():
    compose = _compose()
    volumes = set(compose["volumes"])
    for store in STORES:
        mounts = compose["services"][store]["volumes"]
        assert any(m.split(":")[0] in volumes for m in mounts), store
    assert len(volumes) == len(STORES)


def test_compose_start_order_uses_health_and_completion_conditions():
    services = _compose()["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        for store in STORES:
            assert depends[store] == {"condition": "service_healthy"}, (name, store)


def test_compose_app_services_share_one_image_environment_and_contract_commands():
    compose = _compose()
    services = compose["services"]
    shared = compose["x-iam-env"]
    assert set(shared) <= CONTRACT_ENV, set(shared) - CONTRACT_ENV
    assert set(shared) >= SECRET_ENV
    assert shared["EVENT_BUS_URL"].startswith("nats://nats:")
    assert shared["CELERY_BROKER_URL"].startswith("redis://redis:") and shared["CELERY_BROKER_URL"].endswith("/0")
    assert shared["REDIS_URL"].startswith("redis://redis:") and shared["REDIS_URL"].endswith("/1")
    assert shared["DATABASE_URL"].startswith("postgres://") and "@postgres:" in shared["DATABASE_URL"]
    for role in APP_SERVICES:
        service = services[role]
        assert service["image"].split(":")[0] == IMAGE, role
        environment = dict(service["environment"])
        assert environment.pop("IAM_ROLE") == role
        environment.pop("PORT", None)
        assert environment == shared, role
        expected = ROLES[role][1]
        assert service["command"][: len(expected)] == expected, role
        if role not in EXTENSIBLE:
            assert service["command"] == expected, role
    assert "8000:8000" in services["web"]["ports"]


def test_compose_file_is_valid_for_docker_compose():
    docker_compose("-f", str(COMPOSE_FILE), "config", "-q")


# --- Dockerfile ------------------------------------------------------------------------------------
def test_dockerfile_builds_a_slim_non_root_image_running_the_web_role():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(froms) >= 2, "multi-stage build"
    assert "python:3.11-slim" in text
    assert re.search(r"^USER\s+10001", text, flags=re.MULTILINE)
    assert "PYTHONUNBUFFERED=1" in text
    assert re.search(r"^EXPOSE\s+8000\s+9100\s*$", text, flags=re.MULTILINE)
    assert re.search(r"IAM_BUILD=1\s+python manage.py collectstatic --noinput", text)
    # The runtime lock, every package pinned with its hashes, and nothing else (no dev tools).
    assert re.search(r"pip install [^\n]*--require-hashes -r /tmp/requirements.txt", text)
    assert "requirements-dev" not in text
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (.+)$", text, flags=re.MULTILINE | re.DOTALL)
    assert healthcheck and "/healthz" in healthcheck.group(1) and "urllib" in healthcheck.group(1)
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    assert json.loads(cmd) == ROLES["web"][1]


def test_dockerfile_readme_and_runbook_name_every_role_command():
    documents = {
        "Dockerfile": DOCKERFILE,
        "README.md": ROOT / "README.md",
        "docs/runbook.md": ROOT / "docs" / "runbook.md",
    }
    for name, path in documents.items():
        text = path.read_text()
        for role, command in ROLE_COMMANDS.items():
            assert " ".join(command) in text, f"{name} does not name the {role} command: {' '.join(command)}"


def test_dockerignore_keeps_secrets_and_the_virtualenv_out_of_the_image():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env"} <= ignored
    assert "requirements.txt" not in ignored and "manage.py" not in ignored


# --- CI workflow -----------------------------------------------------------------------------------
def test_workflow_tests_every_push_then_deploys_main():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers
    assert triggers["push"] is None or not triggers["push"].get("branches"), "tests run on every push"
    test_job = workflow["jobs"]["test"]
    steps = test_job["steps"]
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in steps)
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert str(setup["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").strip() == "make test" for s in steps)

    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] in ("test", ["test"])
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    uses = [s.get("uses", "") for s in deploy["steps"]]
    build = next(s for s in deploy["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["push"] is True
    assert "${{ env.IMAGE }}:${{ github.sha }}" in build["with"]["tags"]
    assert any(u.startswith("docker/login-action@") for u in uses)
    script = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "kustomize edit set image" in script
    assert "kubectl apply -k deploy/k8s/overlays/example" in script
    for name, _ in ROLES.values():
        if name:
            assert re.search(rf"kubectl .*rollout status deployment/{name} --timeout=5m", script), name
    assert "rollout undo deployment/iam-service" in WORKFLOW_FILE.read_text(), "manual-rollback note"
    # The migrate Job runs (and completes) before the Deployments are applied.
    apply_all = re.search(r"^kubectl apply -k deploy/k8s/overlays/example$", script, flags=re.MULTILINE)
    assert apply_all, "a plain `kubectl apply -k deploy/k8s/overlays/example` step"
    assert script.index("wait --for=condition=complete job/iam-service-migrate") < apply_all.start()


def test_workflow_image_matches_the_manifests():
    assert _workflow()["env"]["IMAGE"] == IMAGE


# --- gunicorn configuration ------------------------------------------------------------------------
_DUMP_SETTINGS = textwrap.dedent(
    """
    import json, runpy, sys
    ns = runpy.run_path(sys.argv[1])
    names = ["bind", "workers", "worker_class", "timeout", "graceful_timeout", "keepalive",
             "preload_app", "control_socket_disable", "accesslog", "errorlog"]
    out = {name: ns.get(name) for name in names}
    out["hooks"] = sorted(k for k in ("on_starting", "child_exit", "worker_exit") if callable(ns.get(k)))
    import os
    out["IAM_ROLE"] = os.environ.get("IAM_ROLE")
    print(json.dumps(out))
    """
)


def _gunicorn_settings(**env: str) -> dict:
    """Load iam_project/gunicorn.conf.py in a child process (it sets IAM_ROLE in its environment)."""
    child_env = {
        k: v for k, v in os.environ.items() if k not in ("IAM_ROLE", "PORT", "GUNICORN_WORKERS", "GUNICORN_TIMEOUT")
    }
    child_env.update(env)
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_SETTINGS, str(GUNICORN_CONF)],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gunicorn_defaults_follow_the_contract():
    settings = _gunicorn_settings()
    assert settings["bind"] == "0.0.0.0:8000"
    assert settings["worker_class"] == "sync"
    assert settings["timeout"] == 30
    assert settings["graceful_timeout"] == 25
    assert settings["preload_app"] is False
    assert settings["control_socket_disable"] is True
    assert settings["accesslog"] is None
    assert settings["workers"] >= 3 and settings["workers"] % 2 == 1
    assert settings["hooks"] == ["child_exit", "on_starting", "worker_exit"]
    assert settings["IAM_ROLE"] == "web"


def test_gunicorn_reads_port_workers_and_timeout_from_the_environment():
    settings = _gunicorn_settings(PORT="9000", GUNICORN_WORKERS="5", GUNICORN_TIMEOUT="60", IAM_ROLE="worker")
    assert settings["bind"] == "0.0.0.0:9000"
    assert settings["workers"] == 5
    assert settings["timeout"] == 60
    assert settings["IAM_ROLE"] == "worker", "setdefault must not override an explicit role"


def test_gunicorn_hooks_reset_and_clean_the_prometheus_multiproc_dir(tmp_path, django_db_setup):
    from django.conf import settings

    from tests.proc_helpers import database_url

    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    (directory / "gauge_livesum_456.db").write_bytes(b"stale")
    script = textwrap.dedent(
        """
        import os, runpy, sys
        from pathlib import Path
        ns = runpy.run_path(sys.argv[1])

        class Log:
            def info(self, *args): pass

        class Server:
            log = Log()

        class Worker:
            pid = 456

        ns["on_starting"](Server())
        directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert list(directory.iterdir()) == [], list(directory.iterdir())
        (directory / "gauge_livesum_456.db").write_bytes(b"")
        (directory / "counter_456.db").write_bytes(b"")
        ns["child_exit"](Server(), Worker())
        print(sorted(p.name for p in directory.iterdir()))
        """
    )
    # on_starting checks the settings and the database first (fail-fast): give it the test database.
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        DATABASE_URL=database_url(settings.DATABASES["default"]),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(GUNICORN_CONF)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # mark_process_dead drops the dead worker's live gauges and keeps its counters.
    assert result.stdout.strip() == "['counter_456.db']"


# --- Grafana dashboard -----------------------------------------------------------------------------
def test_dashboard_uses_a_datasource_variable_and_shows_every_key_metric():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}"
            exprs.append(target["expr"])
    text = "\n".join(exprs)
    for needle in (
        "http_requests_total",
        "by (route, status)",
        "histogram_quantile(0.5, sum by (route, le) (rate(http_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket",
        "rate(database_errors_total",
        "rate(event_bus_errors_total",
        "outbox_pending_count",
        "outbox_oldest_pending_age_seconds",
        "outbox_failed_count",
        "time() - max(outbox_relay_last_success_timestamp_seconds",
    ):
        assert needle in text, needle
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
