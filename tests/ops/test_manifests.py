"""The Kubernetes manifests: rendered with kustomize, validated offline, checked for policy.

No API server can run here: every overlay is rendered with `kubectl kustomize` and each
object validated against the Kubernetes schemas (kubernetes-validate, strict, oldest and
newest supported versions). The prometheus-operator's kinds have no schema there: they are
listed in OPERATOR_KINDS and checked here against what the operator requires, their content
against monitoring/ (from which they are generated).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.monitoring.backends import Request, job_manifest
from credit_scoring.ops import manifests as deploy_manifests
from credit_scoring.serving.settings import ServingSettings
from credit_scoring.storage.events import EventStore
from tests.conftest import require_binary

K8S = PROJECT_ROOT / "deploy/k8s"
OVERLAYS = ["staging", "prod"]
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # validated by this module, not schemas
METADATA = ipaddress.ip_network("169.254.169.254/32")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = require_binary("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / "overlays" / request.param)


def job_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The retraining Job the trigger creates, as shipped in its ConfigMap."""
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("credit-scoring-retrain-job")
    ]
    return dict(yaml.safe_load(config["data"]["retrain-job.yaml"]))


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in [*objects, job_template(objects)]:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in WORKLOADS or o["kind"] == "Job":
            yield name, o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield name, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered, version):
    _, objects = rendered
    checked = 0
    for o in [*objects, job_template(objects)]:
        if o["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']} ({version}): {exc.message}")
        checked += 1
    assert checked >= 25


def test_a_wrong_field_fails_the_schema_validation(rendered):
    _, objects = rendered
    deployment = by_name(objects, "Deployment", "credit-scoring-service")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_operator_objects_have_what_the_operator_requires(rendered):
    _, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert kinds >= OPERATOR_KINDS
    for o in objects:
        if o["kind"] == "PrometheusRule":
            assert o["apiVersion"] == "monitoring.coreos.com/v1"
            for group in o["spec"]["groups"]:
                assert group["name"] and group["rules"]
                for rule in group["rules"]:
                    assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                    assert ("alert" in rule) != ("record" in rule) and rule["expr"]
        if o["kind"] == "ServiceMonitor":
            assert o["apiVersion"] == "monitoring.coreos.com/v1"
            assert o["spec"]["selector"] and o["spec"]["endpoints"]
            ports = {
                p["name"] for s in objects if s["kind"] == "Service" for p in s["spec"]["ports"]
            }
            assert {e["port"] for e in o["spec"]["endpoints"]} <= ports


# --- one source: monitoring/ ---------------------------------------------------------------


def test_generated_manifests_match_monitoring():
    assert deploy_manifests.generate(check=True) == 0, "run `make manifests`"


def test_a_changed_rule_makes_the_generated_manifests_stale(tmp_path):
    copy = tmp_path / "monitoring"
    subprocess.run(["cp", "-r", str(PROJECT_ROOT / "monitoring"), str(copy)], check=True)
    rules = copy / "prometheus/rules/credit_scoring.yml"
    rules.write_text(rules.read_text().replace("        for: 1m", "        for: 2m", 1))
    generated = deploy_manifests.render(copy)["prometheus-rule.yaml"]
    current = (deploy_manifests.OUTPUT / "prometheus-rule.yaml").read_text()
    assert generated != current


def test_rules_and_monitors_agree_with_prometheus_yml(rendered):
    _, objects = rendered
    source = yaml.safe_load(
        (PROJECT_ROOT / "monitoring/prometheus/rules/credit_scoring.yml").read_text()
    )
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == source["groups"]
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    selected = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    labelled = {
        s["metadata"]["labels"][deploy_manifests.JOB_LABEL]
        for s in objects
        if s["kind"] == "Service" and deploy_manifests.JOB_LABEL in s["metadata"]["labels"]
    }
    assert selected == labelled  # every scraped Service is selected, and only those
    used = set(re.findall(r'job="([^"]+)"', yaml.safe_dump(source)))
    assert used <= selected  # the rules' job labels exist in the cluster too


def test_dashboards_config_maps_hold_the_exported_dashboards(rendered):
    _, objects = rendered
    shipped = {
        key: value
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")
        for key, value in o["data"].items()
    }
    exported = {
        p.name: p.read_text()
        for p in (PROJECT_ROOT / "monitoring/grafana/dashboards").glob("*.json")
    }
    assert shipped == exported and exported


# --- policy ----------------------------------------------------------------------------------


def test_every_container_is_locked_down_limited_and_pinned(rendered):
    _, objects = rendered
    containers = 0
    for name, pod in pod_specs(objects):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] > 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name} container {container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            image = container["image"]
            assert re.search(r"(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$", image), where
            assert not image.endswith(":latest"), where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
            containers += 1
    assert containers >= 5


def test_long_running_containers_have_probes(rendered):
    _, objects = rendered
    for o in objects:
        if o["kind"] in WORKLOADS:
            for container in o["spec"]["template"]["spec"]["containers"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in container, f"{o['metadata']['name']}: {probe}"


def test_the_scoring_service_rolls_without_losing_capacity_or_events(rendered):
    _, objects = rendered
    deployment = by_name(objects, "Deployment", "credit-scoring-service")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # the pod is given the pause, a request's timeout and the shipper's final flush
    flush = EventStore.close.__defaults__[0]  # type: ignore[index]
    request = ServingSettings.model_fields["request_timeout_seconds"].default
    assert pod["terminationGracePeriodSeconds"] > pause + request + flush
    hpa = by_name(objects, "HorizontalPodAutoscaler", "credit-scoring-service")
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = by_name(objects, "PodDisruptionBudget", "credit-scoring-service")
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_the_namespace_enforces_the_restricted_pod_security_standard(rendered):
    _, objects = rendered
    (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


def test_network_policies_deny_by_default_and_never_open_the_metadata_address(rendered):
    _, objects = rendered
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    default = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in default
    )
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: egress to anywhere"
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if block and METADATA.subnet_of(ipaddress.ip_network(block["cidr"])):
                    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                    assert any(METADATA.subnet_of(e) for e in excepted), policy["metadata"]


def test_secrets_are_referenced_never_committed(rendered):
    _, objects = rendered
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = yaml.safe_dump_all(objects)
    referenced = set(re.findall(r"secretKeyRef:\s+key: [\w.-]+\s+name: ([\w-]+)", text))
    referenced |= set(re.findall(r"secretName: ([\w-]+)", text))
    runbook = (PROJECT_ROOT / "docs/deploy.md").read_text()
    assert referenced, text[:500]
    assert {s for s in referenced if s not in runbook} == set(), "document every Secret"


def test_the_trigger_starts_jobs_with_its_own_image_and_the_shipped_template(rendered):
    _, objects = rendered
    trigger = by_name(objects, "Deployment", "credit-scoring-trigger")
    pod = trigger["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CREDIT_SCORING_TRIGGER_KUBERNETES_IMAGE"]["value"] == container["image"]
    assert env["CREDIT_SCORING_TRIGGER_BACKEND"]["value"] == "kubernetes"
    template_path = Path(env["CREDIT_SCORING_TRIGGER_KUBERNETES_JOB_TEMPLATE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(template_path.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config = by_name(objects, "ConfigMap", volume["configMap"]["name"])
    assert template_path.name in config["data"]
    # the trigger may create Jobs, and nothing else
    role = by_name(objects, "Role", "credit-scoring-trigger")
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]
    # no Job is applied by `kubectl apply -k`: the template is data
    assert not [o for o in objects if o["kind"] == "Job"]


def test_overlays_differ_in_what_an_environment_changes():
    staging, prod = (render(K8S / "overlays" / o) for o in OVERLAYS)
    for objects in (staging, prod):  # every image comes from the overlay's registry
        for name, pod in pod_specs(objects):
            if name.startswith("Job/"):
                continue  # the template's image is replaced by the trigger's
            assert all(c["image"].startswith("ghcr.io/") for c in pod["containers"]), name
    replicas = [
        by_name(o, "Deployment", "credit-scoring-service")["spec"]["replicas"]
        for o in (staging, prod)
    ]
    assert replicas[0] < replicas[1]
    hosts = [
        by_name(o, "Ingress", "credit-scoring-service")["spec"]["rules"][0]["host"]
        for o in (staging, prod)
    ]
    assert hosts[0] != hosts[1]
    namespaces = [
        by_name(o, "Deployment", "credit-scoring-service")["metadata"]["namespace"]
        for o in (staging, prod)
    ]
    assert namespaces[0] != namespaces[1]


def test_the_job_the_trigger_creates_from_the_shipped_template_is_valid(rendered):
    """What KubernetesBackend sends: the ConfigMap's template, named, labelled, with its image."""
    _, objects = rendered
    trigger = by_name(objects, "Deployment", "credit-scoring-trigger")
    (container,) = trigger["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    request = Request(
        retrain_id="0189abcdef0123456789abcdef012345",
        model_name="credit_scoring",
        alertnames=["CreditScoringDatasetDrift"],
        fingerprints=["0123456789abcdef"],
    )
    job = job_manifest(
        job_template(objects), request, env["CREDIT_SCORING_TRIGGER_KUBERNETES_IMAGE"]
    )
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    (retrain,) = job["spec"]["template"]["spec"]["containers"]
    assert retrain["image"] == container["image"]  # the image of the same commit
    assert {"name": "CREDIT_SCORING_RETRAIN_ID", "value": request.retrain_id} in retrain["env"]
    assert len(job["metadata"]["name"]) <= 63


def test_the_scoring_service_trusts_only_the_environments_identity_provider(rendered):
    _, objects = rendered
    deployment = by_name(objects, "Deployment", "credit-scoring-service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CREDIT_SCORING_ENVIRONMENT"] == "production"  # the development key is refused
    (source,) = container["envFrom"]
    auth = by_name(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    from credit_scoring.auth.tokens import AuthSettings

    settings = AuthSettings(
        **{k.removeprefix("CREDIT_SCORING_AUTH_").lower(): v for k, v in auth.items()}
    )
    assert settings.jwks_url.startswith("https://") and settings.issuer.startswith("https://")
    assert settings.jwks_url.startswith(settings.issuer)  # the keys of that very issuer
    egress = by_name(objects, "NetworkPolicy", "scoring-egress-identity-provider")["spec"]
    assert egress["egress"][0]["ports"] == [{"protocol": "TCP", "port": 443}]
