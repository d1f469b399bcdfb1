"""The Kubernetes manifests: rendered with kustomize, validated offline, checked for policy.

No API server can run here: every overlay is rendered with `kubectl kustomize` and each
object validated against the Kubernetes schemas (kubernetes-validate, strict, oldest and
newest supported versions), the templates shipped as data too (the retraining Job, the Spark
executor Pod). The prometheus-operator's kinds have no schema there: they are listed in
OPERATOR_KINDS and checked here against what the operator requires, their content against
monitoring/ (from which they are generated). The Spark job's spark.yml goes through the
project's own check (config/spark.py), as `kedro run --env spark` would.
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

from credit_scoring.config.loader import PROJECT_ROOT, config_loader
from credit_scoring.config.spark import spark_settings
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


def shipped_config(objects: list[dict[str, Any]], prefix: str, key: str) -> dict[str, Any]:
    """A YAML file shipped in the ConfigMap named ``prefix-<hash>``, parsed."""
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and re.fullmatch(rf"{prefix}-\w+", o["metadata"]["name"])
    ]
    return dict(yaml.safe_load(config["data"][key]))


def executor_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Pod from which the Spark driver makes its executors."""
    return shipped_config(objects, "credit-scoring-spark-executor", "spark-executor-pod.yaml")


def cluster_spark_yml(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The spark.yml the Spark processing job mounts over conf/spark/spark.yml."""
    return shipped_config(objects, "credit-scoring-spark-conf", "spark.yml")


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
    for o in [*objects, job_template(objects), executor_template(objects)]:
        if o["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']} ({version}): {exc.message}")
        checked += 1
    assert checked >= 30


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


# --- the nightly jobs: Spark processing (driver + executors), batch scoring ------------------

SPARK_JOB = "credit-scoring-spark-processing"
BATCH_JOB = "credit-scoring-batch-scoring"


def cronjob_pod(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return dict(by_name(objects, "CronJob", name)["spec"]["jobTemplate"]["spec"]["template"])


def daily_start(cron: str) -> int:
    """Seconds after midnight at which a daily schedule (``M H * * *``) starts."""
    minute, hour, *rest = cron.split()
    assert rest == ["*", "*", "*"], cron
    return int(hour) * 3600 + int(minute) * 60


def makefile_default(variable: str) -> str:
    found = re.search(rf"^{variable} \?= (\S+)$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert found, variable
    return found.group(1)


def test_spark_driver_and_executors_are_restricted_alike(rendered):
    _, objects = rendered
    driver = cronjob_pod(objects, SPARK_JOB)["spec"]
    executor = executor_template(objects)
    for where, pod in (("driver", driver), ("executor", executor["spec"])):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts and mounts["/app/data"] == "data", where
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        assert data["persistentVolumeClaim"]["claimName"] == "credit-scoring-spark-data", where
        # the image's SPARK_LOCAL_IP (loopback) is replaced by the pod's address
        env = {e["name"]: e for e in container["env"]}
        assert "SPARK_LOCAL_IP" in env, where
    assert driver["automountServiceAccountToken"] is True  # it creates the executors
    assert executor["spec"]["automountServiceAccountToken"] is False  # they call no API
    # Spark's scratch space on a volume of the executor's own (Spark's volume naming)
    assert any(v["name"].startswith("spark-local-dir-") for v in executor["spec"]["volumes"])
    # executors carry the labels the NetworkPolicies select (kustomize does not see them)
    assert executor["metadata"]["labels"]["app.kubernetes.io/component"] == "spark-processing"
    pvc = by_name(objects, "PersistentVolumeClaim", "credit-scoring-spark-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # mounted by every executor


def test_the_clusters_spark_yml_passes_the_projects_check_and_keeps_confs_settings(rendered):
    _, objects = rendered
    cluster = spark_settings(cluster_spark_yml(objects), "deploy/k8s/base/spark.yml")
    local = spark_settings(config_loader(env="spark")["spark"])
    assert cluster["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert cluster["spark.submit.deployMode"] == "client"  # the Job's pod is the driver
    # what a cluster changes: where it runs and how big; the rest is conf/spark/spark.yml's
    sizing = {"spark.master", "spark.driver.memory"}
    assert {k: v for k, v in local.items() if k not in sizing} == {
        k: v for k, v in cluster.items() if k in local and k not in sizing
    }
    # the executors' requests and limits, which Spark derives from these
    for key in (
        "spark.executor.instances",
        "spark.executor.cores",
        "spark.executor.memory",
        "spark.executor.memoryOverhead",
        "spark.kubernetes.executor.request.cores",
        "spark.kubernetes.executor.limit.cores",
    ):
        assert key in cluster, key
    # the driver's container holds its JVM (spark.driver.memory) with room for Python
    (driver,) = cronjob_pod(objects, SPARK_JOB)["spec"]["containers"]
    limit = driver["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and int(limit[:-2]) > int(cluster["spark.driver.memory"][:-1])


def test_the_driver_mounts_what_its_spark_yml_names(rendered):
    _, objects = rendered
    settings = spark_settings(cluster_spark_yml(objects))
    pod = cronjob_pod(objects, SPARK_JOB)["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    conf = mounts["/app/conf/spark/spark.yml"]  # over the image's conf/spark/spark.yml
    assert conf["subPath"] == "spark.yml"
    assert volumes[conf["name"]]["configMap"]["name"].startswith("credit-scoring-spark-conf-")
    template = Path(settings["spark.kubernetes.executor.podTemplateFile"])
    source = volumes[mounts[str(template.parent)]["name"]]["configMap"]
    assert source["name"].startswith("credit-scoring-spark-executor-")
    assert {"key": "spark-executor-pod.yaml", "path": template.name} in source["items"]
    (executor,) = executor_template(objects)["spec"]["containers"]
    assert executor["name"] == settings["spark.kubernetes.executor.podTemplateContainerName"]
    assert executor["command"] == ["spark-executor"]  # deploy/docker/spark-executor.sh


def test_the_driver_hands_spark_its_pod_and_its_own_image(rendered):
    """PYSPARK_SUBMIT_ARGS carries what spark.yml cannot know; every $(VAR) it uses is defined
    before it (Kubernetes expands only those), and the executors run the driver's image."""
    _, objects = rendered
    (container,) = cronjob_pod(objects, SPARK_JOB)["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    env = {e["name"]: e for e in container["env"]}
    submit = env["PYSPARK_SUBMIT_ARGS"]["value"]
    assert submit.split()[-1] == "pyspark-shell"
    confs = dict(c.split("=", 1) for c in re.findall(r"--conf (\S+)", submit))
    assert confs == {
        "spark.kubernetes.namespace": "$(POD_NAMESPACE)",
        "spark.kubernetes.driver.pod.name": "$(POD_NAME)",
        "spark.driver.host": "$(POD_IP)",
        "spark.kubernetes.container.image": "$(SPARK_EXECUTOR_IMAGE)",
    }
    for used in re.findall(r"\$\((\w+)\)", submit):
        assert names.index(used) < names.index("PYSPARK_SUBMIT_ARGS"), used
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["SPARK_LOCAL_IP"]["value"] == "$(POD_IP)"
    assert env["SPARK_EXECUTOR_IMAGE"]["value"] == container["image"]
    assert container["command"][:4] == ["kedro", "run", "--env", "spark"]
    # production's ingestion setting, which --env spark would not read from conf/prod
    prod = yaml.safe_load((PROJECT_ROOT / "conf/prod/parameters_data_ingestion.yml").read_text())
    assert prod["data_ingestion"]["allow_development_key"] is False
    assert "data_ingestion.allow_development_key=false" in container["command"]


def test_the_nightly_jobs_run_the_images_the_build_produces(rendered):
    _, objects = rendered
    spark_image = cronjob_pod(objects, SPARK_JOB)["spec"]["containers"][0]["image"]
    batch_image = cronjob_pod(objects, BATCH_JOB)["spec"]["containers"][0]["image"]
    # `make image-pipeline-spark` / `make image-pipeline`, pushed by deploy.yml
    spark_repository = makefile_default("PIPELINE_SPARK_IMAGE")
    assert spark_image.rsplit(":", 1)[0].endswith("/" + spark_repository), spark_image
    assert batch_image.rsplit(":", 1)[0].endswith("/" + makefile_default("PIPELINE_IMAGE"))
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f'org.opencontainers.image.title="{spark_repository}"' in dockerfile
    deploy = (PROJECT_ROOT / ".github/workflows/deploy.yml").read_text()
    assert "make image-pipeline-spark" in deploy and spark_repository in deploy
    rollout = (PROJECT_ROOT / "deploy/rollout.sh").read_text()
    assert f"{spark_repository}=${{PIPELINE_SPARK_IMAGE}}" in rollout


def test_the_nightly_jobs_run_the_projects_pipelines(rendered):
    _, objects = rendered
    (driver,) = cronjob_pod(objects, SPARK_JOB)["spec"]["containers"]
    pipelines = driver["command"][driver["command"].index("--pipelines") + 1].split(",")
    assert pipelines == ["data_ingestion", "data_processing"]
    from credit_scoring.pipeline_registry import TRAINING

    assert set(pipelines) <= set(TRAINING)
    (scoring,) = cronjob_pod(objects, BATCH_JOB)["spec"]["containers"]
    assert scoring["command"] == ["kedro", "run", "--pipelines", "batch_scoring"]
    from credit_scoring.pipeline_registry import register_pipelines

    assert "batch_scoring" in register_pipelines()  # the pipeline the job names exists
    assert {"name": "KEDRO_ENV", "value": "prod"} in scoring["env"]  # pandas, production
    for name in (SPARK_JOB, BATCH_JOB):
        spec = by_name(objects, "CronJob", name)["spec"]
        assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "Etc/UTC", name
    spark, batch = (by_name(objects, "CronJob", n)["spec"] for n in (SPARK_JOB, BATCH_JOB))
    deadline = spark["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert daily_start(spark["schedule"]) + deadline <= daily_start(batch["schedule"])


def test_the_spark_driver_may_manage_pods_and_nothing_else(rendered):
    _, objects = rendered
    role = by_name(objects, "Role", "credit-scoring-spark")
    assert {r["resources"][0] for r in role["rules"]} == {"pods", "configmaps"}
    assert all(r["apiGroups"] == [""] and len(r["resources"]) == 1 for r in role["rules"])
    assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    binding = by_name(objects, "RoleBinding", "credit-scoring-spark")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "credit-scoring-spark",
            "namespace": binding["metadata"]["namespace"],
        }
    ]
    account = by_name(objects, "ServiceAccount", "credit-scoring-spark")
    assert account["automountServiceAccountToken"] is False  # only the driver pod mounts it
    assert cronjob_pod(objects, SPARK_JOB)["spec"]["serviceAccountName"] == "credit-scoring-spark"


def test_spark_traffic_uses_the_ports_of_spark_yml_and_executors_reach_nothing_else(rendered):
    _, objects = rendered
    settings = spark_settings(cluster_spark_yml(objects))
    ports = {
        int(settings[k])
        for k in ("spark.driver.port", "spark.driver.blockManager.port", "spark.blockManager.port")
    }
    policy = by_name(objects, "NetworkPolicy", "spark-processing")["spec"]
    for rules in (policy["ingress"], policy["egress"]):
        (rule,) = rules
        assert {p["port"] for p in rule["ports"]} == ports
    executor = executor_template(objects)["metadata"]["labels"] | {"spark-role": "executor"}

    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
        for e in selector.get("matchExpressions", []):
            present = labels.get(e["key"])
            if e["operator"] == "In":
                ok &= present in e["values"]
            elif e["operator"] == "NotIn":
                ok &= present not in e["values"]
        return ok

    opened = [
        p["metadata"]["name"]
        for p in objects
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"]
        and selects(p["spec"]["podSelector"], executor)
    ]
    assert opened == ["spark-processing"]  # besides DNS and the default deny
    driver = cronjob_pod(objects, SPARK_JOB)["metadata"]["labels"]
    reached = {
        p["metadata"]["name"]
        for p in objects
        if p["kind"] == "NetworkPolicy" and selects(p["spec"]["podSelector"], driver)
    }
    assert {"spark-driver-egress-apiserver", "jobs-to-mlflow", "spark-processing"} <= reached


def test_the_batch_scoring_workflow_checks_and_runs_the_cronjobs(rendered):
    _, objects = rendered
    path = PROJECT_ROOT / ".github/workflows/batch-scoring.yml"
    workflow = yaml.safe_load(path.read_text())
    on = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in on
    (schedule,) = on["schedule"]
    text = path.read_text()
    for name in (SPARK_JOB, BATCH_JOB):
        assert name in text, name
        spec = by_name(objects, "CronJob", name)["spec"]
        ends = daily_start(spec["schedule"]) + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        assert ends <= daily_start(schedule["cron"]), f"{name} may still run at the check"
    # by hand: the processing first, then the scoring
    assert text.index(f"run {SPARK_JOB}") < text.index(f"run {BATCH_JOB}")
