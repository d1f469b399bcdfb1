"""The one command line: every command answers ``--help``, importing it stays cheap (Kedro
imports it on every ``kedro`` command), its names leave Kedro's alone, and every command or
module that the Makefile, the workflows, ``deploy/`` and the Dockerfiles run exists."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from credit_scoring.cli import ROLES, cli
from credit_scoring.config.loader import PROJECT_ROOT

EXPECTED = {
    "build",
    "dashboards",
    "docker-engine base",
    "docker-engine start",
    "docker-engine stop",
    "dvc-stages",
    "generate-data",
    "image-service",
    "load-outcomes",
    "manifests",
    "monitoring-demo",
    "object-store check",
    "object-store dvc-remote",
    "object-store serve",
    "purge-events",
    "retrain",
    "simulate outcomes",
    "simulate traffic",
    "smoke",
    "token",
    "trigger",
}


def _commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every runnable command (a group's sub-commands, not the group)."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def _command(path: tuple[str, ...] | list[str]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group), f"{command.name} has no sub-command {name}"
        assert name in command.commands, f"`credit-scoring {' '.join(path)}`: no {name!r}"
        command = command.commands[name]
    return command


def test_the_commands_are_the_expected_ones() -> None:
    assert {" ".join(path) for path in _commands()} == EXPECTED


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_every_command_answers_help_with_its_one_line_summary(path: str) -> None:
    words = path.split()
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, result.output
    summary = (_command(words).help or "").strip().splitlines()[0]
    assert summary.endswith(".") and summary in result.output
    # the group's listing shows it whole, not cut short with "..."
    listing = CliRunner().invoke(cli, [*words[:-1], "--help"]).output
    assert f"{words[-1]} " in listing and summary in listing


def test_importing_the_command_line_imports_click_only() -> None:
    probe = (
        "import sys, credit_scoring.cli; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
        "{'pandas', 'numpy', 'kedro', 'bentoml', 'mlflow', 'sqlalchemy', 'credit_scoring'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(loaded) == ["credit_scoring", "credit_scoring.cli"]


def test_no_command_hides_one_of_kedros() -> None:
    # Kedro adds our commands to its own, ours first: a clash would replace `kedro run`
    from kedro.framework.cli import cli as kedro_cli
    from kedro.framework.cli.utils import load_entry_points

    groups = [kedro_cli.cli, kedro_cli.global_commands, kedro_cli.project_commands]
    groups += [*load_entry_points("global"), *load_entry_points("project")]
    kedros = {name for group in groups for name in group.list_commands(click.Context(group))}
    assert {"run", "package", "catalog", "pipeline", "new", "viz", "mlflow"} <= kedros
    assert not kedros & set(cli.commands)


def test_the_token_roles_are_the_apis() -> None:
    from credit_scoring.auth.tokens import ROLES as API_ROLES

    assert ROLES == API_ROLES


# --- every command line that the repository's files run ----------------------------------------

# `credit-scoring <command>` where a shell runs it: at a line's start, after `run` (uv run,
# $(RUN)) or an opening parenthesis, `;`, `&&`, `|` (prose such as "the credit-scoring
# deployment" is not a command)
SHELL_COMMAND = re.compile(
    r"(?:^[\s@-]*|\brun\s+|\$\(RUN\)\s+|[(;&|]\s*)credit-scoring((?:[ \t]+[a-z][\w-]*)+)", re.M
)
PYTHON_MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")


def _files() -> list[Path]:
    files = [PROJECT_ROOT / "Makefile", PROJECT_ROOT / "Dockerfile"]
    files += sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
    files += sorted(p for p in (PROJECT_ROOT / "deploy").rglob("*") if p.is_file())
    return files


def _yaml_commands(node: Any) -> Iterator[list[str]]:
    """Every container's ``command`` + ``args`` (Kubernetes objects, in any nesting)."""
    if isinstance(node, dict):
        if isinstance(node.get("command"), list):
            yield [str(w) for w in [*node["command"], *node.get("args", [])]]
        for value in node.values():
            yield from _yaml_commands(value)
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_commands(value)


def invocations(path: Path) -> tuple[list[list[str]], list[str]]:
    """The ``credit-scoring`` command lines (words after the name) and ``python -m`` modules."""
    text = path.read_text()
    commands = [match.split() for match in SHELL_COMMAND.findall(text)]
    modules = PYTHON_MODULE.findall(text)
    if path.suffix in {".yaml", ".yml"} and "deploy" in path.parts:
        for document in yaml.safe_load_all(text):
            for argv in _yaml_commands(document):
                if argv[0] == "credit-scoring":
                    commands.append(argv[1:])
                if argv[0].startswith("python") and argv[1:2] == ["-m"]:
                    modules.append(argv[2])
    return commands, modules


def _resolve(argv: list[str]) -> click.Command:
    """The command that ``credit-scoring <argv>`` runs: its words up to the first option."""
    words: list[str] = []
    for word in argv:
        if word.startswith("-") or not isinstance(_command(words), click.Group):
            break
        words.append(word)
    command = _command(words)
    assert not isinstance(command, click.Group), f"`credit-scoring {' '.join(argv)}`: no command"
    return command


def test_the_parser_finds_commands_and_skips_prose(tmp_path: Path) -> None:
    sample = tmp_path / "Makefile"
    sample.write_text(
        "# The credit-scoring deployment\n"
        "\t@$(RUN) credit-scoring token --role x\n"
        '\tservice="$(uv run credit-scoring image-service --repository r)"\n'
        "\t$(RUN) python -m credit_scoring.cli simulate traffic\n"
    )
    commands, modules = invocations(sample)
    assert [c[0] for c in commands] == ["token", "image-service"]
    assert modules == ["credit_scoring.cli"]


def test_every_command_and_module_that_the_repository_runs_exists() -> None:
    seen: set[str] = set()
    for path in _files():
        commands, modules = invocations(path)
        for argv in commands:
            seen.add(_resolve(argv).name or "")
        for module in modules:
            assert importlib.util.find_spec(module) is not None, f"{path}: python -m {module}"
    # the Makefile alone runs most of them: the parser did not silently find nothing
    assert {"generate-data", "build", "trigger", "retrain", "smoke", "image-service"} <= seen


def test_every_module_that_the_package_spawns_runs_as_a_program() -> None:
    spawned = []
    for path in sorted((PROJECT_ROOT / "src/credit_scoring").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.List):
                continue
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for i, word in enumerate(words[:-1]):
                module = words[i + 1]
                if word == "-m" and isinstance(module, str) and module.startswith("credit_"):
                    spawned.append(module)
                    spec = importlib.util.find_spec(module)
                    assert spec and spec.origin, f"{path}: -m {module}"
                    assert '__name__ == "__main__"' in Path(spec.origin).read_text(), module
                    argv = [w for w in words[i + 2 :] if isinstance(w, str)]
                    if module == "credit_scoring.cli" and argv:  # backends.py: `retrain`
                        _resolve(argv)
    assert {"credit_scoring.cli", "credit_scoring.storage.shipper"} <= set(spawned)
