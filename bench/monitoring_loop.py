"""The monitoring loop at its default size, timed step by step (``make monitoring-demo``).

Runs the demo (credit_scoring.devtools.demo) and writes each step's time since the first
drifted request to bench/results/monitoring_loop.json, against the targets: the alert
delivered to the trigger within 3 minutes of the first drifted request, the retraining
started within 30 s of the delivery, the new model serving within 15 minutes.

    uv run python bench/monitoring_loop.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.demo import Demo, Sizes, missing_binaries, running

RESULTS = PROJECT_ROOT / "bench" / "results" / "monitoring_loop.json"


def main() -> int:
    if missing_binaries():
        print(f"missing: {missing_binaries()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        demo = Demo(Path(folder), Sizes())
        with running(demo):
            demo.setup()
            demo.normal_phase()
            demo.drift_phase()
            demo.follow_alert()
            run = demo.follow_retraining()
    origin = demo.since_first_drifted()
    assert origin is not None
    steps = {s.name: round(s.seconds - origin, 1) for s in demo.steps if s.seconds >= origin}
    delivered, started = steps["delivered"], steps["retraining started"]
    serving = steps.get("new version serving")
    results = {
        "sizes": vars(Sizes()),
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
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
