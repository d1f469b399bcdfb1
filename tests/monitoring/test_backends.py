"""The remote retrain backends, against recorded request shapes: the Kubernetes Job is what
the official client really sends (captured by a recording API server on loopback) and is
valid against the Kubernetes schema; the GitHub dispatch matches GitHub's documented API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import httpx
import kubernetes_validate
import pytest
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.monitoring.backends import (
    JOB_TEMPLATE,
    RETRAIN_ID_ENV,
    GitHubBackend,
    KubernetesBackend,
    Request,
    job_manifest,
)

REQUEST = Request(
    retrain_id="0187a2b3c4d5e6f70123456789abcdef",
    model_name="credit_scoring",
    alertnames=["CreditScoringDatasetDrift"],
    fingerprints=["aa01"],
)


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Recorder.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Any:
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_kubernetes_backend_creates_a_valid_job(api_server: str) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = api_server
    backend = KubernetesBackend(
        namespace="credit-scoring",
        template_path=PROJECT_ROOT / JOB_TEMPLATE,
        image="registry.example.com/credit-scoring-pipeline:1.2.3",
        api_client=client.ApiClient(configuration),
    )
    said = backend.start(REQUEST)
    [call] = Recorder.seen
    assert call["path"] == "/apis/batch/v1/namespaces/credit-scoring/jobs"
    job = call["body"]
    assert said == f"Job {job['metadata']['name']} in namespace credit-scoring"
    kubernetes_validate.validate(job, "1.30", strict=True)
    assert job["metadata"]["name"] == "retrain-456789abcdef"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/credit-scoring-pipeline:1.2.3"
    assert {"name": RETRAIN_ID_ENV, "value": REQUEST.retrain_id} in container["env"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_job_names_are_unique_and_the_template_is_not_changed() -> None:
    template = yaml.safe_load((PROJECT_ROOT / JOB_TEMPLATE).read_text())
    before = json.dumps(template, sort_keys=True)
    other = Request("0187a2b3c4d5e6f7ffffffffffffffff", "credit_scoring", [], [])
    names = {job_manifest(template, r)["metadata"]["name"] for r in (REQUEST, other)}
    assert len(names) == 2
    assert json.dumps(template, sort_keys=True) == before
    with pytest.raises(kubernetes_validate.ValidationError):
        broken = job_manifest(template, REQUEST)
        broken["spec"]["backoffLimit"] = "zero"
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_github_backend_sends_a_documented_repository_dispatch() -> None:
    seen: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    backend = GitHubBackend(
        "acme/credit-scoring", "ghp_token", transport=httpx.MockTransport(github)
    )
    assert backend.start(REQUEST) == "repository_dispatch 'retrain' on acme/credit-scoring"
    [request] = seen
    # POST /repos/{owner}/{repo}/dispatches (docs.github.com/rest/repos/repos#create-a-repository-dispatch-event)
    assert request.method == "POST"
    assert str(request.url) == "https://api.github.com/repos/acme/credit-scoring/dispatches"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["Authorization"] == "Bearer ghp_token"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    body = json.loads(request.content)
    assert body["event_type"] == "retrain"
    assert set(body) == {"event_type", "client_payload"}
    # GitHub: client_payload has at most 10 top-level properties
    assert len(body["client_payload"]) <= 10
    assert body["client_payload"]["retrain_id"] == REQUEST.retrain_id


def test_github_refusal_is_an_error_with_the_status() -> None:
    backend = GitHubBackend(
        "acme/credit-scoring",
        "bad",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(401, json={"message": "Bad credentials"})
        ),
    )
    with pytest.raises(RuntimeError, match="HTTP 401"):
        backend.start(REQUEST)
