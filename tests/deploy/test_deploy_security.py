"""The deployment's edge: who may reach radwatch's port, and where its secrets live.

Static checks of deploy/ (no cluster runs here; `kubectl kustomize` builds them in
test_deploy_files): NetworkPolicies let only Prometheus and Alertmanager reach the metrics
port, the webhook token is a Secret mounted as a file on both sides (radwatch reads
RADWATCH_WEBHOOK_TOKEN_FILE, Alertmanager's `http_config` reads credentials_file), and the
audit signing key is a Secret, never an emptyDir.
"""

from __future__ import annotations

from typing import Any

import yaml
from conftest import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"


def load(path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in load(p) if d.get("kind") == kind]


def deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in k8s("Deployment") if d["metadata"]["name"] == name]
    return found


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def test_network_policies_fence_every_radwatch_pod():
    policies = k8s("NetworkPolicy")
    (kustomization,) = load(K8S / "kustomization.yaml")
    assert "networkpolicy.yaml" in kustomization["resources"]
    workloads = k8s("Deployment") + k8s("Job")
    for workload in workloads:
        applying = [p for p in policies if selects(p, pod_labels(workload))]
        # Every pod is under a default-deny ingress policy (policies add up from there).
        assert any(p["spec"]["ingress"] == [] and p["spec"]["policyTypes"] == ["Ingress"]
                   for p in applying), workload["metadata"]["name"]  # fmt: skip
        allowed = [(peer, rule["ports"]) for p in applying for rule in p["spec"]["ingress"]
                   for peer in rule["from"]]  # fmt: skip
        sources = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                   for peer, _ in allowed}  # fmt: skip
        component = pod_labels(workload)["app.kubernetes.io/component"]
        expected = {"metrics": {"prometheus", "alertmanager"}, "collector": {"prometheus"},
                    "embedder": {"prometheus"}}.get(component, set())  # fmt: skip
        assert sources == expected, (component, sources)
        for peer, ports in allowed:
            # A pod selector in a named namespace: never "any pod" or an IP block.
            assert set(peer) == {"namespaceSelector", "podSelector"}, peer
            assert peer["namespaceSelector"]["matchLabels"]
            assert ports == [{"protocol": "TCP", "port": 9108}]


def test_metrics_pod_reads_the_webhook_token_from_a_mounted_secret():
    (container,) = deployment("radwatch-metrics")["spec"]["template"]["spec"]["containers"]
    pod = deployment("radwatch-metrics")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = env["RADWATCH_WEBHOOK_TOKEN_FILE"]
    assert "RADWATCH_WEBHOOK_TOKEN" not in env  # never the value itself
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    example = {d["metadata"]["name"]: d for d in load(K8S / "secrets.example.yaml")}
    secret = example[volume["secret"]["secretName"]]
    assert path.rsplit("/", 1)[1] in secret["stringData"]
    # Only the metrics pod holds it.
    for other in k8s("Deployment"):
        if other["metadata"]["name"] != "radwatch-metrics":
            names = {v.get("secret", {}).get("secretName")
                     for v in other["spec"]["template"]["spec"]["volumes"]}  # fmt: skip
            assert volume["secret"]["secretName"] not in names
    (configmap,) = k8s("ConfigMap")
    assert not any(k.startswith("RADWATCH_WEBHOOK_TOKEN") for k in configmap["data"])


def test_audit_signing_key_is_a_secret_not_an_empty_dir():
    pod = deployment("radwatch-detector")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    example = {d["metadata"]["name"]: d for d in load(K8S / "secrets.example.yaml")}
    for var in ("RADWATCH_AUDIT_KEY_FILE", "RADWATCH_AUDIT_PUBLIC_KEY_FILE"):
        path = env[var]
        (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        volume = volumes[mount["name"]]
        assert "emptyDir" not in volume and mount["readOnly"] is True
        assert path.rsplit("/", 1)[1] in example[volume["secret"]["secretName"]]["stringData"]


def test_compose_shares_the_webhook_token_between_metrics_and_alertmanager():
    (doc,) = load(DEPLOY / "docker-compose.yml")
    services = doc["services"]
    assert doc["secrets"]["webhook_token"]["file"] == "./secrets/webhook-token"
    metrics = services["metrics"]
    assert "webhook_token" in metrics["secrets"] and "pseudonym_key" in metrics["secrets"]
    assert metrics["environment"]["RADWATCH_WEBHOOK_TOKEN_FILE"] == "/run/secrets/webhook_token"
    # Every other radwatch setting still comes through (the merge kept x-radwatch-env).
    assert set(doc["x-radwatch-env"]) <= set(metrics["environment"])
    assert services["alertmanager"]["secrets"] == ["webhook_token"]
    (am,) = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    for receiver in am["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["http_config"]["authorization"] == {
                "type": "Bearer", "credentials_file": "/run/secrets/webhook_token"}  # fmt: skip
    # Only the metrics service serves the webhook, so only it and Alertmanager hold the token.
    holders = {n for n, s in services.items() if "webhook_token" in (s.get("secrets") or [])}
    assert holders == {"metrics", "alertmanager"}
