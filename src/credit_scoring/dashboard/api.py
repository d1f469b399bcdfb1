"""The dashboard's only way to data: the scoring API, with the advisor's bearer token."""

from __future__ import annotations

import logging
from typing import Any

import httpx

# httpx logs every request's URL at INFO: a client's pseudonym is in those paths, and it is
# personal data that must not reach the dashboard's logs
logging.getLogger("httpx").setLevel(logging.WARNING)


class ApiError(Exception):
    """What went wrong, in words an advisor can act on."""


class ScoringApi:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: Any = None) -> dict[str, Any]:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError:
            raise ApiError(
                f"The scoring service cannot be reached at {self.url}. It may be down or "
                "restarting: try again in a minute, or tell the support team."
            ) from None
        if response.status_code == 401:
            raise ApiError("The scoring service did not accept your sign-in: sign in again.")
        if response.status_code == 403:
            raise ApiError(
                "Your account is not allowed to see client scores (it lacks the advisor role)."
            )
        if response.status_code == 404:
            raise ApiError("No such client in the client records.")
        if response.status_code == 422:
            problems = response.json().get("errors") or []
            detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:3])
            raise ApiError(f"The search was refused: {detail}")
        if response.status_code >= 400:
            raise ApiError(
                f"The scoring service answered with an error ({response.status_code}); try "
                "again, or tell the support team (request "
                f"{response.headers.get('x-request-id', '?')})."
            )
        return dict(response.json())

    def search(
        self, filters: list[tuple[str, Any]], limit: int, offset: int, columns: list[str]
    ) -> dict[str, Any]:
        params = [
            *filters,
            ("limit", limit),
            ("offset", offset),
            *(("columns", c) for c in columns),
        ]
        return self._get("/clients/search", params)

    def client_row(self, client_id: str, columns: list[str]) -> dict[str, Any] | None:
        found = self._get(
            "/clients/search",
            [("client_id_prefix", client_id), ("limit", 1), *(("columns", c) for c in columns)],
        )["clients"]
        return found[0] if found and found[0]["client_id"] == client_id else None

    def explain(self, client_id: str) -> dict[str, Any]:
        return self._get(f"/clients/{client_id}/explain")

    def population(
        self, features: list[str], filters: list[tuple[str, Any]], sample: int
    ) -> dict[str, Any]:
        params = [*filters, *(("features", f) for f in features), ("sample", sample)]
        return self._get("/clients/population", params)

    def card(self) -> dict[str, Any]:
        return self._get("/model/card")
