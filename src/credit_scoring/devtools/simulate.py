"""Simulated production: traffic to a running scoring service, then the loans' outcomes.

    credit-scoring simulate traffic --requests 2000          # normal
    credit-scoring simulate traffic --requests 2000 --drift  # drifted
    credit-scoring simulate outcomes                         # labels

``traffic`` draws applicants from the synthetic generator (``--drift``: its shifted
population), builds each request as the API expects it (the contract's columns and the
per-client bureau aggregates, computed by the same code as in training) and sends them to
``/predict``, with a progress bar. The generator knows each applicant's true outcome: it is
kept, with the ``request_id`` the API returned, in ``data/09_serving/simulated_truth.csv``
(request ids and labels only, nothing personal). ``outcomes`` turns that file into an outcome
file, as the loan system would months later, and loads it (``monitoring.outcomes``).
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from credit_scoring.auth.tokens import bearer
from credit_scoring.storage.database import database_url, utc_now
from credit_scoring.training.applications import population

TRUTH_FILE = "data/09_serving/simulated_truth.csv"
OUTCOMES_DIR = "data/09_serving/outcomes"


def send(
    url: str,
    records: list[dict[str, Any]],
    truth: np.ndarray,
    concurrency: int,
    timeout: float = 10.0,
    progress: bool = True,
    token: str | None = None,
) -> tuple[list[tuple[str, int]], Counter[str]]:
    """POST each record to ``/predict``; returns (request_id, true outcome) of the answered
    ones and a count of the outcomes (200, 422 with the field, errors). The bearer token:
    ``token``, else ``CREDIT_SCORING_API_TOKEN``, else a development token (role scoring)."""
    from rich.progress import Progress

    answered: list[tuple[str, int]] = []
    counts: Counter[str] = Counter()
    headers = bearer(token, subject="traffic-simulator")
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:

        def one(i: int) -> tuple[int, httpx.Response | None]:
            try:
                return i, client.post("/predict", json={"application": records[i]})
            except httpx.HTTPError:
                return i, None

        with (
            ThreadPoolExecutor(concurrency) as pool,
            Progress(disable=not progress, transient=True) as bar,
        ):
            task = bar.add_task(f"POST {url}/predict", total=len(records))
            for i, response in pool.map(one, range(len(records))):
                bar.advance(task)
                if response is None:
                    counts["connection error"] += 1
                elif response.status_code == 200:
                    counts["200"] += 1
                    answered.append((response.json()["request_id"], int(truth[i])))
                else:
                    counts[f"{response.status_code} {_reason(response)}"] += 1
    return answered, counts


def _reason(response: httpx.Response) -> str:
    """The first refused field and its rule, e.g. ``(application.OCCUPATION_TYPE: enum)``."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return ""
    if errors and isinstance(errors[0], dict):
        return f"({errors[0].get('field')}: {errors[0].get('rule')})"
    return ""


def append_truth(path: Path, answered: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["request_id", "defaulted"])
        writer.writerows(answered)


def write_outcomes(truth_path: Path, out_dir: Path, share: float, seed: int) -> Path:
    """An outcome file for a share of the answered requests (observed now)."""
    truth = pd.read_csv(truth_path, dtype={"request_id": str})
    rng = np.random.default_rng(seed)
    picked = truth[rng.random(len(truth)) < share]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"outcomes-{time.strftime('%Y%m%dT%H%M%S')}.csv"
    picked.assign(observed_at=utc_now().isoformat(timespec="seconds"))[
        ["request_id", "observed_at", "defaulted"]
    ].to_csv(path, index=False)
    return path


def simulate_traffic(
    project: Path,
    url: str = "http://127.0.0.1:3000",
    requests: int = 2000,
    seed: int | None = None,
    drift: bool = False,
    concurrency: int = 8,
) -> int:
    """Send ``requests`` applications of the generator's population (``drift``: the shifted
    one; ``seed``: default a new one each time) to ``url`` and keep their true outcomes in
    ``project``. Returns the exit code (1: no request was answered)."""
    project = project.resolve()
    seed = seed if seed is not None else int(time.time()) % 100_000
    records, truth = population(project, requests, seed, drift)
    started = time.perf_counter()
    answered, counts = send(url, records, truth, concurrency)
    elapsed = time.perf_counter() - started
    append_truth(project / TRUTH_FILE, answered)
    kind = "drifted" if drift else "normal"
    print(
        f"{len(records)} {kind} applications sent in {elapsed:.1f} s "
        f"({len(records) / max(elapsed, 1e-9):.0f}/s): "
        + ", ".join(f"{k}: {v}" for k, v in counts.most_common())
    )
    return 0 if counts["200"] else 1


def simulate_outcomes(
    project: Path, share: float = 1.0, seed: int = 0, url: str | None = None
) -> int:
    """Write the outcomes of a ``share`` of the simulated requests of ``project`` and load
    them into database ``url`` (default: the project's). Returns the exit code (2: no
    traffic was sent)."""
    from credit_scoring.monitoring.outcomes import load_file

    project = project.resolve()
    truth_path = project / TRUTH_FILE
    if not truth_path.exists():
        print(f"No {TRUTH_FILE}: send traffic first (make simulate-traffic).", file=sys.stderr)
        return 2
    path = write_outcomes(truth_path, project / OUTCOMES_DIR, share, seed)
    total, new = load_file(path, url or database_url(project))
    print(f"Wrote {path} ({total} outcomes) and loaded it: {new} new.")
    return 0
