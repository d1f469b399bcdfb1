"""Serving throughput and latency: this API against MLflow's server and a bare ASGI floor.

One run, one machine, one model (the registered champion), one load generator (wrk, on
loopback, fixed concurrency and duration). Targets, all up at once and measured in
interleaved rounds (this VM's speed drifts between minutes; medians of rounds are reported):
  1. the bento's POST /predict (`bentoml serve`, events journaled then stored in SQLite),
  2. the same with event logging off (the cost of the events),
  3. the bento's POST /explain,
  4. `mlflow models serve --env-manager local` on models:/<name>@champion (the peer),
  5. a bare ASGI app returning a constant (uvicorn; the HTTP floor of this machine).
Writes bench/results/serving.json.

    make bench-serving          # after `make run`; needs wrk (apt-get install wrk)
    python bench/serving.py --smoke [--project DIR] [--bento TAG]    # 1 s per target, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.auth.tokens import mint_development_token
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.processes import bentoml_serve, free_port

RESULTS = PROJECT_ROOT / "bench" / "results" / "serving.json"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local f = io.open("{body}"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  for _, p in pairs({{50, 90, 95, 99, 99.9}}) do
    io.write(string.format("P%g %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("REQ %d\\nERR %d\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout))
end
"""


def verification_cost(repeat: int = 2000) -> dict[str, float]:
    """Microseconds per token verification, in this process: the development key (HS256)
    and an RS256 key served as a JWKS by a local HTTP server (cached, as in production)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from credit_scoring.auth.tokens import AuthSettings, Verifier
    from credit_scoring.devtools.jwks import serve_jwks

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_url, server = serve_jwks(key.public_key(), "k")
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": "s", "roles": ["scoring"], "iat": now}
    rs = Verifier(AuthSettings(jwks_url=jwks_url, issuer="i", audience="a"))
    rs_token = jwt.encode(
        {**claims, "exp": now + 600}, key, algorithm="RS256", headers={"kid": "k"}
    )
    hs = Verifier(AuthSettings())
    hs_token = mint_development_token("bench", ["scoring"])
    out = {}
    for name, verifier, token in (("hs256", hs, hs_token), ("rs256_jwks", rs, rs_token)):
        verifier.verify(token)  # the JWKS fetch happens once, here
        start = time.perf_counter()
        for _ in range(repeat):
            verifier._verify(token)  # the whole check: what a token's first request costs
        out[f"{name}_first_use_us"] = round((time.perf_counter() - start) / repeat * 1e6, 1)
        start = time.perf_counter()
        for _ in range(repeat):
            verifier.verify(token)  # the same token again: remembered until it expires
        out[f"{name}_again_us"] = round((time.perf_counter() - start) / repeat * 1e6, 2)
    server.shutdown()
    return out


def verification_share(
    verification: dict[str, float], requests_per_s: float, workers: int
) -> float:
    """The share of one /predict's server time (the workers saturated) that checking a new
    token takes."""
    per_request_us = 1e6 * workers / requests_per_s
    return round(verification["hs256_first_use_us"] / per_request_us, 4)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} died:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def start(name: str, cmd: list[str], env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    log = (work / f"{name}.log").open("w")
    return subprocess.Popen(
        cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def serve_bento(
    name: str,
    port: int,
    env: dict[str, str],
    work: Path,
    bento: str = "credit_scoring:latest",
    **settings: str,
) -> subprocess.Popen[bytes]:
    """`bentoml serve` of a bento (the latest by default), with service settings
    (CREDIT_SCORING_*)."""
    return start(name, bentoml_serve(bento, port), {**env, **settings}, work)


def wrk(url: str, body: Path, seconds: int, connections: int, work: Path) -> dict[str, Any]:
    script = work / f"{body.stem}.lua"
    # every target gets the same header; the API verifies it (a development token, HS256)
    token = mint_development_token("bench-serving", ["scoring"], minutes=180)
    script.write_text(LUA.format(body=body, token=token))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    pct = {m[0]: int(m[1]) / 1000 for m in re.findall(r"^P([\d.]+) (\d+)$", out, re.M)}
    requests = int(re.search(r"^REQ (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"^ERR (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "requests_per_s": rps,
        "p50_ms": pct["50"],
        "p90_ms": pct["90"],
        "p95_ms": pct["95"],
        "p99_ms": pct["99"],
        "p999_ms": pct["99.9"],
        "requests": requests,
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
    }


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["requests_per_s", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms"]
    out = {k: round(statistics.median(r[k] for r in rounds), 2) for k in keys}
    out["errors"] = sum(r["errors"] for r in rounds)
    out["requests"] = sum(r["requests"] for r in rounds)
    return out


def bento_spec(bento: str) -> dict[str, Any]:
    """The serving spec of the model that ``bento`` serves (of the current BentoML store)."""
    import bentoml

    (model,) = (m.tag for service in bentoml.get(bento).info.services for m in service.models)
    return dict(
        json.loads((Path(bentoml.models.get(model).path) / "serving_spec.json").read_text())
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="per round and target")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server processes per target")
    parser.add_argument(
        "--verification-only",
        action="store_true",
        help="only measure token verification and update that part of the results file",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=PROJECT_ROOT,
        help="the trained project: its MLflow store (the champion) and client feature store",
    )
    parser.add_argument(
        "--bento",
        default=None,
        help="serve this bento of the current BentoML store (default: package the project's "
        "champion in a throw-away store, as `make build` does)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    warm_up_seconds, repeat = 3, 2000
    if args.smoke:
        args.seconds, args.rounds, args.workers, warm_up_seconds, repeat = 1, 1, 1, 1, 50
    project = args.project.resolve()
    if args.verification_only:
        result = json.loads(RESULTS.read_text())
        result["token_verification"] = verification_cost(repeat)
        result["token_verification_measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
        result["ratios"]["token_first_use_share_of_predict"] = verification_share(
            result["token_verification"],
            result["median_of_rounds"]["api_predict"]["requests_per_s"],
            args.workers,
        )
        write_results(args, RESULTS, result)
        print(result["token_verification"], result["ratios"])
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    mlflow_db = project / "mlflow.db"
    if not mlflow_db.exists():
        sys.exit("No MLflow store: run `make run` first (it trains and promotes a champion).")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",  # mlflow models serve calls uvicorn
        # `make build`'s uv, found before the venv's bin/ (which has no uv) comes first
        UV=os.environ.get("UV") or shutil.which("uv") or "python3 -m uv",
        BENTOML_DO_NOT_TRACK="True",
        DO_NOT_TRACK="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{mlflow_db}",
        CREDIT_SCORING_WORKERS=str(args.workers),
    )
    bento = args.bento or "credit_scoring:latest"
    if args.bento:
        spec = bento_spec(args.bento)
    else:
        # the bento, exactly as `make build` makes it, in a throw-away BentoML store
        env["BENTOML_HOME"] = str(work / "bentoml")
        subprocess.run(
            [sys.executable, "-m", "credit_scoring.cli", "build", "--project", str(project)],
            env=env,
            check=True,
            cwd=PROJECT_ROOT,
        )
        spec_path = next((work / "bentoml/models/credit_scoring").glob("*/serving_spec.json"))
        spec = json.loads(spec_path.read_text())

    # one real application: a client from the feature store (same body for every target)
    from credit_scoring.core.spec import ServingSpec, json_records
    from credit_scoring.storage.clients import CLIENT_FEATURES_TABLE
    from credit_scoring.storage.database import database_url

    serving = ServingSpec.model_validate(spec)
    url = database_url(project)
    db_url = (
        url
        if "://" in url and not url.startswith("sqlite:///data")
        else (f"sqlite:///{project / url.removeprefix('sqlite:///')}")
    )
    features = pd.read_sql_table(CLIENT_FEATURES_TABLE, db_url).head(1)
    record = json_records(features, serving.request_columns())[0]
    (work / "predict.json").write_text(json.dumps({"application": record}))
    # MLflow's server takes the model's own input: the processed row (category codes)
    transformer = serving.transformer()
    row = transformer.vector(record)[0]
    mlflow_body = {
        "dataframe_split": {
            "columns": serving.features,
            "data": [[None if v != v else float(v) for v in row]],
        }
    }
    (work / "mlflow.json").write_text(json.dumps(mlflow_body))

    ports = {name: free_port() for name in ("bento", "bento_no_events", "mlflow", "floor")}
    events_db = work / "events.db"
    procs = {
        "bento": serve_bento(
            "bento",
            ports["bento"],
            env,
            work,
            bento,
            CREDIT_SCORING_DATABASE_URL=f"sqlite:///{events_db}",
        ),
        "bento_no_events": serve_bento(
            "bento_no_events",
            ports["bento_no_events"],
            env,
            work,
            bento,
            CREDIT_SCORING_LOG_EVENTS="false",
            CREDIT_SCORING_DATABASE_URL=f"sqlite:///{work / 'no-events.db'}",
        ),
        "mlflow": start(
            "mlflow",
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{serving.model_name}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(ports["mlflow"]),
                "--workers",
                str(args.workers),
            ],
            env,
            work,
        ),
        "floor": start(
            "floor",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "asgi_floor:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["floor"]),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            dict(env, PYTHONPATH=str(PROJECT_ROOT / "bench")),
            work,
        ),
    }
    try:
        for name, path in (
            ("bento", "/readyz"),
            ("bento_no_events", "/readyz"),
            ("mlflow", "/ping"),
            ("floor", "/"),
        ):
            wait_ready(f"http://127.0.0.1:{ports[name]}{path}", procs[name], work / f"{name}.log")
        shutil.copy(work / "predict.json", work / "explain.json")
        targets = {
            "api_predict": (f"http://127.0.0.1:{ports['bento']}/predict", work / "predict.json"),
            "api_predict_no_events": (
                f"http://127.0.0.1:{ports['bento_no_events']}/predict",
                work / "predict.json",
            ),
            "api_explain": (f"http://127.0.0.1:{ports['bento']}/explain", work / "explain.json"),
            "mlflow_invocations": (
                f"http://127.0.0.1:{ports['mlflow']}/invocations",
                work / "mlflow.json",
            ),
            "asgi_floor": (f"http://127.0.0.1:{ports['floor']}/", work / "predict.json"),
        }
        warm_up = {}
        for name, (target, body) in targets.items():
            warm_up[name] = wrk(target, body, warm_up_seconds, args.connections, work)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        order = list(targets)
        for r in range(args.rounds):
            # alternate which of the two /predict servers goes first (this VM drifts)
            if r % 2:
                order[0], order[1] = order[1], order[0]
            for name in order:
                target, body = targets[name]
                result = wrk(target, body, args.seconds, args.connections, work)
                rounds[name].append(result)
                print(f"round {r + 1} {name}: {result}", flush=True)
    finally:
        for process in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in procs.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    summary = {name: median_of(rs) for name, rs in rounds.items()}
    stored = pd.read_sql_query(
        "SELECT count(*) AS n FROM prediction_events", f"sqlite:///{events_db}"
    )
    answered = sum(
        r["requests"] - r["errors"]
        for name in ("api_predict", "api_explain")
        for r in [*rounds[name], warm_up[name]]
    )
    api, peer, floor = summary["api_predict"], summary["mlflow_invocations"], summary["asgi_floor"]
    no_events = summary["api_predict_no_events"]
    ratios = {
        "api_vs_mlflow_requests_per_s": round(api["requests_per_s"] / peer["requests_per_s"], 2),
        "api_vs_floor_requests_per_s": round(api["requests_per_s"] / floor["requests_per_s"], 3),
        "event_logging_throughput_cost": round(
            1
            - statistics.median(
                a["requests_per_s"] / b["requests_per_s"]
                for a, b in zip(rounds["api_predict"], rounds["api_predict_no_events"], strict=True)
            ),
            3,
        ),
    }
    targets_met = {
        "predict_at_least_15x_mlflow": ratios["api_vs_mlflow_requests_per_s"] >= 15,
        "predict_p99_at_most_10ms": api["p99_ms"] <= 10,
        "explain_p99_at_most_50ms": summary["api_explain"]["p99_ms"] <= 50,
        "event_logging_cost_at_most_10pct": ratios["event_logging_throughput_cost"] <= 0.10,
        "zero_errors": all(s["errors"] == 0 for s in summary.values()),
        # every answered /predict and /explain of the events server is in its database
        "every_answered_decision_stored": int(stored["n"].iloc[0]) >= answered,
    }
    verification = verification_cost(repeat)
    ratios["token_first_use_share_of_predict"] = verification_share(
        verification, api["requests_per_s"], args.workers
    )
    result = {
        "benchmark": "serving",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {
            "name": serving.model_name,
            "version": serving.model_version,
            "candidate": serving.candidate,
            "features": len(serving.features),
        },
        "load": {
            "tool": "wrk -t2",
            "connections": args.connections,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "server_workers": args.workers,
        },
        "median_of_rounds": summary,
        "token_verification": verification,
        "ratios": ratios,
        "targets_met": targets_met,
        "events_stored_by_api_predict_server": int(stored["n"].iloc[0]),
        "decisions_answered_by_api_predict_server": answered,
        "no_events_baseline_p99_ms": no_events["p99_ms"],
        "rounds": rounds,
    }
    print(
        json.dumps({k: result[k] for k in ("median_of_rounds", "ratios", "targets_met")}, indent=2)
    )
    write_results(args, RESULTS, result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
