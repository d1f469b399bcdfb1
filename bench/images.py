"""Image sizes and the service container's cold start, against the same bento served bare.

`make bench-images` (after `make run && make build`): builds both images on the engine that
is reachable (else a private one) and on python:3.11-slim's local stand-in when no registry
is reachable, then times, 3 rounds alternating, process start -> first `/readyz` 200 for
(a) the service container, run as the cluster runs it (read-only, user 10001, no
capabilities), and (b) the peer: `bentoml serve` of the same bento in the project's
environment, no container (one untimed warm-up each first; the peer writes its bytecode as
the image has it compiled). Targets: service image under 700 MB, container cold start under
10 s. Results: bench/results/images.json.

    python bench/images.py --smoke [--project DIR] [--bento TAG]   # no build: the bare peer once
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.processes import bentoml_serve, free_port
from credit_scoring.ops.docker_engine import SYSTEM_CA_BUNDLE, Engine, engine, local_base_image

ROUNDS = 3
RESULTS = PROJECT_ROOT / "bench/results/images.json"


def wait_ready(port: int, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not ready in {timeout} s")


def container_start(docker: Engine, image: str, data: Path) -> float:
    port = free_port()
    name = f"bench-{port}"
    started = time.monotonic()
    docker.run(
        "run", "-d", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp:rw,size=512m,mode=1777", "--user", "10001:10001",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", f"{data}:/data", "-e", "BENTOML_HOST=127.0.0.1", "-e", f"BENTOML_PORT={port}",
        "-e", "CREDIT_SCORING_DATABASE_URL=sqlite:////data/serving.db",
        "-e", "CREDIT_SCORING_EVENT_JOURNAL_DIR=/data/journal",
        image, check=True,
    )  # fmt: skip
    try:
        return wait_ready(port) - started
    finally:
        docker.run("rm", "-f", name, timeout=120)


def bare_start(bento: str, data: Path) -> float:
    port = free_port()
    env = {
        # the image ships compiled bytecode; let the peer keep its own too (fair comparison)
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "CREDIT_SCORING_DATABASE_URL": f"sqlite:///{data / 'serving.db'}",
        "CREDIT_SCORING_EVENT_JOURNAL_DIR": str(data / "journal-bare"),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        bentoml_serve(bento, port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return wait_ready(port) - started
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def data_folder(folder: Path, project: Path) -> Path:
    """A copy of the project's client feature store, writable by the containers' user."""
    data = folder / "data"
    data.mkdir()
    shutil.copy(project / "data/09_serving/serving.db", data / "serving.db")
    if os.geteuid() == 0:
        os.chown(data, 10001, 10001)
        os.chown(data / "serving.db", 10001, 10001)
    return data


def build_and_measure(data: Path, rounds: int) -> dict[str, Any]:
    """Both images built, then the container's and the bare service's cold starts
    (alternating: this VM's speed drifts)."""
    with engine() as docker:
        registry = docker.run("pull", "python:3.11-slim", timeout=120).returncode == 0
        base = "python:3.11-slim" if registry else local_base_image(docker)
        ca = ["--secret", f"id=ca,src={SYSTEM_CA_BUNDLE}"] if SYSTEM_CA_BUNDLE.exists() else []
        built = time.monotonic()
        docker.run(
            "build", "--network", "host", "-t", "credit-scoring-pipeline:bench",
            "--build-arg", f"BASE_IMAGE={base}", *ca, str(PROJECT_ROOT), check=True, timeout=3600,
        )  # fmt: skip
        pipeline_build = time.monotonic() - built
        built = time.monotonic()
        service = subprocess.run(
            [sys.executable, "-m", "credit_scoring.cli", "image-service", "--base-image", base,
             "--repository", "credit-scoring-service-bench",
             *(["--ca-bundle", str(SYSTEM_CA_BUNDLE)] if SYSTEM_CA_BUNDLE.exists() else [])],
            env={**docker.env, "DOCKER": " ".join(docker.client)},
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        service_build = time.monotonic() - built
        bento = json.loads(docker.run("image", "inspect", service, check=True).stdout)[0]
        bento_tag = bento["Config"]["Labels"]["io.credit-scoring.bento"]
        container, bare = [], []
        container_start(docker, service, data)  # warm-up, not timed: page cache, bytecode
        bare_start(bento_tag, data)
        for _ in range(rounds):
            container.append(container_start(docker, service, data))
            bare.append(bare_start(bento_tag, data))
        sizes = {
            name: json.loads(docker.run("image", "inspect", image, check=True).stdout)[0]["Size"]
            / 1e6
            for name, image in (("service", service), ("pipeline", "credit-scoring-pipeline:bench"))
        }
        base_mb = (
            json.loads(docker.run("image", "inspect", base, check=True).stdout)[0]["Size"] / 1e6
        )
    return {
        "base_image": base,
        "base_image_mb": round(base_mb, 1),
        "image_mb": {k: round(v, 1) for k, v in sizes.items()},
        "build_seconds": {"pipeline": round(pipeline_build, 1), "service": round(service_build, 1)},
        "service_container": container,
        "bare_bentoml_serve": bare,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=Path, default=PROJECT_ROOT, help="whose client feature store to serve"
    )
    parser.add_argument(
        "--bento",
        default="credit_scoring:latest",
        help="with --smoke: the bento to start bare (a full run serves the one in the image)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-images-") as folder:
        data = data_folder(Path(folder), args.project)
        if args.smoke:
            # Building both images takes minutes (tests/ops/test_images.py builds and runs
            # them as the cluster does): a smoke run times the bare peer once, no engine.
            images, container, bare = None, [], [bare_start(args.bento, data)]
        else:
            images = build_and_measure(data, ROUNDS)
            container, bare = images.pop("service_container"), images.pop("bare_bentoml_serve")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **(images or {"images": "not built (--smoke)"}),
        "cold_start_seconds": {
            "service_container": [round(x, 2) for x in container],
            "bare_bentoml_serve": [round(x, 2) for x in bare],
            "service_container_median": round(statistics.median(container), 2)
            if container
            else None,
            "bare_bentoml_serve_median": round(statistics.median(bare), 2),
        },
        "targets": {"service_image_mb": 700, "cold_start_seconds": 10},
    }
    print(json.dumps(results, indent=2))
    write_results(args, RESULTS, results)
    if images is None:
        return 0
    met = images["image_mb"]["service"] < 700 and statistics.median(container) < 10
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
