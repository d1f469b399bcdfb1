"""The project's commands: ``credit-scoring --help`` (also listed by ``kedro --help``).

Kedro imports this module on every ``kedro`` command (it adds these commands to its own), so
it imports click only: each command imports its implementation when it runs. A default
that lives in the implementation (a path, a size) is left to it: the option's default is
None, and ``_given`` passes only what was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

PATH = click.Path(path_type=Path)
ROLES = ("advisor", "scoring")  # auth/tokens.py's ROLES (a test checks they are the same)


def _given(**options: Any) -> dict[str, Any]:
    """The options that were given, so that the implementation's defaults apply."""
    return {name: value for name, value in options.items() if value is not None}


def _exit(code: int) -> None:
    """End with the implementation's exit code (click exits 0 whatever a command returns)."""
    if code:
        click.get_current_context().exit(code)


@click.group(name="credit-scoring", context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Credit scoring: the project's own commands (Kedro runs the pipelines)."""


# --- data and training ------------------------------------------------------------------------


@cli.command("generate-data")
@click.option("--params", type=PATH, help="default: conf/base/parameters_synthetic.yml")
@click.option("--n-applications", type=int, help="default: the parameters file's")
@click.option("--seed", type=int, help="default: the parameters file's")
@click.option("--output-dir", help="default: the parameters file's")
@click.option("--drift", is_flag=True, help="the shifted population")
def generate_data(
    params: Path | None,
    n_applications: int | None,
    seed: int | None,
    output_dir: str | None,
    drift: bool,
) -> None:
    """Write the synthetic raw tables (seeded)."""
    from credit_scoring.training import synthetic

    synthetic.generate_data(
        **_given(params_file=params, n_applications=n_applications, seed=seed),
        **_given(output_dir=output_dir, drift=drift or None),  # no flag: the file decides
    )


@cli.command("dvc-stages")
@click.option("--env", help="Kedro configuration environment")
@click.option("--check", is_flag=True, help="fail if dvc.yaml is out of date")
@click.option("--output", type=PATH, help="default: the project's dvc.yaml")
def dvc_stages(env: str | None, check: bool, output: Path | None) -> None:
    """Rewrite dvc.yaml and train.yml's paths from conf/."""
    from credit_scoring.ops import dvc_stages as stages

    stale = stages.write_stages(env, check, **_given(output=output))
    for path in stale:
        if check:
            click.echo(f"{path} is out of date: run `make dvc-stages`.", err=True)
        else:
            click.echo(f"Wrote {path}")
    if not stale and not check:
        click.echo("dvc.yaml is up to date")
    _exit(1 if check and stale else 0)


# --- the scoring service ---------------------------------------------------------------------


@cli.command("build")
@click.option("--env", help="Kedro configuration environment")
@click.option("--no-build", is_flag=True, help="import the model only")
@click.option(
    "--alias",
    default="champion",
    show_default=True,
    help="registry alias to package (deploy/k8s/overlays/*/release.env: MODEL_ALIAS)",
)
@click.option("--project", type=PATH, help="project folder (conf/, data/); default: this one")
def build(env: str | None, no_build: bool, alias: str, project: Path | None) -> None:
    """Import a registry model into BentoML; build the bento."""
    from credit_scoring.ops import packaging

    tag = packaging.package(env, alias, build=not no_build, **_given(project=project))
    if tag:
        click.echo(tag)


@cli.command("token")
@click.option(
    "--role", type=click.Choice(ROLES), multiple=True, required=True, help="repeat for several"
)
@click.option("--sub", required=True, help="who the token speaks for")
@click.option("--minutes", type=int, help="until it expires (default: the configured lifetime)")
def token(role: tuple[str, ...], sub: str, minutes: int | None) -> None:
    """Print a short-lived development token for the API."""
    from credit_scoring.auth import tokens

    try:
        click.echo(tokens.mint_development_token(sub, list(role), minutes=minutes))
    except ValueError as exc:
        click.echo(f"make token: {exc}", err=True)
        _exit(2)


@cli.command("purge-events")
@click.option("--days", type=int, help="override retention_days")
@click.option("--env", help="Kedro configuration environment")
def purge_events(days: int | None, env: str | None) -> None:
    """Delete events and audit records past their retention."""
    from credit_scoring.ops import retention

    retention.purge(days, env)


@cli.command("smoke")
@click.option("--url", default="http://127.0.0.1:3000", show_default=True)
@click.option("--wait", type=float, default=60, show_default=True, help="seconds for /readyz")
def smoke(url: str, wait: float) -> None:
    """Check that a running scoring API answers and scores."""
    from credit_scoring.ops import smoke as checks

    _exit(checks.smoke(url, wait))


# --- monitoring -------------------------------------------------------------------------------


@cli.group("simulate")
@click.option("--project", type=PATH, default=Path("."), show_default=True)
@click.pass_context
def simulate(ctx: click.Context, project: Path) -> None:
    """Simulated production: traffic, then its outcomes."""
    ctx.obj = project


@simulate.command("traffic")
@click.option("--url", default="http://127.0.0.1:3000", show_default=True)
@click.option("--requests", type=int, default=2000, show_default=True)
@click.option("--seed", type=int, help="default: a new one each time")
@click.option("--drift", is_flag=True, help="the shifted population")
@click.option("--concurrency", type=int, default=8, show_default=True)
@click.pass_obj
def simulate_traffic(
    project: Path, url: str, requests: int, seed: int | None, drift: bool, concurrency: int
) -> None:
    """Send generated applications to /predict."""
    from credit_scoring.devtools import simulate as simulation

    _exit(simulation.simulate_traffic(project, url, requests, seed, drift, concurrency))


@simulate.command("outcomes")
@click.option("--share", type=float, default=1.0, show_default=True, help="share labelled")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--database-url", help="default: the project's database")
@click.pass_obj
def simulate_outcomes(project: Path, share: float, seed: int, database_url: str | None) -> None:
    """Write and load the simulated requests' outcomes."""
    from credit_scoring.devtools import simulate as simulation

    _exit(simulation.simulate_outcomes(project, share, seed, database_url))


@cli.command("load-outcomes")
@click.argument("file", type=PATH)
@click.option("--database-url", help="default: the project's database")
def load_outcomes(file: Path, database_url: str | None) -> None:
    """Load a CSV of loan outcomes into the database."""
    from credit_scoring.monitoring import outcomes

    _exit(outcomes.load_and_report(file, database_url))


@cli.command("trigger")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8095, show_default=True)
def trigger(host: str, port: int) -> None:
    """Serve the retrain trigger (Alertmanager's webhook)."""
    from credit_scoring.monitoring import trigger as retrain_trigger

    retrain_trigger.serve(host, port)


@cli.command("retrain")
@click.option("--project", type=PATH, default=Path("."), show_default=True)
@click.option("--retrain-id", required=True)
@click.option("--model-name", default="credit_scoring", show_default=True)
@click.option("--pipeline", default="retraining", show_default=True)
@click.option("--kedro-args", default="", help="extra arguments for kedro run")
def retrain(
    project: Path, retrain_id: str, model_name: str, pipeline: str, kedro_args: str
) -> None:
    """Run one retraining and record its result."""
    from credit_scoring.monitoring import retrain as retraining

    _exit(retraining.retrain(retrain_id, project, model_name, pipeline, kedro_args))


@cli.command("dashboards")
@click.option("--check", is_flag=True, help="compare instead of writing")
@click.option("--output", type=PATH, help="default: monitoring/grafana/dashboards/")
def dashboards(check: bool, output: Path | None) -> None:
    """Write the Grafana dashboards' JSON from their code."""
    from credit_scoring.ops import grafana

    _exit(grafana.export(check, **_given(output=output)))


@cli.command("monitoring-demo")
@click.option("--workdir", type=PATH, help="default: a temporary folder")
@click.option("--keep", is_flag=True, help="keep the folder (logs, data) at the end")
@click.option("--train-rows", type=int, help="rows of each training snapshot")
@click.option("--requests", type=int, help="requests per phase")
def monitoring_demo(
    workdir: Path | None, keep: bool, train_rows: int | None, requests: int | None
) -> None:
    """Run the monitoring loop on loopback, narrated."""
    from credit_scoring.devtools import demo

    _exit(demo.run_demo(workdir, keep, **_given(train_rows=train_rows, requests=requests)))


# --- object storage ---------------------------------------------------------------------------


@cli.group("object-store")
def object_store() -> None:
    """S3 object storage: the DVC remote and MLflow's artifacts."""


@object_store.command("serve")
@click.option("--port", type=int, help="S3 port (default 8333; the next 7 ports are used too)")
@click.option("--data-dir", type=PATH, help="default: ~/.cache/credit-scoring/object-store")
@click.option("--bucket", help="default: credit-scoring")
def object_store_serve(port: int | None, data_dir: Path | None, bucket: str | None) -> None:
    """Run SeaweedFS's S3 on 127.0.0.1 in the foreground."""
    from credit_scoring.devtools import objectstore

    _exit(objectstore.serve(**_given(data_dir=data_dir, port=port, bucket=bucket)))


@object_store.command("check")
def object_store_check() -> None:
    """Check the endpoint, keys and bucket from the environment."""
    from credit_scoring.ops import object_storage

    try:
        result = object_storage.check()
    except object_storage.ObjectStoreError as exc:
        click.echo(f"object-store: {exc}", err=True)
        _exit(2)
        return
    click.echo(f"Bucket {result.bucket} at {result.endpoint}: readable with these keys")


@object_store.command("dvc-remote")
@click.option("--project", type=PATH, default=Path("."), show_default=True)
def object_store_dvc_remote(project: Path) -> None:
    """Point DVC at the bucket (.dvc/config.local).

    The default remote becomes s3://$CREDIT_SCORING_S3_BUCKET/dvc, with AWS_ENDPOINT_URL;
    the keys stay in the environment.
    """
    from credit_scoring.ops import object_storage

    try:
        commands = object_storage.configure_dvc_remote(project)
    except object_storage.ObjectStoreError as exc:
        click.echo(f"object-store: {exc}", err=True)
        _exit(2)
        return
    for command in commands:
        click.echo(command)


# --- images and deployment --------------------------------------------------------------------


@cli.command("image-service")
@click.option("--bento", default="credit_scoring:latest", show_default=True)
@click.option(
    "--repository",
    default="credit-scoring-service",
    show_default=True,
    help="image name without tag, e.g. ghcr.io/<owner>/credit-scoring-service",
)
@click.option("--base-image", help="FROM image (default: the Dockerfile's)")
@click.option(
    "--ca-bundle",
    type=PATH,
    help="CA bundle of a TLS-intercepting proxy, passed as a build secret (never stored)",
)
def image_service(
    bento: str, repository: str, base_image: str | None, ca_bundle: Path | None
) -> None:
    """Build the service image from a bento, with lineage."""
    from credit_scoring.ops import containerize

    click.echo(containerize.build_image(bento, repository, base_image, ca_bundle))


@cli.command("manifests")
@click.option("--check", is_flag=True, help="compare instead of writing")
@click.option("--output", type=PATH, help="default: deploy/k8s/base/generated/")
def manifests(check: bool, output: Path | None) -> None:
    """Write deploy/k8s/base/generated/ from monitoring/."""
    from credit_scoring.ops import manifests as generated

    _exit(generated.generate(check, **_given(output=output)))


@cli.group("docker-engine")
def docker_engine() -> None:
    """A Docker engine and base image without a registry."""


@docker_engine.command("start")
def docker_engine_start() -> None:
    """As root, start a private dockerd (no bridge network)."""
    from credit_scoring.ops import docker_engine as engines

    _exit(engines.start_shared_engine())


@docker_engine.command("stop")
def docker_engine_stop() -> None:
    """Stop the private dockerd that `start` started."""
    from credit_scoring.ops import docker_engine as engines

    engines.stop_shared_engine()


@docker_engine.command("base")
def docker_engine_base() -> None:
    """Build python:3.11-slim's stand-in; print its tag."""
    from credit_scoring.ops import docker_engine as engines

    click.echo(engines.shared_base_image())


if __name__ == "__main__":  # python -m credit_scoring.cli: what the project's own code spawns
    cli()
