"""Static checks of the deployment files (deploy/): no container engine runs on these machines.

Parses docker-compose.yml, the Kubernetes manifests and the Dockerfiles, and checks them
against the code they deploy: every RADWATCH_* name is a setting, images and torch pins
agree with pyproject.toml, mounted paths exist, services point at each other correctly,
and secrets stay out of plain configuration. The compose file is validated against the
Compose Specification's JSON schema (vendored by check-jsonschema) and every Kubernetes
manifest against the Kubernetes API's JSON schemas (kubernetes-validate), both offline.
`docker compose config` and `kubectl kustomize` run as well where those clients are
installed; elsewhere those two tests report skipped, never passed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import subprocess
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import psutil
import psycopg
import pytest
import yaml
from conftest import REPO

from monitor.config import Settings, load_settings
from monitor.errors import ConfigError
from monitor.services import embedded as services
from monitor.store import db

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
SETTINGS = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
ENV_NAME = re.compile(r"\bRADWATCH_[A-Z0-9_]+\b")
AUDIT_KEY_VARS = ("RADWATCH_AUDIT_KEY_FILE", "RADWATCH_AUDIT_PUBLIC_KEY_FILE",
                  "RADWATCH_AUDIT_CHECKPOINT_FILE")  # fmt: skip
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    (doc,) = load_yaml(COMPOSE)
    return doc


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml(path)]


def workloads() -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] in ("Deployment", "Job")]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def torch_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("torch==")]
    return pin.removeprefix("torch==")


def setting_for(var: str) -> str | None:
    """RADWATCH_X or RADWATCH_X_FILE → the Settings field it sets (None when none does)."""
    if var == "RADWATCH_CONFIG":
        return "config"
    # The audit signing key's paths are read by monitor.audit.checkpoint.key_paths.
    if var in AUDIT_KEY_VARS:
        return var.removeprefix("RADWATCH_").lower()
    name = var.removeprefix("RADWATCH_").lower()
    if name in SETTINGS:
        return name
    if name.endswith("_file") and name.removesuffix("_file") in SETTINGS:
        return name.removesuffix("_file")
    return None


# --- every file parses; every RADWATCH_* name is a setting ------------------------------


def test_every_yaml_file_under_deploy_parses():
    paths = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        assert load_yaml(path), f"{path} is empty"


def test_every_radwatch_variable_in_deploy_files_is_a_setting():
    files = [COMPOSE, *K8S.glob("*.yaml"), *(DEPLOY / "docker").glob("Dockerfile*")]
    seen = {var for path in files for var in ENV_NAME.findall(path.read_text())}
    # Shell-style defaults in compose (${RADWATCH_PG_SSLMODE:-disable}) are compose inputs.
    compose_inputs = set(re.findall(r"\$\{(RADWATCH_[A-Z0-9_]+)", COMPOSE.read_text()))
    unknown = {v for v in seen - compose_inputs if setting_for(v) is None}
    assert not unknown, f"not settings in monitor/config.py: {sorted(unknown)}"
    # And the deployment covers the contract's essentials (DESIGN.md §9).
    for var in ("RADWATCH_KAFKA_BOOTSTRAP", "RADWATCH_GROUP_ID", "RADWATCH_PSEUDONYM_KEY_FILE",
                "RADWATCH_METRICS_ADDR", "RADWATCH_INFERENCE_TOPIC"):  # fmt: skip
        assert var in seen, var


def test_compose_environment_loads_as_settings():
    env = dict(compose()["x-radwatch-env"])
    env["RADWATCH_DATABASE_URL"] = "postgresql://radwatch:pw@postgres:5432/radwatch?sslmode=disable"
    env.pop("RADWATCH_PSEUDONYM_KEY_FILE")  # a compose secret, present only in containers
    settings = load_settings(environ={k: str(v) for k, v in env.items()})
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.group_id == "radwatch-collectors"
    assert settings.metrics_addr == "0.0.0.0:9108"  # inside a container, not loopback


def test_k8s_configmap_loads_as_settings(tmp_path):
    (configmap,) = [d for d in manifests() if d["kind"] == "ConfigMap"]
    env = dict(configmap["data"])
    # Stand in for the mounted Secret files.
    for var in [k for k in env if k.endswith("_FILE")]:
        path = tmp_path / var
        # A random stand-in (key files are checked for placeholders and entropy), private.
        if "KEY" in var:
            value = secrets.token_hex(32)
        elif "DATABASE_URL" in var:
            value = "postgresql://radwatch:pw@pg.example.org:5432/radwatch?sslmode=verify-full"
        else:
            value = "x-secret-value\n"
        path.write_text(value)
        path.chmod(0o600)
        env[var] = str(path)
    settings = load_settings(environ=env)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_client_options()["sasl_mechanism"] == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password == "x-secret-value"  # from the file, stripped
    assert settings.topic_partitions >= 2


# --- images -------------------------------------------------------------------------------


def test_images_and_tags_agree_with_the_package_version():
    doc = compose()
    radwatch_services = [s for s in doc["services"].values() if "build" in s]
    assert {s["image"] for s in radwatch_services} == {f"radwatch:{VERSION}"}
    assert {s["build"]["dockerfile"] for s in radwatch_services} == {"deploy/docker/Dockerfile"}
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert tags == {"radwatch": VERSION, "radwatch-cuda": f"{VERSION}-cuda"}
    for workload in workloads():
        for c in containers(workload):
            assert c["image"] in tags, c["image"]
            gpu = "nvidia.com/gpu" in c["resources"].get("limits", {})
            assert (c["image"] == "radwatch-cuda") == gpu, workload["metadata"]["name"]


@pytest.mark.parametrize("name,index", [("Dockerfile", "/whl/cpu"), ("Dockerfile.cuda", "/whl/cu")])
def test_dockerfiles_pin_torch_run_non_root_and_copy_existing_paths(name, index):
    text = (DEPLOY / "docker" / name).read_text()
    assert f"ARG TORCH_VERSION={torch_pin()}" in text
    assert re.search(rf"ARG TORCH_INDEX=https://download\.pytorch\.org{index}", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users), users
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] == "10001:10001"  # matches k8s runAsUser
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "radwatch"]' in text
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"{name}: COPY {source} does not exist"
    if name == "Dockerfile.cuda":
        assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+", text, re.M)
        assert "python3.11" in text  # requires-python is 3.11
    else:
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11", text, re.M)
    # BuildKit reads <Dockerfile>.dockerignore: the context (repo root) stays small.
    assert (DEPLOY / "docker" / f"{name}.dockerignore").read_text().startswith("#")


# --- compose -----------------------------------------------------------------------------


def test_compose_has_the_roles_the_issue_asks_for():
    svc = compose()["services"]
    assert "broker,controller" in svc["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert "KAFKA_ZOOKEEPER_CONNECT" not in svc["kafka"]["environment"]
    assert svc["postgres"]["image"].startswith("postgres:")
    assert svc["collector"]["command"][0] == "collect"
    assert svc["collector"]["deploy"]["replicas"] == 2
    assert svc["detector"]["command"] == ["detect"]
    assert svc["simulator"]["profiles"] == ["simulator"]
    assert svc["simulator"]["command"][0] == "simulate"
    for name in ("prometheus", "alertmanager", "grafana", "metrics"):
        assert name in svc
    # Published ports bind to loopback only.
    for name, s in svc.items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_mounts_and_builds_from_paths_that_exist():
    doc = compose()
    for name, s in doc["services"].items():
        if "build" in s:
            context = (COMPOSE.parent / s["build"]["context"]).resolve()
            assert (context / s["build"]["dockerfile"]).is_file(), name
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} missing"
    # Secret files are the operator's (deploy/README.md); their directory is git-ignored.
    for secret in doc["secrets"].values():
        path = (COMPOSE.parent / secret["file"]).resolve()
        assert path.parent == (DEPLOY / "secrets").resolve(), path
    assert "*" in (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()


def test_compose_services_find_each_other():
    """Prometheus targets, Alertmanager's webhook and Grafana's datasource name compose hosts."""
    doc = compose()
    hosts = set(doc["services"]) | {
        alias
        for s in doc["services"].values()
        for net in (s.get("networks") or {}).values()
        if isinstance(net, dict)
        for alias in net.get("aliases", [])
    }
    mounts = {v.split(":")[1]: v.split(":")[0] for v in doc["services"]["prometheus"]["volumes"]}
    prom_dir = (COMPOSE.parent / mounts["/etc/prometheus"]).resolve()
    (prom,) = load_yaml(prom_dir / "prometheus.yml")
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]  # fmt: skip
    targets += [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"]
                for t in sc["targets"]]  # fmt: skip
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host in hosts | {"localhost"}, f"prometheus target {target} is no compose service"
    # The rule files Prometheus loads exist relative to the mounted directory.
    for pattern in prom["rule_files"]:
        assert list(prom_dir.glob(pattern)), pattern
    (am,) = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    for receiver in am["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert urlsplit(hook["url"]).hostname in hosts, hook["url"]
    grafana = doc["services"]["grafana"]
    g_mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    for path in (DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml"):
        for ds in load_yaml(path)[0]["datasources"]:
            assert urlsplit(ds["url"]).hostname in hosts, ds["url"]
    for path in (DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.yml"):
        for provider in load_yaml(path)[0]["providers"]:
            assert provider["options"]["path"] in g_mounts, provider["options"]["path"]
    assert list((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    """The Compose Specification's own JSON schema, as check-jsonschema vendors it."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]  # fmt: skip


def test_compose_file_is_valid_against_the_compose_specification_schema():
    assert compose_schema_errors(compose()) == []
    # The schema has teeth: a misspelt key and a wrong type are both reported.
    broken = compose()
    service = next(iter(broken["services"].values()))
    service["enviroment"] = service.pop("environment", {})
    service["restart"] = 3
    errors = compose_schema_errors(broken)
    assert any("enviroment" in e for e in errors) and any("restart" in e for e in errors), errors


def test_docker_compose_config_when_a_compose_client_is_installed(tmp_path):
    """`docker compose config` parses offline; these machines have docker without compose."""
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no docker compose client here; the schema test above checks the file")
    # A copy of deploy/ with the secret files compose expects; nothing written into the checkout.
    work = tmp_path / "repo"
    work.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("deploy", ".git", ".venv"):
            (work / entry.name).symlink_to(entry)
    shutil.copytree(DEPLOY, work / "deploy", symlinks=True)
    for name in ("pseudonym.key", "webhook-token"):
        secret = work / "deploy" / "secrets" / name
        if not secret.exists():
            secret.parent.mkdir(exist_ok=True)
            secret.write_text("compose-config-check\n")
    result = subprocess.run(
        [docker, "compose", "-f", str(work / "deploy" / COMPOSE.name), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- Kubernetes --------------------------------------------------------------------------


def test_k8s_workloads_run_non_root_with_probes_and_mounted_secrets():
    (configmap,) = [d for d in manifests() if d["kind"] == "ConfigMap"]
    secret_files = [v for k, v in configmap["data"].items() if k.endswith("_FILE")]
    example = {d["metadata"]["name"]: d for d in load_yaml(K8S / "secrets.example.yaml")}
    for workload in workloads():
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in example, (name, volume)
        for c in containers(workload):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"configMapRef": {"name": "radwatch-settings"}} in c["envFrom"]
            mounts = [m["mountPath"] for m in c["volumeMounts"]]
            for path in secret_files:
                if workload["kind"] == "Job" and "kafka" in path:
                    continue  # migrations never talk to Kafka
                assert any(path.startswith(m + "/") for m in mounts), (name, path)
            if workload["kind"] == "Deployment":
                assert "readinessProbe" in c, name
            assert "requests" in c["resources"] and "memory" in c["resources"]["limits"], name
    # Every key the Secret files are read from exists in the example Secret.
    keys = set(example["radwatch-secrets"]["stringData"])
    for path in secret_files:
        if path.startswith("/etc/radwatch/secrets/"):
            assert path.rsplit("/", 1)[1] in keys, path


def test_k8s_roles_collectors_detector_gpu_embedder_metrics():
    by_name = {w["metadata"]["name"]: w for w in workloads()}
    collector, detector = by_name["radwatch-collector"], by_name["radwatch-detector"]
    assert containers(collector)[0]["args"][0] == "collect" and collector["spec"]["replicas"] >= 2
    assert containers(detector)[0]["args"] == ["detect"] and detector["spec"]["replicas"] == 2
    embedder = by_name["radwatch-embedder"]
    pod = embedder["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["RADWATCH_DEVICE"] == "cuda" and env["RADWATCH_GROUP_ID"] != "radwatch-collectors"
    for name in ("radwatch-metrics", "radwatch-collector", "radwatch-embedder"):
        served = containers(by_name[name])[0]
        assert served["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        if name != "radwatch-metrics":  # the worker serves /healthz only when asked to
            assert served["args"][-2:] == ["--metrics-addr", "0.0.0.0:9108"], name
    assert by_name["radwatch-migrate"]["kind"] == "Job"
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secrets.example.yaml" not in kustomization["resources"]


def test_k8s_lag_autoscaler_targets_the_collectors_within_the_partition_count():
    docs = load_yaml(K8S / "keda-scaledobject.yaml")
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    (configmap,) = [d for d in manifests() if d["kind"] == "ConfigMap"]
    data = configmap["data"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "radwatch-collector"
    assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= int(data["RADWATCH_TOPIC_PARTITIONS"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == data["RADWATCH_GROUP_ID"]
    assert trigger["metadata"]["topic"] == data["RADWATCH_INFERENCE_TOPIC"]
    assert trigger["metadata"]["bootstrapServers"] == data["RADWATCH_KAFKA_BOOTSTRAP"]
    (auth,) = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


# Not described by the Kubernetes API's schemas: KEDA's custom resources (KEDA >= 2.12) and
# kustomize's own file (read by kubectl, never sent to the API server).
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
}


def k8s_schema_error(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}"
    return None


def test_k8s_manifests_are_valid_against_the_kubernetes_schemas():
    docs = manifests()
    custom = {(d["apiVersion"], d["kind"]) for d in docs} & CUSTOM_KINDS
    assert custom == CUSTOM_KINDS, "the KEDA or kustomize files changed: revisit CUSTOM_KINDS"
    checked = [d for d in docs if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
    # Strict: an unknown field is an error, not ignored as the API server would.
    assert [e for d in checked if (e := k8s_schema_error(d))] == []
    assert {d["kind"] for d in checked} >= {"Deployment", "Job", "ConfigMap", "Secret",
                                            "Service", "NetworkPolicy"}  # fmt: skip
    # The schemas have teeth: a misspelt container field and a string port are both refused.
    (workload,) = [d for d in checked if d["metadata"]["name"] == "radwatch-metrics"
                   and d["kind"] == "Deployment"]  # fmt: skip
    container = workload["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"], container["imagePulPolicy"] = "Always", "Always"
    assert k8s_schema_error(workload) is not None
    del container["imagePulPolicy"]
    assert k8s_schema_error(workload) is None
    container.setdefault("ports", [{}])[0]["containerPort"] = "nine-thousand"
    assert k8s_schema_error(workload) is not None


def test_k8s_kustomize_builds_when_kubectl_is_installed():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here; the schema and structure tests check the same files")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["metadata"].get("namespace") for d in built} == {"radwatch"}
    images = {c["image"] for d in built if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {f"radwatch:{VERSION}", f"radwatch:{VERSION}-cuda"}


# --- security settings and loopback defaults -------------------------------------------


@pytest.mark.parametrize(
    "env,message",
    [
        ({"RADWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        ({"RADWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs kafka_sasl_mechanism"),
        ({"RADWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "RADWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "needs kafka_sasl_username"),
        ({"RADWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, "is PLAINTEXT"),
    ],
)  # fmt: skip
def test_kafka_security_misconfiguration_is_a_config_error(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_kafka_sasl_scram_and_mutual_tls_options(tmp_path):
    password = tmp_path / "kafka-password"
    password.write_text("s3cret\n")
    settings = load_settings(environ={
        "RADWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RADWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "RADWATCH_KAFKA_SASL_USERNAME": "radwatch",
        "RADWATCH_KAFKA_SASL_PASSWORD_FILE": str(password),
        "RADWATCH_KAFKA_SSL_CAFILE": "/etc/ca.pem",
        "RADWATCH_KAFKA_SSL_CERTFILE": "/etc/client.pem",
        "RADWATCH_KAFKA_SSL_KEYFILE": "/etc/client.key",
    })  # fmt: skip
    assert settings.kafka_client_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "radwatch", "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ca.pem", "ssl_certfile": "/etc/client.pem",
        "ssl_keyfile": "/etc/client.key",
    }  # fmt: skip


def test_postgres_sslmode_in_the_url_is_honoured(database_url):
    """sslmode travels in RADWATCH_DATABASE_URL: the embedded server has no TLS, so
    `require` must be refused by libpq and `disable` must connect."""
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        db.connect(database_url + "?sslmode=require").close()
    with db.connect(database_url + "?sslmode=disable") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_services_listen_on_loopback_by_default(embedded, embedded_data_dir):
    assert Settings().metrics_addr.startswith("127.0.0.1:")
    pg_pid = int((embedded_data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    for pid, port in ((embedded.broker_pid, embedded.broker_port), (pg_pid, embedded.pg_port)):
        assert pid is not None
        listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]  # fmt: skip
        assert listening, pid
        assert all(addr.ip in ("127.0.0.1", "::1") for addr in listening), listening
        assert any(addr.port == port for addr in listening)
    assert services.ServiceState(broker_port=1, pg_port=2).bootstrap == "127.0.0.1:1"
