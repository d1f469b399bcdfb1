"""How long an advisor waits: from "Open client" to the gauge, the decision and the
explanation visible in the browser (target: p95 under 1.5 s with the API on loopback).

    make bench-dashboard        # after `make run` and `make build`
    python bench/dashboard.py --smoke [--api-url URL]   # 2 clients, once (bench/smoke.py)

One run: the project's bento (`bentoml serve`, 2 workers, a copy of the project's database),
the dashboard (`streamlit run`), and Debian's Chromium driven by Playwright. The advisor
signs in, searches ("Revolving loans"), and opens the 20 listed clients one after the
other, twice. The peer, measured in the same run on the same clients: the API's own
`GET /clients/{id}/explain` from Python (what the dashboard cannot go below). Results:
bench/results/dashboard.json.
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
from pathlib import Path

import httpx
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.auth.tokens import mint_development_token
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools import journey
from serving import free_port, serve_bento, wait_ready  # bench/serving.py

RESULTS = PROJECT_ROOT / "bench" / "results" / "dashboard.json"
TARGET_P95_S = 1.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_s": round(statistics.median(seconds), 3),
        "p95_s": round(percentile(seconds, 95), 3),
        "max_s": round(max(seconds), 3),
        "mean_s": round(statistics.fmean(seconds), 3),
    }


def start_api(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The project's bento, served as bench/serving.py serves it, on a copy of its database."""
    database = PROJECT_ROOT / "data/09_serving/serving.db"
    if not database.exists():
        sys.exit("No client feature store: run `make run`, then `make build`.")
    shutil.copy(database, work / "serving.db")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_SCORING_")}
    process = serve_bento(
        "api", port, env, work, CREDIT_SCORING_DATABASE_URL=f"sqlite:///{work / 'serving.db'}"
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz", process, work / "api.log")
    return process, url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the listed clients")
    parser.add_argument("--clients", type=int, default=20, help="the first N search results")
    parser.add_argument(
        "--api-url",
        default=None,
        help="an API already serving the project's bento (default: start one on a copy of "
        "the project's database)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.clients = 1, 2
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    api, url = (None, args.api_url.rstrip("/")) if args.api_url else start_api(work)
    dashboard = journey.start_dashboard(url, free_port(), work / "dashboard.log")
    base = f"http://127.0.0.1:{dashboard.args[dashboard.args.index('--server.port') + 1]}/"
    headers = {"Authorization": f"Bearer {mint_development_token('bench', ['advisor'])}"}
    opened: list[float] = []
    api_explain: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = journey.launch(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            journey.sign_in(page, base, advisor="advisor-bench")
            journey.search(page, "NAME_CONTRACT_TYPE", "Revolving loans")
            ids = [
                c["client_id"]
                for c in httpx.get(
                    f"{url}/clients/search",
                    params=[("eq:NAME_CONTRACT_TYPE", "Revolving loans"), ("limit", args.clients)],
                    headers=headers,
                ).json()["clients"]
            ]
            for _ in range(args.rounds):
                for client_id in ids:  # the first page of results: what the advisor sees
                    opened.append(journey.open_client(page, client_id))
            with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
                for client_id in ids * args.rounds:
                    start = time.perf_counter()
                    client.get(f"/clients/{client_id}/explain").raise_for_status()
                    api_explain.append(time.perf_counter() - start)
            browser.close()
    finally:
        for process in (dashboard, api):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
    steady = opened[1:]  # the first open also loads the charting library into the page
    result = {
        "benchmark": "dashboard",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "browser": journey.CHROMIUM,
        "measure": "seconds from clicking 'Open client' to the gauge, the decision and the "
        "explanation drawn (Playwright, same page, one client after the other)",
        "first_open_s": round(opened[0], 3),
        "open_client": summary(opened),
        "open_client_after_first": summary(steady),
        "peer_api_clients_explain": summary(api_explain),
        "dashboard_overhead_p50_s": round(
            statistics.median(opened) - statistics.median(api_explain), 3
        ),
        "target": {"p95_s": TARGET_P95_S, "met": percentile(opened, 95) < TARGET_P95_S},
        "samples_s": [round(s, 3) for s in opened],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples_s"}, indent=2))
    write_results(args, RESULTS, result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
