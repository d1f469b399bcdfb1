"""An identity provider's JWKS endpoint on loopback: the production token path (RS256) in
tests and benchmarks, without an identity provider."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt


def serve_jwks(public_key: Any, kid: str) -> tuple[str, Any]:
    """An issuer's JWKS endpoint on loopback publishing ``public_key`` (RSA): for tests and
    benchmarks of the production path. Returns its URL and the server (``.shutdown()``)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks.json", server
