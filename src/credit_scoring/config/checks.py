"""The start-up check: every section of the pipelines being run, and every name they use.

Every section of ``conf/`` parameters has one strict model (``sections.SECTIONS``).
``check_parameters`` validates the
sections that the pipelines being run use, then checks that every column named anywhere
(outliers, features, imputation groups, ``keep``, ``monotone_increasing``, ...) exists, and
raises one ``ConfigurationError`` listing every problem with its key and its file, within
seconds of ``kedro run`` rather than after the data steps. Kedro then hands the nodes the
same typed objects (typed ``params:`` inputs).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from credit_scoring.config.sections import SECTIONS
from credit_scoring.core.contract import DataContract
from credit_scoring.core.errors import ContractError
from credit_scoring.core.features import DerivedFeature
from credit_scoring.core.processing import ProcessingParams
from credit_scoring.core.spec import aggregate_columns


class ConfigurationError(ContractError, click.ClickException):
    """Configuration that cannot work; the CLI prints the message alone (no traceback)."""

    def __init__(self, message: str) -> None:
        ContractError.__init__(self, message)
        click.ClickException.__init__(self, message)

    def __str__(self) -> str:
        return self.message


def parameter_files(conf_dirs: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every parameters file of these folders, parsed once, in Kedro's order (base first)."""
    files = []
    for directory in conf_dirs:
        paths = sorted(directory.glob("parameters*.yml"))
        paths += sorted(directory.glob("parameters*/**/*.yml"))
        files += [(path, yaml.safe_load(path.read_text()) or {}) for path in paths]
    return files


def files_defining(files: list[tuple[Path, dict[str, Any]]], path: tuple[str, ...]) -> list[Path]:
    """The files that define ``path``, else its deepest parent that some file defines."""
    for depth in range(len(path), 0, -1):
        found = []
        for file, content in files:
            node: Any = content
            for part in path[:depth]:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                found.append(file)
        if found:
            return found
    return []


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _close(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


class _Problems:
    def __init__(self, conf_dirs: list[Path]) -> None:
        self.conf_dirs = conf_dirs
        self.items: list[str] = []
        self._files: list[tuple[Path, dict[str, Any]]] | None = None  # read on the first problem

    def add(self, path: tuple[str, ...], message: str) -> None:
        if self._files is None:
            self._files = parameter_files(self.conf_dirs)
        files = [_shown(str(f)) for f in files_defining(self._files, path)] or [
            f"{_shown(str(d))}/parameters_*.yml" for d in self.conf_dirs
        ]
        self.items.append(f"{'.'.join(path)}: {message} [{', '.join(files)}]")

    def unknown(self, path: tuple[str, ...], name: str, known: set[str], what: str) -> None:
        if name not in known:
            self.add(path, f"'{name}' is not a {what}{_close(name, known)}")


def _validate_sections(
    parameters: Mapping[str, Any], keys: Iterable[str], problems: _Problems
) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    models = SECTIONS
    for key in keys:
        model = models.get(key)
        if model is None:
            continue
        if key not in parameters:
            problems.add((key,), "missing section")
            continue
        try:
            typed[key] = model.model_validate(parameters[key])
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(str(p) for p in err["loc"])
                problems.add((key, *loc), err["msg"])
    return typed


def _check_processing(
    contract: DataContract, processing: ProcessingParams, problems: _Problems
) -> set[str]:
    """Names in data_processing exist; returns every column the processed table can hold."""
    key = "data_processing"
    columns = set(contract.columns)
    for i, anomaly in enumerate(processing.anomalies):
        problems.unknown((key, "anomalies", str(i), "column"), anomaly.column, columns, "column")
    columns |= {a.flag_column for a in processing.anomalies}
    for name in processing.outliers:
        problems.unknown((key, "outliers", name), name, columns, "column of the data contract")
    _check_operands((key, "domain_features"), processing.domain_features, columns, problems)
    columns |= set(processing.domain_features)
    for table in contract.secondary_tables:
        if table not in processing.secondary_aggregations:
            problems.add(
                (key, "secondary_aggregations"),
                f"no entry for the secondary table '{table}' of the data contract",
            )
    for table, agg in processing.secondary_aggregations.items():
        path = (key, "secondary_aggregations", table)
        spec = contract.secondary_tables.get(table)
        if spec is None:
            problems.unknown(path, table, set(contract.secondary_tables), "secondary table")
            continue
        table_columns = set(spec.columns)
        _check_operands((*path, "derived"), agg.derived, table_columns, problems)
        table_columns |= set(agg.derived)
        for column in agg.aggregations:
            problems.unknown((*path, "aggregations", column), column, table_columns, "column")
    columns |= set(aggregate_columns(processing.feature_spec()))
    for name in processing.irrelevant_columns.keep:
        problems.unknown((key, "irrelevant_columns", "keep"), name, columns, "column")
    for i, group in enumerate(processing.imputation):
        for pattern in group.columns or []:
            if not any(fnmatch(column, pattern) for column in columns):
                problems.add(
                    (key, "imputation", str(i), "columns"),
                    f"'{pattern}' (group '{group.name}') matches no column"
                    f"{_close(pattern, columns)}",
                )
    return columns


def _check_operands(
    path: tuple[str, ...],
    features: Mapping[str, DerivedFeature],
    columns: set[str],
    problems: _Problems,
) -> None:
    known = set(columns)
    for name, feature in features.items():
        for operand in (feature.left, feature.right):
            if operand is not None:
                problems.unknown((*path, name), operand, known, "column")
        known.add(name)  # later features may use earlier ones


def check_parameters(
    parameters: Mapping[str, Any], keys: Iterable[str], conf_dirs: list[Path]
) -> dict[str, Any]:
    """Validate ``keys`` (top-level sections) and the names they use; return typed sections.

    Raises ``ConfigurationError`` naming every problem, its key and its file.
    """
    keys = list(dict.fromkeys(keys))
    if {"data_processing", "data_science"} & set(keys) and "data_contract" not in keys:
        keys.insert(0, "data_contract")  # names are checked against the contract
    problems = _Problems(conf_dirs)
    typed = _validate_sections(parameters, keys, problems)
    contract = typed.get("data_contract")
    processing = typed.get("data_processing")
    if contract is not None and processing is not None:
        columns = _check_processing(contract, processing, problems)
        science = typed.get("data_science")
        for name in getattr(science, "monotone_increasing", []):
            problems.unknown(("data_science", "monotone_increasing"), name, columns, "feature")
    if problems.items:
        raise ConfigurationError(
            f"{len(problems.items)} configuration problem(s); nothing was run:\n  - "
            + "\n  - ".join(problems.items)
        )
    return typed


def pipeline_parameter_keys(pipelines: Iterable[Any]) -> set[str]:
    """The top-level parameter sections that these pipelines' nodes read."""
    keys: set[str] = set()
    for pipeline in pipelines:
        for name in pipeline.inputs():
            if name.startswith("params:"):
                keys.add(name.removeprefix("params:").split(".")[0])
            elif name == "parameters":
                keys |= set(SECTIONS)
    return keys
