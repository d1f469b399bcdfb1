"""Bearer tokens (JWT) of the scoring API: who may read a score, and how that is checked.

Production: the API trusts an OIDC issuer. Its keys come from the issuer's JWKS URL
(``CREDIT_SCORING_AUTH_JWKS_URL``), asymmetric algorithms only (RS/PS/ES/EdDSA). Development:
one local HMAC key signs and checks tokens (``make token ROLE=advisor SUB=alice``); without
``CREDIT_SCORING_AUTH_SIGNING_KEY`` that is the public development key below, which outside
``CREDIT_SCORING_ENVIRONMENT=development`` is refused at start-up, like the development
pseudonymisation key.

Every token must carry ``iss``, ``aud``, ``sub``, ``exp`` and ``iat``, be signed with an
allowed algorithm (never ``none``; an HMAC token is refused where keys are asymmetric, which
closes the "public key used as HMAC secret" confusion) and hold a role in ``roles``.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROLES = ("advisor", "scoring")
# Public on purpose, like the development pseudonymisation key: anyone can mint a token with
# it, so a service that is not in development refuses to start with it.
DEVELOPMENT_SIGNING_KEY = "development-only-jwt-signing-key-do-not-use-in-production"
HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat"]
MAX_TOKEN_BYTES = 8192
TOKEN_ENV = "CREDIT_SCORING_API_TOKEN"
OIDC_ENV = "CREDIT_SCORING_OIDC"

Environment = Literal["development", "staging", "production"]


class AuthSettings(BaseSettings):
    """How the API checks tokens (``CREDIT_SCORING_AUTH_*``)."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_SCORING_AUTH_", extra="ignore")

    environment: Environment = Field(
        "development",
        validation_alias="CREDIT_SCORING_ENVIRONMENT",
        description="outside development the public development key is refused",
    )
    issuer: str = Field("credit-scoring-dev", min_length=1, description="expected `iss`")
    audience: str = Field("credit-scoring-api", min_length=1, description="expected `aud`")
    jwks_url: str | None = Field(
        None,
        description="the OIDC issuer's JWKS URL (keys by `kid`); when set, only asymmetric "
        "algorithms are accepted and no local key is used",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="algorithms accepted with the JWKS keys",
    )
    signing_key: SecretStr | None = Field(
        None, description="local HMAC key (development, or a test environment without an IdP)"
    )
    roles_claim: str = Field(
        "roles",
        description="where the roles are: a claim name, or a dotted path "
        "(Keycloak: realm_access.roles)",
    )
    leeway_seconds: int = Field(30, ge=0, le=300, description="clock skew tolerated")
    token_minutes: int = Field(30, ge=1, le=720, description="lifetime of a development token")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        wrong = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if wrong or not value:
            raise ValueError(
                f"CREDIT_SCORING_AUTH_ALGORITHMS: {wrong or 'empty'} not allowed with JWKS keys; "
                f"choose among {list(ASYMMETRIC_ALGORITHMS)}"
            )
        return value

    def local_key(self) -> str:
        """The HMAC key of development tokens; refused where it would let anyone in."""
        key = self.signing_key.get_secret_value() if self.signing_key else DEVELOPMENT_SIGNING_KEY
        if key == DEVELOPMENT_SIGNING_KEY and self.environment != "development":
            raise SystemExit(
                f"CREDIT_SCORING_ENVIRONMENT is {self.environment} and the API would accept "
                "tokens signed with the public development key. Set CREDIT_SCORING_AUTH_JWKS_URL "
                "to your OIDC issuer's keys (and _ISSUER, _AUDIENCE), or a private "
                "CREDIT_SCORING_AUTH_SIGNING_KEY."
            )
        if len(key) < 32:
            raise SystemExit("CREDIT_SCORING_AUTH_SIGNING_KEY: use at least 32 random characters")
        return key


@dataclass(frozen=True)
class Identity:
    subject: str
    roles: frozenset[str]


class TokenError(Exception):
    """A token that does not prove who is calling (HTTP 401). ``reason`` is a bounded label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(Exception):
    """The issuer's keys could not be fetched (HTTP 503: the caller is not at fault)."""


class Verifier:
    """Checks a bearer token; one per process (the JWKS client caches the keys).

    A verified token is remembered (by its exact bytes, signature included) until it
    expires: a service account or an advisor sends the same token for many requests, and
    checking its signature again each time was a fifth of a /predict's server time
    (docs/benchmarks.md). A forged or altered token never matches a remembered one; the cache
    is bounded (``cache_size``, oldest out first) and each hit checks the expiry again.
    """

    def __init__(self, settings: AuthSettings, cache_size: int = 4096) -> None:
        self.settings = settings
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._jwks: jwt.PyJWKClient | None = None
        self._key: str | None = None
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300)
            self.algorithms = list(settings.algorithms)
        else:
            self._key = settings.local_key()
            self.algorithms = list(HMAC_ALGORITHMS)

    def verify(self, token: str) -> Identity:
        known = self._verified.get(token)
        if known is not None:
            expires, identity = known
            if time.time() < expires:
                return identity
            del self._verified[token]
            raise TokenError("expired")
        identity, expires = self._verify(token)
        self._verified[token] = (expires, identity)
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return identity

    def _verify(self, token: str) -> tuple[Identity, float]:
        if not token or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise TokenError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError("malformed") from None
        if header.get("alg") not in self.algorithms:  # `none`, or HS where keys are RS/ES
            raise TokenError("bad_algorithm")
        key: Any = self._key
        if self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as exc:
                raise IssuerUnavailable(str(exc)) from None
            except jwt.PyJWKClientError:
                raise TokenError("unknown_key") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise TokenError("wrong_issuer_or_audience") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise TokenError("invalid")
        identity = Identity(subject=subject, roles=_roles(claims, self.settings.roles_claim))
        return identity, float(claims["exp"]) + self.settings.leeway_seconds


def _roles(claims: Mapping[str, Any], path: str) -> frozenset[str]:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return frozenset()
    return frozenset(str(v) for v in value if str(v) in ROLES)  # bounded: the known roles only


def mint_development_token(
    subject: str,
    roles: list[str],
    settings: AuthSettings | None = None,
    minutes: int | None = None,
) -> str:
    """A short-lived token signed with the local key (never in production: ``local_key``)."""
    settings = settings or AuthSettings()
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"role(s) {unknown or roles}: choose among {list(ROLES)}")
    if not subject or len(subject) > 255:
        raise ValueError("SUB: give the advisor's or service's id (1 to 255 characters)")
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + 60 * (minutes or settings.token_minutes),
    }
    return jwt.encode(claims, settings.local_key(), algorithm=HMAC_ALGORITHMS[0])


def client_credentials_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """A service account's token from the issuer (OAuth 2 client credentials), when
    ``CREDIT_SCORING_OIDC_TOKEN_URL``, ``_CLIENT_ID`` and ``_CLIENT_SECRET`` are set."""
    url = environ.get(f"{OIDC_ENV}_TOKEN_URL")
    if not url:
        return None
    import httpx

    form = {"grant_type": "client_credentials", "scope": environ.get(f"{OIDC_ENV}_SCOPE", "")}
    if environ.get(f"{OIDC_ENV}_AUDIENCE"):
        form["audience"] = environ[f"{OIDC_ENV}_AUDIENCE"]
    response = httpx.post(
        url,
        data={k: v for k, v in form.items() if v},
        auth=(environ[f"{OIDC_ENV}_CLIENT_ID"], environ[f"{OIDC_ENV}_CLIENT_SECRET"]),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def bearer(token: str | None = None, subject: str = "scoring-client") -> dict[str, str]:
    """The Authorization header of an API client: ``token``, else ``CREDIT_SCORING_API_TOKEN``,
    else a client-credentials token from the issuer (``CREDIT_SCORING_OIDC_*``), else
    (development only) a development token of the ``scoring`` role."""
    token = token or os.environ.get(TOKEN_ENV) or client_credentials_token()
    if not token:
        token = mint_development_token(subject, ["scoring"])
    return {"Authorization": f"Bearer {token}"}
