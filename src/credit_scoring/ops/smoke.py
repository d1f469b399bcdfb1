"""Smoke test of a deployed scoring API: ``credit-scoring smoke --url URL``.

What the deploy workflow runs after each rollout (through ``kubectl port-forward``), and
what anyone can run against ``make serve``: ``/readyz`` answers 200, and one application of
the project's own generator, posted to ``/predict``, gets a probability and a decision.
Exit code 0 when both hold, 1 otherwise (the workflow then rolls back). A production API
needs a real token: ``CREDIT_SCORING_API_TOKEN`` (see docs/deploy.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from credit_scoring.auth.tokens import bearer
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.training.applications import population


def check(
    url: str, project: Path = PROJECT_ROOT, wait_seconds: float = 60, token: str | None = None
) -> list[str]:
    """The problems found (empty: the service answers as it should).

    The bearer token: ``token``, else ``CREDIT_SCORING_API_TOKEN`` (a service account's
    token of role ``scoring`` from the identity provider: what the deploy workflow sets),
    else a development token (a service in development only accepts those).
    """
    deadline = time.monotonic() + wait_seconds
    headers = bearer(token, subject="smoke-test")
    with httpx.Client(base_url=url, timeout=10, headers=headers) as client:
        while True:
            try:
                ready = client.get("/readyz")
                if ready.status_code == 200:
                    break
                problem = f"/readyz answered {ready.status_code}"
            except httpx.HTTPError as exc:
                problem = f"/readyz unreachable: {exc}"
            if time.monotonic() > deadline:
                return [problem]
            time.sleep(2)
        applications, _ = population(project, 100, seed=20261123, drift=False)  # 100: the least
        application = applications[0]
        response = client.post("/predict", json={"application": application})
        if response.status_code != 200:
            return [f"/predict answered {response.status_code}: {response.text[:300]}"]
        body = response.json()
        problems = []
        if not 0.0 <= float(body.get("probability", -1)) <= 1.0:
            problems.append(f"/predict gave no probability: {body}")
        if body.get("decision") not in {"accept", "refuse"}:
            problems.append(f"/predict gave no decision: {body}")
        return problems


def smoke(url: str = "http://127.0.0.1:3000", wait_seconds: float = 60) -> int:
    """Check the API at ``url`` and print the verdict; returns the exit code (1: a problem)."""
    problems = check(url.rstrip("/"), wait_seconds=wait_seconds)
    for problem in problems:
        print(f"smoke test failed: {problem}", file=sys.stderr)
    if not problems:
        print(f"smoke test passed: {url} is ready and scores an application")
    return 1 if problems else 0
