"""The project's commands: ``credit-scoring --help`` (also listed by ``kedro --help``)."""

from __future__ import annotations

import click


@click.group(name="credit-scoring")
def cli() -> None:
    """Credit scoring: the project's own commands (Kedro runs the pipelines)."""
