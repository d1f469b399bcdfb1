"""deploy/rollout.sh, what the deploy workflow runs, against stand-ins for kubectl and uv.

No cluster can run here: `kubectl`, `kustomize` and `uv` are replaced by scripts that record
their arguments and answer as a cluster would (the smoke test's exit code is chosen per
test). What is checked is the script's own logic: the order of the steps, the images set
by digest, the rollback of every Deployment and of the CronJob's image when the rollout or
the smoke test fails, and that the kubeconfig stays private.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from credit_scoring.config.loader import PROJECT_ROOT

SERVICE = "ghcr.io/acme/credit-scoring-service@sha256:" + "a" * 64
PIPELINE = "ghcr.io/acme/credit-scoring-pipeline@sha256:" + "b" * 64
SPARK = "ghcr.io/acme/credit-scoring-pipeline-spark@sha256:" + "d" * 64
PREVIOUS_DRIFT = "ghcr.io/acme/credit-scoring-pipeline@sha256:" + "c" * 64
PREVIOUS_SPARK = "ghcr.io/acme/credit-scoring-pipeline-spark@sha256:" + "e" * 64
KUBECONFIG = "apiVersion: v1\nkind: Config\n# secret-token-that-must-not-be-printed\n"
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  *port-forward*) exec sleep 30 ;;
  "kubectl "*"get cronjob credit-scoring-spark-processing"*) echo -n "$PREVIOUS_SPARK" ;;
  "kubectl "*"get cronjob"*) echo -n "$PREVIOUS_DRIFT" ;;
  "kubectl "*"apply -k"*) exit "${APPLY_RC:-0}" ;;
  "uv "*smoke*) exit "${SMOKE_RC:-0}" ;;
esac
exit 0
"""


def rollout(tmp_path: Path, **codes: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "deploy", project / "deploy")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("kubectl", "kustomize", "uv"):
        path = bin_dir / name
        path.write_text(STAND_IN)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "PREVIOUS_DRIFT": PREVIOUS_DRIFT,
        "PREVIOUS_SPARK": PREVIOUS_SPARK,
        "KUBECONFIG_DATA": KUBECONFIG,
        "SERVICE_IMAGE": SERVICE,
        "PIPELINE_IMAGE": PIPELINE,
        "PIPELINE_SPARK_IMAGE": SPARK,
        "RUNNER_TEMP": str(runner_temp),
        **codes,
    }
    result = subprocess.run(
        ["bash", "deploy/rollout.sh", "staging", "credit-scoring-staging"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    kubeconfig = runner_temp / "kubeconfig"
    assert kubeconfig.read_text() == KUBECONFIG
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "secret-token" not in result.stdout + result.stderr
    return result, calls.read_text().splitlines()


def test_a_good_rollout_sets_the_digests_applies_waits_and_smoke_tests(tmp_path):
    result, calls = rollout(tmp_path)
    assert result.returncode == 0, result.stderr
    edit = (
        f"kustomize edit set image credit-scoring-service={SERVICE} "
        f"credit-scoring-pipeline={PIPELINE} credit-scoring-pipeline-spark={SPARK}"
    )
    assert edit in calls
    apply = calls.index("kubectl apply -k .")
    assert calls.index(edit) < apply
    waited = [c for c in calls if "rollout status" in c]
    assert len(waited) == 3 and all(calls.index(c) > apply for c in waited)
    smoke = [c for c in calls if c.startswith("uv ") and "smoke" in c]
    assert smoke and calls.index(smoke[0]) > calls.index(waited[-1])
    assert not [c for c in calls if "rollout undo" in c]


@pytest.mark.parametrize("failure", [{"SMOKE_RC": "1"}, {"APPLY_RC": "1"}])
def test_a_failed_smoke_test_or_apply_rolls_everything_back(tmp_path, failure):
    result, calls = rollout(tmp_path, **failure)
    assert result.returncode == 1
    assert "rolling back" in result.stdout + result.stderr
    undone = {c.split()[-1] for c in calls if "rollout undo" in c}
    assert undone == {
        "deployment/credit-scoring-service",
        "deployment/credit-scoring-trigger",
        "deployment/credit-scoring-mlflow",
    }
    kubectl = "kubectl -n credit-scoring-staging"
    assert f"{kubectl} set image cronjob/credit-scoring-drift monitoring={PREVIOUS_DRIFT}" in calls
    assert (
        f"{kubectl} set image cronjob/credit-scoring-batch-scoring batch-scoring={PREVIOUS_DRIFT}"
    ) in calls
    # the Spark driver and its executors go back to the same previous image
    assert (
        f"{kubectl} set image cronjob/credit-scoring-spark-processing driver={PREVIOUS_SPARK}"
    ) in calls
    assert (
        f"{kubectl} set env cronjob/credit-scoring-spark-processing -c driver "
        f"SPARK_EXECUTOR_IMAGE={PREVIOUS_SPARK}"
    ) in calls
