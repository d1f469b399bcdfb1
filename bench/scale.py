"""Ingestion + processing at scale: pandas against Spark local[1] and local[2], same data.

For each size, the synthetic tables are generated in chunks (synthetic.chunk_applications)
into a throw-away copy of the project; then, in turn and on the same files,
`kedro run --pipelines data_ingestion,data_processing` runs on pandas (conf/base) and on Spark
(`--env spark`, spark.master local[1], then local[2]). Each run's wall time and the peak of the
summed resident memory of its whole process tree (the driver, the JVM, Spark's Python
workers) are sampled every 0.2 s. A run killed (the OOM killer, a timeout) is recorded as such.

Reported: per size and engine, wall time and peak memory; Spark's local[2] / local[1]
speed-up; the smallest measured size where Spark local[2] beats pandas (the crossover, or
"not reached"); and, labelled as an extrapolation, the wall time on N cores from Amdahl's law
fitted to the local[1] and local[2] runs. Writes bench/results/scale.json.

    uv run python bench/scale.py --sizes 300000 3000000 [--engines pandas spark1 spark2]
    uv run python bench/scale.py --smoke        # 2,000 applications, pandas and local[2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.sandbox import make_project_copy

RESULTS = PROJECT_ROOT / "bench" / "results" / "scale.json"
ENGINES = {"pandas": None, "spark1": "local[1]", "spark2": "local[2]"}
SMOKE_SIZES, SMOKE_ENGINES = [2000], ["pandas", "spark2"]
CLUSTER_CORES = (8, 32, 128)


class TreeMemory:
    """The peak of the summed RSS of a process and all its descendants, sampled."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
            except psutil.NoSuchProcess:
                return
            self.peak_mb = max(self.peak_mb, total / 2**20)
            time.sleep(self.every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_mb)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CREDIT_SCORING_", "MLFLOW_"))}
    env.update(DO_NOT_TRACK="1", KEDRO_DISABLE_TELEMETRY="1")
    return env


def generate(project: Path, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    command = [sys.executable, "-m", "credit_scoring.cli", "generate-data"]
    command += ["--n-applications", str(n), "--output-dir", str(project / "data" / "01_raw")]
    process = subprocess.Popen(command, cwd=project, env=_environment())
    memory = TreeMemory(process.pid)
    code = process.wait()
    peak = memory.stop()
    if code:
        raise SystemExit(f"generate-data failed ({code})")
    raw = project / "data" / "01_raw"
    sizes = {p.name: round(p.stat().st_size / 2**20) for p in raw.glob("*.csv")}
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_mb": peak, "files_mb": sizes}


def run_engine(project: Path, engine: str, timeout: float) -> dict[str, Any]:
    master = ENGINES[engine]
    args = ["--pipelines", "data_ingestion,data_processing"]
    if master:
        spark_yml = project / "conf" / "spark" / "spark.yml"
        settings = yaml.safe_load(spark_yml.read_text())
        settings["spark.master"] = master
        spark_yml.write_text(yaml.safe_dump(settings))
        args = ["--env", "spark", *args]
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(process.pid)
    try:
        _, stderr = process.communicate(timeout=timeout)
        status = "ok" if process.returncode == 0 else f"failed ({process.returncode})"
    except subprocess.TimeoutExpired:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        stderr, status = process.communicate()[1], f"timeout after {timeout:.0f} s"
    if process.returncode == -9:
        status = "killed (SIGKILL: the OOM killer?)"
    result = {
        "status": status,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_mb_all_processes": memory.stop(),
    }
    if status != "ok":
        result["stderr_tail"] = (stderr or "")[-1500:]
    return result


def amdahl(one: float, two: float) -> dict[str, Any]:
    """Serial share s from T1 and T2 = T1 (s + (1 - s) / 2); T(N) = T1 (s + (1 - s) / N)."""
    serial = min(max(2 * two / one - 1, 0.0), 1.0)
    return {
        "serial_share": round(serial, 3),
        "extrapolated_wall_s": {
            f"{n}_cores": round(one * (serial + (1 - serial) / n), 1) for n in CLUSTER_CORES
        },
        "label": "extrapolation from local[1] and local[2] on one machine (Amdahl), not measured",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 3_000_000])
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="per run, seconds")
    args = parser.parse_args(argv)
    sizes = SMOKE_SIZES if args.smoke else args.sizes
    engines = SMOKE_ENGINES if args.smoke else args.engines
    runs: dict[str, Any] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            project = make_project_copy(Path(folder))
            runs[str(n)] = {"generate": generate(project, n)}
            for engine in engines:
                runs[str(n)][engine] = run_engine(project, engine, args.timeout)
                print(n, engine, runs[str(n)][engine], flush=True)
    summary: dict[str, Any] = {}
    crossover = None
    for n, by_engine in runs.items():
        ok = {e: r["wall_s"] for e, r in by_engine.items() if e in ENGINES and r["status"] == "ok"}
        if "spark1" in ok and "spark2" in ok:
            summary[n] = {"speedup_local2_over_local1": round(ok["spark1"] / ok["spark2"], 2)}
            summary[n]["cluster"] = amdahl(ok["spark1"], ok["spark2"])
        spark_wins = "spark2" in ok and ("pandas" not in ok or ok["spark2"] < ok["pandas"])
        if crossover is None and spark_wins:
            crossover = int(n)
    results = {
        "runs": runs,
        "summary": summary,
        "crossover_applications": crossover or "not reached at the measured sizes",
        "targets": {"speedup_local2_over_local1": 1.6},
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
    }
    print(json.dumps(results, indent=2))
    write_results(args, RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
