"""A Docker engine and a base image for hosts that reach no image registry.

Tests, benchmarks and air-gapped build hosts use it; a laptop or CI with Docker and a
registry does not need it (``make images`` calls ``docker`` directly).

- ``engine()``: the engine that ``DOCKER_HOST`` (or the default socket) reaches; else, as root,
  a private ``dockerd`` in a temporary folder, with no bridge network and no iptables rules
  (containers and builds then use ``--network host``: nothing is created in a private
  address range).
- ``local_base_image()``: ``python:3.11-slim``'s stand-in built from Debian's own packages
  (``debootstrap`` bookworm, whose python3 is 3.11, + ``docker import``), kept as a tarball
  in a cache folder so that the next run imports it in seconds.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_BASE_IMAGE = "local/python:3.11-bookworm"
# What python:3.11-slim has and the Dockerfiles use: python3 with venv, CA certificates.
DEBOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # plain http: apt checks the signatures
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "credit-scoring"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def docker_client() -> list[str]:
    """``$DOCKER``, else Debian's client (/usr/bin/docker, which has BuildKit), else ``docker``."""
    if os.environ.get("DOCKER"):
        return shlex.split(os.environ["DOCKER"])
    return ["/usr/bin/docker"] if Path("/usr/bin/docker").exists() else ["docker"]


@dataclass
class Engine:
    host: str | None  # DOCKER_HOST; None: the client's default
    client: list[str] = field(default_factory=docker_client)
    process: subprocess.Popen[bytes] | None = None
    folder: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if self.host:
            env["DOCKER_HOST"] = self.host
        return env

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run([*self.client, *args], env=self.env, **kwargs)

    def reachable(self) -> bool:
        try:
            return self.run("info", timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def image_exists(self, image: str) -> bool:
        return self.run("image", "inspect", image).returncode == 0

    def stop(self, keep_folder: bool = False) -> None:
        """Stop a private engine (and its containers); leave anyone else's alone."""
        if self.process is None:
            return
        ids = self.run("ps", "-aq").stdout.split()
        if ids:
            self.run("rm", "-f", *ids, timeout=120)
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.folder is not None and not keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_private_engine(folder: Path, timeout: float = 60) -> Engine:
    """``dockerd`` with its own data root and socket under ``folder``, without networks."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd is not installed (Debian package docker.io)")
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / "docker.sock"
    log = (folder / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            dockerd,
            "--data-root", str(folder / "root"),
            "--exec-root", str(folder / "exec"),
            "--pidfile", str(folder / "docker.pid"),
            "-H", f"unix://{socket}",
            # container bridges use private address ranges: none is created
            "--bridge=none", "--iptables=false", "--ip6tables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    engine = Engine(host=f"unix://{socket}", process=process, folder=folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((folder / "dockerd.log").read_text()[-3000:])
        if socket.exists() and engine.reachable():
            return engine
        time.sleep(0.5)
    engine.stop(keep_folder=True)
    raise RuntimeError(f"dockerd did not answer in {timeout:.0f} s")


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """The reachable engine, else a private one for the duration of the block."""
    existing = Engine(host=os.environ.get("DOCKER_HOST"))
    if existing.reachable():
        yield existing
        return
    if os.geteuid() != 0:
        raise RuntimeError("no Docker engine is reachable, and starting one needs root")
    private = start_private_engine(Path(tempfile.mkdtemp(prefix="dockerd-")))
    try:
        yield private
    finally:
        private.stop()


def local_base_image(engine: Engine, cache: Path = CACHE_DIR) -> str:
    """``LOCAL_BASE_IMAGE`` in ``engine``: imported from the cached tarball, else debootstrapped."""
    if engine.image_exists(LOCAL_BASE_IMAGE):
        return LOCAL_BASE_IMAGE
    tarball = cache / f"debian-bookworm-{'-'.join(DEBOOTSTRAP_PACKAGES)}.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    with tarball.open("rb") as handle:
        result = subprocess.run(
            [*engine.client, "import", "-", LOCAL_BASE_IMAGE],
            stdin=handle,
            env=engine.env,
            capture_output=True,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode()[-2000:])
    return LOCAL_BASE_IMAGE


def _debootstrap(tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (Debian package debootstrap)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as folder:
        root = Path(folder) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        # what a slim image leaves out: package lists and caches, documentation, locales
        for sub in (
            "var/cache/apt",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            for child in (root / sub).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        # a unique name, then an atomic rename: two builds at once never mix their files
        partial = tarball.with_name(f".{tarball.name}.{os.getpid()}.partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)


# --- commands: `make docker-engine`, `make local-base` ----------------------------------------

ENGINE_FOLDER = CACHE_DIR / "docker"  # images built there survive the engine's restarts


def start_shared_engine() -> int:
    """Start the private engine that the Makefile uses, unless an engine is reachable already.
    Returns the exit code (1: not root)."""
    if Engine(host=os.environ.get("DOCKER_HOST")).reachable():
        print("A Docker engine is already reachable: nothing to start.")
        return 0
    if os.geteuid() != 0:
        print("Starting dockerd needs root.", file=sys.stderr)
        return 1
    started = start_private_engine(ENGINE_FOLDER)
    print(f"dockerd {started.process.pid if started.process else ''} answers on {started.host}")
    print("The Makefile uses it; elsewhere: export DOCKER_HOST=" + str(started.host))
    return 0


def stop_shared_engine() -> None:
    """Stop the engine that ``start_shared_engine`` started, if it runs."""
    pidfile = ENGINE_FOLDER / "docker.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), 15)
        print("dockerd stopped")


def shared_base_image() -> str:
    """The local base image's tag, built if missing, on ``DOCKER_HOST`` or the shared engine."""
    socket = ENGINE_FOLDER / "docker.sock"
    host = os.environ.get("DOCKER_HOST") or (f"unix://{socket}" if socket.exists() else None)
    return local_base_image(Engine(host=host))
