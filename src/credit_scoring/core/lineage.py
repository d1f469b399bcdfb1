"""Where a model comes from: the git commit and the hash of the data it was trained on."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

TRAINING_INPUT = "data/03_primary/applications_primary.parquet"
GIT_COMMIT_ENV = "CREDIT_SCORING_GIT_COMMIT"


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout, e.g. in an image)."""
    return _git("rev-parse", "HEAD")


def _dvc_lock_md5(path: str, lock: Path = Path("dvc.lock")) -> str | None:
    if not lock.exists():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == path:
                return str(out.get("md5"))
    return None


def file_md5(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lineage_tags(training_input: str = TRAINING_INPUT) -> dict[str, str]:
    """Tags for the MLflow run: git commit (and whether the tree was dirty), data hashes."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        # in an image there is no git: the build passes the commit (Dockerfile, GIT_COMMIT)
        "git_commit": git_commit() or os.environ.get(GIT_COMMIT_ENV) or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "dvc_lock_model_input_md5": _dvc_lock_md5(training_input) or "not in dvc.lock",
        "dvc_model_input_md5": file_md5(Path(training_input)) or "not on disk",
    }
    return tags
