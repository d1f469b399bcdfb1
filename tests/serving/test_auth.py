"""Who may read a score: bearer tokens on every protected route, and the access audit trail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credit_scoring.auth.tokens import (
    DEVELOPMENT_SIGNING_KEY,
    AuthSettings,
    TokenError,
    Verifier,
    mint_development_token,
)
from credit_scoring.cli import cli
from credit_scoring.devtools.jwks import serve_jwks
from credit_scoring.storage.database import make_engine
from credit_scoring.storage.schema import AUDIT_TABLE

ISSUER, AUDIENCE = "credit-scoring-dev", "credit-scoring-api"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "advisor-matrix",
        "roles": ["advisor"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(claims: dict[str, Any], key: str = DEVELOPMENT_SIGNING_KEY) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def _unsigned(claims: dict[str, Any]) -> str:
    """`alg: none`, made by hand (PyJWT will not verify one, which is the point)."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hmac_with(secret: bytes, claims: dict[str, Any], kid: str | None = None) -> str:
    """HS256 with ``secret`` as the key, made by hand: the public-key-as-HMAC-secret attack."""
    head: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        head["kid"] = kid
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


# (case, Authorization header or None, expected status for an allowed role)
CASES: list[tuple[str, Callable[[], str | None], int]] = [
    ("no_token", lambda: None, 401),
    ("not_bearer", lambda: "Basic YWxpY2U6c2VjcmV0", 401),
    ("malformed", lambda: "Bearer not-a-jwt", 401),
    ("expired", lambda: "Bearer " + _hs(_claims(exp=int(time.time()) - 3600)), 401),
    ("not_yet_valid", lambda: "Bearer " + _hs(_claims(nbf=int(time.time()) + 3600)), 401),
    ("bad_signature", lambda: "Bearer " + _hs(_claims(), "x" * 64), 401),
    ("alg_none", lambda: "Bearer " + _unsigned(_claims()), 401),
    (
        "rs_where_hs",
        lambda: "Bearer " + jwt.encode(_claims(), RSA_KEY, algorithm="RS256"),
        401,
    ),
    ("wrong_issuer", lambda: "Bearer " + _hs(_claims(iss="https://evil.example")), 401),
    ("wrong_audience", lambda: "Bearer " + _hs(_claims(aud="another-api")), 401),
    ("no_subject", lambda: "Bearer " + _hs(_claims(sub=None)), 401),
    ("wrong_role", lambda: "Bearer " + _hs(_claims(roles=["auditor"])), 403),
    ("valid", lambda: "Bearer " + _hs(_claims()), 200),
]
CLIENT = "client"  # placeholder for a known client's pseudonym in the routes below


def _routes(application: dict[str, Any], client_id: str) -> list[tuple[str, str, Any, set[str]]]:
    """Every protected route: (method, path, JSON body, roles allowed)."""
    both = {"advisor", "scoring"}
    return [
        ("POST", "/predict", {"application": application, "client_id": client_id}, both),
        ("POST", "/predict_batch", {"applications": [application]}, both),
        ("POST", "/explain", {"application": application}, both),
        ("GET", f"/clients/{client_id}/score", None, {"advisor"}),
        ("GET", f"/clients/{client_id}/explain", None, {"advisor"}),
        ("GET", "/clients/search?limit=2", None, {"advisor"}),
        ("GET", "/clients/population?features=AMT_CREDIT&sample=20", None, {"advisor"}),
        ("GET", "/model/card", None, both),
    ]


@pytest.fixture(scope="module")
def known_client(client_features: pd.DataFrame) -> str:
    return str(client_features["client_id"].iloc[0])


def _call(anonymous: Any, method: str, path: str, body: Any, header: str | None) -> Any:
    headers = {"Authorization": header} if header is not None else {}
    return anonymous.request(method, path, json=body, headers=headers)


def test_every_protected_route_by_every_kind_of_token(anonymous, application, known_client):
    results = {}
    for method, path, body, _ in _routes(application, known_client):
        for case, make, expected in CASES:
            response = _call(anonymous, method, path, body, make())
            results[(path, case)] = response.status_code
            if expected == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
            if response.status_code in (401, 403):
                body_json = response.json()
                # one message for every 401: nothing tells an attacker what was wrong
                assert set(body_json) == {"error", "request_id"}, body_json
    expected_all = {
        (path, case): expected
        for _, path, _, _ in _routes(application, known_client)
        for case, _, expected in CASES
    }
    assert results == expected_all
    # the scoring role (a service account) may score, not read clients
    scoring = "Bearer " + _hs(_claims(roles=["scoring"], sub="svc-matrix"))
    for method, path, body, roles in _routes(application, known_client):
        status = _call(anonymous, method, path, body, scoring).status_code
        assert status == (200 if "scoring" in roles else 403), path


def test_a_refusal_is_logged_by_reason_never_with_the_token(anonymous, caplog):
    token = _hs(_claims(exp=int(time.time()) - 3600))
    with caplog.at_level("INFO", logger="credit_scoring"):
        assert _call(anonymous, "GET", "/model/card", None, f"Bearer {token}").status_code == 401
    assert token not in caplog.text and token.split(".")[1] not in caplog.text
    assert any("401 token_expired" in r.getMessage() for r in caplog.records)


def _audit_rows(url: str, subject: str) -> pd.DataFrame:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(
                sa.text(f"SELECT * FROM {AUDIT_TABLE} WHERE subject = :s ORDER BY id"),
                conn,
                params={"s": subject},
            )
    finally:
        engine.dispose()


def test_each_access_of_an_authenticated_caller_is_audited(
    anonymous, application, known_client, serving_db
):
    subject = "advisor-audit-42"
    token = mint_development_token(subject, ["advisor"])
    header = f"Bearer {token}"
    expected = []
    for method, path, body, _ in _routes(application, known_client):
        response = _call(anonymous, method, path, body, header)
        assert response.status_code == 200, (path, response.text)
        if path.startswith("/clients") or (body or {}).get("client_id"):
            expected.append(response.headers["x-request-id"])  # a client's data: audited
    named = {"application": application, "client_id": known_client}
    explained = _call(anonymous, "POST", "/explain", named, header)
    expected.append(explained.headers["x-request-id"])
    unknown = _call(anonymous, "GET", "/clients/" + "e" * 64 + "/score", None, header)
    assert unknown.status_code == 404
    refused = _call(anonymous, "GET", "/clients/search?limit=0", None, header)
    assert refused.status_code == 422
    scoring = f"Bearer {mint_development_token(subject, ['scoring'])}"
    forbidden = _call(anonymous, "GET", "/clients/search", None, scoring)
    assert forbidden.status_code == 403
    deadline = time.monotonic() + 15
    rows = _audit_rows(serving_db, subject)
    while len(rows) < len(expected) + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _audit_rows(serving_db, subject)
    assert len(rows) == len(expected) + 3
    by_request = rows.set_index("request_id")
    assert list(by_request.loc[expected, "status"]) == [200] * len(expected)
    routes = dict(
        zip(by_request.loc[expected].index, by_request.loc[expected, "route"], strict=True)
    )
    assert set(routes.values()) == {
        "/predict",
        "/explain",
        "/clients/{client_id}/score",
        "/clients/{client_id}/explain",
        "/clients/search",
        "/clients/population",
    }  # templates: the pseudonym in a path never becomes a route value
    # not audited: scoring applications that name no client, and the model card
    touched = by_request.loc[expected].set_index("route")["client_id"]
    assert touched["/clients/{client_id}/score"] == known_client
    assert touched["/predict"] == known_client == touched["/explain"]  # the body's client_id
    assert pd.isna(touched["/clients/search"])
    by_status = rows.groupby("status")["route"].apply(set).to_dict()
    assert by_status[404] == {"/clients/{client_id}/score"}
    assert rows.loc[rows["status"] == 404, "client_id"].iloc[0] == "e" * 64
    assert by_status[422] == {"/clients/search"} and by_status[403] == {"/clients/search"}
    assert set(rows["roles"]) == {"advisor", "scoring"}
    text = rows.to_json()
    assert token not in text and token.split(".")[2] not in text
    assert (
        pd.to_datetime(rows["event_time"]) <= pd.Timestamp.now(tz="UTC").tz_localize(None)
    ).all()


def test_the_development_key_is_refused_outside_development(monkeypatch, capsys):
    monkeypatch.setenv("CREDIT_SCORING_ENVIRONMENT", "production")
    with pytest.raises(SystemExit, match="public development key"):
        Verifier(AuthSettings())
    refused = CliRunner().invoke(cli, ["token", "--role", "advisor", "--sub", "alice"])
    assert refused.exit_code == 1 and "public development key" in refused.output
    monkeypatch.setenv("CREDIT_SCORING_AUTH_SIGNING_KEY", "short")
    with pytest.raises(SystemExit, match="32 random characters"):
        Verifier(AuthSettings())
    monkeypatch.setenv("CREDIT_SCORING_AUTH_SIGNING_KEY", "k" * 40)
    assert Verifier(AuthSettings()).verify(mint_development_token("a", ["advisor"])).subject == "a"


def test_a_remembered_token_is_refused_once_expired_and_a_forged_one_never_matches(monkeypatch):
    verifier = Verifier(AuthSettings(leeway_seconds=0), cache_size=2)
    token = _hs(_claims(exp=int(time.time()) + 2))
    assert verifier.verify(token).subject == "advisor-matrix"
    assert verifier.verify(token).subject == "advisor-matrix"  # from the cache
    head, payload, signature = token.split(".")
    with pytest.raises(TokenError):  # one character of the signature changed
        verifier.verify(
            f"{head}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
        )
    later = time.time() + 5
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)
    for subject in ("a", "b", "c"):  # bounded: the oldest goes
        verifier.verify(_hs(_claims(sub=subject, iat=int(later) - 10, exp=int(later) + 60)))
    assert len(verifier._verified) == 2


def test_make_token_prints_a_short_lived_token_of_the_role():
    command = ["token", "--role", "advisor", "--sub", "alice", "--minutes", "5"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    claims = jwt.decode(token, DEVELOPMENT_SIGNING_KEY, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == "alice" and claims["roles"] == ["advisor"]
    assert 290 <= claims["exp"] - claims["iat"] <= 300
    assert CliRunner().invoke(cli, ["token", "--role", "root", "--sub", "alice"]).exit_code == 2
    empty = CliRunner().invoke(cli, ["token", "--role", "advisor", "--sub", ""])
    assert empty.exit_code == 2 and "make token: SUB" in empty.stderr


# --- production: keys from the issuer's JWKS URL -------------------------------------------


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """A real HTTP server publishing one RSA key, as an OIDC issuer does."""
    url, server = serve_jwks(RSA_KEY.public_key(), "k1")
    yield url
    server.shutdown()


def _rs(claims: dict[str, Any], kid: str = "k1") -> str:
    return jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": kid})


def test_jwks_keys_and_algorithm_confusion(jwks_url, monkeypatch):
    monkeypatch.setenv("CREDIT_SCORING_ENVIRONMENT", "production")
    settings = AuthSettings(jwks_url=jwks_url, issuer="https://idp.example", audience="api")
    verifier = Verifier(settings)  # the development key is not involved: no SystemExit
    good = _claims(iss="https://idp.example", aud="api", realm_access={"roles": ["advisor"]})
    assert verifier.verify(_rs(good)).subject == "advisor-matrix"
    assert verifier.verify(_rs(good)).roles == frozenset({"advisor"})
    keycloak = Verifier(settings.model_copy(update={"roles_claim": "realm_access.roles"}))
    assert keycloak.verify(_rs(good)).roles == frozenset({"advisor"})
    refused = {
        "hs_with_public_key": _hmac_with(RSA_PUBLIC_PEM, good, kid="k1"),
        "development_key": _hs(good),
        "alg_none": _unsigned(good),
        "unknown_kid": _rs(good, kid="k2"),
        "other_rsa_key": jwt.encode(
            good,
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
        "expired": _rs({**good, "exp": int(time.time()) - 3600}),
        "wrong_issuer": _rs({**good, "iss": ISSUER}),
    }
    reasons = {}
    for case, token in refused.items():
        with pytest.raises(TokenError) as caught:
            verifier.verify(token)
        reasons[case] = caught.value.reason
    assert reasons == {
        "hs_with_public_key": "bad_algorithm",
        "development_key": "bad_algorithm",
        "alg_none": "bad_algorithm",
        "unknown_kid": "unknown_key",
        "other_rsa_key": "bad_signature",
        "expired": "expired",
        "wrong_issuer": "wrong_issuer_or_audience",
    }
    with pytest.raises(ValueError, match="HS256"):
        AuthSettings(jwks_url=jwks_url, algorithms=["HS256"])
