"""The HTTP guard on a small Starlette app: token, roles, body limit, one count and one log
line per refusal (never the token), with a JWT verifier and with a shared token."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from credit_scoring.auth.guard import HttpGuard, Refusal, SharedToken, Wording
from credit_scoring.auth.tokens import (
    AuthSettings,
    Identity,
    IssuerUnavailable,
    Verifier,
    mint_development_token,
)

LIMIT = 1000
SECRET = "a-webhook-secret-of-some-length"


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    if body == b"bad":
        return JSONResponse(
            {"error": "bad", "errors": [{"field": "x", "rule": "r", "message": "m"}]}, 422
        )
    return JSONResponse({"size": len(body)})


def guarded(authenticator: Any, refusals: list[Refusal]) -> TestClient:
    app = Starlette(
        routes=[Route("/open", echo, methods=["POST"]), Route("/closed", echo, methods=["POST"])],
        middleware=[
            Middleware(
                HttpGuard,
                max_body_bytes=LIMIT,
                authenticator=authenticator,
                required_roles=lambda path: frozenset({"advisor"}) if path == "/closed" else None,
                on_reject=refusals.append,
                endpoint=lambda scope: scope["path"] if scope["path"] == "/closed" else "other",
                wording=Wording(realm="tests"),
                logger=logging.getLogger("credit_scoring.tests"),
            )
        ],
    )
    return TestClient(app)


def chunks(size: int, piece: int = 100):
    for _ in range(size // piece):
        yield b"x" * piece


def test_jwt_tokens_roles_and_the_body_limit(caplog: pytest.LogCaptureFixture) -> None:
    refusals: list[Refusal] = []
    client = guarded(Verifier(AuthSettings()), refusals)
    advisor = mint_development_token("alice", ["advisor"])
    scoring = mint_development_token("svc", ["scoring"])
    forged = mint_development_token("alice", ["advisor"], AuthSettings(signing_key="k" * 40))
    with caplog.at_level(logging.INFO, logger="credit_scoring"):
        missing = client.post("/closed", content=b"{}")
        wrong = client.post("/closed", content=b"{}", headers={"Authorization": f"Bearer {forged}"})
        basic = client.post("/closed", content=b"{}", headers={"Authorization": "Basic eDp5"})
        role = client.post("/closed", content=b"{}", headers={"Authorization": f"Bearer {scoring}"})
        ok = client.post("/closed", content=b"{}", headers={"Authorization": f"Bearer {advisor}"})
        declared = client.post(
            "/closed", content=b"x" * (LIMIT + 1), headers={"Authorization": f"Bearer {advisor}"}
        )
        streamed = client.post("/open", content=chunks(LIMIT + 100))  # no declared length
        app_refusal = client.post("/open", content=b"bad")
    assert [r.status_code for r in (missing, wrong, basic, role, ok)] == [401, 401, 401, 403, 200]
    for response in (missing, wrong, basic):
        assert response.headers["www-authenticate"] == 'Bearer realm="tests"'
        assert response.json() == {"error": Wording().unauthenticated}
    assert declared.status_code == 413 and str(LIMIT) in declared.json()["error"]
    assert streamed.status_code == 413
    assert client.post("/open", content=b"x" * LIMIT).json() == {"size": LIMIT}
    assert app_refusal.status_code == 422 and app_refusal.json()["errors"][0]["field"] == "x"
    assert [(r.endpoint, r.status, r.reason) for r in refusals] == [
        ("/closed", 401, "no_token"),
        ("/closed", 401, "token_bad_signature"),
        ("/closed", 401, "no_token"),
        ("/closed", 403, "forbidden"),
        ("/closed", 413, "too_large"),
        ("other", 413, "too_large"),
        ("other", 422, "invalid"),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "credit_scoring.tests"]
    assert len(lines) == len(refusals)  # one line per refusal
    assert lines[1] == "Refused POST /closed: 401 token_bad_signature [-]"
    assert lines[-1] == "Refused POST other: 422 invalid [x:r]"
    assert forged not in caplog.text and advisor not in caplog.text


def test_an_unreachable_issuer_is_503_not_the_callers_fault() -> None:
    class Down:
        def verify(self, token: str) -> Identity:
            raise IssuerUnavailable("connection refused")

    refusals: list[Refusal] = []
    response = guarded(Down(), refusals).post(
        "/closed", content=b"{}", headers={"Authorization": "Bearer x.y.z"}
    )
    assert response.status_code == 503 and refusals[0].reason == "issuer_unavailable"


def test_a_shared_token_is_compared_whole() -> None:
    refusals: list[Refusal] = []
    client = guarded(SharedToken(SECRET, Identity("hook", frozenset({"advisor"}))), refusals)
    for token in (SECRET[:-1], SECRET + "x", "", SECRET.upper()):
        response = client.post(
            "/closed", content=b"{}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token
    good = client.post("/closed", content=b"{}", headers={"Authorization": f"Bearer {SECRET}"})
    assert good.status_code == 200
    assert {r.reason for r in refusals} == {"token_wrong"}
    # without an authenticator nothing needs a token
    assert guarded(None, []).post("/closed", content=b"{}").status_code == 200
