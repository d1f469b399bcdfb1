"""Where a retraining runs: a local subprocess, a Kubernetes Job, or a GitHub workflow.

- ``local`` (the default): ``credit-scoring retrain`` in the project folder, a child
  process of the trigger. It runs the ``retraining`` pipeline (the training pipelines on the
  newest data snapshot, ending at the registry gate) and records the result.
- ``kubernetes``: a Job made from ``deploy/k8s/base/retrain-job.yaml`` (name, labels and the
  retrain id filled in), created through the official Python client, in-cluster
  credentials first, else the kubeconfig.
- ``github``: a ``repository_dispatch`` event of type ``retrain`` on the repository, which
  starts ``.github/workflows/retrain.yml``; the token needs the "contents: write" permission.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

logger = logging.getLogger(__name__)

JOB_TEMPLATE = Path("deploy/k8s/base/retrain-job.yaml")
GITHUB_API = "https://api.github.com"
GITHUB_API_VERSION = "2022-11-28"
RETRAIN_ID_ENV = "CREDIT_SCORING_RETRAIN_ID"


@dataclass(frozen=True)
class Request:
    retrain_id: str
    model_name: str
    alertnames: list[str]
    fingerprints: list[str]


class Backend(Protocol):
    name: str

    def start(self, request: Request) -> str:
        """Start the retraining; returns what was started (for the decision's reason)."""
        ...


@dataclass
class LocalBackend:
    project: Path
    database_url: str
    name: str = "local"
    command: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, request: Request) -> str:
        command = self.command or [
            sys.executable,
            "-m",
            "credit_scoring.cli",
            "retrain",
            "--project",
            str(self.project),
            "--retrain-id",
            request.retrain_id,
            "--model-name",
            request.model_name,
        ]
        log_dir = self.project / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"retrain-{request.retrain_id}.log").open("ab")
        env = {**os.environ, RETRAIN_ID_ENV: request.retrain_id}
        env.setdefault("CREDIT_SCORING_DATABASE_URL", self.database_url)
        process = subprocess.Popen(
            command, cwd=self.project, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes = [p for p in self.processes if p.poll() is None] + [process]
        return f"local retraining pid {process.pid}, log logs/retrain-{request.retrain_id}.log"


def job_manifest(
    template: dict[str, Any], request: Request, image: str | None = None
) -> dict[str, Any]:
    """The Job to create: the template with a unique name, labels and the retrain id."""
    job = copy.deepcopy(template)
    meta = job.setdefault("metadata", {})
    base = meta.pop("name", None) or "retrain"
    meta.pop("generateName", None)
    meta["name"] = f"{base}-{request.retrain_id[-12:]}"[:63]
    labels = {"app.kubernetes.io/component": "retraining", "retrain-id": request.retrain_id[-12:]}
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        "credit-scoring/retrain-id": request.retrain_id,
        "credit-scoring/alerts": ",".join(request.alertnames)[:500],
    }
    pod = job["spec"]["template"]
    pod.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    for container in pod["spec"]["containers"]:
        env = [e for e in container.get("env") or [] if e.get("name") != RETRAIN_ID_ENV]
        container["env"] = [*env, {"name": RETRAIN_ID_ENV, "value": request.retrain_id}]
        if image:
            container["image"] = image
    return job


@dataclass
class KubernetesBackend:
    namespace: str
    template_path: Path
    image: str | None = None
    name: str = "kubernetes"
    api_client: Any = None  # a kubernetes.client.ApiClient; default: in-cluster, else kubeconfig

    def start(self, request: Request) -> str:
        from kubernetes import client, config

        template = yaml.safe_load(self.template_path.read_text())
        body = job_manifest(template, request, self.image)
        api = self.api_client
        if api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api = client.ApiClient()
        # the client sends a plain mapping as it is (what the Job template says, verbatim)
        client.BatchV1Api(api).create_namespaced_job(self.namespace, body)  # type: ignore[arg-type]
        return f"Job {body['metadata']['name']} in namespace {self.namespace}"


@dataclass
class GitHubBackend:
    repository: str  # owner/name
    token: str
    api_url: str = GITHUB_API
    name: str = "github"
    transport: httpx.BaseTransport | None = None

    def start(self, request: Request) -> str:
        with httpx.Client(transport=self.transport, timeout=15) as client:
            response = client.post(
                f"{self.api_url}/repos/{self.repository}/dispatches",
                headers={
                    "Accept": "application/vnd.github+json",
                    "Authorization": f"Bearer {self.token}",
                    "X-GitHub-Api-Version": GITHUB_API_VERSION,
                },
                json={
                    "event_type": "retrain",
                    "client_payload": {
                        "retrain_id": request.retrain_id,
                        "model_name": request.model_name,
                        "alerts": ",".join(request.alertnames)[:500],
                    },
                },
            )
        if response.status_code != 204:
            raise RuntimeError(
                f"GitHub refused the repository_dispatch: HTTP {response.status_code} "
                f"{response.text[:200]}"
            )
        return f"repository_dispatch 'retrain' on {self.repository}"
