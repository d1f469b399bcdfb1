"""The benchmarks' one convention for a smoke run (not a benchmark itself).

``--smoke`` runs a script's whole code path at tiny sizes, in seconds, so that a refactor
that breaks a benchmark fails a test (tests/test_bench.py runs every script this way). Its
numbers mean nothing: they go to ``--output``, by default a temporary folder, never over
the committed results in bench/results/. A full run (``make bench-*``) is unchanged.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

SMOKE_DIR = Path(tempfile.gettempdir()) / "credit-scoring-bench-smoke"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the same code path at tiny sizes, in seconds (results are not benchmarks)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results file (default: bench/results/<name>.json; with --smoke, under {SMOKE_DIR})",
    )


def output(args: argparse.Namespace, results: Path) -> Path:
    """Where this run's results go: ``--output``, else the committed file or, for a smoke
    run, a file of the same name in a temporary folder."""
    if args.output is not None:
        return Path(args.output)
    return SMOKE_DIR / results.name if args.smoke else results


def write_results(args: argparse.Namespace, results: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` (marked as a smoke run if it is one) where ``output`` says."""
    if args.smoke:
        result = {"smoke": True, **result}
    path = output(args, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {path}")
    return path
