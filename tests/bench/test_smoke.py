"""Every benchmark in bench/ runs, at smoke size, so that a refactor cannot break one unseen.

Each script's ``--smoke`` runs its own code path at tiny sizes (bench/smoke.py) and writes its
results to a temporary file; these tests run it as `make bench-*` does (a subprocess of this
interpreter) and check what it wrote. The full runs stay manual. The scripts that need a
trained project, a bento or a running API use the session's (tests/serving_fixtures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from credit_scoring.config.loader import PROJECT_ROOT
from tests.conftest import POSTGRES_URL, require_binary

BENCH = PROJECT_ROOT / "bench"
RESULTS = BENCH / "results"
HELPERS = {"asgi_floor.py", "smoke.py"}  # served or imported by the scripts, not run
# script -> the test below that runs its smoke mode
SMOKE_TESTS = {
    "batch_scoring.py": "test_batch_scoring",
    "bento_footprint.py": "test_bento_footprint",
    "dashboard.py": "test_dashboard",
    "images.py": "test_images",
    "monitoring.py": "test_monitoring",
    "monitoring_loop.py": "test_monitoring_loop",  # its summary: tests/monitoring/test_loop.py
    "processing_home_credit.py": "test_processing",
    "serving.py": "test_serving",
    "scale.py": "test_scale",
    "training_home_credit.py": "test_training",
    "xgboost_spark.py": "test_xgboost_spark",
}


def committed_results() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in RESULTS.glob("*.json")}


def smoke(
    script: str, output: Path, *args: str, timeout: float = 900, **environ: str
) -> dict[str, Any]:
    """``python bench/<script> --smoke --output <output> ARGS``; its results, checked to be
    a smoke run's that left the committed results alone."""
    before = committed_results()
    # the session's service settings (service_module) are not the benchmark's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CREDIT_SCORING_", "MLFLOW_"))}
    env.update(environ)
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--output", str(output), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert committed_results() == before
    written = json.loads(output.read_text())
    assert written["smoke"] is True
    return dict(written)


# --- every script: imports resolve, --smoke and --output exist, a smoke test runs it ---------


@pytest.fixture
def bench_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bench/ on sys.path as when a script runs; its modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    names = {p.stem for p in BENCH.glob("*.py")}
    yield
    for name in names:
        sys.modules.pop(name, None)


def test_every_script_has_a_smoke_test() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - HELPERS
    assert scripts == set(SMOKE_TESTS), "a new bench/ script needs --smoke and a test here"
    assert all(name in globals() for name in SMOKE_TESTS.values())


@pytest.mark.parametrize("script", sorted(SMOKE_TESTS))
def test_script_imports_and_offers_smoke(
    script: str, bench_modules: None, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(Path(script).stem)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    assert "--smoke" in usage and "--output" in usage


def test_smoke_output_defaults_to_a_temporary_folder(bench_modules: None) -> None:
    smoke_module = importlib.import_module("smoke")
    parser = argparse.ArgumentParser()
    smoke_module.add_arguments(parser)
    committed = RESULTS / "serving.json"
    assert smoke_module.output(parser.parse_args([]), committed) == committed
    smoked = smoke_module.output(parser.parse_args(["--smoke"]), committed)
    assert smoked.name == "serving.json" and RESULTS not in smoked.parents


# --- the smoke runs --------------------------------------------------------------------------


@pytest.mark.integration
def test_processing(tmp_path: Path) -> None:
    out = smoke("processing_home_credit.py", tmp_path / "r.json")
    assert out["rows"]["application_train"] >= 1000
    for run in ("kedro_run_data_ingestion", "kedro_run_data_processing", "peer_in_memory_nodes"):
        assert out[run]["wall_s"] > 0
    assert out["kedro_total_over_in_memory"] > 0


@pytest.mark.integration
def test_training(tmp_path: Path) -> None:
    out = smoke("training_home_credit.py", tmp_path / "r.json")
    assert out["bare_script_s"] > 0 and out["kedro_run_data_science_s"] > 0
    assert 0.5 < out["test_auc"] <= 1 and out["business_cost"] > 0
    # the bare script and `kedro run` train the same candidates on the same rows
    assert out["kedro_run_test_auc"] == pytest.approx(out["test_auc"], abs=0.02)
    assert out["kedro_run_gate"].startswith("PROMOTED")


@pytest.mark.integration
def test_batch_scoring(tmp_path: Path, trained_project: Path) -> None:
    require_binary("java")
    out = smoke("batch_scoring.py", tmp_path / "r.json", "--project", str(trained_project))
    for engine in ("pandas", "spark_local_2"):
        assert out[engine]["scores_rows_per_s"] > 0
        assert out[engine]["max_abs_diff_vs_api_per_row"] <= 1e-9
    assert out["api_per_row"]["rows_per_s"] > 0 and out["writes_sqlite"]["events_seconds"] > 0
    assert out["targets_met"]["same_probabilities_as_api_1e-9"]


@pytest.mark.integration
def test_scale(tmp_path: Path) -> None:
    require_binary("java")
    out = smoke("scale.py", tmp_path / "r.json", timeout=1200)
    runs = out["runs"]["2000"]
    assert runs["generate"]["files_mb"] and runs["generate"]["peak_mb"] > 0
    for engine in ("pandas", "spark2"):
        assert runs[engine]["status"] == "ok", runs[engine]
        assert runs[engine]["wall_s"] > 0 and runs[engine]["peak_mb_all_processes"] > 100
    # the JVM and Spark's Python workers are counted: more memory than pandas alone
    assert runs["spark2"]["peak_mb_all_processes"] > runs["pandas"]["peak_mb_all_processes"]


@pytest.mark.integration
def test_xgboost_spark(tmp_path: Path, trained_project: Path) -> None:
    require_binary("java")
    out = smoke("xgboost_spark.py", tmp_path / "r.json", "--project", str(trained_project))
    assert out["rows"]["train"] == 1500 and out["num_workers"] <= out["task_slots"]
    assert {m["kind"] for m in out["models"].values()} == {"lightgbm", "xgboost"}
    assert all(0.5 < m["test_auc"] <= 1.0 for m in out["models"].values())


@pytest.mark.integration
def test_monitoring(tmp_path: Path) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI at {POSTGRES_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    finally:
        engine.dispose()
    out = smoke(
        "monitoring.py", tmp_path / "r.json", CREDIT_SCORING_BENCH_POSTGRES_URL=POSTGRES_URL
    )
    # every event went through the store's journal and shipper into the window read back
    assert out["events"] == out["pipeline"]["window_events"] == 500
    assert out["evidently_alone"]["current_rows"] == 500
    assert out["evidently_alone"]["reference_rows"] == out["reference_rows"] == 2000
    assert out["pipeline"]["wall_s"] > 0 and out["pipeline"]["peak_rss_mb"] > 0
    assert out["pipeline"]["dataset_drift"] is True  # the events are the drifted population


def test_monitoring_loop(bench_modules: None) -> None:
    """The loop takes minutes of real alerting: its one run is tests/monitoring/test_loop.py,
    which also checks the summary this script writes (``summarise``) and the targets'
    inputs; here, the smoke sizes stay those of a small loop."""
    import monitoring_loop

    assert monitoring_loop.SMOKE_SIZES.window == 500
    assert monitoring_loop.summarise.__module__ == "monitoring_loop"
    loop_test = (PROJECT_ROOT / "tests/monitoring/test_loop.py").read_text()
    assert "bench_summarise()(demo, SIZES, run)" in loop_test


@pytest.mark.integration
def test_serving(tmp_path: Path, trained_project: Path, bento: str) -> None:
    require_binary("wrk")
    out = smoke(
        "serving.py", tmp_path / "r.json", "--project", str(trained_project), "--bento", bento
    )
    rounds = out["median_of_rounds"]
    assert set(rounds) == {
        "api_predict",
        "api_predict_no_events",
        "api_explain",
        "mlflow_invocations",
        "asgi_floor",
    }
    assert all(r["requests_per_s"] > 0 and r["errors"] == 0 for r in rounds.values())
    assert out["targets_met"]["every_answered_decision_stored"]
    assert out["token_verification"]["hs256_first_use_us"] > 0


@pytest.mark.integration
def test_dashboard(tmp_path: Path, api_server: dict[str, Any]) -> None:
    from credit_scoring.devtools import journey

    if not Path(journey.CHROMIUM).exists():
        require_binary(Path(journey.CHROMIUM).name)
    out = smoke("dashboard.py", tmp_path / "r.json", "--api-url", api_server["url"])
    assert out["open_client"]["n"] == 2 and out["open_client"]["p50_s"] > 0
    assert out["peer_api_clients_explain"]["n"] == 2


@pytest.mark.integration
def test_bento_footprint(tmp_path: Path, bento: str) -> None:
    out = smoke("bento_footprint.py", tmp_path / "r.json", "--bento", bento)
    serving = out["environments"]["serving"]
    assert serving["installed_mb"] > 0 and serving["requirements"] > 0
    assert serving["cold_start_median_s"] > 0


@pytest.mark.integration
def test_images(tmp_path: Path, trained_project: Path, bento: str) -> None:
    """No image is built at smoke size (tests/ops/test_images.py builds and runs both)."""
    out = smoke(
        "images.py", tmp_path / "r.json", "--project", str(trained_project), "--bento", bento
    )
    assert out["cold_start_seconds"]["bare_bentoml_serve_median"] > 0
