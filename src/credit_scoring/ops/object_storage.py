"""The project's object store (S3 or an S3-compatible one): its settings, a preflight check,
and the DVC remote written from them.

Everything comes from the environment, under the names DVC, MLflow and boto3 read
themselves, so the repository holds no bucket, endpoint or key:

- ``CREDIT_SCORING_S3_BUCKET``: the bucket (DVC's data under ``dvc/``, MLflow's under
  ``mlflow/``);
- ``AWS_ENDPOINT_URL`` (or ``MLFLOW_S3_ENDPOINT_URL``): an S3-compatible store; unset: AWS;
- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``: unset, boto3's usual chain (a profile,
  an instance or pod role) decides.

``check`` asks the store once and turns its refusals into sentences that name the setting
to change; ``configure_dvc_remote`` writes ``.dvc/config.local`` (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

BUCKET_ENV = "CREDIT_SCORING_S3_BUCKET"
DVC_PREFIX, MLFLOW_PREFIX = "dvc", "mlflow"
DVC_REMOTE = "s3"
# S3's bucket naming rules (3-63 characters; lowercase letters, digits, dots and hyphens).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class ObjectStoreError(RuntimeError):
    """The store cannot be used as configured; the message names the setting and the fix."""


class ObjectStoreSettings(BaseSettings):
    # a CI secret that is not set arrives as an empty string: unset, not a malformed value
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    bucket: str | None = Field(None, validation_alias=BUCKET_ENV, pattern=BUCKET_PATTERN)
    endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"),
        pattern=r"^https?://",
        description="an S3-compatible store; unset: AWS itself",
    )
    access_key_id: str | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")
    region: str = Field(
        "us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    def where(self) -> str:
        return self.endpoint_url or "AWS S3"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=(
                self.secret_access_key.get_secret_value() if self.secret_access_key else None
            ),
            region_name=self.region,
            # a preflight answers in seconds: no long retry loop on a store that is down
            config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}),
        )


def load_settings() -> ObjectStoreSettings:
    """The settings from the environment; a malformed value is named with its variable."""
    try:
        return ObjectStoreSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise ObjectStoreError(
            f"Object store settings are invalid ({problems}). "
            f"{BUCKET_ENV} is a bucket name (3-63 lowercase letters, digits, '.', '-'); "
            "AWS_ENDPOINT_URL starts with http:// or https://."
        ) from None


@dataclass(frozen=True)
class CheckResult:
    endpoint: str
    bucket: str
    objects_seen: int


# S3 error codes in words: what is wrong and which setting fixes it.
REFUSALS = {
    "SignatureDoesNotMatch": (
        "{where} refused the secret of access key {key} (AWS_SECRET_ACCESS_KEY does not match "
        "AWS_ACCESS_KEY_ID): set the secret issued with that key"
    ),
    "InvalidAccessKeyId": (
        "{where} does not know access key {key} (AWS_ACCESS_KEY_ID): set a key of this store"
    ),
    "NoSuchBucket": (
        "bucket '{bucket}' does not exist at {where} ({bucket_env}): create it "
        "(`aws s3 mb s3://{bucket}`, or your store's console) or set {bucket_env} to an "
        "existing bucket"
    ),
    "AccessDenied": (
        "access key {key} may not list bucket '{bucket}' at {where}: grant it s3:ListBucket, "
        "s3:GetObject and s3:PutObject on the bucket"
    ),
}


def check(settings: ObjectStoreSettings | None = None) -> CheckResult:
    """List one object of the bucket: the endpoint answers, the key and secret are accepted,
    the bucket exists and may be read. Raises ``ObjectStoreError`` otherwise."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    settings = settings or load_settings()
    if not settings.bucket:
        raise ObjectStoreError(
            f"{BUCKET_ENV} is not set: export the bucket that holds the DVC remote and "
            "MLflow's artifacts (`make object-store` prints it for the local store)."
        )
    values = {
        "where": settings.where(),
        "bucket": settings.bucket,
        "bucket_env": BUCKET_ENV,
        "key": settings.access_key_id or "(from boto3's credential chain)",
    }
    try:
        listing = settings.client().list_objects_v2(Bucket=settings.bucket, MaxKeys=1)
    except EndpointConnectionError:
        raise ObjectStoreError(
            f"Cannot reach the object store at {settings.where()} (AWS_ENDPOINT_URL): is it "
            "running and is the address right? (`make object-store` starts a local one)"
        ) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise ObjectStoreError(
            "No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or a profile / role boto3 finds)."
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "unknown"))
        template = REFUSALS.get(code)
        if template is None:
            message = f"{settings.where()} refused to list bucket '{settings.bucket}': {code}"
            raise ObjectStoreError(f"{message} ({error.get('Message', '')})") from None
        raise ObjectStoreError(template.format(**values) + ".") from None
    return CheckResult(settings.where(), settings.bucket, int(listing.get("KeyCount", 0)))


def dvc_remote_url(bucket: str) -> str:
    return f"s3://{bucket}/{DVC_PREFIX}"


def mlflow_artifacts_destination(bucket: str) -> str:
    return f"s3://{bucket}/{MLFLOW_PREFIX}"


def configure_dvc_remote(project: Path, settings: ObjectStoreSettings | None = None) -> list[str]:
    """Check the store, then make ``s3://<bucket>/dvc`` the project's default DVC remote in
    ``.dvc/config.local`` (git-ignored; the committed ``.dvc/config`` keeps the local folder
    remote). The keys stay in the environment. Returns the DVC commands run."""
    settings = settings or load_settings()
    check(settings)
    assert settings.bucket  # check() refused an unset bucket
    dvc = [sys.executable, "-m", "dvc", "remote"]
    commands = [
        [
            *dvc,
            "add",
            "--local",
            "--force",
            "--default",
            DVC_REMOTE,
            dvc_remote_url(settings.bucket),
        ]
    ]
    if settings.endpoint_url:
        commands.append(
            [*dvc, "modify", "--local", DVC_REMOTE, "endpointurl", settings.endpoint_url]
        )
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    for command in commands:
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True, text=True)
    return [" ".join(["dvc", *command[4:]]) for command in commands]
