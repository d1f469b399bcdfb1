"""The monitoring loop at its default size, timed step by step (``make monitoring-demo``).

Runs the demo (credit_scoring.devtools.demo) and writes each step's time since the first
drifted request to bench/results/monitoring_loop.json, against the targets: the alert
delivered to the trigger within 3 minutes of the first drifted request, the retraining
started within 30 s of the delivery, the new model serving within 15 minutes.

    uv run python bench/monitoring_loop.py
    uv run python bench/monitoring_loop.py --smoke   # 2,000 rows, 500 requests per phase

A smoke run is the whole loop at small sizes; it still waits for the real alerting rules
(``for: 1m``) and Alertmanager's grouping (30 s), so it takes minutes, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.demo import Demo, Sizes, missing_binaries, running

RESULTS = PROJECT_ROOT / "bench" / "results" / "monitoring_loop.json"
SMOKE_SIZES = Sizes(train_rows=2000, normal_requests=500, drifted_requests=500, window=500)


def summarise(demo: Demo, sizes: Sizes, run: dict[str, Any]) -> dict[str, Any]:
    """The loop's timings from a demo that went through every phase, against the targets
    (tests/monitoring/test_loop.py checks this on its own run: one loop serves both)."""
    origin = demo.since_first_drifted()
    assert origin is not None
    steps = {s.name: round(s.seconds - origin, 1) for s in demo.steps if s.seconds >= origin}
    delivered, started = steps["delivered"], steps["retraining started"]
    serving = steps.get("new version serving")
    return {
        "sizes": vars(sizes),
        "seconds_since_first_drifted_request": steps,
        "setup_seconds": {s.name: round(s.seconds, 1) for s in demo.steps if s.seconds < origin},
        "gate": run["detail"],
        "targets": {
            "delivered_within_s": 180,
            "retraining_started_after_delivery_within_s": 30,
            "new_model_serving_within_s": 900,
        },
        "met": delivered <= 180
        and started - delivered <= 30
        and serving is not None
        and serving <= 900,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if missing_binaries():
        print(f"missing: {missing_binaries()}", file=sys.stderr)
        return 2
    sizes = SMOKE_SIZES if args.smoke else Sizes()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        demo = Demo(Path(folder), sizes)
        with running(demo):
            demo.setup()
            demo.normal_phase()
            demo.drift_phase()
            demo.follow_alert()
            run = demo.follow_retraining()
    results = summarise(demo, sizes, run)
    print(json.dumps(results, indent=2))
    write_results(args, RESULTS, results)
    return 0 if results["met"] or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
