"""The bento's installed size and the service's cold start, against the full project environment.

For one built bento (default: ``credit_scoring:latest`` of the BentoML store), two fresh
virtual environments are made with uv from the same ``uv.lock``:

- ``serving``: the bento's own requirements (the ``serving`` dependency group), what its
  image installs;
- ``full``: every runtime dependency of the project (``uv export --no-dev``), what the bento
  installed before the serving group existed.

Each environment's size on disk is measured, then the same bento is started from each one
(``bentoml serve`` on loopback) ``--rounds`` times, alternating, and the time from process
start to the first ``/readyz`` 200 is recorded. Results: ``bench/results/bento_footprint.json``.

    make bench-footprint            # after make run && make build
    python bench/bento_footprint.py --smoke [--bento TAG]  # the serving environment, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.devtools.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "bento_footprint.json"


def _uv() -> list[str]:
    return shlex.split(os.environ.get("UV", "python3 -m uv"))


def _size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def make_env(requirements: Path, target: Path) -> Path:
    subprocess.run([*_uv(), "venv", "--quiet", "--python", "3.11", str(target)], check=True)
    python = target / "bin" / "python"
    subprocess.run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
        check=True,
    )
    return target


def cold_start(env: Path, tag: str, database: str, timeout: float = 120.0) -> float:
    """Seconds from `bentoml serve` start to the first /readyz 200."""
    port = free_port()
    environ = {**os.environ, "CREDIT_SCORING_DATABASE_URL": database}
    environ.pop("PYTHONPATH", None)
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(env / "bin" / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - start < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"/readyz not 200 after {timeout} s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="credit_scoring:latest")
    parser.add_argument("--rounds", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds = 1

    import bentoml

    bento = bentoml.get(args.bento)
    tag = str(bento.tag)
    work = Path(tempfile.mkdtemp(prefix="bento-footprint-"))
    try:
        full_requirements = work / "full-requirements.txt"
        subprocess.run(
            [
                *_uv(),
                *("export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet"),
                *("-o", str(full_requirements)),
            ],
            cwd=ROOT,
            check=True,
        )
        requirements = {
            "serving": Path(bento.path) / "env" / "python" / "requirements.txt",
            "full": full_requirements,
        }
        if args.smoke:  # the full environment is ~1.7 GB to install; the code path is the same
            del requirements["full"]
        envs = {name: make_env(req, work / f"venv-{name}") for name, req in requirements.items()}
        database = f"sqlite:///{work / 'serving.db'}"
        starts: dict[str, list[float]] = {name: [] for name in envs}
        for _ in range(args.rounds):
            for name, env in envs.items():
                starts[name].append(cold_start(env, tag, database))
        result: dict[str, object] = {
            "bento": tag,
            "rounds": args.rounds,
            "environments": {
                name: {
                    "requirements": sum(
                        1
                        for line in requirements[name].read_text().splitlines()
                        if line and not line.lstrip().startswith("#")
                    ),
                    "installed_mb": round(_size_mb(env), 1),
                    "cold_start_s": [round(s, 2) for s in starts[name]],
                    "cold_start_median_s": round(statistics.median(starts[name]), 2),
                }
                for name, env in envs.items()
            },
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
    finally:  # the environments are hundreds of MB
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    write_results(args, RESULTS, result)
    return result


if __name__ == "__main__":
    main()
