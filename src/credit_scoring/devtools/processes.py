"""Helpers for the local servers the demo, the tests and the benchmarks start on loopback."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bentoml_serve(bento: str, port: int) -> list[str]:
    """The command line of ``bentoml serve`` for ``bento`` on 127.0.0.1:``port``, run by this
    interpreter (so the project's environment serves it)."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        bento,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def mlflow_server(backend_store_uri: str, artifacts_destination: str, port: int) -> list[str]:
    """The command line of an MLflow tracking server on 127.0.0.1:``port`` that proxies its
    artifacts (``--serve-artifacts``) to ``artifacts_destination`` (``s3://bucket/mlflow``):
    clients need an MLflow URL only, never the bucket's keys. One worker: a test's load."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
    ]
